//! The `pubcloud` section.

use gate_openstack::{NovaServerConfig, RetryConfig, SharedConfig};
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
/// floating_ip = true               # a floating IP per server, the address gate connects to
/// floating_network = "ext-net"     # … from this external network (default: the only one)
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
    /// Give every server a floating IP (Neutron) and reach it at that address (default
    /// false). Each floating IP is in the ledger as a child of its server (`<server>-fip`,
    /// its name and the run id in its description), so cleanup deletes it first.
    #[serde(default)]
    pub floating_ip: bool,
    /// The external network to take floating IPs from, by name or id (default: the
    /// cloud's only external network). Needs `floating_ip = true`.
    #[serde(default)]
    pub floating_network: Option<String>,
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
    /// The keys every OpenStack provider shares.
    pub fn shared(&self) -> SharedConfig {
        SharedConfig {
            cloud: self.cloud.clone(),
            clouds_file: self.clouds_file.clone(),
            api: self.api.clone(),
            user: self.user.clone(),
            port: self.port,
            labels: self.labels.clone(),
            protected: self.protected.clone(),
            poll_secs: self.poll_secs,
            delete_timeout_secs: self.delete_timeout_secs,
        }
    }

    /// The keys of the Nova servers.
    pub fn nova(&self) -> NovaServerConfig {
        NovaServerConfig {
            name: self.name.clone(),
            networks: self.networks.clone(),
            address_network: self.address_network.clone(),
            security_groups: self.security_groups.clone(),
            key_name: self.key_name.clone(),
            availability_zone: self.availability_zone.clone(),
            user_data: self.user_data.clone(),
            fallback_regions: self.fallback_regions.clone(),
            concurrency: self.concurrency,
            boot_timeout_secs: self.boot_timeout_secs,
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

#[cfg(test)]
mod tests {
    use super::*;
    use gate_core::BackendConfig;

    fn parse(toml: &str) -> gate_core::Result<PubcloudConfig> {
        BackendConfig::from_toml("provider", "pubcloud", toml)?.parse()
    }

    const BASE: &str = "flavor = \"f\"\nimage = \"i\"\n";

    #[test]
    fn the_shared_parts_carry_the_keys_and_the_defaults() {
        let config = parse(&format!(
            "{BASE}cloud = \"c\"\nport = \"2222\"\nname = \"ci\"\nfallback_regions = [\"B\"]\n\
             boot_timeout_secs = 60\n"
        ))
        .unwrap();
        let shared = config.shared();
        assert_eq!(shared.cloud.as_deref(), Some("c"));
        // A `--set` or GATE__ override arrives as a string and still becomes a number.
        assert_eq!((shared.port, shared.user.as_str()), (2222, "root"));
        assert_eq!(shared.poll(), std::time::Duration::from_secs(5));
        assert_eq!(shared.delete_timeout(), std::time::Duration::from_secs(300));
        let nova = config.nova();
        assert_eq!(nova.name.as_deref(), Some("ci"));
        assert_eq!(nova.fallback_regions, ["B"]);
        assert_eq!(nova.boot_timeout(), std::time::Duration::from_secs(60));
    }

    #[test]
    fn unknown_keys_are_refused_by_name_shared_ones_included() {
        for typo in [
            "flavour = \"x\"",
            "pol_secs = 1",
            "netwerks = []",
            "floating = true",
        ] {
            let key = typo.split(' ').next().unwrap();
            let error = parse(&format!("{BASE}{typo}\n")).unwrap_err().to_string();
            assert!(error.contains(key), "{typo}: {error}");
        }
    }
}
