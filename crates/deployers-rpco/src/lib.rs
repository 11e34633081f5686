//! gate-deployers-rpco: the `rpco` deployer, rpc-openstack on the primary host.
//!
//! - `prepare-deployment`: check rpc-openstack out at a version (branch, tag, commit,
//!   `refs/pull/N/head`, `latest`), run `scripts/deploy.sh` in bootstrap-only mode
//!   (`DEPLOY_OA=no DEPLOY_RPC=no`), write the gating variables to
//!   `user_zzz_gating_variables.yml`.
//! - `deploy`: `scripts/deploy.sh` with `DEPLOY_OA=yes DEPLOY_RPC=yes` and every typed flag
//!   as `DEPLOY_<FLAG>=yes|no`.
//! - `upgrade`: check out `upgrade_to`, run the repository's upgrade script
//!   non-interactively, then the post-upgrade check — inside the upgrade checks
//!   ([`gate_deploy::UpgradeChecks`]).
//!
//! ```toml
//! [deployer]
//! backend = "rpco"
//! version = "r16.2.0"
//! upgrade_to = "latest:r17."
//! flags = { aio = true, ceph = true, elk = true }
//! gating_variables = { maas_use_api = false }
//! ```
//!
//! From Rust, through the registry; the flags are typed, so a `DEPLOY_*` flag that
//! `scripts/deploy.sh` does not know is refused by name:
//!
//! ```
//! use gate_core::{BackendConfig, Registry};
//!
//! let mut registry = Registry::new();
//! gate_deployers_rpco::register(&mut registry);
//! let section = BackendConfig::from_toml("deployer", "rpco", "flags = { aio = true, elk = true }")?;
//! registry.deployer(&section)?;
//! let typo = BackendConfig::from_toml("deployer", "rpco", "flags = { elkk = true }")?;
//! let err = registry.deployer(&typo).unwrap_err().to_string();
//! assert!(err.contains("[deployer]") && err.contains("elkk"), "{err}");
//! # Ok::<(), gate_core::Error>(())
//! ```
#![deny(missing_docs)]

mod config;
mod deployer;

pub use config::{DEFAULT_REPO, DeployFlags, RpcoConfig};
pub use deployer::{GATING_VARIABLES, RpcoDeployer};

use std::sync::Arc;

use gate_core::Registry;

/// The registry name of the deployer.
pub const NAME: &str = "rpco";

/// Registers the `rpco` deployer, and the cleaner of the test servers its upgrade
/// checks make in the deployed cloud.
pub fn register(registry: &mut Registry) {
    registry.add_deployer(NAME, |config| {
        Ok(Arc::new(RpcoDeployer::from_config(config)?))
    });
    gate_deploy::register_cleaner(registry, NAME);
}
