//! `[tester]` with `backend = "selenium"`.

use std::collections::BTreeMap;

use gate_core::EnvValue;
use serde::Deserialize;

/// How the suite is started when no `run`/`script` is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Runner {
    /// `python -m pytest -v --junitxml=<results>/<suite>.xml ARGS… TESTS…`
    #[default]
    Pytest,
    /// `python -m nose -v --with-xunit --xunit-file=<results>/<suite>.xml ARGS… TESTS…`
    Nose,
    /// `python -m nose2 -v --plugin nose2.plugins.junitxml --junit-xml
    /// --junit-xml-path <results>/<suite>.xml ARGS… TESTS…`
    Nose2,
}

/// Settings of the `selenium` tester: a browser test suite run on one host against a URL.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeleniumConfig {
    /// The URL under test (e.g. Horizon), given to the suite as `GATE_SELENIUM_URL`.
    pub url: String,
    /// The suite name: the runner's JUnit file and `results/<suite>.xml`. Default: `selenium`.
    #[serde(default = "default_suite")]
    pub suite: String,
    /// The host it runs on: a host name or a label. Default: the primary.
    #[serde(default)]
    pub host: Option<String>,
    /// The test runner, when no `run`/`script` is given. Default: `pytest`.
    #[serde(default)]
    pub runner: Runner,
    /// The Python that has the runner and `selenium` (e.g. a virtualenv's). Default: `python3`.
    #[serde(default = "default_python")]
    pub python: String,
    /// What the runner runs (paths or names). Default: `["."]`.
    #[serde(default = "default_tests")]
    pub tests: Vec<String>,
    /// Extra runner arguments, before `tests`. Default: none.
    #[serde(default)]
    pub args: Vec<String>,
    /// A command of your own instead of the runner: a program and its arguments.
    #[serde(default)]
    pub run: Option<Vec<String>>,
    /// A command of your own instead of the runner, as a bash script.
    #[serde(default)]
    pub script: Option<String>,
    /// Working directory on the host (relative to its home): where the suite is.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Extra environment of the suite (values may be secrets); it wins over gate's.
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    /// The browser binary, given as `GATE_SELENIUM_BROWSER`. Default: `/usr/bin/chromium`.
    #[serde(default = "default_browser")]
    pub browser: String,
    /// The WebDriver binary, given as `GATE_SELENIUM_DRIVER`. Default: `/usr/bin/chromedriver`.
    #[serde(default = "default_driver")]
    pub driver: String,
    /// Browser flags, given space-separated as `GATE_SELENIUM_BROWSER_ARGS`. Default: a
    /// headless Chromium that fetches nothing of its own (see [`DEFAULT_BROWSER_ARGS`]).
    #[serde(default = "default_browser_args")]
    pub browser_args: Vec<String>,
    /// Time limit of the whole suite in seconds. Default: 1800.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// JUnit files the suite leaves, relative to `GATE_RESULTS_DIR` unless absolute.
    /// Default: `["*.xml"]`.
    #[serde(default = "default_junit")]
    pub junit: Vec<String>,
    /// Screenshots (and other files) to keep, as `junit`; copied to
    /// `results/<host>/screenshots/`. Default: `["screenshots/**/*.png"]`.
    #[serde(default = "default_screenshots")]
    pub screenshots: Vec<String>,
}

/// Headless Chromium that makes no connection of its own (no updates, sync, QUIC, …).
pub const DEFAULT_BROWSER_ARGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

fn default_suite() -> String {
    "selenium".into()
}

fn default_python() -> String {
    "python3".into()
}

fn default_tests() -> Vec<String> {
    vec![".".into()]
}

fn default_browser() -> String {
    "/usr/bin/chromium".into()
}

fn default_driver() -> String {
    "/usr/bin/chromedriver".into()
}

fn default_browser_args() -> Vec<String> {
    DEFAULT_BROWSER_ARGS
        .iter()
        .map(|a| (*a).to_owned())
        .collect()
}

fn default_timeout() -> u64 {
    1800
}

fn default_junit() -> Vec<String> {
    vec!["*.xml".into()]
}

fn default_screenshots() -> Vec<String> {
    vec!["screenshots/**/*.png".into()]
}
