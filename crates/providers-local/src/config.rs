//! `[provider]` with `backend = "local"`.

use std::path::PathBuf;

use serde::Deserialize;

/// Settings of the `local` provider.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// How many hosts to create (1 to 64). Default: 1.
    #[serde(default = "default_hosts")]
    pub hosts: usize,
    /// Where host directories go: `<root>/<run id>/`. Default: the system temp dir.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// Host name prefix (`<name>-1`, `<name>-2`, …). Default: the run id.
    #[serde(default)]
    pub name: Option<String>,
    /// Labels given to every host.
    #[serde(default)]
    pub labels: Vec<String>,
    /// A shell script run in each new host directory, as cloud-init user data would be.
    #[serde(default)]
    pub setup: Option<String>,
    /// How long `setup` may run on one host, in seconds. Default: 600.
    #[serde(default = "default_setup_timeout")]
    pub setup_timeout_secs: u64,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            hosts: default_hosts(),
            root: None,
            name: None,
            labels: Vec::new(),
            setup: None,
            setup_timeout_secs: default_setup_timeout(),
        }
    }
}

fn default_hosts() -> usize {
    1
}

fn default_setup_timeout() -> u64 {
    600
}

/// The most hosts one local run may have.
pub const MAX_HOSTS: usize = 64;
