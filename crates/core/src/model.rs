//! Hosts, the inventory, and run ids.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One machine of a run, as the provider created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Unique within the inventory; names logs and artifact folders.
    pub name: String,
    /// Where to reach it (an IP address or host name; `localhost` for local hosts).
    pub address: String,
    /// The transport's port (22 for SSH; 0 where none applies).
    #[serde(default)]
    pub port: u16,
    /// The user commands run as.
    pub user: String,
    /// Free-form labels (roles such as `infra`, `compute`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The registry name of the transport that reaches it, e.g. `local` or `ssh`.
    pub transport: String,
    /// The working directory relative paths resolve against (the user's home when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
}

/// The hosts of a run: never empty, names unique, the primary first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "InventoryFile", into = "InventoryFile")]
pub struct Inventory {
    hosts: Vec<Host>,
}

#[derive(Serialize, Deserialize)]
struct InventoryFile {
    hosts: Vec<Host>,
}

/// Why a list of hosts is not an inventory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InventoryError {
    /// No hosts at all.
    #[error("an inventory needs at least one host")]
    Empty,
    /// Two hosts share a name.
    #[error("host name `{0}` appears twice in the inventory")]
    DuplicateName(String),
}

impl Inventory {
    /// An inventory of `hosts`, the first being the primary.
    pub fn new(hosts: Vec<Host>) -> Result<Self, InventoryError> {
        if hosts.is_empty() {
            return Err(InventoryError::Empty);
        }
        for (i, host) in hosts.iter().enumerate() {
            if hosts[..i].iter().any(|h| h.name == host.name) {
                return Err(InventoryError::DuplicateName(host.name.clone()));
            }
        }
        Ok(Self { hosts })
    }

    /// The primary host: deployment and tests run here.
    pub fn primary(&self) -> &Host {
        &self.hosts[0]
    }

    /// Every host, primary first.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The host called `name`.
    pub fn get(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// How many hosts there are (at least one).
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Always false; here for API symmetry with collections.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl TryFrom<InventoryFile> for Inventory {
    type Error = InventoryError;
    fn try_from(file: InventoryFile) -> Result<Self, Self::Error> {
        Inventory::new(file.hosts)
    }
}

impl From<Inventory> for InventoryFile {
    fn from(inventory: Inventory) -> Self {
        InventoryFile {
            hosts: inventory.hosts,
        }
    }
}

/// A run's id: `gate-` then lower-case letters, digits and dashes, at most 63 characters,
/// so it fits every name and tag field it is put in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

/// A string that is not a valid [`RunId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid run id `{0}`: it must start with `gate-`, use only a-z, 0-9 and `-`, and be at most 63 characters"
)]
pub struct InvalidRunId(pub String);

impl RunId {
    /// The longest run id.
    pub const MAX_LEN: usize = 63;

    /// A fresh id: `gate-<job initials>-<build>-<4 hex>` when `JOB_NAME` and `BUILD_NUMBER`
    /// are set (under Jenkins), else `gate-<8 hex>`.
    pub fn generate() -> Self {
        Self::generate_from(
            std::env::var("JOB_NAME").ok().as_deref(),
            std::env::var("BUILD_NUMBER").ok().as_deref(),
        )
    }

    /// [`RunId::generate`] with the job name and build number given.
    pub fn generate_from(job: Option<&str>, build: Option<&str>) -> Self {
        let initials: String = job
            .unwrap_or_default()
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter_map(|word| word.chars().next())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let build: String = build
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let id = if initials.is_empty() || build.is_empty() {
            format!("gate-{}", random_hex(8))
        } else {
            let suffix = random_hex(4);
            // gate- + initials + - + build + - + 4 hex must fit in MAX_LEN.
            let room = Self::MAX_LEN - "gate-".len() - 2 - suffix.len();
            let build: String = build.chars().take(room / 2).collect();
            let initials: String = initials.chars().take(room - build.len()).collect();
            format!("gate-{initials}-{build}-{suffix}")
        };
        Self(id)
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RunId {
    type Error = InvalidRunId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let valid = s.starts_with("gate-")
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Ok(Self(s))
        } else {
            Err(InvalidRunId(s))
        }
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> Self {
        id.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `n` random lower-case hex digits.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n.div_ceil(2)];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy source: fall back to the clock and pid, still unique enough per run.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
            ^ u128::from(std::process::id());
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8;
        }
    }
    let mut hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    hex.truncate(n);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str) -> Host {
        Host {
            name: name.into(),
            address: "localhost".into(),
            port: 0,
            user: "gate".into(),
            labels: vec![],
            transport: "local".into(),
            home: None,
        }
    }

    #[test]
    fn inventory_rejects_empty_and_duplicate_names() {
        assert_eq!(Inventory::new(vec![]), Err(InventoryError::Empty));
        assert_eq!(
            Inventory::new(vec![host("a"), host("a")]),
            Err(InventoryError::DuplicateName("a".into()))
        );
        let inv = Inventory::new(vec![host("a"), host("b")]).unwrap();
        assert_eq!(inv.primary().name, "a");
        let json = serde_json::to_string(&inv).unwrap();
        assert_eq!(serde_json::from_str::<Inventory>(&json).unwrap(), inv);
        assert!(serde_json::from_str::<Inventory>(r#"{"hosts":[]}"#).is_err());
    }

    #[test]
    fn run_ids_follow_the_naming_rules() {
        let plain = RunId::generate_from(None, None);
        assert!(RunId::try_from(plain.as_str().to_owned()).is_ok());
        assert_eq!(plain.as_str().len(), "gate-".len() + 8);

        let jenkins = RunId::generate_from(Some("RE-Gate_AIO/newton"), Some("123"));
        assert!(jenkins.as_str().starts_with("gate-rgan-123-"), "{jenkins}");
        assert!(RunId::try_from(jenkins.as_str().to_owned()).is_ok());

        let long_job = "x-".repeat(100);
        let long = RunId::generate_from(Some(&long_job), Some(&"9".repeat(80)));
        assert!(long.as_str().len() <= RunId::MAX_LEN, "{long}");
        assert!(RunId::try_from(long.as_str().to_owned()).is_ok());

        for bad in [
            "run-1",
            "gate-UPPER",
            "gate-a_b",
            &format!("gate-{}", "a".repeat(60)),
        ] {
            assert!(RunId::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }
}
