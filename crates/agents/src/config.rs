//! `[agent]` with `backend = "jenkins"`.

use std::path::PathBuf;

use gate_core::{BackendConfig, Result, Secret};
use serde::Deserialize;

/// How Jenkins starts the agent on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Launcher {
    /// Jenkins connects to the host over SSH (`hudson.plugins.sshslaves.SSHLauncher`) with
    /// `credentials_id`.
    #[default]
    Ssh,
    /// The host connects to Jenkins: gate downloads `agent.jar` from the controller and
    /// starts it on the host with the node's secret (`hudson.slaves.JNLPLauncher`).
    Inbound,
}

/// Settings of the `jenkins` agent connector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JenkinsConfig {
    /// The controller's URL, e.g. `https://jenkins.example/` (required).
    pub url: String,
    /// The Jenkins user gate authenticates as (required).
    pub user: String,
    /// That user's API token (required; a secret: `{ env = "JENKINS_TOKEN" }`).
    pub token: Secret,
    /// A CA certificate (PEM) to trust for an `https://` controller, besides the usual roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// The node's name. Default: the run id.
    #[serde(default)]
    pub name: Option<String>,
    /// The node's labels. Default: `["single_use_slave"]`.
    #[serde(default = "default_labels")]
    pub labels: Vec<String>,
    /// Executors on the node. Default: 2.
    #[serde(default = "default_executors")]
    pub executors: u32,
    /// The agent's remote root directory on the host. Default: `/var/lib/jenkins`.
    #[serde(default = "default_remote_root")]
    pub remote_root: String,
    /// `ssh` (default) or `inbound`.
    #[serde(default)]
    pub launcher: Launcher,
    /// Jenkins credentials id of the SSH key Jenkins logs in with (`ssh` launcher; required
    /// there).
    #[serde(default)]
    pub credentials_id: Option<String>,
    /// The port Jenkins connects to (`ssh` launcher). Default: the host's SSH port.
    #[serde(default)]
    pub ssh_port: Option<u16>,
    /// Prepare the host (Java, the agent user, keys, sudo, remote root, sshd). Default: true.
    #[serde(default = "default_true")]
    pub prepare_host: bool,
    /// The agent's user on the host. Default: `jenkins`.
    #[serde(default = "default_agent_user")]
    pub agent_user: String,
    /// The Java runtime's command. Default: `java`.
    #[serde(default = "default_java")]
    pub java: String,
    /// Packages installed (apt-get or dnf) when `java` is missing; `[]` makes a missing Java
    /// an error. Default: `["openjdk-17-jre-headless"]`.
    #[serde(default = "default_java_packages")]
    pub java_packages: Vec<String>,
    /// The sshd config to harden (`PasswordAuthentication no`); empty to leave sshd alone.
    /// Default: `/etc/ssh/sshd_config`.
    #[serde(default = "default_sshd_config")]
    pub sshd_config: String,
    /// Attempts at registering the node. Default: 5.
    #[serde(default = "default_attempts")]
    pub register_attempts: u32,
    /// Seconds between attempts. Default: 10.
    #[serde(default = "default_delay")]
    pub register_delay_secs: u64,
    /// How long to wait for Jenkins to report the node online, in seconds. Default: 600.
    #[serde(default = "default_online_timeout")]
    pub online_timeout_secs: u64,
    /// Seconds between checks of the node's state. Default: 5.
    #[serde(default = "default_poll")]
    pub poll_secs: u64,
    /// Time limit of one API request, in seconds. Default: 30.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Time limit of each command on the host, in seconds. Default: 900.
    #[serde(default = "default_host_timeout")]
    pub host_timeout_secs: u64,
}

fn default_labels() -> Vec<String> {
    vec!["single_use_slave".into()]
}
fn default_executors() -> u32 {
    2
}
fn default_remote_root() -> String {
    "/var/lib/jenkins".into()
}
fn default_true() -> bool {
    true
}
fn default_agent_user() -> String {
    "jenkins".into()
}
fn default_java() -> String {
    "java".into()
}
fn default_java_packages() -> Vec<String> {
    vec!["openjdk-17-jre-headless".into()]
}
fn default_sshd_config() -> String {
    "/etc/ssh/sshd_config".into()
}
fn default_attempts() -> u32 {
    5
}
fn default_delay() -> u64 {
    10
}
fn default_online_timeout() -> u64 {
    600
}
fn default_poll() -> u64 {
    5
}
fn default_request_timeout() -> u64 {
    30
}
fn default_host_timeout() -> u64 {
    900
}

impl JenkinsConfig {
    /// Parses and checks the section; errors name file, section and key.
    pub fn from_section(section: &BackendConfig) -> Result<Self> {
        let config: JenkinsConfig = section.parse()?;
        let url = reqwest::Url::parse(&config.url)
            .map_err(|e| section.error("url", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(section.error("url", "must be an http:// or https:// URL"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(section.error("url", "must not carry credentials; use `user` and `token`"));
        }
        if config.user.is_empty() {
            return Err(section.error("user", "is empty"));
        }
        if config.token.expose().is_empty() {
            return Err(section.error("token", "is empty"));
        }
        if let Some(name) = &config.name
            && !valid_node_name(name)
        {
            return Err(section.error(
                "name",
                format!("`{name}` is not a usable node name (letters, digits, `-`, `_`, `.`; at most 63)"),
            ));
        }
        for (i, label) in config.labels.iter().enumerate() {
            if label.is_empty()
                || label
                    .chars()
                    .any(|c| c.is_whitespace() || "&|!()".contains(c))
            {
                return Err(section.error(
                    format!("labels[{i}]"),
                    format!("`{label}` is not a Jenkins label (no spaces or & | ! ( ))"),
                ));
            }
        }
        if config.executors == 0 {
            return Err(section.error("executors", "must be at least 1"));
        }
        if !config.remote_root.starts_with('/') {
            return Err(section.error("remote_root", "must be an absolute path"));
        }
        if !config.sshd_config.is_empty() && !config.sshd_config.starts_with('/') {
            return Err(section.error("sshd_config", "must be an absolute path (or empty)"));
        }
        if !valid_user(&config.agent_user) {
            return Err(section.error(
                "agent_user",
                format!("`{}` is not a valid user name", config.agent_user),
            ));
        }
        if config.launcher == Launcher::Ssh && config.credentials_id.is_none() {
            return Err(section.error(
                "credentials_id",
                "the ssh launcher needs the id of the Jenkins credentials to log in with",
            ));
        }
        if config.register_attempts == 0 {
            return Err(section.error("register_attempts", "must be at least 1"));
        }
        if config.poll_secs == 0 {
            return Err(section.error("poll_secs", "must be at least 1"));
        }
        Ok(config)
    }

    /// The controller's base URL, ending in `/`.
    pub fn base_url(&self) -> String {
        if self.url.ends_with('/') {
            self.url.clone()
        } else {
            format!("{}/", self.url)
        }
    }
}

/// Whether `name` can be a node name gate makes and later sweeps.
pub(crate) fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

fn valid_user(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<JenkinsConfig> {
        JenkinsConfig::from_section(&BackendConfig::from_toml("agent", "jenkins", toml)?)
    }

    #[test]
    fn defaults_follow_the_field() {
        let config = parse(
            "url = \"https://ci.example\"\nuser = \"gate\"\ntoken = \"tok-defaults\"\ncredentials_id = \"k\"",
        )
        .unwrap();
        assert_eq!(config.labels, ["single_use_slave"]);
        assert_eq!(config.executors, 2);
        assert_eq!(config.remote_root, "/var/lib/jenkins");
        assert_eq!(config.launcher, Launcher::Ssh);
        assert_eq!(
            (config.register_attempts, config.register_delay_secs),
            (5, 10)
        );
        assert_eq!(config.base_url(), "https://ci.example/");
        assert_eq!(config.agent_user, "jenkins");
    }

    #[test]
    fn bad_values_name_their_key() {
        let base = "url = \"https://ci.example\"\nuser = \"gate\"\ntoken = \"tok-bad\"\n";
        for (extra, key) in [
            ("", "credentials_id"),
            (
                "launcher = \"inbound\"\nremote_root = \"rel\"",
                "remote_root",
            ),
            ("launcher = \"inbound\"\nlabels = [\"a b\"]", "labels[0]"),
            ("launcher = \"inbound\"\nname = \"a/b\"", "name"),
            (
                "launcher = \"inbound\"\nagent_user = \"Root;\"",
                "agent_user",
            ),
            ("launcher = \"inbound\"\nexecutors = 0", "executors"),
            ("launcher = \"inbound\"\nbogus = 1", "bogus"),
        ] {
            let err = parse(&format!("{base}{extra}")).unwrap_err().to_string();
            assert!(err.contains(&format!("[agent] {key}")), "{extra}: {err}");
        }
        let err = parse("url = \"ftp://x\"\nuser = \"u\"\ntoken = \"tok-ftp\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[agent] url"), "{err}");
    }
}
