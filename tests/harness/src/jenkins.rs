//! A simulator of the part of Jenkins' REST API that gate uses, over plain HTTP on
//! 127.0.0.1 (no Jenkins controller can run on this machine).
//!
//! It follows Jenkins' documented endpoints, status codes and JSON shapes:
//!
//! - `GET /crumbIssuer/api/json` → `{"crumb", "crumbRequestField": "Jenkins-Crumb"}`; every
//!   `POST` must echo the crumb in `Jenkins-Crumb` (else 403 "No valid crumb");
//! - basic auth with the user and API token on everything but `/jnlpJars/` (no
//!   credentials: 403; wrong ones: 401);
//! - `POST /computer/doCreateItem` (form: `name`, `type=hudson.slaves.DumbSlave`, `json`
//!   with the node: `remoteFS`, `labelString`, `numExecutors`, `mode`, `launcher`) → 302;
//!   400 when the node exists or the form is incomplete;
//! - `GET /computer/api/json` and `GET /computer/<name>/api/json` (`offline`,
//!   `offlineCauseReason`, `description`, `assignedLabels`, `numExecutors`, `jnlpAgent`, …);
//! - `POST /computer/<name>/doDelete` → 302, 404 when absent;
//! - `GET /computer/<name>/jenkins-agent.jnlp` (and the older `slave-agent.jnlp`): the
//!   inbound agent's JNLP file, the secret as the first `<argument>`;
//! - `GET /jnlpJars/agent.jar`.
//!
//! What is simulated: the agent protocol. The served `agent.jar` is a bash script (run by
//! the stand-in [`JAVA`]) that holds one HTTP connection to
//! `POST /gate-sim/agent/<name>` with the node's secret; the node is online while that
//! connection lasts. A node with the SSH launcher goes online when the simulator reads an
//! `SSH-2.0` banner from its host and port (as Jenkins' first step of an SSH launch).
//! Tests can inject faults ([`JenkinsSim::fail_next`]), keep every node offline
//! ([`JenkinsSim::never_online`]) or set a node's state ([`JenkinsSim::set_online`]).

mod agent;
mod http;
mod scripts;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};

pub use scripts::{AGENT_JAR, JAVA};

use self::agent::{agent_connection, probe_ssh};
use self::http::{Answer, Request, page, redirect, send};
use crate::error::Result;
use crate::wire::Listener;

/// A node as the simulator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimNode {
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// The agent's remote root (`remoteFS`).
    pub remote_fs: String,
    /// Its labels (`labelString`, split on spaces).
    pub labels: Vec<String>,
    /// Executors.
    pub executors: u32,
    /// `NORMAL` or `EXCLUSIVE`.
    pub mode: String,
    /// The launcher's class (`hudson.slaves.JNLPLauncher`, `hudson.plugins.sshslaves.SSHLauncher`).
    pub launcher: String,
    /// The SSH launcher's host, port and credentials id.
    pub ssh: Option<(String, u16, String)>,
    /// Whether Jenkins sees it online.
    pub online: bool,
    /// Why it is offline (`offlineCauseReason`).
    pub offline_cause: String,
    /// The inbound agent's secret.
    pub secret: String,
    /// The `json` form field it was created with (empty for nodes added by a test).
    pub form: Value,
}

/// A request the simulator answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The decoded path.
    pub path: String,
    /// The status it got.
    pub status: u16,
}

#[derive(Debug)]
struct Fault {
    status: u16,
    remaining: usize,
    path_prefix: String,
}

#[derive(Debug)]
struct State {
    user: String,
    token: String,
    crumb: String,
    nodes: BTreeMap<String, SimNode>,
    /// Bumped per node whenever an agent connects or the node changes hands, so a stale
    /// connection never marks a newer one's node offline.
    generations: BTreeMap<String, u64>,
    faults: Vec<Fault>,
    never_online: Option<String>,
    requests: Vec<SimRequest>,
    serial: u64,
}

/// The Jenkins simulator. Stops on drop (agent connections are closed).
#[derive(Debug)]
pub struct JenkinsSim {
    listener: Listener,
    state: Arc<Mutex<State>>,
}

impl JenkinsSim {
    /// Starts a controller that accepts `user` with API token `token`.
    pub fn start(user: &str, token: &str) -> Result<JenkinsSim> {
        let state = Arc::new(Mutex::new(State {
            user: user.to_owned(),
            token: token.to_owned(),
            crumb: String::new(),
            nodes: BTreeMap::new(),
            generations: BTreeMap::new(),
            faults: Vec::new(),
            never_online: None,
            requests: Vec::new(),
            serial: 0,
        }));
        let shared = state.clone();
        let listener = Listener::start("Jenkins simulator", move |stream, stop| {
            serve(&stream, &shared, stop);
        })?;
        let port = listener.addr().port();
        lock(&state).crumb = format!("{:032x}", u128::from(port) * 0x9e37_79b9_7f4a_7c15);
        Ok(JenkinsSim { listener, state })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.listener.addr())
    }

    /// Every node.
    pub fn nodes(&self) -> Vec<SimNode> {
        self.lock().nodes.values().cloned().collect()
    }

    /// The node `name`, if it exists.
    pub fn node(&self, name: &str) -> Option<SimNode> {
        self.lock().nodes.get(name).cloned()
    }

    /// Sets a node online or offline (with `cause`), as if its agent connected or dropped.
    pub fn set_online(&self, name: &str, online: bool, cause: &str) {
        let mut state = self.lock();
        if let Some(node) = state.nodes.get_mut(name) {
            node.online = online;
            node.offline_cause = if online {
                String::new()
            } else {
                cause.to_owned()
            };
        }
        *state.generations.entry(name.to_owned()).or_default() += 1;
    }

    /// Adds a node directly (not through the API), e.g. a leftover for a sweep to find.
    pub fn add_node(&self, name: &str, description: &str, online: bool) {
        let mut state = self.lock();
        state.serial += 1;
        let node = SimNode {
            name: name.to_owned(),
            description: description.to_owned(),
            remote_fs: "/var/lib/jenkins".into(),
            labels: Vec::new(),
            executors: 1,
            mode: "NORMAL".into(),
            launcher: "hudson.slaves.JNLPLauncher".into(),
            ssh: None,
            online,
            offline_cause: String::new(),
            secret: secret_for(name, state.serial),
            form: Value::Null,
        };
        state.nodes.insert(name.to_owned(), node);
    }

    /// Removes a node directly, as an administrator deleting it by hand would.
    pub fn remove_node(&self, name: &str) -> bool {
        let mut state = self.lock();
        *state.generations.entry(name.to_owned()).or_default() += 1;
        state.nodes.remove(name).is_some()
    }

    /// The next `n` API requests whose path starts with `path_prefix` (`""`: any) get
    /// `status` (e.g. 403, 404, 500) and nothing else happens.
    pub fn fail_next(&self, path_prefix: &str, status: u16, n: usize) {
        self.lock().faults.push(Fault {
            status,
            remaining: n,
            path_prefix: path_prefix.to_owned(),
        });
    }

    /// Keeps every node offline with `cause` (`None`: back to normal); agents that try to
    /// connect are refused.
    pub fn never_online(&self, cause: Option<&str>) {
        self.lock().never_online = cause.map(str::to_owned);
    }

    /// The stand-in `java` (see [`JAVA`]) to install on a host as `/usr/local/bin/java`.
    pub fn java_stand_in() -> &'static str {
        JAVA
    }

    /// The requests answered so far, oldest first.
    pub fn requests(&self) -> Vec<SimRequest> {
        self.lock().requests.clone()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn secret_for(name: &str, serial: u64) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ serial;
    for b in name.bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}{:016x}", hash.rotate_left(17) ^ serial)
}

fn serve(stream: &TcpStream, state: &Arc<Mutex<State>>, stop: &AtomicBool) {
    let Ok(request) = Request::read(stream) else {
        return;
    };
    if request.method == "POST"
        && let Some(name) = request.path.strip_prefix("/gate-sim/agent/")
    {
        agent_connection(stream, state, stop, name, request.header("x-agent-secret"));
        return;
    }
    let answer = answer(&request, state);
    lock(state).requests.push(SimRequest {
        method: request.method.clone(),
        path: request.path.clone(),
        status: answer.status,
    });
    send(answer, stream);
}

fn answer(request: &Request, state: &Mutex<State>) -> Answer {
    {
        let mut state = lock(state);
        if let Some(fault) = state
            .faults
            .iter_mut()
            .find(|f| f.remaining > 0 && request.path.starts_with(&f.path_prefix))
        {
            fault.remaining -= 1;
            let status = fault.status;
            return page(status, "simulated fault");
        }
    }
    let method = request.method.as_str();
    let path = request.path.as_str();
    if method == "GET" && path == "/jnlpJars/agent.jar" {
        return Answer::typed(200, "application/java-archive", AGENT_JAR);
    }
    if let Some(refused) = authenticate(request, &lock(state)) {
        return refused;
    }
    if method == "POST" {
        let state = lock(state);
        if request.header("jenkins-crumb") != Some(state.crumb.as_str()) {
            return page(403, "No valid crumb was included in the request");
        }
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("GET", ["crumbIssuer", "api", "json"]) => Answer::json(
            200,
            &json!({
                "_class": "hudson.security.csrf.DefaultCrumbIssuer",
                "crumb": lock(state).crumb,
                "crumbRequestField": "Jenkins-Crumb"
            }),
        ),
        ("POST", ["computer", "doCreateItem"]) => create(request, &mut lock(state)),
        ("GET", ["computer", "api", "json"]) => {
            let mut computers = vec![json!({
                "_class": "hudson.model.Hudson$MasterComputer",
                "displayName": "Built-In Node",
                "offline": false,
                "offlineCauseReason": "",
                "description": "the Jenkins controller's built-in node"
            })];
            let names: Vec<String> = lock(state).nodes.keys().cloned().collect();
            for name in names {
                probe_ssh(state, &name);
                if let Some(node) = lock(state).nodes.get(&name) {
                    computers.push(computer_json(node));
                }
            }
            Answer::json(
                200,
                &json!({
                    "_class": "hudson.model.ComputerSet",
                    "busyExecutors": 0,
                    "computer": computers,
                    "displayName": "Nodes"
                }),
            )
        }
        ("GET", ["computer", name, "api", "json"]) => {
            probe_ssh(state, name);
            match lock(state).nodes.get(*name) {
                Some(node) => Answer::json(200, &computer_json(node)),
                None => page(404, "Not Found"),
            }
        }
        ("POST", ["computer", name, "doDelete"]) => {
            let mut state = lock(state);
            if state.nodes.remove(*name).is_some() {
                *state.generations.entry((*name).to_owned()).or_default() += 1;
                redirect("/computer/")
            } else {
                page(404, "Not Found")
            }
        }
        ("GET", ["computer", name, "jenkins-agent.jnlp" | "slave-agent.jnlp"]) => {
            let base = format!("http://{}/", request.header("host").unwrap_or("127.0.0.1"));
            match lock(state).nodes.get(*name) {
                Some(node) if node.launcher == "hudson.slaves.JNLPLauncher" => {
                    Answer::typed(200, "application/x-java-jnlp-file", jnlp(&base, node))
                }
                _ => page(404, "Not Found"),
            }
        }
        (_, ["crumbIssuer" | "computer", ..]) if !matches!(method, "GET" | "POST") => {
            page(405, "Method Not Allowed")
        }
        _ => page(404, "Not Found"),
    }
}

fn authenticate(request: &Request, state: &State) -> Option<Answer> {
    use base64::Engine as _;
    let Some(header) = request.header("authorization") else {
        let mut refused = page(403, "Authentication required");
        refused
            .headers
            .push(("X-You-Are-Authenticated-As", "anonymous".into()));
        return Some(refused);
    };
    let decoded = header
        .strip_prefix("Basic ")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    match decoded.as_deref().and_then(|d| d.split_once(':')) {
        Some((user, token)) if user == state.user && token == state.token => None,
        Some((user, _)) => {
            let mut refused = page(401, &format!("Invalid password/token for user: {user}"));
            refused
                .headers
                .push(("WWW-Authenticate", "Basic realm=\"Jenkins\"".into()));
            Some(refused)
        }
        None => Some(page(401, "Unauthorized")),
    }
}

fn create(request: &Request, state: &mut State) -> Answer {
    let form = request.form();
    let (Some(name), Some(kind), Some(json)) =
        (form.get("name"), form.get("type"), form.get("json"))
    else {
        return page(400, "name, type and json are required");
    };
    if kind != "hudson.slaves.DumbSlave" {
        return page(400, &format!("No such type: {kind}"));
    }
    let Ok(spec) = serde_json::from_str::<Value>(json) else {
        return page(400, "json is not JSON");
    };
    if state.nodes.contains_key(name) {
        return page(400, &format!("Agent called ‘{name}’ already exists"));
    }
    let text = |key: &str| spec[key].as_str().map(str::to_owned);
    let launcher = spec["launcher"]["stapler-class"]
        .as_str()
        .map(str::to_owned);
    let executors = spec["numExecutors"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .or_else(|| {
            spec["numExecutors"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
        });
    let (Some(remote_fs), Some(mode), Some(launcher), Some(executors)) =
        (text("remoteFS"), text("mode"), launcher, executors)
    else {
        return page(
            400,
            "the node needs remoteFS, mode, numExecutors and a launcher",
        );
    };
    if text("name").as_deref() != Some(name.as_str()) {
        return page(400, "the json's name differs from the form's");
    }
    let ssh = (launcher == "hudson.plugins.sshslaves.SSHLauncher").then(|| {
        let l = &spec["launcher"];
        (
            l["host"].as_str().unwrap_or_default().to_owned(),
            l["port"]
                .as_str()
                .and_then(|p| p.parse().ok())
                .unwrap_or(22),
            l["credentialsId"].as_str().unwrap_or_default().to_owned(),
        )
    });
    if ssh
        .as_ref()
        .is_some_and(|(host, _, cred)| host.is_empty() || cred.is_empty())
    {
        return page(400, "the SSH launcher needs host and credentialsId");
    }
    state.serial += 1;
    let node = SimNode {
        name: name.clone(),
        description: text("nodeDescription").unwrap_or_default(),
        remote_fs,
        labels: text("labelString")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        executors,
        mode,
        launcher,
        ssh,
        online: false,
        offline_cause: String::new(),
        secret: secret_for(name, state.serial),
        form: spec,
    };
    state.nodes.insert(name.clone(), node);
    *state.generations.entry(name.clone()).or_default() += 1;
    redirect("/computer/")
}

fn computer_json(node: &SimNode) -> Value {
    let mut labels: Vec<Value> = node.labels.iter().map(|l| json!({ "name": l })).collect();
    labels.insert(0, json!({ "name": node.name }));
    let jnlp = node.launcher == "hudson.slaves.JNLPLauncher";
    json!({
        "_class": "hudson.slaves.SlaveComputer",
        "actions": [],
        "assignedLabels": labels,
        "description": node.description,
        "displayName": node.name,
        "executors": vec![json!({}); node.executors as usize],
        "icon": if node.online { "symbol-computer" } else { "symbol-computer-offline" },
        "idle": true,
        "jnlpAgent": jnlp,
        "launchSupported": !jnlp,
        "manualLaunchAllowed": true,
        "numExecutors": node.executors,
        "offline": !node.online,
        "offlineCause": if node.online || node.offline_cause.is_empty() { Value::Null } else {
            json!({ "_class": "hudson.slaves.OfflineCause$LaunchFailed" })
        },
        "offlineCauseReason": if node.online { "" } else { node.offline_cause.as_str() },
        "temporarilyOffline": false,
        "absoluteRemotePath": if node.online { Value::from(node.remote_fs.clone()) } else { Value::Null }
    })
}

fn jnlp(base: &str, node: &SimNode) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <jnlp codebase=\"{base}computer/{name}/\" spec=\"1.0+\">\n\
         <information><title>Agent for {name}</title><vendor>Jenkins project</vendor></information>\n\
         <security><all-permissions/></security>\n\
         <resources><j2se version=\"1.8+\"/><jar href=\"{base}jnlpJars/remoting.jar\"/></resources>\n\
         <application-desc main-class=\"hudson.remoting.jnlp.Main\">\
         <argument>{secret}</argument><argument>{name}</argument>\
         <argument>-workDir</argument><argument>{root}</argument>\
         <argument>-internalDir</argument><argument>remoting</argument>\
         <argument>-url</argument><argument>{base}</argument></application-desc>\n</jnlp>\n",
        name = node.name,
        secret = node.secret,
        root = node.remote_fs,
    )
}
