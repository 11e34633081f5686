//! Sizes in config: `"10G"`, `"512M"`, `"1T"`, or a number of bytes.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A size in bytes, written in config as a number of bytes or with a binary unit suffix:
/// `K`, `M`, `G`, `T` (powers of 1024; `KiB`, `GB` and the like mean the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl Size {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let bad =
            || format!("`{s}` is not a size (write e.g. \"512M\", \"10G\" or a number of bytes)");
        let number: u64 = digits.parse().map_err(|_| bad())?;
        let shift = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "B" => 0,
            "K" | "KB" | "KIB" => 10,
            "M" | "MB" | "MIB" => 20,
            "G" | "GB" | "GIB" => 30,
            "T" | "TB" | "TIB" => 40,
            _ => return Err(bad()),
        };
        number
            .checked_mul(1u64 << shift)
            .map(Size)
            .ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
            let step = 1u64 << shift;
            if self.0 >= step && self.0.is_multiple_of(step) {
                return write!(f, "{}{unit}", self.0 / step);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl Visitor<'_> for SizeVisitor {
            type Value = Size;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"10G\" or a number of bytes")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_binary_and_round_trip_through_display() {
        assert_eq!("10G".parse(), Ok(Size(10 << 30)));
        assert_eq!("512MiB".parse(), Ok(Size(512 << 20)));
        assert_eq!("4096".parse(), Ok(Size(4096)));
        assert_eq!(" 1 t ".parse(), Ok(Size(1 << 40)));
        assert_eq!(Size(10 << 30).to_string(), "10G");
        assert_eq!(Size(1536).to_string(), "1536B");
        for bad in ["", "G", "1.5G", "10Q", "-1", "99999999999T"] {
            assert!(bad.parse::<Size>().is_err(), "{bad}");
        }
    }
}
