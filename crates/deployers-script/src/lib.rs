//! gate-deployers-script: the generic `script` deployer.
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
#![deny(missing_docs)]

mod config;
mod deployer;

pub use config::ScriptConfig;
pub use deployer::ScriptDeployer;

use std::sync::Arc;

use gate_core::Registry;

/// The registry name of the deployer.
pub const NAME: &str = "script";

/// Registers the `script` deployer.
pub fn register(registry: &mut Registry) {
    registry.add_deployer(NAME, |config| {
        Ok(Arc::new(ScriptDeployer::from_config(config)?))
    });
}
