//! gate-deployers-osa: the `osa` deployer, openstack-ansible on the primary host.
//!
//! - `prepare-deployment`: check openstack-ansible out at a version (branch, tag, commit,
//!   `refs/pull/N/head`, `latest`); for `aio` run `scripts/bootstrap-ansible.sh` and
//!   `scripts/bootstrap-aio.sh` (with `SCENARIO` from the feature flags), then write the
//!   variables file; for `multi-node` copy the release's config skeleton, write
//!   `openstack_user_config.yml` from the inventory and the variables file, run
//!   `scripts/bootstrap-ansible.sh` and generate the secrets.
//! - `deploy`: `openstack-ansible` with the release's playbook sequence (setup-hosts,
//!   setup-infrastructure, setup-openstack), with `ANSIBLE_FORCE_COLOR`,
//!   `ANSIBLE_HOST_KEY_CHECKING=False`, `ANSIBLE_FORKS=min(CPUs, 10)`,
//!   `ANSIBLE_SSH_RETRIES=3` (overridable).
//! - `upgrade`: check out `upgrade_to`, run `scripts/run-upgrade.sh` non-interactively,
//!   then the deploy sequence again as an idempotency check — inside the upgrade checks
//!   ([`gate_deploy::UpgradeChecks`]).
//!
//! The variables file (`user_zzz_gate_variables.yml`) is built in layers, the last winning:
//! the target kind's defaults, the feature flags, your own `variables`.
//!
//! ```toml
//! [deployer]
//! backend = "osa"
//! version = "stable/2024.1"
//! upgrade_to = "latest:29."
//! target = "aio"
//! features = { ceph = true, tempest = true }
//! variables = { debug = true }
//! ```
//!
//! From Rust, through the registry as the CLI builds it; a feature flag the deployer does
//! not know is a config error that names it, before anything runs:
//!
//! ```
//! use gate_core::{BackendConfig, Registry};
//!
//! let mut registry = Registry::new();
//! gate_deployers_osa::register(&mut registry);
//! let section = BackendConfig::from_toml("deployer", "osa", r#"
//!     version = "stable/2024.1"
//!     features = { ceph = true }
//! "#)?;
//! registry.deployer(&section)?;
//! let typo = BackendConfig::from_toml("deployer", "osa", "features = { cepth = true }")?;
//! let err = registry.deployer(&typo).unwrap_err().to_string();
//! assert!(err.contains("[deployer]") && err.contains("cepth"), "{err}");
//! # Ok::<(), gate_core::Error>(())
//! ```
#![deny(missing_docs)]

mod config;
mod deployer;
mod features;
mod render;

pub use config::{DEFAULT_REPO, OsaConfig, TargetKind};
pub use deployer::OsaDeployer;
pub use features::Features;

use std::sync::Arc;

use gate_core::Registry;

/// The registry name of the deployer.
pub const NAME: &str = "osa";

/// Registers the `osa` deployer, and the cleaner of the test servers its upgrade
/// checks make in the deployed cloud.
pub fn register(registry: &mut Registry) {
    registry.add_deployer(NAME, |config| {
        Ok(Arc::new(OsaDeployer::from_config(config)?))
    });
    gate_deploy::register_cleaner(registry, NAME);
}
