//! gate-testers: test backends that leave JUnit XML in `artifacts/results/`.
//!
//! - `command` ([`CommandTester`]): configured test commands on the primary or on every
//!   host; each command on each host becomes a JUnit test case (a failure carries the tail
//!   of its output). JUnit and other result files the commands leave are collected from
//!   every host ([`collect`]).
//! - `ceph` ([`CephTester`]): a Ceph functional suite command on one host, judged by the
//!   JUnit it leaves ([`suite`]).
//! - `selenium` ([`SeleniumTester`]): a Selenium suite (pytest, nose, nose2 or a command of
//!   your own) on one host against a URL; its JUnit and screenshots are collected.
//! - `tempest` ([`TempestTester`]): installs (or finds) Tempest on one host or in a
//!   container on it, configures it for the cloud, runs a selection of its tests with
//!   retries of flaky runs, and converts its subunit stream into
//!   `results/tempest_results.xml`, also when it crashes part way.
//! - [`subunit`]: a streaming subunit v2 → JUnit converter.
//!
//! Every JUnit file a tester publishes is checked first ([`validate`]): a broken one is
//! kept as `<name>-broken.xml` beside a valid report with an error case that names it.
//!
//! Layout under `artifacts/results/`: `<suite>.xml` (the tester's own cases),
//! `<host>-<file>.xml` (JUnit collected from a host), `<host>/…` (other collected files:
//! `<host>/<file>` for `command`, `<host>/ceph/…`, `<host>/screenshots/…`).
//!
//! ```toml
//! [tester]
//! backend = "command"
//! suite = "smoke"
//! hosts = "all"
//! junit = ["results/*.xml", "/var/log/unit/**/*.xml"]
//! files = ["/var/log/unit/*.html"]
//!
//! [[tester.tests]]
//! name = "api answers"
//! run = ["curl", "-fsS", "http://127.0.0.1:5000/v3"]
//! ```
//!
//! From Rust, through the registry; settings are checked when the tester is built, not
//! when the run reaches `test`, and a secret never prints:
//!
//! ```
//! use gate_core::{BackendConfig, Registry};
//!
//! let mut registry = Registry::new();
//! gate_testers::register(&mut registry);
//! let tempest = r#"
//!     include = ["^tempest\\.api\\.identity\\."]
//!     [auth]
//!     url = "http://127.0.0.1:5000/v3"
//!     admin_password = { secret = "not-in-any-log" }
//! "#;
//! let tester = registry.tester(&BackendConfig::from_toml("tester", "tempest", tempest)?)?;
//! assert!(!format!("{tester:?}").contains("not-in-any-log"), "the password never prints");
//! let none = format!("concurrency = 0\n{tempest}");
//! let err = registry.tester(&BackendConfig::from_toml("tester", "tempest", &none)?);
//! let err = err.unwrap_err().to_string();
//! assert!(err.contains("[tester] concurrency: must be at least 1"), "{err}");
//! # Ok::<(), gate_core::Error>(())
//! ```
#![deny(missing_docs)]

pub mod ceph;
pub mod collect;
mod command;
mod config;
pub mod selenium;
pub mod subunit;
pub mod suite;
pub mod tempest;
pub mod validate;

pub use ceph::{CephConfig, CephTester};
pub use command::CommandTester;
pub use config::CommandConfig;
pub use selenium::{SeleniumConfig, SeleniumTester};
pub use tempest::{TempestConfig, TempestTester};

use std::sync::Arc;

use gate_core::Registry;

/// Registers every tester of this crate.
pub fn register(registry: &mut Registry) {
    registry.add_tester(command::NAME, |config| {
        Ok(Arc::new(CommandTester::from_config(config)?))
    });
    registry.add_tester(ceph::NAME, |config| {
        Ok(Arc::new(CephTester::from_config(config)?))
    });
    registry.add_tester(selenium::NAME, |config| {
        Ok(Arc::new(SeleniumTester::from_config(config)?))
    });
    registry.add_tester(tempest::NAME, |config| {
        Ok(Arc::new(TempestTester::from_config(config)?))
    });
}
