//! `[tester]` with `backend = "command"`.

use std::collections::BTreeMap;

use gate_core::steps::{Hosts, Step, check_env_name};
use gate_core::{BackendConfig, EnvValue, Result};
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
    /// JUnit files the tests leave on the hosts: paths or glob patterns (`*`, `?`, `**`),
    /// relative to the home unless absolute. Collected from every host after the tests into
    /// `results/<host>-<file name>`, each checked first. Default: `["results/*.xml"]`.
    #[serde(default = "default_junit")]
    pub junit: Vec<String>,
    /// Other result files to collect from every host (paths or globs, as `junit`), copied to
    /// `results/<host>/<file name>`. Default: none.
    #[serde(default)]
    pub files: Vec<String>,
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

fn default_junit() -> Vec<String> {
    vec!["results/*.xml".into()]
}

/// Checks a suite name: it names a file, so letters, digits, `-`, `_` and `.` only.
pub(crate) fn check_suite_name(section: &BackendConfig, suite: &str) -> Result<()> {
    let ok = !suite.is_empty()
        && !suite.starts_with('.')
        && suite
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(section.error("suite", "use letters, digits, - _ . only (it names a file)"))
    }
}

/// Checks the top-level `run`/`script` of a suite tester (`step` holds them): at most one,
/// `run` not empty, exactly one when `required`; and the `env` names.
pub(crate) fn check_command(section: &BackendConfig, step: &Step, required: bool) -> Result<()> {
    match (&step.run, &step.script) {
        (Some(run), None) if run.is_empty() => return Err(section.error("run", "is empty")),
        (Some(_), Some(_)) => {
            return Err(section.error("run", "give either `run` or `script`, not both"));
        }
        (None, None) if required => {
            return Err(section.error("run", "the suite needs `run` or `script`"));
        }
        _ => {}
    }
    for name in step.env.keys() {
        check_env_name(section, "env", name)?;
    }
    Ok(())
}
