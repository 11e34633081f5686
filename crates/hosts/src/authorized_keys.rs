//! `authorized_keys` files: finding keys in them (options and all), and merging keys in
//! without duplicates; the `authorized-keys` preparer step.

use std::time::Duration;

use gate_core::keys::{ALGORITHMS, PublicKey};
use gate_core::{Error, HostIo, Result, Transport};

use crate::remote;

/// The default file: the login user's.
pub(crate) const DEFAULT_PATH: &str = ".ssh/authorized_keys";

/// One key line of an `authorized_keys` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyLine {
    /// The options before the key (`from="…",no-pty`), if any.
    pub(crate) options: Option<String>,
    /// The key.
    pub(crate) key: PublicKey,
}

impl KeyLine {
    /// Whether sshd would run a forced command instead of what the client asks (as in the
    /// `command="echo 'Please login as the user …'"` lines cloud images put in root's file):
    /// such a key cannot be used to run commands.
    pub(crate) fn forced_command(&self) -> bool {
        self.options
            .as_deref()
            .is_some_and(|o| o.to_ascii_lowercase().contains("command="))
    }
}

/// The key of one line, if the line holds one (comments, blanks and garbage hold none).
pub(crate) fn parse_line(line: &str) -> Option<KeyLine> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    // The key starts at the first token that is a key type followed by a matching blob;
    // everything before it is options (which may hold quoted spaces).
    let mut offset = 0;
    for token in line.split_whitespace() {
        let at = offset + line[offset..].find(token).unwrap_or(0);
        offset = at + token.len();
        if !ALGORITHMS.contains(&token) {
            continue;
        }
        if let Ok(key) = PublicKey::parse(&line[at..]) {
            let options = line[..at].trim();
            return Some(KeyLine {
                options: (!options.is_empty()).then(|| options.to_owned()),
                key,
            });
        }
    }
    None
}

/// Every key line of `text`.
pub(crate) fn key_lines(text: &str) -> Vec<KeyLine> {
    text.lines().filter_map(parse_line).collect()
}

/// What [`merge`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Merged {
    /// The new text.
    pub(crate) text: String,
    /// Keys appended.
    pub(crate) added: usize,
    /// Lines removed because they repeated a key of `keys`.
    pub(crate) duplicates: usize,
    /// Lines of a key of `keys` that carried a forced command, replaced by the plain key.
    pub(crate) unrestricted: usize,
}

impl Merged {
    /// Whether the text changed.
    pub(crate) fn changed(&self) -> bool {
        self.added + self.duplicates + self.unrestricted > 0
    }
}

/// `existing` with every key of `keys` present exactly once: later repeats of a key are
/// removed, a line that gives it a forced command becomes the plain key, missing keys are
/// appended. Every other line stays as it was.
pub(crate) fn merge(existing: &str, keys: &[PublicKey]) -> Merged {
    let mut seen: Vec<&PublicKey> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let (mut duplicates, mut unrestricted) = (0, 0);
    for line in existing.lines() {
        let ours = parse_line(line).and_then(|parsed| {
            keys.iter()
                .find(|k| k.same_key(&parsed.key))
                .map(|k| (k, parsed))
        });
        match ours {
            Some((key, _)) if seen.iter().any(|k| k.same_key(key)) => duplicates += 1,
            Some((key, parsed)) if parsed.forced_command() => {
                seen.push(key);
                unrestricted += 1;
                lines.push(key.line());
            }
            Some((key, _)) => {
                seen.push(key);
                lines.push(line.to_owned());
            }
            None => lines.push(line.to_owned()),
        }
    }
    let mut added = 0;
    for key in keys {
        if !seen.iter().any(|k| k.same_key(key)) {
            seen.push(key);
            lines.push(key.line());
            added += 1;
        }
    }
    let text = if added + duplicates + unrestricted == 0 {
        // Nothing changed: the file stays byte for byte (a missing final newline too).
        existing.to_owned()
    } else {
        lines.iter().map(|l| format!("{l}\n")).collect()
    };
    Merged {
        text,
        added,
        duplicates,
        unrestricted,
    }
}

/// What is wrong with `keys` in `text`, one entry per key: missing, or only present with
/// a forced command.
pub(crate) fn missing(text: &str, keys: &[PublicKey]) -> Vec<String> {
    let lines = key_lines(text);
    keys.iter()
        .filter_map(|key| {
            let mut found = lines.iter().filter(|l| l.key.same_key(key));
            let describe = |why: &str| {
                let name = key.comment.as_deref().unwrap_or(&key.algorithm);
                format!(
                    "{name} ({}…): {why}",
                    key.blob.chars().skip(20).take(12).collect::<String>()
                )
            };
            match found.next() {
                None => Some(describe("missing")),
                // sshd applies the first line that matches a key.
                Some(first) if first.forced_command() => {
                    Some(describe("present only behind a forced command="))
                }
                Some(_) => None,
            }
        })
        .collect()
}

/// Puts `keys` into the `authorized_keys` file at `path` on the host (idempotent: an
/// unchanged file is not rewritten), then reads it back and checks each key is there
/// exactly once and usable.
pub(crate) async fn install(
    transport: &dyn Transport,
    hio: &HostIo,
    path: &str,
    keys: &[PublicKey],
    timeout: Duration,
) -> Result<()> {
    let file = remote::resolve(transport, hio, path, timeout).await?;
    let existing = remote::read_file(transport, hio, &file.path, timeout)
        .await?
        .unwrap_or_default();
    let merged = merge(&existing, keys);
    if merged.changed() || !file.exists {
        hio.log.note(&format!(
            "{}: {} key(s) added, {} duplicate line(s) removed, {} forced command(s) lifted",
            file.path, merged.added, merged.duplicates, merged.unrestricted
        ));
        remote::write_file(transport, hio, &file.path, &merged.text, "600", timeout).await?;
    } else {
        hio.log
            .note(&format!("{}: every key is already present", file.path));
    }
    let written = remote::read_file(transport, hio, &file.path, timeout)
        .await?
        .unwrap_or_default();
    let lines = key_lines(&written);
    let mut problems = missing(&written, keys);
    for key in keys {
        if lines.iter().filter(|l| l.key.same_key(key)).count() > 1 {
            problems.push(format!("{} is present more than once", key.algorithm));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Host {
            host: transport.host().name.clone(),
            message: format!(
                "{} does not hold the keys after writing it: {}",
                file.path,
                problems.join("; ")
            ),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Real ed25519 public keys (from `ssh-keygen -t ed25519`).
    pub(crate) const ALICE: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHQ9bmWwIYG5vUmv8a9x4UHNdZ0zQ7yqTEG2+XyB4xXk alice@laptop";
    pub(crate) const BOB: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA1BMgPW4mDaGAEIytSBnlLjvW2+SfGnGhYKaIxsksZc bob@desk";

    pub(crate) fn key(line: &str) -> PublicKey {
        PublicKey::parse(line).unwrap()
    }

    #[test]
    fn lines_with_options_and_quoted_spaces_are_found() {
        let line = format!(
            "no-port-forwarding,command=\"echo 'Please login as the user \\\"debian\\\" rather than root.';sleep 10\" {ALICE}"
        );
        let parsed = parse_line(&line).unwrap();
        assert!(parsed.key.same_key(&key(ALICE)));
        assert!(parsed.forced_command());
        assert!(
            parse_line(&format!("from=\"10.0.0.0/8\" {BOB}")).is_some_and(|l| !l.forced_command())
        );
        assert_eq!(parse_line("# ssh-ed25519 AAAA"), None);
        assert_eq!(parse_line("ssh-ed25519 not-base64"), None);
    }

    #[test]
    fn merge_adds_missing_keys_once_and_keeps_other_lines() {
        let existing = format!("# mine\n{BOB}\nssh-rsa garbage line\n{BOB} again\n");
        let merged = merge(&existing, &[key(ALICE), key(BOB)]);
        assert_eq!((merged.added, merged.duplicates), (1, 1));
        assert_eq!(
            merged.text,
            format!("# mine\n{BOB}\nssh-rsa garbage line\n{ALICE}\n")
        );
        let again = merge(&merged.text, &[key(ALICE), key(BOB)]);
        assert!(!again.changed());
        assert_eq!(again.text, merged.text);
        let untouched = merge("no newline at the end", &[]);
        assert_eq!(untouched.text, "no newline at the end");
        assert_eq!(merge("", &[key(BOB)]).text, format!("{BOB}\n"));
    }

    #[test]
    fn a_forced_command_line_of_a_managed_key_becomes_the_plain_key() {
        let existing = format!("command=\"echo no\" {ALICE}\n");
        assert_eq!(missing(&existing, &[key(ALICE)]).len(), 1);
        let merged = merge(&existing, &[key(ALICE)]);
        assert_eq!(merged.unrestricted, 1);
        assert_eq!(merged.text, format!("{ALICE}\n"));
        assert!(missing(&merged.text, &[key(ALICE)]).is_empty());
    }
}
