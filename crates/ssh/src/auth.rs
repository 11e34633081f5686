//! Authentication: the SSH agent, then the run's own key, then configured key files.

use std::path::{Path, PathBuf};

use gate_core::{Error, Host, Result};
use ssh2::Session;

use crate::config::SshConfig;

/// `~/…` expanded with `$HOME`.
fn expand(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_owned(),
    }
}

/// Authenticates `session` as `host.user`; the error names the host, the user and every
/// method tried.
pub fn authenticate(session: &Session, host: &Host, config: &SshConfig) -> Result<()> {
    let user = host.user.as_str();
    let mut tried: Vec<String> = Vec::new();
    if config.agent && std::env::var_os("SSH_AUTH_SOCK").is_some() {
        tried.push("the SSH agent".into());
        if session.userauth_agent(user).is_ok() && session.authenticated() {
            return Ok(());
        }
    }
    let keys = config
        .run_key
        .iter()
        .filter(|key| key.exists())
        .chain(config.identities.iter())
        .map(|key| expand(key));
    for key in keys {
        tried.push(key.display().to_string());
        if !key.exists() {
            continue;
        }
        if session.userauth_pubkey_file(user, None, &key, None).is_ok() && session.authenticated() {
            return Ok(());
        }
    }
    Err(Error::Host {
        host: host.name.clone(),
        message: format!(
            "authentication as `{user}` at {}:{} failed (tried: {})",
            host.address,
            host.port,
            if tried.is_empty() {
                "nothing: no agent and no key file".into()
            } else {
                tried.join(", ")
            }
        ),
    })
}
