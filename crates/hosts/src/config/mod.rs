//! `[validator]` with `backend = "hosts"` and `[preparer]` with `backend = "steps"`.
//!
//! The preparer's `[[preparer.steps]]` are parsed one by one: `type` picks the step's own
//! settings struct (each `deny_unknown_fields`), so an error names the exact key, e.g.
//! `gate.toml: [preparer] steps[2].retries: invalid type: …`.

mod parse;
mod steps;
#[cfg(test)]
mod tests;

pub use steps::{
    AnsibleStep, AuthorizedKeysStep, DevicesStep, Filesystem, KnownHosts, LoopDevice, Manager,
    Mirror, NamedDevice, NetworkingStep, PackagesStep, SshMeshStep,
};

use std::collections::BTreeMap;
use std::time::Duration;

use gate_core::steps::{Hosts, Step, check_env_name};
use gate_core::{BackendConfig, EnvValue, Result};
use serde::Deserialize;

use crate::size::Size;

/// Whether a check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// Where it applies: cloud-init where it is installed, keys where the run has a keys
    /// file.
    #[default]
    Auto,
    /// Always; a host without the thing fails.
    Require,
    /// Never.
    Skip,
}

/// One free-disk requirement.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskCheck {
    /// A path on the host; the file system holding it is checked.
    pub path: String,
    /// The least free space it must have, e.g. `"20G"`.
    pub min_free: Size,
}

/// Settings of the `hosts` validator.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorConfig {
    /// How long a host may take to run `true` before it counts as unreachable. Default 30.
    #[serde(default = "default_reach_timeout")]
    pub reach_timeout_secs: u64,
    /// Time limit of each other check's command. Default 60.
    #[serde(default = "default_check_timeout")]
    pub check_timeout_secs: u64,
    /// cloud-init must have finished: `auto` (where it is installed; default), `require`,
    /// `skip`.
    #[serde(default)]
    pub cloud_init: Check,
    /// How long to wait for a running cloud-init to finish. Default 600.
    #[serde(default = "default_cloud_init_timeout")]
    pub cloud_init_timeout_secs: u64,
    /// Leftovers of an earlier deploy that must be absent. Default `["/etc/openstack_deploy"]`.
    #[serde(default = "default_markers")]
    pub markers: Vec<String>,
    /// Commands every host must have on its `PATH`. Default none.
    #[serde(default)]
    pub commands: Vec<String>,
    /// Free disk space requirements. Default none.
    #[serde(default)]
    pub disk: Vec<DiskCheck>,
    /// Every key of the keys file must be in `authorized_keys`: `auto` (when the run has a
    /// keys file; default), `require` (a run without one fails), `skip` (the provider does
    /// not inject keys at boot).
    #[serde(default)]
    pub keys: Check,
    /// The `authorized_keys` file checked; relative paths are under the login user's
    /// `$HOME`. Default `$HOME/.ssh/authorized_keys`.
    #[serde(default)]
    pub authorized_keys: Option<String>,
}

fn default_reach_timeout() -> u64 {
    30
}

fn default_check_timeout() -> u64 {
    60
}

fn default_cloud_init_timeout() -> u64 {
    600
}

fn default_markers() -> Vec<String> {
    vec!["/etc/openstack_deploy".into()]
}

impl ValidatorConfig {
    /// The section parsed and checked.
    pub fn from_section(section: &BackendConfig) -> Result<Self> {
        let config: Self = section.parse()?;
        for (key, list) in [("markers", &config.markers), ("commands", &config.commands)] {
            if let Some(i) = list.iter().position(|s| s.trim().is_empty()) {
                return Err(section.error(format!("{key}[{i}]"), "is empty"));
            }
        }
        if let Some(i) = config.disk.iter().position(|d| d.path.is_empty()) {
            return Err(section.error(format!("disk[{i}].path"), "is empty"));
        }
        if config.reach_timeout_secs == 0 {
            return Err(section.error("reach_timeout_secs", "must be at least 1"));
        }
        Ok(config)
    }
}

/// What a preparer step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    /// `authorized-keys`.
    AuthorizedKeys(AuthorizedKeysStep),
    /// `ssh-mesh`.
    SshMesh(SshMeshStep),
    /// `packages`.
    Packages(PackagesStep),
    /// `ansible`.
    Ansible(AnsibleStep),
    /// `networking`.
    Networking(NetworkingStep),
    /// `devices`.
    Devices(DevicesStep),
    /// `script`: a generic step (see [`gate_core::steps::Step`]).
    Script(Step),
}

/// The step types, as written in `type`.
pub const STEP_TYPES: &[&str] = &[
    "authorized-keys",
    "ssh-mesh",
    "packages",
    "ansible",
    "networking",
    "devices",
    "script",
];

/// One configured preparer step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepStep {
    /// For logs and events: `name`, else the type.
    pub name: String,
    /// Where it runs (`ssh-mesh` always covers every host).
    pub hosts: Hosts,
    /// Time limit of each command it runs.
    pub timeout: Duration,
    /// What it does.
    pub kind: StepKind,
}

/// Settings of the `steps` preparer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparerConfig {
    /// Environment of `script` and `networking` steps.
    pub env: BTreeMap<String, EnvValue>,
    /// The steps, in order.
    pub steps: Vec<PrepStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreparer {
    #[serde(default = "default_step_timeout")]
    timeout_secs: u64,
    #[serde(default)]
    env: BTreeMap<String, EnvValue>,
    #[serde(default)]
    steps: Vec<config::Value>,
}

fn default_step_timeout() -> u64 {
    1800
}

impl PreparerConfig {
    /// The section parsed and checked; errors name file, section and key.
    pub fn from_section(section: &BackendConfig) -> Result<Self> {
        let raw: RawPreparer = section.parse()?;
        for name in raw.env.keys() {
            check_env_name(section, "env", name)?;
        }
        if raw.steps.is_empty() {
            return Err(section.error("steps", "needs at least one step"));
        }
        let default_timeout = Duration::from_secs(raw.timeout_secs);
        let steps = raw
            .steps
            .into_iter()
            .enumerate()
            .map(|(i, value)| parse::step(section, &format!("steps[{i}]"), value, default_timeout))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            env: raw.env,
            steps,
        })
    }
}
