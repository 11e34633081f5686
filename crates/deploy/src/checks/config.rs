//! `[deployer.upgrade_checks]`: probes run during the upgrade, and test resources in the
//! deployed cloud.

use gate_core::{BackendConfig, Result};
use serde::Deserialize;

/// The upgrade checks of any deployer.
///
/// ```toml
/// [deployer.upgrade_checks]
/// interval_ms = 1000      # one probe round per second (default)
/// timeout_secs = 2        # each probe's own time limit (default)
///
/// [[deployer.upgrade_checks.probes]]
/// name = "keystone"
/// http = "http://172.29.236.100:5000/v3"
/// max_outage_secs = 30    # a longer outage fails the upgrade
///
/// [[deployer.upgrade_checks.probes]]
/// tcp = "172.29.236.100:3306"
///
/// [[deployer.upgrade_checks.probes]]
/// ping = "172.29.236.100"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeChecksConfig {
    /// Milliseconds between the starts of two probe rounds. Default: 1000.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Seconds one probe may take before it counts as failed. Default: 2.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// The probes, run from the primary host in every round, all at once.
    #[serde(default)]
    pub probes: Vec<ProbeConfig>,
    /// Test resources created in the deployed cloud before the upgrade and verified after.
    #[serde(default)]
    pub resources: ResourcesConfig,
}

impl Default for UpgradeChecksConfig {
    fn default() -> Self {
        Self {
            interval_ms: default_interval_ms(),
            timeout_secs: default_timeout_secs(),
            probes: Vec::new(),
            resources: ResourcesConfig::default(),
        }
    }
}

fn default_interval_ms() -> u64 {
    1000
}

fn default_timeout_secs() -> u64 {
    2
}

/// One probe: exactly one of `ping`, `tcp` and `http`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// A name for the timeline and JUnit. Default: the kind and target, e.g. `tcp 10.0.0.5:22`.
    #[serde(default)]
    pub name: Option<String>,
    /// An address to ping (one ICMP echo per round).
    #[serde(default)]
    pub ping: Option<String>,
    /// `HOST:PORT` to open a TCP connection to.
    #[serde(default)]
    pub tcp: Option<String>,
    /// An `http://` or `https://` URL to GET.
    #[serde(default)]
    pub http: Option<String>,
    /// For `http`: the statuses that count as up. Default: any status below 400.
    #[serde(default)]
    pub expect_status: Vec<u16>,
    /// The longest outage tolerated, in seconds. A longer outage (or one still going when
    /// the upgrade ends) fails the probe's JUnit case and the upgrade. Default: none, every
    /// outage is recorded but tolerated.
    #[serde(default)]
    pub max_outage_secs: Option<f64>,
}

/// Test resources created in the deployed cloud through its API before the upgrade,
/// probed during it and verified after it. The OpenStack implementation
/// ([`crate::OpenStackResources`]) logs in with `cloud` (a `clouds.yaml` entry) or the
/// `OS_*` environment; every resource carries the run id in its name and metadata and is in
/// the ledger under the deployer's name, so `cleanup` deletes it.
///
/// ```toml
/// [deployer.upgrade_checks.resources]
/// servers = 2
/// cloud = "deployed"                # clouds.yaml entry; default $OS_CLOUD, else OS_*
/// clouds_file = "/etc/openstack_deploy/clouds.yaml"
/// flavor = "m1.tiny"                # name or id
/// image = "cirros"                  # name or id
/// network = "private"               # name or id; default "auto"
/// tcp_ports = [22]
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesConfig {
    /// Test servers. Default: 0.
    #[serde(default)]
    pub servers: u32,
    /// Test volumes (the cloud needs a block-storage service, Cinder), made `available`
    /// before the upgrade and checked after it. Default: 0.
    #[serde(default)]
    pub volumes: u32,
    /// The size of each test volume in GB. Default: 1.
    #[serde(default = "one_gb")]
    pub volume_size_gb: u32,
    /// Test networks (where the cloud has a network service). Default: 0.
    #[serde(default)]
    pub networks: u32,
    /// Ping every test server's addresses during the upgrade. Default: true.
    #[serde(default = "yes")]
    pub ping_servers: bool,
    /// TCP ports to probe on every test server during the upgrade. Default: none.
    #[serde(default)]
    pub tcp_ports: Vec<u16>,
    /// The `clouds.yaml` entry of the deployed cloud (searched in `$OS_CLIENT_CONFIG_FILE`,
    /// `./clouds.yaml`, `~/.config/openstack/clouds.yaml`, `/etc/openstack/clouds.yaml`).
    /// Default: `$OS_CLOUD`; without either, the `OS_*` environment variables.
    #[serde(default)]
    pub cloud: Option<String>,
    /// A `clouds.yaml` to read instead of searching for one (needs `cloud`).
    #[serde(default)]
    pub clouds_file: Option<std::path::PathBuf>,
    /// The region. Default: the credentials' own (`region_name`, `OS_REGION_NAME`).
    #[serde(default)]
    pub region: Option<String>,
    /// The flavor of the test servers (name or id). Required with `servers`.
    #[serde(default)]
    pub flavor: Option<String>,
    /// The image of the test servers (name or id). Required with `servers`.
    #[serde(default)]
    pub image: Option<String>,
    /// The network the test servers boot on (name or id), or `auto` (the project's own,
    /// allocated when it has none) or `none`. Default: `auto`.
    #[serde(default)]
    pub network: Option<String>,
    /// Which address of each test server is pinged and probed: `access_ipv4` (only the
    /// server's `accessIPv4`) or a network name (only its addresses on that network).
    /// Default: `accessIPv4` when set, else a floating IPv4, else the first fixed IPv4 (of
    /// `network` when it names one).
    #[serde(default)]
    pub address: Option<String>,
    /// How long a test server may take to become ACTIVE and get its address (a test volume
    /// to become `available`), in seconds. Default: 600.
    #[serde(default = "boot_timeout")]
    pub boot_timeout_secs: f64,
    /// How often a test resource is polled while waiting, in seconds. Default: 2.
    #[serde(default = "poll")]
    pub poll_secs: f64,
    /// How long a delete may take at cleanup, in seconds. Default: 300.
    #[serde(default = "delete_timeout")]
    pub delete_timeout_secs: f64,
    /// Retries of API calls (`tries`, `first_delay_secs`, `max_delay_secs`,
    /// `request_timeout_secs`). Default: 10 tries, waits from 1 s doubling up to 30 s.
    #[serde(default)]
    pub api: gate_openstack::RetryConfig,
}

impl Default for ResourcesConfig {
    fn default() -> Self {
        Self {
            servers: 0,
            volumes: 0,
            volume_size_gb: one_gb(),
            networks: 0,
            ping_servers: true,
            tcp_ports: Vec::new(),
            cloud: None,
            clouds_file: None,
            region: None,
            flavor: None,
            image: None,
            network: None,
            address: None,
            boot_timeout_secs: boot_timeout(),
            poll_secs: poll(),
            delete_timeout_secs: delete_timeout(),
            api: gate_openstack::RetryConfig::default(),
        }
    }
}

fn yes() -> bool {
    true
}

fn one_gb() -> u32 {
    1
}

fn boot_timeout() -> f64 {
    600.0
}

fn poll() -> f64 {
    2.0
}

fn delete_timeout() -> f64 {
    300.0
}

impl ResourcesConfig {
    /// Whether any resource is asked for.
    pub fn any(&self) -> bool {
        self.servers + self.volumes + self.networks > 0
    }

    /// The cloud part: which credentials, and how API calls are retried.
    pub fn cloud_config(&self) -> gate_openstack::CloudConfig {
        gate_openstack::CloudConfig {
            cloud: self.cloud.clone(),
            clouds_file: self.clouds_file.clone(),
            api: self.api.clone(),
        }
    }

    /// Whether the servers' addresses are needed (pinged or probed).
    pub fn probes_servers(&self) -> bool {
        self.ping_servers || !self.tcp_ports.is_empty()
    }
}

/// What a probe checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Ping an address.
    Ping(String),
    /// Connect to a TCP port.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// GET a URL.
    Http {
        /// The URL.
        url: String,
        /// Statuses counted as up; empty: below 400.
        expect: Vec<u16>,
    },
}

impl Target {
    /// `ping`, `tcp` or `http`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Ping(_) => "ping",
            Target::Tcp { .. } => "tcp",
            Target::Http { .. } => "http",
        }
    }

    /// What is probed, as written in config.
    pub fn shown(&self) -> String {
        match self {
            Target::Ping(host) => host.clone(),
            Target::Tcp { host, port } => format!("{host}:{port}"),
            Target::Http { url, .. } => url.clone(),
        }
    }

    /// The three positional arguments the probe script takes for this probe.
    pub(crate) fn script_args(&self) -> [String; 3] {
        match self {
            Target::Ping(host) => ["ping".into(), host.clone(), String::new()],
            Target::Tcp { host, port } => ["tcp".into(), host.clone(), port.to_string()],
            Target::Http { url, expect } => [
                "http".into(),
                url.clone(),
                expect
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
            ],
        }
    }
}

/// A checked probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Its name.
    pub name: String,
    /// What it checks.
    pub target: Target,
    /// The longest outage tolerated.
    pub max_outage_secs: Option<f64>,
}

/// Checks a host name or address: letters, digits, `.`, `-`, `:` (IPv6), `_`; not an option.
pub fn check_host(host: &str) -> Result<(), String> {
    let ok = !host.is_empty()
        && !host.starts_with('-')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a host name or address",
            host.escape_debug()
        ))
    }
}

impl UpgradeChecksConfig {
    /// The probes, checked; errors name `key` (e.g. `upgrade_checks`) of `section`.
    pub fn probes(&self, section: &BackendConfig, key: &str) -> Result<Vec<Probe>> {
        if self.interval_ms == 0 {
            return Err(section.error(format!("{key}.interval_ms"), "must be at least 1"));
        }
        if self.timeout_secs == 0 {
            return Err(section.error(format!("{key}.timeout_secs"), "must be at least 1"));
        }
        let mut probes = Vec::new();
        for (i, p) in self.probes.iter().enumerate() {
            let at = format!("{key}.probes[{i}]");
            let target = match (&p.ping, &p.tcp, &p.http) {
                (Some(host), None, None) => {
                    check_host(host).map_err(|e| section.error(format!("{at}.ping"), e))?;
                    Target::Ping(host.clone())
                }
                (None, Some(addr), None) => {
                    let bad = |m: String| section.error(format!("{at}.tcp"), m);
                    let (host, port) = addr
                        .rsplit_once(':')
                        .ok_or_else(|| bad(format!("`{addr}` is not HOST:PORT")))?;
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    check_host(host).map_err(bad)?;
                    let port = port
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| bad(format!("`{port}` is not a port")))?;
                    Target::Tcp {
                        host: host.to_owned(),
                        port,
                    }
                }
                (None, None, Some(url)) => {
                    let ok = (url.starts_with("http://") || url.starts_with("https://"))
                        && !url.chars().any(|c| c.is_control() || c.is_whitespace());
                    if !ok {
                        return Err(section.error(
                            format!("{at}.http"),
                            format!("`{}` is not an http:// or https:// URL", url.escape_debug()),
                        ));
                    }
                    Target::Http {
                        url: url.clone(),
                        expect: p.expect_status.clone(),
                    }
                }
                _ => {
                    return Err(section.error(at, "give exactly one of `ping`, `tcp` and `http`"));
                }
            };
            if !p.expect_status.is_empty() && !matches!(target, Target::Http { .. }) {
                return Err(
                    section.error(format!("{at}.expect_status"), "is only for `http` probes")
                );
            }
            if let Some(max) = p.max_outage_secs
                && !(max.is_finite() && max >= 0.0)
            {
                return Err(section.error(
                    format!("{at}.max_outage_secs"),
                    "must be a number of seconds, 0 or more",
                ));
            }
            let name = p
                .name
                .clone()
                .unwrap_or_else(|| format!("{} {}", target.kind(), target.shown()));
            probes.push(Probe {
                name,
                target,
                max_outage_secs: p.max_outage_secs,
            });
        }
        Ok(probes)
    }
}
