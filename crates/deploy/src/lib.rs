//! gate-deploy: what gate's deployers share.
//!
//! - [`Checkout`]: deployment code at a [`Version`] on the primary — a branch, a tag, a
//!   commit, a pull-request ref (`refs/pull/12/head`), or `latest` (the newest tag, or the
//!   newest starting with a prefix such as `27.`) — cloned once, fetched after.
//! - [`Repository`]: the repository keys every repository deployer has (`repo`, `version`,
//!   `upgrade_to`, `path`, `config_dir`, `env`, `timeout_secs`), checked once.
//! - [`HostSteps`]: named steps on a host (usually the primary), streamed to the stage's host log, failing
//!   with the host, the step and the last lines of output.
//! - [`UpgradeChecks`]: the deployer-agnostic upgrade checks — ping, TCP and HTTP probes run
//!   from the primary all through the upgrade, every outage window written to
//!   `artifacts/upgrade-checks/timeline.json` and the JUnit suite
//!   `artifacts/results/upgrade-checks.xml` — and the [`CloudResources`] hook for test
//!   servers, volumes and networks in the deployed cloud, with its OpenStack implementation
//!   [`OpenStackResources`] (servers made before the upgrade, pinged and probed during it,
//!   verified after it, in the ledger under the deployer's name; [`register_cleaner`]
//!   registers the cleaner that deletes them).
//!
//! A deployer embeds [`UpgradeChecksConfig`] as its `upgrade_checks` table and wraps its
//! upgrade in [`UpgradeChecks::around`]:
//!
//! ```
//! use gate_deploy::{UpgradeChecks, UpgradeChecksConfig, Version};
//! use gate_core::BackendConfig;
//!
//! let section = BackendConfig::from_toml("deployer", "osa", r#"
//!     [upgrade_checks]
//!     [[upgrade_checks.probes]]
//!     tcp = "10.0.0.5:3306"
//!     max_outage_secs = 30
//! "#)?;
//! #[derive(serde::Deserialize)]
//! struct Config { upgrade_checks: UpgradeChecksConfig }
//! let config: Config = section.parse()?;
//! let checks = UpgradeChecks::from_config(&section, "upgrade_checks", &config.upgrade_checks, None)?;
//! assert!(!checks.is_empty());
//! assert_eq!(Version::parse("latest:27.").unwrap().to_string(), "latest:27.");
//! # Ok::<(), gate_core::Error>(())
//! ```
#![deny(missing_docs)]

pub mod checks;
mod git;
mod host;
mod repo;
mod version;

pub use checks::UpgradeChecks;
pub use checks::cloud::{CloudResources, ResourceCheck, TestResource};
pub use checks::config::{ProbeConfig, ResourcesConfig, UpgradeChecksConfig};
pub use checks::openstack::{
    OpenStackResources, register_cleaner, resources as openstack_resources,
};
pub use git::{Checkout, Resolved};
pub use host::HostSteps;
pub use repo::{Repository, RepositoryKeys};
pub use version::{Version, check_url};

use gate_core::{Command, EnvValue};

/// The environment Ansible runs get in the field: `ANSIBLE_FORCE_COLOR=true`,
/// `ANSIBLE_HOST_KEY_CHECKING=False`, `ANSIBLE_FORKS` = min(CPUs of the host, 10),
/// `ANSIBLE_SSH_RETRIES=3`. Deployers let their `env` override each.
pub async fn ansible_env(host: &HostSteps) -> gate_core::Result<Vec<(String, EnvValue)>> {
    let cpus = host
        .probe(&Command::new("nproc"))
        .await?
        .stdout
        .trim()
        .parse::<u32>()
        .unwrap_or(1);
    Ok(vec![
        ("ANSIBLE_FORCE_COLOR".into(), "true".into()),
        ("ANSIBLE_HOST_KEY_CHECKING".into(), "False".into()),
        ("ANSIBLE_FORKS".into(), cpus.clamp(1, 10).to_string().into()),
        ("ANSIBLE_SSH_RETRIES".into(), "3".into()),
    ])
}

/// Parses the version under `key` of `section`, naming both when it is refused.
pub fn parse_version(
    section: &gate_core::BackendConfig,
    key: &str,
    text: &str,
) -> gate_core::Result<Version> {
    Version::parse(text).map_err(|e| section.error(key, e))
}

/// Checks the git URL under `key` of `section`.
pub fn parse_url(
    section: &gate_core::BackendConfig,
    key: &str,
    url: &str,
) -> gate_core::Result<()> {
    check_url(url).map_err(|e| section.error(key, e))
}
