//! A real Cinder for a set of services, started on demand ([`super::OpenStack::cinder`]):
//! cinder-api (WSGI under gunicorn), cinder-scheduler and cinder-volume from their own
//! pinned virtualenv (`scripts/cinder-env`), on sqlite, over the set's RabbitMQ and
//! Keystone, with the fake volume driver Cinder ships for its own tests
//! (`cinder.tests.fake_driver.FakeLoggingVolumeDriver`: no LVM, no iSCSI).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use super::config::Layout as CloudLayout;
use super::project::{Credentials, grant, random_hex};
use super::rest::ApiSession;
use super::services::{Supervisor, run_logged};
use super::wait::{wait_http, wait_until, with_logs};
use crate::error::{HarnessError, Result, io};

const GATE_WSGI: &str = include_str!("../../openstack/gate_wsgi.py");
const SITECUSTOMIZE: &str = include_str!("../../openstack/sitecustomize.py");

/// The fake driver of Cinder's own tests: volumes are rows only, nothing on a disk.
pub const FAKE_DRIVER: &str = "cinder.tests.fake_driver.FakeLoggingVolumeDriver";
/// The backend name (and pool) of the fake driver: volumes land on `gate-cinder@fake#fake`.
pub const BACKEND: &str = "fake";
/// The catalog types Cinder is registered under (both, as many clouds do).
pub const CATALOG_TYPES: [&str; 2] = ["block-storage", "volumev3"];
/// How long a start may take before it is given up.
const DEADLINE: Duration = Duration::from_secs(180);

/// A real Cinder beside one set of services: the API, one scheduler and one volume service
/// (the fake driver), on sqlite, in the set's Keystone catalog as `block-storage` and
/// `volumev3` (`http://127.0.0.1:PORT/v3/$(project_id)s`), its service user `cinder`.
///
/// Real: the API, quotas, the scheduler's choice of backend, the volume state machine
/// (`creating` → `available`, `deleting` → gone, `error` when the driver fails), metadata
/// and filters. Faked by Cinder's own fake driver: the storage (a volume is a row).
///
/// Started once per [`OpenStack`](super::OpenStack) by its
/// [`cinder`](super::OpenStack::cinder), stopped with it, and by the watchdog when the
/// test process dies. The Cinder of attached services (see
/// [`OpenStack::attach`](super::OpenStack::attach)) belongs to the process that started
/// it: it is left running.
#[derive(Debug)]
pub struct Cinder {
    dir: PathBuf,
    port: u16,
    /// `None` when another process started it.
    supervisor: Option<Supervisor>,
    started_in: Duration,
}

impl Cinder {
    /// Starts Cinder for the set whose layout and admin are given, and registers it in
    /// the set's catalog.
    pub(crate) fn start(cloud: &CloudLayout, admin: &Credentials) -> Result<Cinder> {
        let started = Instant::now();
        let venv = venv_dir();
        if !venv.join("bin/cinder-volume").exists() {
            return Err(HarnessError::Command {
                command: "starting Cinder".into(),
                detail: format!(
                    "the virtualenv {} is missing: run scripts/cinder-env first",
                    venv.display()
                ),
            });
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("gate-cinder-{}-", std::process::id()))
            .tempdir_in("/tmp")
            .map_err(io("creating the Cinder run directory in /tmp"))?
            .keep();
        // From here on the watchdog removes the directory, also if the start fails.
        let supervisor = Supervisor::new(&dir)?;
        let port = free_port()?;
        let setup = Setup {
            dir: dir.clone(),
            venv,
            port,
            password: random_hex()?,
            cloud,
        };
        match setup.bring_up(&supervisor, admin) {
            Ok(()) => Ok(Cinder {
                dir,
                port,
                supervisor: Some(supervisor),
                started_in: started.elapsed(),
            }),
            Err(error) => {
                supervisor.stop(Duration::from_secs(5));
                Err(error)
            }
        }
    }

    /// The Cinder another process started and keeps running, in run directory `dir`,
    /// its API on `port`: never stopped from here.
    pub(crate) fn attached(dir: PathBuf, port: u16, started_in: Duration) -> Cinder {
        Cinder {
            dir,
            port,
            supervisor: None,
            started_in,
        }
    }

    /// The API's root for a project: `http://127.0.0.1:PORT/v3/<project_id>`.
    pub fn endpoint(&self, project_id: &str) -> String {
        format!("http://127.0.0.1:{}/v3/{project_id}", self.port)
    }

    /// The API's port on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The log of `cinder-api`, `cinder-scheduler`, `cinder-volume` or `cinder-manage`.
    pub fn log(&self, service: &str) -> String {
        let path = self.dir.join("logs").join(format!("{service}.log"));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// How long the start took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The run directory (configuration, database, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Cinder {
    fn drop(&mut self) {
        if let Some(supervisor) = &self.supervisor {
            supervisor.stop(Duration::from_secs(15));
        }
    }
}

/// `GATE_CINDER_VENV`, else `target/cinder-venv` of the workspace.
fn venv_dir() -> PathBuf {
    match std::env::var_os("GATE_CINDER_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/cinder-venv"),
    }
}

fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io("picking a free port on 127.0.0.1"))
}

/// What one start needs.
struct Setup<'a> {
    dir: PathBuf,
    venv: PathBuf,
    port: u16,
    password: String,
    cloud: &'a CloudLayout,
}

impl Setup<'_> {
    fn path(&self, sub: &str) -> PathBuf {
        self.dir.join(sub)
    }

    fn conf(&self) -> PathBuf {
        self.path("etc/cinder/cinder.conf")
    }

    fn db(&self) -> PathBuf {
        self.path("db/cinder.sqlite")
    }

    /// `cinder.conf`: one backend with the fake driver, sqlite, the set's RabbitMQ and
    /// Keystone; intervals short, so the scheduler hears of the backend within seconds.
    fn cinder_conf(&self) -> String {
        format!(
            "[DEFAULT]\n\
             debug = false\n\
             transport_url = {transport}\n\
             host = gate-cinder\n\
             my_ip = 127.0.0.1\n\
             state_path = {state}\n\
             auth_strategy = keystone\n\
             api_paste_config = {paste}\n\
             osapi_volume_listen = 127.0.0.1\n\
             osapi_volume_listen_port = {port}\n\
             enabled_backends = {BACKEND}\n\
             report_interval = 2\n\
             periodic_interval = 5\n\
             scheduler_driver_init_wait_time = 20\n\
             [database]\n\
             connection = sqlite:///{db}?timeout=60\n\
             sqlite_synchronous = false\n\
             [{BACKEND}]\n\
             volume_driver = {FAKE_DRIVER}\n\
             volume_backend_name = {BACKEND}\n\
             [oslo_concurrency]\n\
             lock_path = {locks}\n\
             [coordination]\n\
             backend_url = file://{locks}\n\
             [keystone_authtoken]\n\
             auth_type = password\n\
             auth_url = {auth}\n\
             www_authenticate_uri = {auth}\n\
             project_domain_name = Default\n\
             user_domain_name = Default\n\
             project_name = service\n\
             username = cinder\n\
             password = {password}\n\
             region_name = {region}\n",
            transport = self.cloud.transport_url(),
            state = self.path("state").display(),
            paste = self.venv.join("etc/cinder/api-paste.ini").display(),
            port = self.port,
            db = self.db().display(),
            locks = self.path("locks").display(),
            auth = self.cloud.auth_url(),
            password = self.password,
            region = super::REGION,
        )
    }

    fn write_files(&self) -> Result<()> {
        for sub in [
            "logs",
            "db",
            "locks",
            "state",
            "wsgi",
            "pylib",
            "etc/cinder",
        ] {
            let path = self.path(sub);
            std::fs::create_dir_all(&path).map_err(io(format!("creating {}", path.display())))?;
        }
        for (path, text) in [
            (self.path("wsgi/gate_wsgi.py"), GATE_WSGI.to_owned()),
            (
                self.path("pylib/sitecustomize.py"),
                SITECUSTOMIZE.to_owned(),
            ),
            (self.conf(), self.cinder_conf()),
        ] {
            std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
        }
        Ok(())
    }

    /// A program of the venv with a clean OpenStack environment, unbuffered output and
    /// the harness's `sitecustomize.py`.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.venv.join("bin").join(program));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OS_") {
                command.env_remove(key);
            }
        }
        command
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONPATH", self.path("pylib"))
            .current_dir(&self.dir);
        command
    }

    /// A long-running service: its config, transactions begun with `BEGIN IMMEDIATE`.
    fn service(&self, program: &str) -> Command {
        let mut command = self.command(program);
        command
            .env("GATE_SQLITE_IMMEDIATE", "1")
            .arg("--config-file")
            .arg(self.conf());
        command
    }

    /// gunicorn serving `cinder.wsgi.api`: one worker, a few threads.
    fn gunicorn(&self) -> Command {
        let mut command = self.command("gunicorn");
        command
            .env("GATE_SQLITE_IMMEDIATE", "1")
            .env("GATE_WSGI_APP", "cinder.wsgi.api")
            .env("GATE_WSGI_PROG", "cinder-api")
            .env(
                "GATE_WSGI_ARGV",
                format!("--config-file {}", self.conf().display()),
            )
            .args(["--bind", &format!("127.0.0.1:{}", self.port)])
            .args(["--workers", "1", "--threads", "4", "--timeout", "300"])
            .args(["--graceful-timeout", "5", "--no-control-socket"])
            .args(["--name", "cinder-api", "--chdir"])
            .arg(self.path("wsgi"))
            .arg("gate_wsgi:application");
        command
    }

    /// The service user and both catalog entries, made by the set's admin.
    fn register(&self, admin: &ApiSession) -> Result<()> {
        let projects = admin.get("identity", "/projects?name=service")?;
        let service_project = projects["projects"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let made = admin.post(
            "identity",
            "/users",
            &json!({"user": {"name": "cinder", "password": self.password,
                     "domain_id": "default"}}),
        )?;
        let user_id = made["user"]["id"].as_str().unwrap_or_default();
        for role in ["admin", "service"] {
            grant(admin, &service_project, user_id, role)?;
        }
        let url = format!("http://127.0.0.1:{}/v3/$(project_id)s", self.port);
        for (kind, name) in CATALOG_TYPES.iter().zip(["cinder", "cinderv3"]) {
            let service = admin.post(
                "identity",
                "/services",
                &json!({"service": {"type": kind, "name": name}}),
            )?;
            let service_id = service["service"]["id"].as_str().unwrap_or_default();
            for interface in ["public", "internal"] {
                admin.post(
                    "identity",
                    "/endpoints",
                    &json!({"endpoint": {"service_id": service_id, "interface": interface,
                             "url": url, "region_id": super::REGION}}),
                )?;
            }
        }
        Ok(())
    }

    /// Files, schema, the three services, the catalog; then waits until the scheduler
    /// knows the fake backend's pool (only then does a volume create find a backend).
    fn bring_up(&self, supervisor: &Supervisor, admin: &Credentials) -> Result<()> {
        let deadline = Instant::now() + DEADLINE;
        self.write_files()?;
        let mut sync = self.command("cinder-manage");
        sync.arg("--config-file")
            .arg(self.conf())
            .args(["db", "sync"]);
        run_logged(&self.path("logs"), "cinder-manage", &mut sync)?;
        let mut wal = self.command("python3");
        wal.args([
            "-c",
            "import sqlite3, sys\n\
             sqlite3.connect(sys.argv[1]).execute('PRAGMA journal_mode=WAL').fetchall()",
        ])
        .arg(self.db());
        run_logged(&self.path("logs"), "sqlite-wal", &mut wal)?;
        supervisor.spawn("cinder-scheduler", &mut self.service("cinder-scheduler"))?;
        supervisor.spawn("cinder-volume", &mut self.service("cinder-volume"))?;
        supervisor.spawn("cinder-api", &mut self.gunicorn())?;
        self.register(&admin.session()?)?;
        wait_http(
            supervisor,
            "cinder-api",
            &format!("http://127.0.0.1:{}/", self.port),
            deadline,
        )?;
        // A token issued after the catalog has Cinder.
        let session = admin.session()?;
        let all = ["cinder-api", "cinder-scheduler", "cinder-volume"];
        wait_until(supervisor, &all, deadline, || {
            let answer = session
                .call("GET", "block-storage", "/scheduler-stats/get_pools", None)
                .ok()?;
            let pools = answer.json()["pools"].as_array().map_or(0, Vec::len);
            (answer.status == 200 && pools > 0).then_some(())
        })
        .map_err(|error| with_logs(error, supervisor, &all))
    }
}
