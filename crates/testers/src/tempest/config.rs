//! `[tester]` with `backend = "tempest"`.

use std::collections::BTreeMap;

use gate_core::{BackendConfig, EnvValue, Result, Secret};
use serde::Deserialize;

/// The Tempest release installed when `[tester.install] version` is not given.
pub const DEFAULT_VERSION: &str = "47.0.0";

/// The virtualenv Tempest is installed into when `[tester.install] venv` is not given.
pub const DEFAULT_VENV: &str = "/opt/gate-tempest-venv";

/// What `flaky_patterns` holds unless configured: the runner's own accounting race, which
/// the field has long retried.
pub const DEFAULT_FLAKY_PATTERNS: [&str; 1] = ["Race in testr accounting"];

/// Settings of the `tempest` tester: install Tempest on one host (or use one that is
/// there), configure it for the cloud under test, run a selection of its tests, and publish
/// their results as `results/tempest_results.xml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TempestConfig {
    /// The host it runs on: a host name or a label (the first host with it). Default: the
    /// primary.
    #[serde(default)]
    pub host: Option<String>,
    /// How Tempest gets there (`[tester.install]`). Default: installed with pip into
    /// `/opt/gate-tempest-venv`.
    #[serde(default)]
    pub install: Install,
    /// Run everything inside this container on the host (`[tester.container]`). Default:
    /// on the host itself.
    #[serde(default)]
    pub container: Option<Container>,
    /// The Tempest workspace directory (`tempest init`; holds `etc/tempest.conf`, `logs/`,
    /// `.stestr/`). Absolute, or relative to the home (to the command's working directory
    /// in a container). Default: `gate-results/<run id>/tempest/workspace` under the home,
    /// or `/var/tmp/gate-tempest/<run id>` in a container.
    #[serde(default)]
    pub workspace: Option<String>,
    /// The cloud and the credentials Tempest uses (`[tester.auth]`).
    pub auth: Auth,
    /// The region of every service. Default: `RegionOne`.
    #[serde(default = "default_region")]
    pub region: String,
    /// `[compute] image_ref`: the image servers boot from. Default: unset.
    #[serde(default)]
    pub image_ref: Option<String>,
    /// `[compute] image_ref_alt`: a second image. Default: unset.
    #[serde(default)]
    pub image_ref_alt: Option<String>,
    /// `[compute] flavor_ref`: the flavor servers boot with. Default: unset.
    #[serde(default)]
    pub flavor_ref: Option<String>,
    /// `[compute] flavor_ref_alt`: a second flavor (resize tests). Default: unset.
    #[serde(default)]
    pub flavor_ref_alt: Option<String>,
    /// `[service_available]`: which services the cloud has, e.g.
    /// `{ nova = true, neutron = false, cinder = false }`. Tempest skips tests of a service
    /// marked unavailable. Default: none written (Tempest's own defaults).
    #[serde(default)]
    pub services: BTreeMap<String, bool>,
    /// Any other tempest.conf settings, by section:
    /// `[tester.options.compute-feature-enabled] resize = false`. They win over what gate
    /// writes. Values are strings, numbers, booleans, lists (written comma-separated) or
    /// secrets (`{ secret = "…" }`, `{ env = "VAR" }`, `{ file = "…" }`).
    #[serde(default)]
    pub options: BTreeMap<String, BTreeMap<String, ConfValue>>,
    /// Named test sets: `smoke`, `all`, `api`, `scenario`, `identity`, `compute`, `image`,
    /// `network`, `volume`, `object-storage`. Default: when nothing selects tests (no
    /// `sets`, `include`, `include_file` or `load_list`), `smoke`.
    #[serde(default)]
    pub sets: Vec<String>,
    /// Regular expressions (Python `re`, matched with `search` against test ids) of tests
    /// to run, besides `sets`.
    #[serde(default)]
    pub include: Vec<String>,
    /// Regular expressions of tests not to run.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// A file of regular expressions (one a line, `#` comments) of tests to run, on the
    /// host (in the container when there is one); `tempest run --include-list`.
    #[serde(default)]
    pub include_file: Option<String>,
    /// A file of regular expressions of tests not to run, as `include_file`;
    /// `tempest run --exclude-list`.
    #[serde(default)]
    pub exclude_file: Option<String>,
    /// A file of exact test ids to run (what `tempest run --list-tests` prints), as
    /// `include_file`; `tempest run --load-list`.
    #[serde(default)]
    pub load_list: Option<String>,
    /// Test workers (`--concurrency`). Default: Tempest's (one per CPU).
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Run the tests one at a time (`--serial`). Default: false.
    #[serde(default)]
    pub serial: bool,
    /// Tempest's own log (`logs/tempest.log`, collected into the results) at debug level
    /// (`[DEFAULT] debug`). Default: false.
    #[serde(default)]
    pub debug: bool,
    /// How many times the whole run is retried when it fails and its output (or its subunit
    /// stream) holds one of `flaky_patterns`. Default: 1.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Text that marks a failed run as flaky, to be retried (see `retries`): plain text,
    /// not regular expressions, matched case-sensitively. Default:
    /// `["Race in testr accounting"]`.
    #[serde(default = "default_flaky_patterns")]
    pub flaky_patterns: Vec<String>,
    /// Environment of `tempest run` (values may be secrets), e.g. `OS_TEST_TIMEOUT`.
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    /// Time limit of one run in seconds. Default: 7200.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

/// How Tempest gets onto the host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Install {
    /// `pip` (default): a virtualenv at `venv` with `tempest==version` from `index_url` /
    /// `find_links` (kept when it already has that version); `venv`: an existing
    /// virtualenv at `venv`; `command`: an existing `tempest` executable (`command`).
    #[serde(default)]
    pub mode: InstallMode,
    /// The virtualenv (modes `pip` and `venv`). Default: `/opt/gate-tempest-venv`.
    #[serde(default = "default_venv")]
    pub venv: String,
    /// The `tempest` executable (mode `command`): a path or a name on `PATH`. Default:
    /// `tempest`.
    #[serde(default = "default_command")]
    pub command: String,
    /// The Tempest version pip installs (pinned). Default: `47.0.0`.
    #[serde(default = "default_version")]
    pub version: String,
    /// The Python that makes the virtualenv. Default: `python3`.
    #[serde(default = "default_python")]
    pub python: String,
    /// A pip index (PEP 503), e.g. a CI mirror: `pip install --index-url`. Default: pip's.
    #[serde(default)]
    pub index_url: Option<String>,
    /// Directories or URLs of wheels: `pip install --find-links`, each.
    #[serde(default)]
    pub find_links: Vec<String>,
    /// A constraints file (path on the host or URL), e.g. OpenStack's
    /// upper-constraints: `pip install -c`.
    #[serde(default)]
    pub constraints: Option<String>,
    /// More packages to install beside Tempest (plugins), as pip requirements.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Hosts pip may reach over plain HTTP (`--trusted-host`); the hosts of `http://`
    /// `index_url` and `find_links` are added by themselves.
    #[serde(default)]
    pub trusted_hosts: Vec<String>,
    /// Time limit of the installation in seconds. Default: 1800.
    #[serde(default = "default_install_timeout")]
    pub timeout_secs: u64,
}

impl Default for Install {
    fn default() -> Self {
        Self {
            mode: InstallMode::default(),
            venv: default_venv(),
            command: default_command(),
            version: default_version(),
            python: default_python(),
            index_url: None,
            find_links: Vec::new(),
            constraints: None,
            packages: Vec::new(),
            trusted_hosts: Vec::new(),
            timeout_secs: default_install_timeout(),
        }
    }
}

/// See [`Install::mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstallMode {
    /// Install with pip into a virtualenv.
    #[default]
    Pip,
    /// Use an existing virtualenv.
    Venv,
    /// Use an existing `tempest` executable.
    Command,
}

/// A container on the host that Tempest runs in: every command goes through its exec
/// prefix, and files go in and out through it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    /// `lxc` (`lxc-attach -n NAME --`), `docker` (`docker exec -i NAME`) or `podman`
    /// (`podman exec -i NAME`). Give this and `name`, or `exec`.
    #[serde(default)]
    pub kind: Option<ContainerKind>,
    /// The container's name.
    #[serde(default)]
    pub name: Option<String>,
    /// An exec prefix of your own: a program and its arguments, after which the command to
    /// run in the container follows; it must pass standard input and output through.
    #[serde(default)]
    pub exec: Option<Vec<String>>,
}

/// See [`Container::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerKind {
    /// `lxc-attach -n NAME --`.
    Lxc,
    /// `docker exec -i NAME`.
    Docker,
    /// `podman exec -i NAME`.
    Podman,
}

impl Container {
    /// The exec prefix.
    pub fn prefix(&self) -> Vec<String> {
        if let Some(exec) = &self.exec {
            return exec.clone();
        }
        let name = self.name.clone().unwrap_or_default();
        let words: Vec<&str> = match self.kind {
            Some(ContainerKind::Lxc) => vec!["lxc-attach", "-n", &name, "--"],
            Some(ContainerKind::Docker) => vec!["docker", "exec", "-i", &name],
            Some(ContainerKind::Podman) => vec!["podman", "exec", "-i", &name],
            None => Vec::new(),
        };
        words.into_iter().map(str::to_owned).collect()
    }
}

/// The cloud and the credentials Tempest uses: the admin's (Tempest makes a project and
/// user per test class) or a file of preprovisioned accounts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Keystone's v3 URL, e.g. `https://cloud:5000/v3` (`[identity] uri_v3`).
    pub url: String,
    /// The admin user (`[auth] admin_username`). Default: `admin`.
    #[serde(default = "default_admin")]
    pub admin_username: String,
    /// The admin's password (`[auth] admin_password`): a secret, never shown.
    #[serde(default)]
    pub admin_password: Option<Secret>,
    /// The admin's project (`[auth] admin_project_name`). Default: `admin`.
    #[serde(default = "default_admin")]
    pub admin_project_name: String,
    /// The admin's domain (`[auth] admin_domain_name`). Default: `Default`.
    #[serde(default = "default_domain")]
    pub admin_domain_name: String,
    /// A preprovisioned accounts file (Tempest's `accounts.yaml` format) on the
    /// controller, instead of dynamic credentials: copied into the workspace as
    /// `etc/accounts.yaml` (`[auth] test_accounts_file`,
    /// `use_dynamic_credentials = false`). Its `password:` values are treated as secrets.
    #[serde(default)]
    pub accounts_file: Option<String>,
    /// The endpoint interface (`[identity] v3_endpoint_type`): `public`, `internal` or
    /// `admin`. Default: `public`.
    #[serde(default = "default_interface")]
    pub interface: String,
    /// Skip TLS certificate checks (`[identity] disable_ssl_certificate_validation`).
    /// Default: false.
    #[serde(default)]
    pub insecure: bool,
    /// A CA bundle on the host (`[identity] ca_certificates_file`). Default: unset.
    #[serde(default)]
    pub ca_certificates_file: Option<String>,
}

/// A tempest.conf value in `options`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ConfValue {
    /// `true` / `false`.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A number.
    Float(f64),
    /// Text.
    Text(String),
    /// A list, written comma-separated.
    List(Vec<ConfScalar>),
    /// A secret: `{ secret = "…" }`, `{ env = "VAR" }` or `{ file = "…" }`.
    Secret(Secret),
}

/// An item of a [`ConfValue::List`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ConfScalar {
    /// `true` / `false`.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A number.
    Float(f64),
    /// Text.
    Text(String),
}

impl ConfScalar {
    fn text(&self) -> String {
        match self {
            ConfScalar::Bool(b) => b.to_string(),
            ConfScalar::Int(i) => i.to_string(),
            ConfScalar::Float(f) => f.to_string(),
            ConfScalar::Text(t) => t.clone(),
        }
    }
}

impl ConfValue {
    /// The value as tempest.conf text, and whether it is secret.
    pub fn text(&self) -> (String, bool) {
        match self {
            ConfValue::Bool(b) => (b.to_string(), false),
            ConfValue::Int(i) => (i.to_string(), false),
            ConfValue::Float(f) => (f.to_string(), false),
            ConfValue::Text(t) => (t.clone(), false),
            ConfValue::List(items) => (
                items
                    .iter()
                    .map(ConfScalar::text)
                    .collect::<Vec<_>>()
                    .join(","),
                false,
            ),
            ConfValue::Secret(s) => (s.expose().to_owned(), true),
        }
    }
}

/// The named test sets: name and the regular expression of the tests it selects (`all`
/// selects everything and has none).
pub const SETS: [(&str, &str); 10] = [
    ("smoke", r"\[.*\bsmoke\b.*\]"),
    ("all", ""),
    ("api", r"^tempest\.api\."),
    ("scenario", r"^tempest\.scenario\."),
    ("identity", r"^tempest\.api\.identity\."),
    ("compute", r"^tempest\.api\.compute\."),
    ("image", r"^tempest\.api\.image\."),
    ("network", r"^tempest\.api\.network\."),
    ("volume", r"^tempest\.api\.volume\."),
    ("object-storage", r"^tempest\.api\.object_storage\."),
];

fn default_region() -> String {
    "RegionOne".into()
}

fn default_retries() -> u32 {
    1
}

fn default_flaky_patterns() -> Vec<String> {
    DEFAULT_FLAKY_PATTERNS
        .iter()
        .map(|p| (*p).to_owned())
        .collect()
}

fn default_timeout() -> u64 {
    7200
}

fn default_install_timeout() -> u64 {
    1800
}

fn default_venv() -> String {
    DEFAULT_VENV.into()
}

fn default_command() -> String {
    "tempest".into()
}

fn default_version() -> String {
    DEFAULT_VERSION.into()
}

fn default_python() -> String {
    "python3".into()
}

fn default_admin() -> String {
    "admin".into()
}

fn default_domain() -> String {
    "Default".into()
}

fn default_interface() -> String {
    "public".into()
}

/// Checks `[tester.install]`.
pub(crate) fn check_install(section: &BackendConfig, install: &Install) -> Result<()> {
    let empty = |key: &str, value: &str| {
        if value.trim().is_empty() {
            Err(section.error(format!("install.{key}"), "is empty"))
        } else {
            Ok(())
        }
    };
    match install.mode {
        InstallMode::Pip => {
            empty("venv", &install.venv)?;
            empty("python", &install.python)?;
            let version_ok = install
                .version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '!'));
            if install.version.is_empty() || !version_ok {
                return Err(section.error(
                    "install.version",
                    "a version like 47.0.0 (letters, digits and . - + ! only)",
                ));
            }
        }
        InstallMode::Venv => empty("venv", &install.venv)?,
        InstallMode::Command => empty("command", &install.command)?,
    }
    Ok(())
}

/// Checks `[tester.container]`.
pub(crate) fn check_container(section: &BackendConfig, container: &Container) -> Result<()> {
    match (&container.exec, container.kind, &container.name) {
        (Some(exec), None, None) if !exec.is_empty() && !exec[0].is_empty() => Ok(()),
        (Some(_), None, None) => Err(section.error("container.exec", "is empty")),
        (None, Some(_), Some(name)) if !name.is_empty() => Ok(()),
        (None, Some(_), _) => Err(section.error("container.name", "name the container")),
        (None, None, _) => Err(section.error(
            "container",
            "give `kind` (lxc, docker, podman) and `name`, or `exec`",
        )),
        (Some(_), _, _) => Err(section.error(
            "container.exec",
            "give either `exec` or `kind` and `name`, not both",
        )),
    }
}
