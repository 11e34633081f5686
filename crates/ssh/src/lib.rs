//! gate-ssh: reach hosts over SSH, with the `ssh2` crate.
//!
//! [`SshConnector`] opens one session per host — retrying with backoff until the host
//! answers (a booting server) or a deadline passes — pins the host key on first contact in
//! the run's `known_hosts`, and authenticates with the SSH agent, the run's own key or
//! configured key files. [`SshTransport`] reuses that session for every command, upload and
//! download of the run; blocking libssh2 calls run on the blocking thread pool, never on
//! the async runtime. Commands go to one long-lived `bash` per host on one channel of that
//! session, each in a process group of its own (killed as a whole on timeout or cancel), with
//! stdin from `/dev/null`; a host without `bash` gets a channel and a login shell per
//! command instead.
//!
//! ```toml
//! [transport.ssh]
//! identities = ["~/.ssh/id_ed25519"]   # tried after the agent and the run's own key
//! strict = false                         # true: only keys already in known_hosts
//! connect_timeout_secs = 600             # wait this long for a booting host
//! poll_secs = 10
//! ```
//!
//! From Rust, through the registry as the CLI builds it (no host is contacted until a
//! connect):
//!
//! ```
//! use gate_core::{BackendConfig, Registry};
//!
//! let mut registry = Registry::new();
//! gate_ssh::register(&mut registry);
//! let section = BackendConfig::from_toml("transport", "ssh", "strict = true\npoll_secs = 2")?;
//! let connector = registry.transport(&section)?;
//! assert!(format!("{connector:?}").contains("SshConnector"));
//! let typo = BackendConfig::from_toml("transport", "ssh", "identity = ['k']")?;
//! let err = registry.transport(&typo).unwrap_err().to_string();
//! assert!(err.contains("identity"), "{err}");
//! # Ok::<(), gate_core::Error>(())
//! ```
#![deny(missing_docs)]

mod auth;
mod config;
mod connect;
mod exec;
mod job;
mod known_hosts;
mod marks;
mod sftp;
mod shell;
mod transport;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::SshConfig;
pub use connect::SshConnector;
pub use transport::SshTransport;

use std::sync::Arc;

use gate_core::Registry;

/// The transport name hosts reached over SSH carry in `Host::transport`.
pub const SSH: &str = "ssh";

/// Registers the `ssh` transport.
pub fn register(registry: &mut Registry) {
    registry.add_transport(SSH, |config| {
        Ok(Arc::new(SshConnector::new(config.parse()?)))
    });
}
