//! The `heat` section.

use std::collections::BTreeMap;
use std::path::PathBuf;

use gate_openstack::{RetryConfig, SharedConfig};
use serde::Deserialize;

/// `[provider] backend = "heat"`: one Heat stack per run; its hosts come from an output.
///
/// ```toml
/// [provider]
/// backend = "heat"
/// cloud = "public"
/// template = "stacks/multinode.yaml"
/// hosts_output = "hosts"                # a list of {name, address}, primary first
/// user_data_parameter = "user_data"     # gets gate's cloud-config (root's keys)
/// [provider.parameters]
/// flavor = "general1-8"
/// image = "Ubuntu 24.04"
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeatConfig {
    /// The `clouds.yaml` entry (default `$OS_CLOUD`, else the `OS_*` variables).
    #[serde(default)]
    pub cloud: Option<String>,
    /// A `clouds.yaml` to read instead of searching the usual places.
    #[serde(default)]
    pub clouds_file: Option<PathBuf>,
    /// API retries.
    #[serde(default)]
    pub api: RetryConfig,
    /// The region (default: the credentials' own).
    #[serde(default)]
    pub region: Option<String>,
    /// The template file (HOT YAML), relative to the working directory.
    pub template: PathBuf,
    /// Template parameters (strings, numbers, booleans).
    #[serde(default)]
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// The stack name (default: the run id).
    #[serde(default)]
    pub name: Option<String>,
    /// The output holding the hosts: a list of `{name, address}` (default `hosts`).
    #[serde(default = "hosts_output")]
    pub hosts_output: String,
    /// A template parameter that receives gate's `#cloud-config` user data putting the keys
    /// file's keys and the run's key on root; the template passes it to its servers'
    /// `user_data` (with `user_data_format: RAW`). Unset: no keys are passed.
    #[serde(default)]
    pub user_data_parameter: Option<String>,
    /// Heat's own create timeout, in minutes (default 60).
    #[serde(default = "timeout_mins")]
    pub timeout_mins: u32,
    /// How long to wait for `CREATE_COMPLETE` and the hosts' addresses (default 3600 s).
    #[serde(default = "create_timeout")]
    pub create_timeout_secs: f64,
    /// How long a delete may take (default 1200 s); `DELETE_FAILED` is retried within it.
    #[serde(default = "delete_timeout")]
    pub delete_timeout_secs: f64,
    /// How often to poll the stack (default 5 s).
    #[serde(default = "poll")]
    pub poll_secs: f64,
    /// The login user (default root).
    #[serde(default = "root")]
    pub user: String,
    /// The SSH port (default 22).
    #[serde(default = "ssh_port")]
    pub port: u16,
    /// Labels for every host.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Stack name patterns (`*` wildcards) `gate sweep` never touches.
    #[serde(default)]
    pub protected: Vec<String>,
}

impl HeatConfig {
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
}

fn hosts_output() -> String {
    "hosts".into()
}
fn timeout_mins() -> u32 {
    60
}
fn create_timeout() -> f64 {
    3600.0
}
fn delete_timeout() -> f64 {
    1200.0
}
fn poll() -> f64 {
    5.0
}
fn root() -> String {
    "root".into()
}
fn ssh_port() -> u16 {
    22
}
