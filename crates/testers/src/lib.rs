//! gate-testers: test backends that leave JUnit XML in `artifacts/results/`.
//!
//! The `command` tester runs configured test commands on the primary or on every host;
//! each command on each host becomes a JUnit test case (a failure carries the tail of its
//! output). JUnit files the commands leave in `results_dir` on a host are collected too.
//!
//! ```toml
//! [tester]
//! backend = "command"
//! suite = "smoke"
//! hosts = "all"
//!
//! [[tester.tests]]
//! name = "api answers"
//! run = ["curl", "-fsS", "http://127.0.0.1:5000/v3"]
//! ```
#![deny(missing_docs)]

mod command;
mod config;
pub mod subunit;

pub use command::CommandTester;
pub use config::CommandConfig;

use std::sync::Arc;

use gate_core::Registry;

/// Registers every tester of this crate.
pub fn register(registry: &mut Registry) {
    registry.add_tester(command::NAME, |config| {
        Ok(Arc::new(CommandTester::from_config(config)?))
    });
}
