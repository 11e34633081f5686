//! The `pubcloud` section.

use gate_openstack::{CloudConfig, RetryConfig};
use serde::Deserialize;

/// `[provider] backend = "pubcloud"`: Nova servers in a public (or any) OpenStack cloud.
///
/// ```toml
/// [provider]
/// backend = "pubcloud"
/// cloud = "public"                 # clouds.yaml entry; default $OS_CLOUD, else OS_*
/// hosts = 3
/// flavor = "general1-8"            # name or id
/// image = "Ubuntu 24.04"           # name or id
/// regions = ["DFW", "ORD"]         # tried in random order …
/// fallback_regions = ["IAD"]       # … then these, also shuffled
/// networks = ["public", "private"] # names or ids; default "auto"; ["none"] for none
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PubcloudConfig {
    /// The `clouds.yaml` entry (default `$OS_CLOUD`, else the `OS_*` variables).
    #[serde(default)]
    pub cloud: Option<String>,
    /// A `clouds.yaml` to read instead of searching the usual places.
    #[serde(default)]
    pub clouds_file: Option<std::path::PathBuf>,
    /// API retries (`tries`, `first_delay_secs`, `max_delay_secs`, `request_timeout_secs`).
    #[serde(default)]
    pub api: RetryConfig,
    /// How many servers (default 1). The first is the primary.
    #[serde(default = "one")]
    pub hosts: usize,
    /// The node name; servers are `<name>-1` … (default: the run id).
    #[serde(default)]
    pub name: Option<String>,
    /// Flavor name or id.
    pub flavor: String,
    /// Image name or id.
    pub image: String,
    /// Network names or ids; `["auto"]` (the default) or `["none"]`.
    #[serde(default)]
    pub networks: Vec<String>,
    /// The network whose address gate connects to (default: `accessIPv4`, a floating
    /// address, else the first IPv4).
    #[serde(default)]
    pub address_network: Option<String>,
    /// Security group names.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Attach a config drive.
    #[serde(default)]
    pub config_drive: bool,
    /// Extra user data (a `#cloud-config` is merged; a script rides along). The keys file's
    /// keys and the run's key always go to root.
    #[serde(default)]
    pub user_data: Option<String>,
    /// A Nova keypair to add as well.
    #[serde(default)]
    pub key_name: Option<String>,
    /// An availability zone.
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// Regions, tried in random order (default: the credentials' region).
    #[serde(default)]
    pub regions: Vec<String>,
    /// Regions tried, in random order, after every one of `regions` failed.
    #[serde(default)]
    pub fallback_regions: Vec<String>,
    /// Take over servers that already carry a host's name instead of failing (default false:
    /// a name clash means a dirty node from an earlier run).
    #[serde(default)]
    pub adopt: bool,
    /// How long a server may take to become ACTIVE and get an address (default 900 s).
    #[serde(default = "boot_timeout")]
    pub boot_timeout_secs: f64,
    /// How often to poll a server (default 5 s).
    #[serde(default = "poll")]
    pub poll_secs: f64,
    /// How long a delete may take (default 300 s).
    #[serde(default = "delete_timeout")]
    pub delete_timeout_secs: f64,
    /// How many servers to create at once (default: the run's concurrency).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// The login user (default root).
    #[serde(default = "root")]
    pub user: String,
    /// The SSH port (default 22).
    #[serde(default = "ssh_port")]
    pub port: u16,
    /// Labels for every host.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Name patterns (`*` wildcards) `gate sweep` never touches.
    #[serde(default)]
    pub protected: Vec<String>,
}

impl PubcloudConfig {
    /// The cloud part.
    pub fn cloud(&self) -> CloudConfig {
        CloudConfig {
            cloud: self.cloud.clone(),
            clouds_file: self.clouds_file.clone(),
            api: self.api.clone(),
        }
    }

    /// Every region, primaries first (unshuffled); `[None]` for the credentials' own.
    pub fn all_regions(&self) -> Vec<Option<String>> {
        let all: Vec<_> = self
            .regions
            .iter()
            .chain(&self.fallback_regions)
            .cloned()
            .map(Some)
            .collect();
        if all.is_empty() { vec![None] } else { all }
    }
}

fn one() -> usize {
    1
}
fn boot_timeout() -> f64 {
    900.0
}
fn poll() -> f64 {
    5.0
}
fn delete_timeout() -> f64 {
    300.0
}
fn root() -> String {
    "root".into()
}
fn ssh_port() -> u16 {
    22
}
