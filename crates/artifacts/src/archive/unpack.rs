//! Unpacking one host's tar stream into `artifacts/<host>/`, safely: names never leave the
//! folder, links are listed and never created, excluded names and private keys are dropped,
//! the size limit is enforced, known secret values are redacted from text files, and every
//! file kept is hashed for the manifest.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use gate_core::{Error, Result};
use sha2::{Digest, Sha256};

use crate::manifest::{ManifestEntry, hash_file, hex};

/// Text files up to this size are redacted in memory; larger ones are kept as they are
/// and listed (a log of that size is over any sane per-host limit anyway).
const REDACT_MAX: u64 = 512 * 1024 * 1024;

/// What unpacking one host's stream gave.
#[derive(Debug, Default, Clone)]
pub struct Unpacked {
    /// Files kept, paths relative to the host's folder.
    pub files: Vec<ManifestEntry>,
    /// Their bytes.
    pub bytes: u64,
    /// Symbolic links seen (`path -> target`), never created nor followed.
    pub links: Vec<String>,
    /// Files left out: excluded names, private keys, special files.
    pub excluded: Vec<String>,
    /// Set when the size limit stopped the copy: which file did not fit.
    pub limit_hit: Option<String>,
}

/// The rules of one unpack.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The most bytes to keep.
    pub limit: u64,
    /// Excluded name patterns.
    pub exclude: Vec<String>,
}

/// Unpacks the tar stream `reader` into `dest` under `rules`. Stops early (dropping the
/// reader, which stops the sender) when the limit is hit. An error (a broken stream) comes
/// beside what was unpacked until then.
pub fn unpack(mut reader: impl Read, dest: &Path, rules: &Rules) -> (Unpacked, Option<Error>) {
    let mut done = Unpacked::default();
    let mut error = unpack_into(&mut reader, dest, rules, &mut done).err();
    if error.is_none() && done.limit_hit.is_none() {
        // Read the stream to its end (tar pads its last record past the end marker), so
        // the sender finishes instead of writing into a closed pipe.
        if let Err(e) = std::io::copy(&mut reader, &mut std::io::sink()) {
            error = Some(Error::io("reading the tar stream into", dest, e));
        }
    }
    (done, error)
}

fn unpack_into(reader: impl Read, dest: &Path, rules: &Rules, done: &mut Unpacked) -> Result<()> {
    std::fs::create_dir_all(dest).map_err(|e| Error::io("creating", dest, e))?;
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| Error::io("reading the tar stream into", dest, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io("reading the tar stream into", dest, e))?;
        let raw = entry
            .path()
            .map_err(|e| Error::io("reading the tar stream into", dest, e))?
            .into_owned();
        let Some(relative) = safe_relative(&raw) else {
            done.excluded
                .push(format!("{} (a name outside the tree)", raw.display()));
            continue;
        };
        let shown = slash_path(&relative);
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            let dir = dest.join(&relative);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
            continue;
        }
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            let what = if kind.is_symlink() { "->" } else { "=>" };
            done.links.push(format!("{shown} {what} {target}"));
            continue;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            done.excluded.push(format!("{shown} (not a regular file)"));
            continue;
        }
        if is_excluded(&relative, &rules.exclude) {
            done.excluded.push(format!("{shown} (excluded by name)"));
            continue;
        }
        let size = entry.size();
        if done.bytes + size > rules.limit {
            done.limit_hit = Some(format!(
                "{shown} ({size} bytes) would pass the limit of {} bytes; {} bytes kept",
                rules.limit, done.bytes
            ));
            return Ok(());
        }
        let target = dest.join(&relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
        }
        match write_file(&mut entry, &target, size)? {
            Written::PrivateKey => {
                done.excluded.push(format!("{shown} (a private key)"));
            }
            Written::Kept { size, sha256, text } => {
                let sha256 = if text && size <= REDACT_MAX {
                    redact_file(&target)?.unwrap_or(sha256)
                } else {
                    sha256
                };
                let size = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(size);
                done.bytes += size;
                done.files.push(ManifestEntry {
                    path: shown,
                    size,
                    sha256,
                });
            }
        }
    }
    Ok(())
}

enum Written {
    Kept {
        size: u64,
        sha256: String,
        text: bool,
    },
    PrivateKey,
}

/// Copies `entry` to `target`, hashing it; a file that starts like a private key is removed.
fn write_file(entry: &mut impl Read, target: &Path, expected: u64) -> Result<Written> {
    let mut file = std::fs::File::create(target).map_err(|e| Error::io("writing", target, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let (mut size, mut first, mut text) = (0u64, true, true);
    loop {
        let n = match entry.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                drop(file);
                let _ = std::fs::remove_file(target);
                return Err(Error::io("reading the tar stream into", target, e));
            }
        };
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if first {
            first = false;
            text = !chunk[..n.min(8192)].contains(&0);
            if looks_like_private_key(chunk) {
                drop(file);
                let _ = std::fs::remove_file(target);
                // Drain the entry so the stream stays in step.
                std::io::copy(entry, &mut std::io::sink())
                    .map_err(|e| Error::io("reading the tar stream into", target, e))?;
                return Ok(Written::PrivateKey);
            }
        }
        hasher.update(chunk);
        file.write_all(chunk)
            .map_err(|e| Error::io("writing", target, e))?;
        size += n as u64;
    }
    if size != expected {
        drop(file);
        let _ = std::fs::remove_file(target);
        return Err(Error::io(
            "reading the tar stream into",
            target,
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the stream ended after {size} of {expected} bytes"),
            ),
        ));
    }
    Ok(Written::Kept {
        size,
        sha256: hex(&hasher.finalize()),
        text,
    })
}

fn looks_like_private_key(start: &[u8]) -> bool {
    let head = &start[..start.len().min(4096)];
    let text = String::from_utf8_lossy(head);
    let text = text.trim_start();
    text.starts_with("-----BEGIN")
        && text
            .lines()
            .next()
            .is_some_and(|l| l.contains("PRIVATE KEY"))
}

/// Masks known secret values in the text file `path`; returns its new hash if it changed.
fn redact_file(path: &Path) -> Result<Option<String>> {
    let content = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    match gate_core::secret::redact_bytes(&content) {
        Some(masked) => {
            std::fs::write(path, &masked).map_err(|e| Error::io("writing", path, e))?;
            Ok(Some(hash_file(path)?.1))
        }
        None => Ok(None),
    }
}

/// `raw` as a path under the host's folder: only normal components (`/`, `.` dropped);
/// `None` for a name with `..`.
fn safe_relative(raw: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether `path` is excluded: a pattern with a `/` matches the whole path, one without
/// matches any component (as tar's `--exclude`).
pub fn is_excluded(path: &Path, patterns: &[String]) -> bool {
    let whole = slash_path(path);
    patterns.iter().any(|pattern| {
        if pattern.contains('/') {
            glob(pattern.trim_start_matches('/').as_bytes(), whole.as_bytes())
        } else {
            path.components()
                .any(|c| glob(pattern.as_bytes(), c.as_os_str().as_encoded_bytes()))
        }
    })
}

/// `*` (any run) and `?` (one byte) matching.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = n;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            n = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(path: &str) -> bool {
        let defaults: Vec<String> = crate::config::DEFAULT_EXCLUDES
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        is_excluded(Path::new(path), &defaults)
    }

    #[test]
    fn default_excludes_catch_host_keys_private_keys_and_secrets_files() {
        assert!(excluded("etc/ssh/ssh_host_ed25519_key"));
        assert!(!excluded("etc/ssh/ssh_host_ed25519_key.pub"));
        assert!(excluded("root/.ssh/id_rsa"));
        assert!(excluded("etc/openstack_deploy/user_secrets.yml"));
        assert!(excluded("etc/openstack_deploy/user_osa_secrets.yml"));
        assert!(!excluded("etc/openstack_deploy/user_variables.yml"));
        assert!(!excluded("var/log/syslog"));
    }

    #[test]
    fn names_with_parent_components_are_refused() {
        assert_eq!(safe_relative(Path::new("../etc/passwd")), None);
        assert_eq!(
            safe_relative(Path::new("/var/./log")),
            Some(PathBuf::from("var/log"))
        );
    }

    fn tar_of(entries: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).unwrap();
        }
        for (name, target) in links {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            header.set_cksum();
            builder.append_link(&mut header, name, target).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn links_are_listed_never_created_and_the_limit_keeps_what_fit() {
        let dir = tempfile::tempdir().unwrap();
        let stream = tar_of(
            &[
                ("log/a.log", b"0123456789"),
                ("log/id_ed25519", b"x"),
                ("log/key.txt", b"-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n"),
                ("log/b.log", b"0123456789"),
                ("log/c.log", &[b'x'; 60]),
            ],
            &[("log/root", "/")],
        );
        let rules = Rules {
            limit: 70,
            exclude: crate::config::DEFAULT_EXCLUDES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        };
        let (done, error) = unpack(&stream[..], dir.path(), &rules);
        assert!(error.is_none());
        let kept: Vec<_> = done.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(kept, ["log/a.log", "log/b.log"]);
        assert!(done.limit_hit.as_deref().unwrap().starts_with("log/c.log"));
        assert_eq!(done.excluded.len(), 2, "{:?}", done.excluded);
        assert!(!dir.path().join("log/key.txt").exists());
        // The link came after the limit: not seen. A stream with only the link lists it.
        let links = tar_of(&[], &[("log/root", "../../etc")]);
        let (done, _) = unpack(&links[..], dir.path(), &rules);
        assert_eq!(done.links, ["log/root -> ../../etc"]);
        assert!(std::fs::symlink_metadata(dir.path().join("log/root")).is_err());
    }

    #[test]
    fn known_secrets_are_redacted_from_text_files() {
        let _secret = gate_core::Secret::new("archive-unpack-sentinel-9d1");
        let dir = tempfile::tempdir().unwrap();
        let stream = tar_of(
            &[("etc/app.conf", b"password=archive-unpack-sentinel-9d1\n")],
            &[],
        );
        let rules = Rules {
            limit: 1 << 20,
            exclude: Vec::new(),
        };
        let (done, error) = unpack(&stream[..], dir.path(), &rules);
        assert!(error.is_none());
        let text = std::fs::read_to_string(dir.path().join("etc/app.conf")).unwrap();
        assert_eq!(text, "password=***\n");
        assert_eq!(
            done.files[0].sha256,
            hash_file(&dir.path().join("etc/app.conf")).unwrap().1
        );
    }
}
