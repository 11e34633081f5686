//! The `onmetal` section.

use std::collections::BTreeMap;

use gate_core::secret::Secret;
use gate_openstack::{NovaServerConfig, RetryConfig, SharedConfig};
use serde::Deserialize;

/// How the bare-metal servers are had.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Nova servers with a bare-metal flavor (Ironic behind Nova).
    Nova,
    /// Nodes of an Ironic API deployed directly (a standalone Ironic, or one in a cloud's
    /// catalog as `baremetal`).
    Ironic,
}

/// How a standalone Ironic `endpoint` is logged in to.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum IronicAuth {
    /// No authentication (`auth_strategy = noauth`), the default with `endpoint`.
    #[default]
    Noauth,
    /// HTTP basic (`auth_strategy = http_basic`) with `username` and `password`.
    HttpBasic,
}

/// `[provider] backend = "onmetal"`: bare-metal servers, through Nova or an Ironic API.
///
/// ```toml
/// [provider]
/// backend = "onmetal"
/// mode = "nova"                    # Nova with a bare-metal flavor
/// cloud = "rackspace"              # clouds.yaml entry; default $OS_CLOUD, else OS_*
/// hosts = 2
/// flavor = "onmetal-io1"
/// image = "Ubuntu 24.04 (OnMetal)"
/// region = "IAD"                   # default: the credentials' region
/// fallback_regions = []            # none by default: bare-metal pools are where they are
/// ```
///
/// ```toml
/// [provider]
/// backend = "onmetal"
/// mode = "ironic"
/// endpoint = "http://ironic.lab:6385"   # standalone; without it, the cloud's `baremetal`
/// auth = "noauth"                       # or "http_basic" with username and password
/// resource_class = "gate-metal"         # or: nodes = ["rack1-u07", "rack1-u09"]
/// hosts = 2
/// image_source = "http://images.lab/ubuntu-24.04.qcow2"
/// instance_info = { image_checksum = "sha256:…", root_gb = "40" }
/// addresses = { "rack1-u07" = "10.0.7.7" }   # else the node's `extra/address`
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OnmetalConfig {
    /// `nova` or `ironic`.
    pub mode: Mode,
    /// The `clouds.yaml` entry (default `$OS_CLOUD`, else the `OS_*` variables); not used
    /// with `endpoint`.
    #[serde(default)]
    pub cloud: Option<String>,
    /// A `clouds.yaml` to read instead of searching the usual places.
    #[serde(default)]
    pub clouds_file: Option<std::path::PathBuf>,
    /// API retries (`tries`, `first_delay_secs`, `max_delay_secs`, `request_timeout_secs`).
    #[serde(default)]
    pub api: RetryConfig,
    /// The region (default: the credentials' own).
    #[serde(default)]
    pub region: Option<String>,
    /// Nova mode: regions tried, in this order, after `region` failed (default none: a
    /// failed allocation fails, its servers left to cleanup).
    #[serde(default)]
    pub fallback_regions: Vec<String>,
    /// How many servers or nodes (default: as many as `nodes` lists, else 1). The first is
    /// the primary.
    #[serde(default)]
    pub hosts: Option<usize>,
    /// Nova mode: the node name; servers are `<name>-1` … (default: the run id). Ironic
    /// nodes keep their own names.
    #[serde(default)]
    pub name: Option<String>,
    /// Nova mode: the bare-metal flavor's name or id.
    #[serde(default)]
    pub flavor: Option<String>,
    /// Nova mode: image name or id.
    #[serde(default)]
    pub image: Option<String>,
    /// Nova mode: network names or ids; `["auto"]` (the default) or `["none"]`.
    #[serde(default)]
    pub networks: Vec<String>,
    /// Nova mode: the network whose address gate connects to (default: `accessIPv4`, a
    /// floating address, else the first IPv4).
    #[serde(default)]
    pub address_network: Option<String>,
    /// Nova mode: security group names.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Nova mode: attach a config drive (default true: bare-metal clouds often have no
    /// metadata service).
    #[serde(default = "yes")]
    pub config_drive: bool,
    /// Nova mode: a Nova keypair to add as well.
    #[serde(default)]
    pub key_name: Option<String>,
    /// Nova mode: an availability zone.
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// Ironic mode: a standalone Ironic's URL (e.g. `http://ironic:6385`); without it the
    /// cloud's `baremetal` endpoint is used, logged in through Keystone.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Ironic mode with `endpoint`: `noauth` (the default) or `http_basic`.
    #[serde(default)]
    pub auth: IronicAuth,
    /// Ironic mode, `http_basic`: the user.
    #[serde(default)]
    pub username: Option<String>,
    /// Ironic mode, `http_basic`: the password (`{ env = "VAR" }`, `{ file = "…" }`, …).
    #[serde(default)]
    pub password: Option<Secret>,
    /// Ironic mode: take `available` nodes of this resource class.
    #[serde(default)]
    pub resource_class: Option<String>,
    /// Ironic mode: take these nodes (names or UUIDs), in this order; each must be
    /// `available`. With `resource_class` too, they must also be of that class.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Ironic mode: the image to deploy (`instance_info/image_source`: a URL or a Glance id).
    #[serde(default)]
    pub image_source: Option<String>,
    /// Ironic mode: more `instance_info` (`image_checksum`, `root_gb`, `image_type`, …).
    #[serde(default)]
    pub instance_info: BTreeMap<String, String>,
    /// Ironic mode: the address of a node by name; a node not listed is reached at the
    /// field `address_field` names.
    #[serde(default)]
    pub addresses: BTreeMap<String, String>,
    /// Ironic mode: where a node's address is, as `field/key` of the node (default
    /// `extra/address`); waited for (within the boot timeout) when it is not there yet.
    #[serde(default = "address_field")]
    pub address_field: String,
    /// Extra user data (a `#cloud-config` is merged; a script rides along). The keys file's
    /// keys and the run's key always go to root.
    #[serde(default)]
    pub user_data: Option<String>,
    /// How long a server or node may take to become ACTIVE / `active`, get an address and
    /// answer SSH (default 3600 s: bare metal boots slowly).
    #[serde(default = "boot_timeout")]
    pub boot_timeout_secs: f64,
    /// How often to poll (default 10 s).
    #[serde(default = "poll")]
    pub poll_secs: f64,
    /// How long a server delete, or a node's undeploy and cleaning, may take (default
    /// 3600 s).
    #[serde(default = "delete_timeout")]
    pub delete_timeout_secs: f64,
    /// How many to deploy at once (default: the run's concurrency).
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

impl OnmetalConfig {
    /// The keys every OpenStack provider shares (`cloud` and `clouds_file` are not used
    /// with `endpoint`).
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

    /// The keys of Nova servers (Nova mode; `user_data`, `concurrency` and the boot
    /// timeout serve Ironic mode too).
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

    /// Nova mode: `region`, then the fallback regions (`None`: the credentials' own).
    pub fn nova_regions(&self) -> Vec<Option<String>> {
        std::iter::once(self.region.clone())
            .chain(self.fallback_regions.iter().cloned().map(Some))
            .collect()
    }
}

fn yes() -> bool {
    true
}
fn address_field() -> String {
    "extra/address".into()
}
fn boot_timeout() -> f64 {
    3600.0
}
fn poll() -> f64 {
    10.0
}
fn delete_timeout() -> f64 {
    3600.0
}
fn root() -> String {
    "root".into()
}
fn ssh_port() -> u16 {
    22
}
