//! `[transport.ssh]`: how gate reaches hosts over SSH.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Settings of the SSH transport. gate fills `run_key` and `known_hosts` from the state
/// dir when they are not set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    /// Private key files to try after the agent and the run's own key.
    #[serde(default)]
    pub identities: Vec<PathBuf>,
    /// Try the SSH agent (`SSH_AUTH_SOCK`) first. Default: true.
    #[serde(default = "yes")]
    pub agent: bool,
    /// The run's own private key. Default (set by gate): `<state dir>/keys/id_ed25519`.
    #[serde(default)]
    pub run_key: Option<PathBuf>,
    /// Where host keys are pinned on first contact. Default (set by gate):
    /// `<state dir>/known_hosts`. Without one, host keys are not checked.
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// Accept only host keys already in `known_hosts` (no trust on first use).
    #[serde(default)]
    pub strict: bool,
    /// How long to wait for a host to answer, in seconds. Default: 600.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// The longest pause between connection attempts, in seconds. Default: 10.
    #[serde(default = "default_poll")]
    pub poll_secs: u64,
    /// Keepalive interval in seconds (0: off). Default: 30.
    #[serde(default = "default_keepalive")]
    pub keepalive_secs: u32,
}

fn yes() -> bool {
    true
}
fn default_connect_timeout() -> u64 {
    600
}
fn default_poll() -> u64 {
    10
}
fn default_keepalive() -> u32 {
    30
}

impl Default for SshConfig {
    fn default() -> Self {
        Self {
            identities: Vec::new(),
            agent: true,
            run_key: None,
            known_hosts: None,
            strict: false,
            connect_timeout_secs: default_connect_timeout(),
            poll_secs: default_poll(),
            keepalive_secs: default_keepalive(),
        }
    }
}

impl SshConfig {
    /// The connect deadline.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    /// The longest pause between attempts (at least 1 s... unless set to 0 for tests).
    pub fn poll(&self) -> Duration {
        Duration::from_secs(self.poll_secs)
    }
}
