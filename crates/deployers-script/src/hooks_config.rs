//! `[deployer]` with `backend = "hooks"`.

use std::collections::BTreeMap;

use gate_core::EnvValue;
use gate_core::steps::Hosts;
use gate_deploy::UpgradeChecksConfig;
use serde::Deserialize;

/// Settings of the `hooks` deployer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    /// Where the repository under test is on the host (absolute, or relative to the home).
    /// Default: `repo`.
    #[serde(default = "default_path")]
    pub path: String,
    /// A git URL to check the repository out from in `prepare-deployment`. Default: none,
    /// the repository is already at `path` (put there by the provider or a preparer).
    #[serde(default)]
    pub repo: Option<String>,
    /// The version to check out from `repo`: a branch, tag, commit, `refs/pull/N/head`,
    /// `latest` or `latest:PREFIX`. Default: `master`.
    #[serde(default = "default_version")]
    pub version: String,
    /// The hooks directory inside the repository. Default: `gating`.
    #[serde(default = "default_hooks_dir")]
    pub hooks_dir: String,
    /// The action (the folder under `hooks_dir`) of each stage. Default: `prepare`,
    /// `deploy` and `upgrade`.
    #[serde(default)]
    pub actions: Actions,
    /// Where the hooks run: `primary` (default) or `all` (each host its own sequence).
    #[serde(default)]
    pub hosts: Hosts,
    /// The job name the hooks see. Default: the run's job (`JOB_NAME`), else the run id.
    #[serde(default)]
    pub job: Option<String>,
    /// The scenario the hooks see. Default: `functional`.
    #[serde(default = "default_scenario")]
    pub scenario: String,
    /// The image the hooks see. Default: empty.
    #[serde(default)]
    pub image: String,
    /// The branch the hooks see. Default: `version`.
    #[serde(default)]
    pub branch: Option<String>,
    /// Where hooks put artifacts and results on the host, one folder per action (absolute,
    /// or relative to the home); gate copies each to `artifacts/hooks/<host>/<action>/`.
    /// Default: `gate-hooks`.
    #[serde(default = "default_work_dir")]
    pub work_dir: String,
    /// How many times `pre` is tried before the action fails. Default: 3.
    #[serde(default = "default_pre_attempts")]
    pub pre_attempts: u32,
    /// Environment for every hook (values may be secrets).
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    /// Time limit of one hook in seconds. Default: 14400 (4 hours).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Probes and test resources around the upgrade.
    #[serde(default)]
    pub upgrade_checks: UpgradeChecksConfig,
}

/// The action of each stage.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actions {
    /// `prepare-deployment`. Default: `prepare`.
    #[serde(default = "prepare")]
    pub prepare: String,
    /// `deploy`. Default: `deploy`.
    #[serde(default = "deploy")]
    pub deploy: String,
    /// `upgrade`. Default: `upgrade`.
    #[serde(default = "upgrade")]
    pub upgrade: String,
}

impl Default for Actions {
    fn default() -> Self {
        Self {
            prepare: prepare(),
            deploy: deploy(),
            upgrade: upgrade(),
        }
    }
}

fn prepare() -> String {
    "prepare".into()
}
fn deploy() -> String {
    "deploy".into()
}
fn upgrade() -> String {
    "upgrade".into()
}
fn default_path() -> String {
    "repo".into()
}
fn default_version() -> String {
    "master".into()
}
fn default_hooks_dir() -> String {
    "gating".into()
}
fn default_scenario() -> String {
    "functional".into()
}
fn default_work_dir() -> String {
    "gate-hooks".into()
}
fn default_pre_attempts() -> u32 {
    3
}
fn default_timeout() -> u64 {
    14400
}
