//! `[deployer]` with `backend = "script"`.

use std::collections::BTreeMap;

use gate_core::EnvValue;
use gate_core::steps::{Hosts, Step};
use gate_deploy::UpgradeChecksConfig;
use serde::Deserialize;

/// Settings of the `script` deployer.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptConfig {
    /// Where steps run unless a step says: `primary` (default) or `all`.
    #[serde(default)]
    pub hosts: Hosts,
    /// Environment for every step (values may be secrets).
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    /// Time limit of one step in seconds. Default: 3600.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Steps of `prepare-deployment`.
    #[serde(default)]
    pub prepare: Vec<Step>,
    /// Steps of `deploy`.
    #[serde(default)]
    pub deploy: Vec<Step>,
    /// Steps of `upgrade`.
    #[serde(default)]
    pub upgrade: Vec<Step>,
    /// Probes around the upgrade (see the `gate-deploy` crate).
    #[serde(default)]
    pub upgrade_checks: UpgradeChecksConfig,
}

fn default_timeout() -> u64 {
    3600
}
