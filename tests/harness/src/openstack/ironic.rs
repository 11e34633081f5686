//! A real standalone Ironic on 127.0.0.1 for tests: Ironic from the pinned virtualenv
//! (`scripts/ironic-env`), its `fake-hardware` type, sqlite, the API under gunicorn
//! (`auth_strategy = noauth`, and a second API with `http_basic`) and one conductor,
//! talking JSON-RPC (no RabbitMQ). No Keystone: standalone Ironic is often run so.

mod conf;
mod join;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::project::random_hex;
use super::rest::{HttpResponse, request};
use super::services::{Supervisor, log_tail};
use super::wait::{wait_http, wait_until, with_logs};
use crate::error::{HarnessError, Result, io};

pub use join::{IronicJoin, JoinedNode};

/// The microversion of the harness's own calls (node fields such as `automated_clean`).
pub const IRONIC_API_VERSION: &str = "1.78";
/// The user of the `http_basic` API ([`Ironic::basic_endpoint`]).
pub const BASIC_USER: &str = "gate";

/// One real standalone Ironic on 127.0.0.1: the API (noauth) and a second API with HTTP
/// basic auth, both over one conductor and one sqlite database; nodes of the
/// `fake-hardware` type that a test enrolls ([`enroll`](Self::enroll)) with a resource
/// class of its own ([`resource_class`](Self::resource_class)), so tests sharing one
/// Ironic never take each other's nodes.
///
/// Real: the API, the provision state machine (`available` → `deploying` → `active`,
/// `deleted` → `cleaning` → `available`), the node's claim (`instance_uuid`, 409 for a
/// second one), the config drive kept with the node, 404/409/400 answers. Faked by Ironic's own fake interfaces: the
/// hardware (power, boot, deploy do nothing). A deploy that really fails:
/// [`enroll_failing`](Self::enroll_failing).
///
/// ```no_run
/// use gate_test_harness::openstack::Ironic;
///
/// let ironic = Ironic::shared()?;
/// let class = ironic.resource_class("doc");
/// ironic.enroll("doc-node-1", &class)?;
/// let node = ironic.node("doc-node-1")?.unwrap();
/// assert_eq!(node["provision_state"], "available");
/// # Ok::<(), gate_test_harness::HarnessError>(())
/// ```
#[derive(Debug)]
pub struct Ironic {
    layout: conf::Layout,
    supervisor: Supervisor,
    classes: AtomicUsize,
    started_in: Duration,
}

impl Ironic {
    /// Starts an Ironic of its own (10–20 s), stopped on drop. Fails with "run
    /// scripts/ironic-env first" when the virtualenv is missing, and with the service's
    /// log when a service does not come up.
    pub fn start() -> Result<Ironic> {
        let started = Instant::now();
        let venv = venv_dir();
        if !venv.join("bin/ironic-conductor").exists() {
            return Err(HarnessError::Command {
                command: "starting Ironic".into(),
                detail: format!(
                    "the virtualenv {} is missing: run scripts/ironic-env first",
                    venv.display()
                ),
            });
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("gate-ironic-{}-", std::process::id()))
            .tempdir_in("/tmp")
            .map_err(io("creating the Ironic run directory in /tmp"))?
            .keep();
        // From here on the watchdog removes the directory, also if the start fails.
        let supervisor = Supervisor::new(&dir)?;
        let layout = conf::Layout::new(dir, venv, random_hex()?)?;
        match bring_up(&layout, &supervisor) {
            Ok(()) => Ok(Ironic {
                layout,
                supervisor,
                classes: AtomicUsize::new(0),
                started_in: started.elapsed(),
            }),
            Err(error) => {
                supervisor.stop(Duration::from_secs(5));
                Err(error)
            }
        }
    }

    /// The Ironic shared by every test of this test process, started by the first caller
    /// and stopped when the process exits (by the watchdog).
    pub fn shared() -> Result<&'static Ironic> {
        static SHARED: OnceLock<std::result::Result<Ironic, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Ironic::start().map_err(|error| error.to_string()))
            .as_ref()
            .map_err(|detail| HarnessError::Command {
                command: "starting the shared Ironic".into(),
                detail: detail.clone(),
            })
    }

    /// The API without authentication: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.layout.ports.api)
    }

    /// The API with HTTP basic auth ([`BASIC_USER`], [`basic_password`](Self::basic_password)),
    /// over the same conductor and nodes.
    pub fn basic_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.layout.ports.basic)
    }

    /// The password of [`BASIC_USER`] on the `http_basic` API.
    pub fn basic_password(&self) -> &str {
        &self.layout.basic_password
    }

    /// A resource class no other test uses: `gate-test-<label>-<pid>-<n>`.
    pub fn resource_class(&self, label: &str) -> String {
        let n = self.classes.fetch_add(1, Ordering::SeqCst) + 1;
        format!("gate-test-{label}-{}-{n}", std::process::id())
    }

    /// Enrolls a `fake-hardware` node `name` of `resource_class` and brings it to
    /// `available` (manage, then provide, through cleaning); gives its UUID.
    pub fn enroll(&self, name: &str, resource_class: &str) -> Result<String> {
        self.enroll_with(name, resource_class, &json!({}))
    }

    /// Like [`enroll`](Self::enroll), but every deploy of the node really fails in the
    /// conductor: its deploy interface is `custom-agent`, which cannot find the Ironic API
    /// URL an agent would call back (`deploy failed`, with a `last_error` saying so).
    /// Automated cleaning is off for it (cleaning would fail the same way).
    pub fn enroll_failing(&self, name: &str, resource_class: &str) -> Result<String> {
        let fields = json!({"deploy_interface": "custom-agent", "automated_clean": false});
        self.enroll_with(name, resource_class, &fields)
    }

    fn enroll_with(&self, name: &str, resource_class: &str, fields: &Value) -> Result<String> {
        let mut body = json!({"name": name, "driver": "fake-hardware",
                              "resource_class": resource_class});
        if let (Some(body), Some(fields)) = (body.as_object_mut(), fields.as_object()) {
            body.extend(fields.clone());
        }
        let node = self.call_ok("POST", "/nodes", Some(&body))?;
        let uuid = node["uuid"].as_str().unwrap_or_default().to_owned();
        for (target, state) in [("manage", "manageable"), ("provide", "available")] {
            self.call_ok(
                "PUT",
                &format!("/nodes/{uuid}/states/provision"),
                Some(&json!({ "target": target })),
            )?;
            self.wait_state(&uuid, state, Duration::from_secs(60))?;
        }
        Ok(uuid)
    }

    /// Sends `method path` (below `/v1`) to the noauth API with the harness's microversion.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<HttpResponse> {
        let url = format!("{}/v1{path}", self.endpoint());
        let text = body.map(Value::to_string);
        request(
            method,
            &url,
            &[("X-OpenStack-Ironic-API-Version", IRONIC_API_VERSION)],
            text.as_deref()
                .map(|text| ("application/json", text.as_bytes())),
        )
    }

    /// Like [`call`](Self::call), but fails unless the status is 2xx; gives the JSON body.
    pub fn call_ok(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let answer = self.call(method, path, body)?;
        if (200..300).contains(&answer.status) {
            Ok(answer.json())
        } else {
            Err(HarnessError::Command {
                command: format!("{method} ironic {path}"),
                detail: format!("HTTP {}: {}", answer.status, answer.text()),
            })
        }
    }

    /// Node `id` (name or UUID) as the API shows it, `None` when it does not exist.
    pub fn node(&self, id: &str) -> Result<Option<Value>> {
        let answer = self.call("GET", &format!("/nodes/{id}"), None)?;
        match answer.status {
            200 => Ok(Some(answer.json())),
            404 => Ok(None),
            status => Err(HarnessError::Command {
                command: format!("GET ironic /nodes/{id}"),
                detail: format!("HTTP {status}: {}", answer.text()),
            }),
        }
    }

    /// Every node of `resource_class`, in full.
    pub fn nodes(&self, resource_class: &str) -> Result<Vec<Value>> {
        let list = self.call_ok(
            "GET",
            &format!("/nodes/detail?resource_class={resource_class}"),
            None,
        )?;
        Ok(list["nodes"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until node `id` is in provision state `state` with nothing pending; gives it.
    pub fn wait_state(&self, id: &str, state: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let node = self.node(id)?.unwrap_or(Value::Null);
            if node["provision_state"] == state && node["target_provision_state"].is_null() {
                return Ok(node);
            }
            if Instant::now() > deadline {
                return Err(HarnessError::NotReady {
                    host: format!("Ironic node {id}"),
                    seconds: timeout.as_secs(),
                    detail: format!(
                        "not `{state}`: it is `{}` (target {}), last_error {}",
                        node["provision_state"], node["target_provision_state"], node["last_error"]
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The config drive node `id` holds (`instance_info/configdrive`, shown by this
    /// Ironic's policy): the JSON object gate sent (`meta_data`, `user_data`), kept as is
    /// until a real deploy interface writes it as an ISO image.
    pub fn config_drive(&self, id: &str) -> Result<Option<Value>> {
        Ok(self
            .node(id)?
            .map(|node| node["instance_info"]["configdrive"].clone())
            .filter(|drive| !drive.is_null()))
    }

    /// Plays cloud-init for the nodes of `resource_class`: each node that becomes `active`
    /// gets a free host of `fleet`, the SSH keys of its config drive appended to that
    /// host's `/root/.ssh/authorized_keys`, then the host's address as the node's
    /// `instance_info/address` (Ironic drops it at the undeploy). A node that leaves
    /// `active` gives its host back its own keys. Stops on drop of the guard.
    pub fn join_nodes_to<'a>(
        &'a self,
        fleet: &'a crate::SshFleet,
        resource_class: &str,
    ) -> Result<IronicJoin<'a>> {
        join::start(self, fleet, resource_class)
    }

    /// The log of `ironic-api`, `ironic-api-basic`, `ironic-conductor` or `ironic-dbsync`.
    pub fn log(&self, service: &str) -> String {
        std::fs::read_to_string(self.supervisor.log_of(service)).unwrap_or_default()
    }

    /// How long the start took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The run directory (configuration, database, logs).
    pub fn dir(&self) -> &Path {
        &self.layout.dir
    }
}

impl Drop for Ironic {
    fn drop(&mut self) {
        self.supervisor.stop(Duration::from_secs(15));
    }
}

/// `GATE_IRONIC_VENV`, else `target/ironic-venv` of the workspace.
fn venv_dir() -> PathBuf {
    match std::env::var_os("GATE_IRONIC_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ironic-venv"),
    }
}

/// Files, schema, the conductor and both APIs, each polled with a deadline.
fn bring_up(layout: &conf::Layout, supervisor: &Supervisor) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(240);
    layout.write_files()?;
    let dbsync = layout.path("logs/ironic-dbsync.log");
    let out =
        std::fs::File::create(&dbsync).map_err(io(format!("creating {}", dbsync.display())))?;
    let err = out.try_clone().map_err(io("opening the dbsync log"))?;
    let mut sync = layout.command("ironic-dbsync");
    sync.arg("--config-file")
        .arg(layout.conf())
        .arg("create_schema")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let status = sync.status().map_err(io("running ironic-dbsync"))?;
    if !status.success() {
        return Err(HarnessError::Command {
            command: "ironic-dbsync create_schema".into(),
            detail: format!("{status}; {}", log_tail(&dbsync, 40)),
        });
    }
    layout.wal_mode()?;
    let mut conductor = layout.command("ironic-conductor");
    conductor
        .env("GATE_SQLITE_IMMEDIATE", "1")
        .arg("--config-file")
        .arg(layout.conf());
    supervisor.spawn("ironic-conductor", &mut conductor)?;
    let ports = layout.ports;
    supervisor.spawn(
        "ironic-api",
        &mut layout.gunicorn(ports.api, "ironic-api", &layout.conf()),
    )?;
    supervisor.spawn(
        "ironic-api-basic",
        &mut layout.gunicorn(ports.basic, "ironic-api-basic", &layout.basic_conf()),
    )?;
    for (name, port) in [("ironic-api", ports.api), ("ironic-api-basic", ports.basic)] {
        wait_http(
            supervisor,
            name,
            &format!("http://127.0.0.1:{port}/"),
            deadline,
        )?;
    }
    let url = format!("http://127.0.0.1:{}/v1/conductors", ports.api);
    wait_until(supervisor, &["ironic-conductor"], deadline, || {
        let answer = request(
            "GET",
            &url,
            &[("X-OpenStack-Ironic-API-Version", IRONIC_API_VERSION)],
            None,
        )
        .ok()?;
        let alive = answer.json()["conductors"]
            .as_array()
            .is_some_and(|all| all.iter().any(|c| c["alive"] == true));
        alive.then_some(())
    })
    .map_err(|error| with_logs(error, supervisor, &["ironic-conductor", "ironic-api"]))
}
