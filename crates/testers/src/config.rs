//! `[tester]` with `backend = "command"`.

use std::collections::BTreeMap;

use gate_core::EnvValue;
use gate_core::steps::{Hosts, Step};
use serde::Deserialize;

/// Settings of the `command` tester.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// The JUnit suite name, also the file name: `results/<suite>.xml`. Default: `command`.
    #[serde(default = "default_suite")]
    pub suite: String,
    /// Where tests run unless a test says: `primary` (default) or `all`.
    #[serde(default)]
    pub hosts: Hosts,
    /// Environment for every test (values may be secrets).
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    /// Time limit of one test in seconds. Default: 1800.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// A directory on each host (relative to its home) where tests leave JUnit XML files;
    /// they are collected into `results/<host>-<file>.xml`. Default: `results`.
    #[serde(default = "default_results_dir")]
    pub results_dir: String,
    /// The tests: each is a step (`run` or `script`) and becomes a test case per host.
    #[serde(default)]
    pub tests: Vec<Step>,
}

fn default_suite() -> String {
    "command".into()
}

fn default_timeout() -> u64 {
    1800
}

fn default_results_dir() -> String {
    "results".into()
}
