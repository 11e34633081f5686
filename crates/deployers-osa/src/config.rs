//! `[deployer]` with `backend = "osa"`.

use std::collections::BTreeMap;

use gate_core::{EnvValue, Secret};
use gate_deploy::UpgradeChecksConfig;
use serde::Deserialize;

use crate::features::Features;

/// The default git URL of openstack-ansible.
pub const DEFAULT_REPO: &str = "https://opendev.org/openstack/openstack-ansible";

/// Settings of the `osa` deployer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsaConfig {
    /// The git URL of openstack-ansible. Default: [`DEFAULT_REPO`].
    #[serde(default = "default_repo")]
    pub repo: String,
    /// What to deploy: a branch, tag, commit, `refs/pull/N/head` (or `/merge`), `latest`
    /// or `latest:PREFIX`. Default: `master`.
    #[serde(default = "default_version")]
    pub version: String,
    /// What `upgrade` moves to (same forms as `version`). Default: none, the upgrade stage
    /// is skipped.
    #[serde(default)]
    pub upgrade_to: Option<String>,
    /// Where the checkout goes on the primary. Default: `/opt/openstack-ansible`.
    #[serde(default = "default_path")]
    pub path: String,
    /// The deployment config directory on the primary. Default: `/etc/openstack_deploy`.
    #[serde(default = "default_config_dir")]
    pub config_dir: String,
    /// `aio` (all in one, on the primary; the default) or `multi-node` (every host, the
    /// host list written to `openstack_user_config.yml`).
    #[serde(default)]
    pub target: TargetKind,
    /// For `aio`: the scenario the AIO bootstrap gets as `SCENARIO`, before the feature
    /// tokens (`aio_lxc` + `ceph` → `aio_lxc_ceph`). Default: `aio_lxc`.
    #[serde(default = "default_scenario")]
    pub scenario: String,
    /// Feature flags; an unknown one is an error.
    #[serde(default)]
    pub features: Features,
    /// Variables of your own, written last into the variables file (they win).
    #[serde(default)]
    pub variables: BTreeMap<String, serde_yaml_ng::Value>,
    /// Secret variables, written to `user_zzz_gate_secrets.yml` (mode 0600; archives skip
    /// `*secrets*.yml`).
    #[serde(default)]
    pub secret_variables: BTreeMap<String, Secret>,
    /// For `multi-node`: merged over the generated `openstack_user_config.yml` (tables
    /// merge key by key, anything else replaces).
    #[serde(default)]
    pub user_config: BTreeMap<String, serde_yaml_ng::Value>,
    /// The name of the variables file gate writes. Default: `user_zzz_gate_variables.yml`
    /// (loaded after the AIO's own `user_variables.yml`).
    #[serde(default = "default_variables_file")]
    pub variables_file: String,
    /// The playbooks of `deploy`. Default: the release's own sequence — `setup-hosts.yml`,
    /// `setup-infrastructure.yml`, `setup-openstack.yml` run from `playbooks/` where the
    /// release has them, else `openstack.osa.setup_hosts`, `…setup_infrastructure`,
    /// `…setup_openstack`.
    #[serde(default)]
    pub playbooks: Vec<String>,
    /// Environment for every step; overrides gate's (`ANSIBLE_FORCE_COLOR=true`,
    /// `ANSIBLE_HOST_KEY_CHECKING=False`, `ANSIBLE_FORKS=min(CPUs, 10)`,
    /// `ANSIBLE_SSH_RETRIES=3`). Values may be secrets.
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    /// Time limit of one step in seconds. Default: 14400 (4 hours).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Probes and test resources around the upgrade.
    #[serde(default)]
    pub upgrade_checks: UpgradeChecksConfig,
}

/// What kind of deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// All in one: everything on the primary, bootstrapped by `scripts/bootstrap-aio.sh`.
    #[default]
    Aio,
    /// Every host of the inventory.
    MultiNode,
}

fn default_repo() -> String {
    DEFAULT_REPO.into()
}
fn default_version() -> String {
    "master".into()
}
fn default_path() -> String {
    "/opt/openstack-ansible".into()
}
fn default_config_dir() -> String {
    "/etc/openstack_deploy".into()
}
fn default_scenario() -> String {
    "aio_lxc".into()
}
fn default_variables_file() -> String {
    "user_zzz_gate_variables.yml".into()
}
fn default_timeout() -> u64 {
    14400
}
