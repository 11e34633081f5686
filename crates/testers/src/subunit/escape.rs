//! XML escaping for the converter's output: its hot loop.

/// Which bytes need a look: 1 in element text, 2 in attributes, 3 in both.
const SPECIAL: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = 3;
        b += 1;
    }
    t[b'\t' as usize] = 2;
    t[b'\n' as usize] = 2;
    t[b'\r' as usize] = 2;
    t[b'"' as usize] = 2;
    t[b'&' as usize] = 3;
    t[b'<' as usize] = 3;
    t[b'>' as usize] = 3;
    // The first byte of U+FFFE and U+FFFF (and of other characters, let through).
    t[0xEF] = 3;
    t
};

/// `s` escaped for XML into `out`, without the characters XML 1.0 forbids (controls other
/// than tab, newline and carriage return; U+FFFE, U+FFFF). In attributes, quotes and
/// whitespace are escaped too. Runs of plain bytes are found with a table and copied
/// whole: this is the converter's hot loop.
pub fn escape_into(out: &mut String, s: &str, in_attr: bool) {
    let mask = if in_attr { 2 } else { 1 };
    let bytes = s.as_bytes();
    let mut plain = 0;
    let mut i = 0;
    while i < bytes.len() {
        if SPECIAL[usize::from(bytes[i])] & mask == 0 {
            i += 1;
            continue;
        }
        let (replacement, skip): (&str, usize) = match bytes[i] {
            b'&' => ("&amp;", 1),
            b'<' => ("&lt;", 1),
            b'>' => ("&gt;", 1),
            b'"' => ("&quot;", 1),
            b'\t' => ("&#x9;", 1),
            b'\n' => ("&#xA;", 1),
            b'\r' => ("&#xD;", 1),
            0xEF if bytes.get(i + 1) == Some(&0xBF)
                && matches!(bytes.get(i + 2), Some(0xBE | 0xBF)) =>
            {
                ("", 3)
            }
            0xEF => {
                i += 1;
                continue;
            }
            _ => ("", 1),
        };
        out.push_str(&s[plain..i]);
        out.push_str(replacement);
        i += skip;
        plain = i;
    }
    out.push_str(&s[plain..]);
}

/// `text` with known secret values masked, without a copy when there are none.
fn redacted(text: String) -> String {
    match gate_core::secret::redact(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(masked) => masked,
    }
}

/// `s` escaped as element text, secrets masked.
pub fn content(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    escape_into(&mut out, s, false);
    redacted(out)
}

/// `s` escaped as an attribute value, secrets masked.
pub fn attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    escape_into(&mut out, s, true);
    redacted(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_text_and_drops_what_xml_forbids() {
        let s = "a<b>&\"c\"\td\ne\rf\u{1}g\u{FFFE}h\u{FFFF}i\u{FFFD}é";
        assert_eq!(content(s), "a&lt;b&gt;&amp;\"c\"\td\ne\rfghi\u{FFFD}é");
        assert_eq!(
            attr(s),
            "a&lt;b&gt;&amp;&quot;c&quot;&#x9;d&#xA;e&#xD;fghi\u{FFFD}é"
        );
        assert_eq!(attr(""), "");
        assert_eq!(content("plain"), "plain");
    }
}
