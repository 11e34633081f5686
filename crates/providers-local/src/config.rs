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

/// One lab host of the `static` provider.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticHost {
    /// Its name in the inventory (unique).
    pub name: String,
    /// Its address.
    pub address: String,
    /// The SSH port. Default: 22.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The login user. Default: `root`.
    #[serde(default = "default_user")]
    pub user: String,
    /// Labels (roles).
    #[serde(default)]
    pub labels: Vec<String>,
}

/// A command run on the controller to reinstall ("rekick") a lab host before use; the
/// provider then waits for the host to answer again.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rekick {
    /// The program and its arguments; `GATE_HOST`, `GATE_ADDRESS` and `GATE_RUN_ID` are set.
    pub run: Vec<String>,
    /// Its time limit in seconds. Default: 3600.
    #[serde(default = "default_rekick_timeout")]
    pub timeout_secs: u64,
}

/// Settings of the `static` provider: fixed lab hosts reached over SSH, each reserved for
/// one run at a time by a lock directory on the host itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// The hosts, the primary first.
    pub hosts: Vec<StaticHost>,
    /// The reservation lock directory on each host. Default: `/var/lock/gate-reservation`.
    #[serde(default = "default_lock_dir")]
    pub lock_dir: String,
    /// How long a reservation holds before another run may take the host over, in
    /// seconds. Default: 86400 (a day).
    #[serde(default = "default_ttl")]
    pub reservation_ttl_secs: u64,
    /// Reinstall each host before use.
    #[serde(default)]
    pub rekick: Option<Rekick>,
}

fn default_port() -> u16 {
    22
}
fn default_user() -> String {
    "root".into()
}
fn default_rekick_timeout() -> u64 {
    3600
}
fn default_lock_dir() -> String {
    "/var/lock/gate-reservation".into()
}
fn default_ttl() -> u64 {
    86_400
}
