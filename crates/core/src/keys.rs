//! The keys file: the OpenSSH public keys that may log in to a run's hosts (the team's
//! keys, as the seed's "keys file" of rpc-gating), checked line by line before anything is
//! applied.
//!
//! A valid file holds OpenSSH public key lines (`ssh-ed25519 AAAA… comment`); comments
//! (`#`) and blank lines are skipped and CRLF line ends tolerated. A line with options
//! (`command="…" ssh-rsa …`), garbage, an HTML error page, or a file without a single key
//! is rejected with an error naming the line, and nothing is applied.

use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Key types accepted in a keys file.
pub const ALGORITHMS: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// One OpenSSH public key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PublicKey {
    /// The key type, e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// The base64 key blob.
    pub blob: String,
    /// The comment, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl PublicKey {
    /// Parses one `authorized_keys`-style line without options.
    pub fn parse(line: &str) -> std::result::Result<Self, String> {
        let mut fields = line.split_whitespace();
        let algorithm = fields.next().ok_or("empty line")?;
        if !ALGORITHMS.contains(&algorithm) {
            return Err(if algorithm.contains('=') || line.contains('"') {
                "key options (such as command=) are not accepted".into()
            } else {
                format!(
                    "`{}` is not an OpenSSH public key type",
                    algorithm.chars().take(40).collect::<String>()
                )
            });
        }
        let blob = fields.next().ok_or("the key data is missing")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .map_err(|_| "the key data is not base64".to_owned())?;
        // The blob starts with the key type as an SSH string: u32 length, then the name.
        let named = bytes
            .get(..4)
            .map(|len| u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize)
            .and_then(|len| bytes.get(4..4 + len));
        if named != Some(algorithm.as_bytes()) {
            return Err(format!("the key data is not a {algorithm} key"));
        }
        let comment: Vec<&str> = fields.collect();
        Ok(Self {
            algorithm: algorithm.to_owned(),
            blob: blob.to_owned(),
            comment: (!comment.is_empty()).then(|| comment.join(" ")),
        })
    }

    /// The key as an `authorized_keys` line.
    pub fn line(&self) -> String {
        match &self.comment {
            Some(comment) => format!("{} {} {comment}", self.algorithm, self.blob),
            None => format!("{} {}", self.algorithm, self.blob),
        }
    }

    /// Whether `other` is the same key (comments aside).
    pub fn same_key(&self, other: &PublicKey) -> bool {
        self.algorithm == other.algorithm && self.blob == other.blob
    }
}

/// A checked keys file and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysFile {
    /// Where it was fetched from.
    pub source: String,
    /// SHA-256 of the fetched bytes.
    pub digest: String,
    /// Its keys, in file order, without duplicates.
    pub keys: Vec<PublicKey>,
}

impl KeysFile {
    /// Checks `bytes` fetched from `source`; the error names the source and line.
    pub fn parse(source: &str, bytes: &[u8]) -> Result<Self> {
        let invalid = |message: String| Error::Backend {
            backend: "keys-file".into(),
            message: format!("{source}: {message}; no keys were applied"),
        };
        let text = std::str::from_utf8(bytes).map_err(|_| invalid("not UTF-8 text".into()))?;
        let mut keys: Vec<PublicKey> = Vec::new();
        for (n, line) in text.split('\n').enumerate() {
            let line = line.trim_end_matches('\r').trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key =
                PublicKey::parse(line).map_err(|why| invalid(format!("line {}: {why}", n + 1)))?;
            if !keys.iter().any(|k| k.same_key(&key)) {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err(invalid("holds no public keys".into()));
        }
        Ok(Self {
            source: source.to_owned(),
            digest: format!("{:x}", Sha256::digest(bytes)),
            keys,
        })
    }

    /// The keys as `authorized_keys` text.
    pub fn authorized_keys(&self) -> String {
        self.keys.iter().map(|k| k.line() + "\n").collect()
    }

    /// Saves it as `keys_file.json` in `dir` (the state dir's `keys/`).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        crate::state::write_json(&dir.join("keys_file.json"), self)
    }

    /// Loads what [`KeysFile::save`] wrote, if anything.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join("keys_file.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::State {
                    path,
                    message: format!("unreadable: {e}"),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("reading", &path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real ed25519 public key (from `ssh-keygen -t ed25519`), and an RSA one.
    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHQ9bmWwIYG5vUmv8a9x4UHNdZ0zQ7yqTEG2+XyB4xXk alice@laptop";
    const RSA_TYPE_WITH_ED_BLOB: &str =
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIHQ9bmWwIYG5vUmv8a9x4UHNdZ0zQ7yqTEG2+XyB4xXk";

    #[test]
    fn valid_lines_comments_blanks_and_crlf() {
        let text = format!("# team keys\r\n\r\n{ED}\r\n{ED} duplicate\n");
        let file = KeysFile::parse("file:///keys", text.as_bytes()).unwrap();
        assert_eq!(file.keys.len(), 1);
        assert_eq!(file.keys[0].comment.as_deref(), Some("alice@laptop"));
        assert_eq!(file.authorized_keys(), format!("{ED}\n"));
        assert_eq!(file.digest.len(), 64);
    }

    #[test]
    fn bad_files_are_rejected_naming_the_line() {
        let cases = [
            (
                format!("{ED}\ncommand=\"rm -rf /\" {ED}\n"),
                "line 2: key options",
            ),
            (format!("{ED}\nhello world\n"), "line 2: `hello` is not"),
            (
                "<html><body>502 Bad Gateway</body></html>".to_owned(),
                "line 1",
            ),
            ("# only comments\n\n".to_owned(), "holds no public keys"),
            (String::new(), "holds no public keys"),
            ("ssh-ed25519 not-base64!!".to_owned(), "not base64"),
            (RSA_TYPE_WITH_ED_BLOB.to_owned(), "not a ssh-rsa key"),
        ];
        for (text, expected) in cases {
            let err = KeysFile::parse("https://keys.example/k", text.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(
                err.contains("https://keys.example/k") && err.contains("no keys were applied"),
                "{err}"
            );
        }
    }
}

/// The run's own SSH key pair, generated per run in the state dir's `keys/`: the default
/// identity for hosts the run created. Only the path of the private key is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunKey {
    /// The public key.
    pub public: PublicKey,
    /// The private key file (mode 0600).
    pub private_path: std::path::PathBuf,
}

/// File names of the run key in `keys/`.
const RUN_KEY: &str = "id_ed25519";

impl RunKey {
    /// Generates a fresh ed25519 key pair for `run_id` in `dir`, replacing any earlier one.
    pub fn generate(dir: &Path, run_id: &str) -> Result<Self> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        let mut private = ssh_key::PrivateKey::random(
            &mut ssh_key::rand_core::OsRng,
            ssh_key::Algorithm::Ed25519,
        )
        .map_err(|e| Error::backend("keys", format!("generating the run key: {e}")))?;
        private.set_comment(run_id);
        let pem = private
            .to_openssh(ssh_key::LineEnding::LF)
            .map_err(|e| Error::backend("keys", format!("encoding the run key: {e}")))?;
        let public = private
            .public_key()
            .to_openssh()
            .map_err(|e| Error::backend("keys", format!("encoding the run key: {e}")))?;
        let private_path = dir.join(RUN_KEY);
        let _ = std::fs::remove_file(&private_path);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&private_path)
            .and_then(|mut f| f.write_all(pem.as_bytes()))
            .map_err(|e| Error::io("writing", &private_path, e))?;
        let public_path = dir.join(format!("{RUN_KEY}.pub"));
        std::fs::write(&public_path, format!("{public}\n"))
            .map_err(|e| Error::io("writing", &public_path, e))?;
        let public = PublicKey::parse(&public)
            .map_err(|why| Error::backend("keys", format!("the run key: {why}")))?;
        Ok(Self {
            public,
            private_path,
        })
    }

    /// The run key in `dir`, if one was generated.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let public_path = dir.join(format!("{RUN_KEY}.pub"));
        let text = match std::fs::read_to_string(&public_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("reading", &public_path, e)),
        };
        let public = PublicKey::parse(text.trim()).map_err(|why| Error::State {
            path: public_path.clone(),
            message: why,
        })?;
        Ok(Some(Self {
            public,
            private_path: dir.join(RUN_KEY),
        }))
    }
}

/// The keys of a run: the checked keys file (if configured) and the run's own key pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunKeys {
    /// The keys file, fetched once per run.
    pub keys_file: Option<KeysFile>,
    /// The run's own key pair.
    pub run_key: Option<RunKey>,
}

impl RunKeys {
    /// Every public key to authorize on a run's hosts: the keys file's, then the run key.
    pub fn authorized(&self) -> Vec<PublicKey> {
        let mut keys: Vec<PublicKey> = self
            .keys_file
            .as_ref()
            .map(|f| f.keys.clone())
            .unwrap_or_default();
        if let Some(run_key) = &self.run_key
            && !keys.iter().any(|k| k.same_key(&run_key.public))
        {
            keys.push(run_key.public.clone());
        }
        keys
    }

    /// Loads what a run saved in `dir` (the state dir's `keys/`).
    pub fn load(dir: &Path) -> Result<Self> {
        Ok(Self {
            keys_file: KeysFile::load(dir)?,
            run_key: RunKey::load(dir)?,
        })
    }
}

#[cfg(test)]
mod run_key_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_generated_run_key_is_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let key = RunKey::generate(dir.path(), "gate-0000abcd").unwrap();
        assert_eq!(key.public.algorithm, "ssh-ed25519");
        assert_eq!(key.public.comment.as_deref(), Some("gate-0000abcd"));
        let mode = std::fs::metadata(&key.private_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let pem = std::fs::read_to_string(&key.private_path).unwrap();
        assert!(pem.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        assert_eq!(RunKey::load(dir.path()).unwrap(), Some(key.clone()));
        let again = RunKey::generate(dir.path(), "gate-0000abcd").unwrap();
        assert_ne!(again.public, key.public, "a new run gets a new key");
        let keys = RunKeys {
            keys_file: None,
            run_key: Some(again.clone()),
        };
        assert_eq!(keys.authorized(), vec![again.public]);
    }
}
