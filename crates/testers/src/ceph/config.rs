//! `[tester]` with `backend = "ceph"`.

use std::collections::BTreeMap;

use gate_core::EnvValue;
use serde::Deserialize;

/// Settings of the `ceph` tester: a Ceph functional suite run on one host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CephConfig {
    /// The suite name: its run is judged in `results/<suite>.xml`. Default: `ceph`.
    #[serde(default = "default_suite")]
    pub suite: String,
    /// The host it runs on: a host name or a label (the first host with it). Default: the
    /// primary.
    #[serde(default)]
    pub host: Option<String>,
    /// The suite's command: a program and its arguments (no shell). This or `script`.
    #[serde(default)]
    pub run: Option<Vec<String>>,
    /// The suite's command as a bash script (run with `-euo pipefail`). This or `run`.
    #[serde(default)]
    pub script: Option<String>,
    /// Working directory on the host (relative to its home), e.g. a ceph-ansible checkout.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Environment of the suite (values may be secrets), besides `GATE_RESULTS_DIR`.
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    /// Time limit of the whole suite in seconds. Default: 3600.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// JUnit files the suite leaves: paths or globs, relative to `GATE_RESULTS_DIR` unless
    /// absolute. Default: `["**/*.xml"]` (every XML file under it).
    #[serde(default = "default_junit")]
    pub junit: Vec<String>,
    /// Other files to keep (logs, reports), as `junit`; copied to `results/<host>/ceph/`.
    /// Default: none.
    #[serde(default)]
    pub files: Vec<String>,
}

fn default_suite() -> String {
    "ceph".into()
}

fn default_timeout() -> u64 {
    3600
}

fn default_junit() -> Vec<String> {
    vec!["**/*.xml".into()]
}
