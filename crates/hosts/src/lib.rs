//! gate-hosts: the built-in `validate` and `prepare-hosts` backends, over any transport.
//!
//! - The `hosts` validator checks every host is reachable (a deadline per host; every
//!   unreachable host is named), cloud-init has finished where it is installed, leftovers
//!   of an earlier deploy are absent, the required commands and free disk are there, and
//!   every key of the run's keys file is in the login user's `authorized_keys`. Each check
//!   on each host is a JUnit case in `artifacts/results/validate.xml`, written also when
//!   validation fails.
//! - The `steps` preparer runs configured steps in order: `authorized-keys`, `ssh-mesh`,
//!   `packages`, `ansible`, `networking`, `devices` and `script`. Each is safe to run
//!   twice: a second run finds the work done and changes nothing.
//!
//! Commands are fixed scripts that take configured values as arguments or environment
//! variables, never pasted into the script; files are written with
//! [`gate_core::Transport::upload`] and renamed into place.
//!
//! ```toml
//! [validator]
//! backend = "hosts"
//! commands = ["python3", "git"]
//! disk = [{ path = "/", min_free = "20G" }]
//!
//! [preparer]
//! backend = "steps"
//!
//! [[preparer.steps]]
//! type = "authorized-keys"
//!
//! [[preparer.steps]]
//! type = "ssh-mesh"
//!
//! [[preparer.steps]]
//! type = "packages"
//! packages = ["git", "python3-venv"]
//! mirror = { url = "http://mirror.ci.example/debian" }
//!
//! [[preparer.steps]]
//! type = "ansible"
//! version = "2.17.7"
//! index_url = "http://mirror.ci.example/pypi/simple"
//! ```
//!
//! Built through the registry; a step's error names the step and its key:
//!
//! ```
//! use gate_core::{BackendConfig, Registry};
//!
//! let mut registry = Registry::new();
//! gate_hosts::register(&mut registry);
//! let steps = "[[steps]]\ntype = \"packages\"\npackages = [\"git\"]\n";
//! registry.preparer(&BackendConfig::from_toml("preparer", "steps", steps)?)?;
//! let typo = "[[steps]]\ntype = \"packages\"\npackage = [\"git\"]\n";
//! let err = registry.preparer(&BackendConfig::from_toml("preparer", "steps", typo)?);
//! assert!(err.unwrap_err().to_string().contains("[preparer] steps[0]"));
//! # Ok::<(), gate_core::Error>(())
//! ```
#![deny(missing_docs)]

mod ansible;
mod authorized_keys;
pub mod config;
mod devices;
mod mesh;
mod networking;
mod packages;
mod prepare;
mod remote;
mod size;
mod validate;

pub use config::{PreparerConfig, ValidatorConfig};
pub use prepare::StepsPreparer;
pub use size::Size;
pub use validate::{HostsValidator, SUITE};

use std::sync::Arc;

use gate_core::Registry;

/// The registry name of the validator.
pub const VALIDATOR: &str = "hosts";

/// The registry name of the preparer.
pub const PREPARER: &str = "steps";

/// Registers the `hosts` validator and the `steps` preparer.
pub fn register(registry: &mut Registry) {
    registry.add_validator(VALIDATOR, |config| {
        Ok(Arc::new(HostsValidator::from_config(config)?))
    });
    registry.add_preparer(PREPARER, |config| {
        Ok(Arc::new(StepsPreparer::from_config(config)?))
    });
}
