//! `[deployer]` with `backend = "rpco"`.

use std::collections::BTreeMap;

use gate_core::EnvValue;
use gate_deploy::UpgradeChecksConfig;
use serde::Deserialize;

/// The default git URL of rpc-openstack.
pub const DEFAULT_REPO: &str = "https://github.com/rcbops/rpc-openstack";

/// Settings of the `rpco` deployer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpcoConfig {
    /// The git URL of rpc-openstack. Default: [`DEFAULT_REPO`].
    #[serde(default = "default_repo")]
    pub repo: String,
    /// What to deploy: a branch, tag, commit, `refs/pull/N/head` (or `/merge`), `latest`
    /// or `latest:PREFIX`. Default: `master`.
    #[serde(default = "default_version")]
    pub version: String,
    /// What `upgrade` moves to (same forms). Default: none, the upgrade stage is skipped.
    #[serde(default)]
    pub upgrade_to: Option<String>,
    /// Where the checkout goes on the primary. Default: `/opt/rpc-openstack`.
    #[serde(default = "default_path")]
    pub path: String,
    /// The deployment config directory on the primary. Default: `/etc/openstack_deploy`.
    #[serde(default = "default_config_dir")]
    pub config_dir: String,
    /// The `DEPLOY_*` flags of `scripts/deploy.sh`; an unknown one is an error.
    #[serde(default)]
    pub flags: DeployFlags,
    /// Gating variables, written to `user_zzz_gating_variables.yml` in `config_dir`.
    #[serde(default)]
    pub gating_variables: BTreeMap<String, serde_yaml_ng::Value>,
    /// The repository's upgrade script, run from the checkout. Default: `scripts/upgrade.sh`.
    #[serde(default = "default_upgrade_script")]
    pub upgrade_script: String,
    /// The post-upgrade check, run from the checkout with the `DEPLOY_*` environment.
    /// Default: `["scripts/deploy.sh"]`, the whole deploy again (it must change nothing).
    #[serde(default = "default_post_upgrade")]
    pub post_upgrade: Vec<String>,
    /// Environment for every step; overrides gate's (the `DEPLOY_*` flags,
    /// `ANSIBLE_FORCE_COLOR`, …). Values may be secrets.
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    /// Time limit of one step in seconds. Default: 14400 (4 hours).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Probes and test resources around the upgrade.
    #[serde(default)]
    pub upgrade_checks: UpgradeChecksConfig,
}

/// The `DEPLOY_*` flags, each passed as `yes` or `no`. Default: all `no`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployFlags {
    /// `DEPLOY_AIO`: an all-in-one on the primary.
    #[serde(default)]
    pub aio: bool,
    /// `DEPLOY_CEPH`.
    #[serde(default)]
    pub ceph: bool,
    /// `DEPLOY_SWIFT`.
    #[serde(default)]
    pub swift: bool,
    /// `DEPLOY_ELK`: logging (Elasticsearch, Logstash, Kibana).
    #[serde(default)]
    pub elk: bool,
    /// `DEPLOY_IRONIC`.
    #[serde(default)]
    pub ironic: bool,
    /// `DEPLOY_HAPROXY`.
    #[serde(default)]
    pub haproxy: bool,
    /// `DEPLOY_TEMPEST`.
    #[serde(default)]
    pub tempest: bool,
    /// `DEPLOY_MAAS`: monitoring as a service.
    #[serde(default)]
    pub maas: bool,
    /// `DEPLOY_HARDENING`.
    #[serde(default)]
    pub hardening: bool,
    /// `DEPLOY_RALLY`.
    #[serde(default)]
    pub rally: bool,
}

impl DeployFlags {
    /// `(DEPLOY_NAME, yes|no)` for every flag, in a fixed order.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AIO", self.aio),
            ("CEPH", self.ceph),
            ("SWIFT", self.swift),
            ("ELK", self.elk),
            ("IRONIC", self.ironic),
            ("HAPROXY", self.haproxy),
            ("TEMPEST", self.tempest),
            ("MAAS", self.maas),
            ("HARDENING", self.hardening),
            ("RALLY", self.rally),
        ]
        .into_iter()
        .map(|(name, on)| {
            (
                format!("DEPLOY_{name}"),
                if on { "yes" } else { "no" }.to_owned(),
            )
        })
        .collect()
    }
}

fn default_repo() -> String {
    DEFAULT_REPO.into()
}
fn default_version() -> String {
    "master".into()
}
fn default_path() -> String {
    "/opt/rpc-openstack".into()
}
fn default_config_dir() -> String {
    "/etc/openstack_deploy".into()
}
fn default_upgrade_script() -> String {
    "scripts/upgrade.sh".into()
}
fn default_post_upgrade() -> Vec<String> {
    vec!["scripts/deploy.sh".into()]
}
fn default_timeout() -> u64 {
    14400
}
