//! gate-deployers-script: the generic deployers, `script` and `hooks`.
//!
//! ## `script`
//!
//! Runs configured steps (see [`gate_core::steps`]) for `prepare-deployment`, `deploy` and
//! `upgrade`, in order, on the primary or on every host. A stage with no steps is recorded
//! as skipped; the first failing step fails the stage, naming the host and showing the tail
//! of its output.
//!
//! ```toml
//! [deployer]
//! backend = "script"
//! env = { RELEASE = "27.1.0", TOKEN = { env = "DEPLOY_TOKEN" } }
//!
//! [[deployer.prepare]]
//! script = "git clone --branch \"$RELEASE\" https://git.example/deploy.git"
//!
//! [[deployer.deploy]]
//! run = ["deploy/run.sh", "--all"]
//! ```
//!
//! ## `hooks`
//!
//! The repository under test carries its own gating hooks: `gating/<action>/pre`
//! (optional, tried up to 3 times), `run` (required) and `post` (optional, always runs,
//! never changes the result). Each stage is an action (`prepare`, `deploy`, `upgrade`);
//! the hooks run from the repository with `GATE_*` variables (job name, action, scenario,
//! image, branch, artifact and result directories, and for `post` the job status), each
//! also exported under its `RE_*` name so existing repositories work unchanged.
//!
//! ```toml
//! [deployer]
//! backend = "hooks"
//! repo = "https://git.example/project.git"   # or leave it out: the repository is at `path`
//! version = "refs/pull/42/head"
//! path = "/opt/project"
//! scenario = "functional"
//! ```
//!
//! Built from Rust through the registry (docs/embedding.md runs a whole pipeline with it):
//!
//! ```
//! use gate_core::{BackendConfig, Registry};
//!
//! let mut registry = Registry::new();
//! gate_deployers_script::register(&mut registry);
//! let section = BackendConfig::from_toml("deployer", "script", r#"
//!     env = { RELEASE = "27.1.0" }
//!     [[deploy]]
//!     script = 'echo "$RELEASE" > release'
//! "#)?;
//! let deployer = registry.deployer(&section)?;
//! # let _ = deployer;
//! let neither = BackendConfig::from_toml("deployer", "script", "[[deploy]]\nname = 'x'")?;
//! assert!(registry.deployer(&neither).is_err(), "a step needs `run` or `script`");
//! # Ok::<(), gate_core::Error>(())
//! ```
#![deny(missing_docs)]

mod config;
mod deployer;
mod hooks;
mod hooks_config;

pub use config::ScriptConfig;
pub use deployer::ScriptDeployer;
pub use hooks::HooksDeployer;
pub use hooks_config::{Actions, HooksConfig};

use std::sync::Arc;

use gate_core::Registry;

/// The registry name of the `script` deployer.
pub const NAME: &str = "script";

/// The registry name of the `hooks` deployer.
pub const HOOKS: &str = "hooks";

/// Registers the `script` and `hooks` deployers, and the cleaner of the test resources
/// their upgrade checks make in the deployed cloud.
pub fn register(registry: &mut Registry) {
    registry.add_deployer(NAME, |config| {
        Ok(Arc::new(ScriptDeployer::from_config(config)?))
    });
    registry.add_deployer(HOOKS, |config| {
        Ok(Arc::new(HooksDeployer::from_config(config)?))
    });
    gate_deploy::register_cleaner(registry, NAME);
    gate_deploy::register_cleaner(registry, HOOKS);
}
