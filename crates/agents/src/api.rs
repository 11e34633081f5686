//! The part of Jenkins' REST API gate uses: the crumb issuer, node creation, a node's state,
//! node deletion, the inbound agent's secret and `agent.jar`. Every request authenticates
//! with the user and API token (HTTP basic auth); every POST carries a fresh crumb.

use std::time::Duration;

use gate_core::{Error, Result, Secret};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::NAME;
use crate::config::{JenkinsConfig, Launcher};

/// What a failed request tells the caller.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// The controller answered with this status.
    Status {
        /// What gate asked for.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// The request did not get an answer (connection, timeout, unreadable answer).
    Transport {
        /// What gate asked for.
        what: String,
        /// Why.
        message: String,
    },
}

impl ApiError {
    /// The HTTP status, when there was an answer.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            ApiError::Transport { .. } => None,
        }
    }

    /// Whether trying again cannot help (bad credentials).
    pub(crate) fn is_permanent(&self) -> bool {
        self.status() == Some(401)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Status { what, status, body } => {
                let hint = match status {
                    401 => " (the user or API token is wrong)",
                    403 => " (the user lacks a permission, or the crumb was refused)",
                    _ => "",
                };
                write!(f, "{what}: HTTP {status}{hint}")?;
                if !body.is_empty() {
                    write!(f, ": {body}")?;
                }
                Ok(())
            }
            ApiError::Transport { what, message } => write!(f, "{what}: {message}"),
        }
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error::backend(NAME, gate_core::secret::redact(&e.to_string()).into_owned())
    }
}

/// A node's state as `/computer/<name>/api/json` reports it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Computer {
    /// The node's name.
    #[serde(default)]
    pub(crate) display_name: String,
    /// Whether it is offline.
    #[serde(default)]
    pub(crate) offline: bool,
    /// Why, in words (empty when online or unknown).
    #[serde(default)]
    pub(crate) offline_cause_reason: Option<String>,
    /// The node's description (gate puts the run id and creation time there).
    #[serde(default)]
    pub(crate) description: Option<String>,
}

/// The node gate asks Jenkins to create.
#[derive(Debug, Clone)]
pub(crate) struct NodeSpec {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) remote_root: String,
    pub(crate) labels: Vec<String>,
    pub(crate) executors: u32,
    pub(crate) launcher: Launcher,
    /// Host, port and credentials id (`ssh` launcher).
    pub(crate) ssh: Option<(String, u16, String)>,
}

impl NodeSpec {
    /// The `json` form field of `doCreateItem`, as Jenkins' "New node" form posts it.
    pub(crate) fn form_json(&self) -> Value {
        let launcher = match (self.launcher, &self.ssh) {
            (Launcher::Ssh, Some((host, port, credentials))) => json!({
                "stapler-class": "hudson.plugins.sshslaves.SSHLauncher",
                "$class": "hudson.plugins.sshslaves.SSHLauncher",
                "host": host,
                "port": port.to_string(),
                "credentialsId": credentials,
                "sshHostKeyVerificationStrategy": {
                    "stapler-class": "hudson.plugins.sshslaves.verifiers.ManuallyTrustedKeyVerificationStrategy",
                    "$class": "hudson.plugins.sshslaves.verifiers.ManuallyTrustedKeyVerificationStrategy",
                    "requireInitialManualTrust": false
                }
            }),
            _ => json!({
                "stapler-class": "hudson.slaves.JNLPLauncher",
                "$class": "hudson.slaves.JNLPLauncher",
                "workDirSettings": {
                    "disabled": false,
                    "workDirPath": "",
                    "internalDir": "remoting",
                    "failIfWorkDirIsMissing": false
                }
            }),
        };
        json!({
            "name": self.name,
            "nodeDescription": self.description,
            "numExecutors": self.executors.to_string(),
            "remoteFS": self.remote_root,
            "labelString": self.labels.join(" "),
            "mode": "EXCLUSIVE",
            "type": "hudson.slaves.DumbSlave",
            "retentionStrategy": { "stapler-class": "hudson.slaves.RetentionStrategy$Always" },
            "nodeProperties": { "stapler-class-bag": "true" },
            "launcher": launcher
        })
    }
}

/// A client of one controller.
#[derive(Debug, Clone)]
pub(crate) struct JenkinsApi {
    base: String,
    user: String,
    token: Secret,
    http: reqwest::Client,
}

impl JenkinsApi {
    /// A client for the controller `config` names.
    pub(crate) fn new(config: &JenkinsConfig) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.request_timeout_secs))
            .connect_timeout(Duration::from_secs(config.request_timeout_secs.min(10)))
            // doCreateItem and doDelete answer with a redirect; gate reads the status itself.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &config.ca {
            let pem = std::fs::read(ca).map_err(|e| Error::io("reading", ca, e))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| Error::backend(NAME, format!("{}: {e}", ca.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| Error::backend(NAME, format!("building the HTTP client: {e}")))?;
        Ok(Self {
            base: config.base_url(),
            user: config.user.clone(),
            token: config.token.clone(),
            http,
        })
    }

    /// The controller's URL, ending in `/`.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn computer_path(name: &str, rest: &str) -> String {
        format!("computer/{}/{rest}", encode_segment(name))
    }

    async fn send(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Vec<u8>), ApiError> {
        let response = request
            .basic_auth(&self.user, Some(self.token.expose()))
            .send()
            .await
            .map_err(|e| ApiError::Transport {
                what: what.to_owned(),
                message: error_chain(&e),
            })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| ApiError::Transport {
            what: what.to_owned(),
            message: error_chain(&e),
        })?;
        Ok((status, body.to_vec()))
    }

    async fn get(&self, what: &str, path: &str) -> Result<(u16, Vec<u8>), ApiError> {
        self.send(what, self.http.get(self.url(path))).await
    }

    /// A fresh crumb: the header to send and its value.
    async fn crumb(&self) -> Result<Option<(String, String)>, ApiError> {
        let what = "fetching a crumb (GET crumbIssuer/api/json)";
        let (status, body) = self.get(what, "crumbIssuer/api/json").await?;
        match status {
            200 => {
                #[derive(Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct Crumb {
                    crumb: String,
                    crumb_request_field: String,
                }
                let crumb: Crumb =
                    serde_json::from_slice(&body).map_err(|e| ApiError::Transport {
                        what: what.to_owned(),
                        message: format!("unreadable answer: {e}"),
                    })?;
                Ok(Some((crumb.crumb_request_field, crumb.crumb)))
            }
            // CSRF protection is off on this controller: no crumb needed.
            404 => Ok(None),
            _ => Err(status_error(what, status, &body)),
        }
    }

    async fn post(
        &self,
        what: &str,
        path: &str,
        form: Option<&[(&str, String)]>,
    ) -> Result<(u16, Vec<u8>), ApiError> {
        let mut request = self.http.post(self.url(path));
        if let Some((field, value)) = self.crumb().await? {
            request = request.header(field, value);
        }
        request = match form {
            Some(form) => request.form(form),
            None => request.header(reqwest::header::CONTENT_LENGTH, "0"),
        };
        self.send(what, request).await
    }

    /// Creates the node. `Ok(false)` when a node of that name exists already.
    pub(crate) async fn create_node(&self, spec: &NodeSpec) -> Result<bool, ApiError> {
        let what = format!("creating node {} (POST computer/doCreateItem)", spec.name);
        let form = [
            ("name", spec.name.clone()),
            ("type", "hudson.slaves.DumbSlave".to_owned()),
            ("json", spec.form_json().to_string()),
        ];
        let (status, body) = self
            .post(&what, "computer/doCreateItem", Some(&form))
            .await?;
        match status {
            200 | 201 | 302 | 303 => Ok(true),
            400 if String::from_utf8_lossy(&body).contains("already exists") => Ok(false),
            _ => Err(status_error(&what, status, &body)),
        }
    }

    /// The node's state, or `None` when there is no such node.
    pub(crate) async fn computer(&self, name: &str) -> Result<Option<Computer>, ApiError> {
        let what = format!("reading node {name} (GET computer/{name}/api/json)");
        let (status, body) = self
            .get(&what, &Self::computer_path(name, "api/json"))
            .await?;
        match status {
            200 => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| ApiError::Transport {
                    what,
                    message: format!("unreadable answer: {e}"),
                }),
            404 => Ok(None),
            _ => Err(status_error(&what, status, &body)),
        }
    }

    /// Every node but the built-in one.
    pub(crate) async fn computers(&self) -> Result<Vec<Computer>, ApiError> {
        let what = "listing nodes (GET computer/api/json)";
        let (status, body) = self
            .get(
                what,
                "computer/api/json?tree=computer[displayName,offline,offlineCauseReason,description]",
            )
            .await?;
        if status != 200 {
            return Err(status_error(what, status, &body));
        }
        #[derive(Deserialize)]
        struct List {
            #[serde(default)]
            computer: Vec<Value>,
        }
        let list: List = serde_json::from_slice(&body).map_err(|e| ApiError::Transport {
            what: what.to_owned(),
            message: format!("unreadable answer: {e}"),
        })?;
        Ok(list
            .computer
            .into_iter()
            .filter(|c| {
                !c["_class"]
                    .as_str()
                    .is_some_and(|class| class.contains("MasterComputer"))
            })
            .filter_map(|c| serde_json::from_value(c).ok())
            .collect())
    }

    /// Deletes the node. `Ok(false)` when there was none.
    pub(crate) async fn delete_node(&self, name: &str) -> Result<bool, ApiError> {
        let what = format!("deleting node {name} (POST computer/{name}/doDelete)");
        let (status, body) = self
            .post(&what, &Self::computer_path(name, "doDelete"), None)
            .await?;
        match status {
            200 | 204 | 302 | 303 => Ok(true),
            404 => Ok(false),
            _ => Err(status_error(&what, status, &body)),
        }
    }

    /// The inbound agent's secret, from the node's `jenkins-agent.jnlp` (the first
    /// `<argument>` of `<application-desc>`).
    pub(crate) async fn agent_secret(&self, name: &str) -> Result<Secret, ApiError> {
        let what =
            format!("reading the agent secret of {name} (GET computer/{name}/jenkins-agent.jnlp)");
        let (status, body) = self
            .get(&what, &Self::computer_path(name, "jenkins-agent.jnlp"))
            .await?;
        if status != 200 {
            return Err(status_error(&what, status, &body));
        }
        let text = String::from_utf8_lossy(&body);
        jnlp_secret(&text)
            .map(Secret::new)
            .ok_or(ApiError::Transport {
                what,
                message: "the JNLP file holds no <application-desc> argument".into(),
            })
    }

    /// `jnlpJars/agent.jar`.
    pub(crate) async fn agent_jar(&self) -> Result<Vec<u8>, ApiError> {
        let what = "downloading the agent (GET jnlpJars/agent.jar)";
        let (status, body) = self.get(what, "jnlpJars/agent.jar").await?;
        if status == 200 && !body.is_empty() {
            Ok(body)
        } else {
            Err(status_error(what, status, &body))
        }
    }
}

fn status_error(what: &str, status: u16, body: &[u8]) -> ApiError {
    let text = String::from_utf8_lossy(body);
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    let body: String = first.chars().take(200).collect();
    ApiError::Status {
        what: what.to_owned(),
        status,
        body,
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// `name` percent-encoded for one URL path segment.
pub(crate) fn encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The first `<argument>` inside `<application-desc …>`.
fn jnlp_secret(jnlp: &str) -> Option<String> {
    let desc = jnlp.find("<application-desc")?;
    let rest = &jnlp[desc..];
    let start = rest.find("<argument>")? + "<argument>".len();
    let end = rest[start..].find("</argument>")?;
    let secret = rest[start..start + end].trim();
    (!secret.is_empty()).then(|| secret.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_the_first_application_argument() {
        let jnlp = "<jnlp><resources><argument>no</argument></resources>\
            <application-desc main-class=\"hudson.remoting.jnlp.Main\">\
            <argument>0a1b2c</argument><argument>node-1</argument></application-desc></jnlp>";
        assert_eq!(jnlp_secret(jnlp).as_deref(), Some("0a1b2c"));
        assert_eq!(jnlp_secret("<jnlp/>"), None);
    }

    #[test]
    fn node_json_is_what_the_new_node_form_posts() {
        let spec = NodeSpec {
            name: "gate-1".into(),
            description: "gate_run_id=gate-1".into(),
            remote_root: "/var/lib/jenkins".into(),
            labels: vec!["single_use_slave".into(), "gate-1".into()],
            executors: 2,
            launcher: Launcher::Ssh,
            ssh: Some(("10.0.0.5".into(), 22, "ci-key".into())),
        };
        let json = spec.form_json();
        assert_eq!(json["mode"], "EXCLUSIVE");
        assert_eq!(json["labelString"], "single_use_slave gate-1");
        assert_eq!(json["launcher"]["credentialsId"], "ci-key");
        assert_eq!(json["launcher"]["port"], "22");
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }
}
