//! Host key pinning: trust on first use into the run's `known_hosts`, refusal of a changed
//! key, and a strict mode that accepts only keys already known.

use std::path::Path;
use std::sync::Mutex;

use gate_core::{Error, Host, Result};
use ssh2::{CheckResult, HostKeyType, KnownHostFileKind, KnownHostKeyFormat, Session};

/// Serializes read-check-write of known_hosts files within this process.
static PINNING: Mutex<()> = Mutex::new(());

/// The name a host has in known_hosts: `addr`, or `[addr]:port` off port 22.
fn entry_name(host: &Host, port: u16) -> String {
    if port == 22 {
        host.address.clone()
    } else {
        format!("[{}]:{port}", host.address)
    }
}

fn key_format(kind: HostKeyType) -> KnownHostKeyFormat {
    match kind {
        HostKeyType::Rsa => KnownHostKeyFormat::SshRsa,
        HostKeyType::Dss => KnownHostKeyFormat::SshDss,
        HostKeyType::Ecdsa256 => KnownHostKeyFormat::Ecdsa256,
        HostKeyType::Ecdsa384 => KnownHostKeyFormat::Ecdsa384,
        HostKeyType::Ecdsa521 => KnownHostKeyFormat::Ecdsa521,
        HostKeyType::Ed25519 => KnownHostKeyFormat::Ed25519,
        HostKeyType::Unknown => KnownHostKeyFormat::Unknown,
    }
}

/// Checks the session's host key against `path`: a match passes; a changed key is refused;
/// an unknown key is pinned (or, with `strict`, refused).
pub fn verify(session: &Session, host: &Host, port: u16, path: &Path, strict: bool) -> Result<()> {
    let refuse = |message: String| Error::Host {
        host: host.name.clone(),
        message,
    };
    let (key, kind) = session
        .host_key()
        .ok_or_else(|| refuse("the server sent no host key".into()))?;
    let _pinning = PINNING
        .lock()
        .map_err(|_| refuse("host key pinning poisoned".into()))?;
    let mut known = session
        .known_hosts()
        .map_err(|e| refuse(format!("known_hosts: {e}")))?;
    if path.exists() {
        known
            .read_file(path, KnownHostFileKind::OpenSSH)
            .map_err(|e| refuse(format!("reading {}: {e}", path.display())))?;
    }
    let name = entry_name(host, port);
    match known.check_port(&host.address, port, key) {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => Err(refuse(format!(
            "the host key of {name} changed since it was pinned in {}; refusing to connect (if the host was rebuilt on purpose, remove its line there)",
            path.display()
        ))),
        CheckResult::NotFound if strict => Err(refuse(format!(
            "the host key of {name} is not in {} and strict host key checking is on",
            path.display()
        ))),
        CheckResult::NotFound => {
            known
                .add(&name, key, &host.name, key_format(kind))
                .map_err(|e| refuse(format!("pinning the host key: {e}")))?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
            }
            known
                .write_file(path, KnownHostFileKind::OpenSSH)
                .map_err(|e| refuse(format!("writing {}: {e}", path.display())))?;
            tracing::info!(host = %host.name, "pinned the host key of {name} in {}", path.display());
            Ok(())
        }
        CheckResult::Failure => Err(refuse(format!(
            "checking the host key of {name} against {} failed",
            path.display()
        ))),
    }
}
