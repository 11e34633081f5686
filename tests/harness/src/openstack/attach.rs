//! Services shared by a whole test run: one process (the harness's `openstack-services`
//! binary, started by `scripts/test`) starts them and writes a JSON description of them;
//! every test process attaches to what the description names instead of starting a set of
//! its own ([`OpenStack::attach`], [`OpenStack::shared`] with [`SERVICES_ENV`]).
//!
//! The description holds everything attaching needs: the run directory (configuration,
//! databases, logs), the ports, the endpoints, RabbitMQ's URL and node, the admin's
//! credentials (so the file is written mode 0600), the ids of the image and the flavor,
//! Cinder's directory and port, and the pid of the process that owns the services.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use serde_json::{Value, json};

use super::cinder::Cinder;
use super::config::{Layout, Ports};
use super::project::Credentials;
use super::rest::request;
use super::{OpenStack, Processes, REGION};
use crate::error::{HarnessError, Result, io};

/// The environment variable naming the description of running services: when it is set,
/// [`OpenStack::shared`] attaches to them instead of starting a set in the test process.
pub const SERVICES_ENV: &str = "GATE_OPENSTACK_SERVICES";

/// The version of the description's layout; attaching refuses any other.
const FORMAT: u64 = 1;

/// Writes the description of `cloud` to `path` once every service answers: to a
/// temporary file beside it (mode 0600: it holds the admin's password), then renamed, so
/// a reader sees the whole file or none.
pub(super) fn write(cloud: &OpenStack, path: &Path) -> Result<()> {
    check_answering(cloud)?;
    let text =
        serde_json::to_string_pretty(&describe(cloud)).map_err(|error| HarnessError::Command {
            command: format!("describing the OpenStack services in {}", path.display()),
            detail: error.to_string(),
        })?;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io(format!("creating {}", parent.display())))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.map_err(io(format!("writing {}", path.display())))
}

/// The description of `cloud`, as [`attach`] reads it.
fn describe(cloud: &OpenStack) -> Value {
    let ports = cloud.layout.ports;
    let endpoint = |service: &str| cloud.endpoint(service).unwrap_or_default();
    let cinder = cloud.cinder.get().and_then(|started| started.as_ref().ok());
    json!({
        "format": FORMAT,
        "pid": std::process::id(),
        "dir": cloud.layout.dir,
        "logs": cloud.log_dir(),
        "venv": cloud.layout.venv,
        "region": REGION,
        "auth_url": cloud.auth_url(),
        "admin": {
            "username": cloud.admin.username,
            "password": cloud.admin.password,
            "user_id": cloud.admin.user_id,
            "project_name": cloud.admin.project_name,
            "project_id": cloud.admin.project_id,
            "domain": "Default",
        },
        "image_id": cloud.image_id,
        "flavor_id": cloud.flavor_id,
        "started_in_secs": cloud.started_in.as_secs_f64(),
        "ports": {
            "epmd": ports.epmd,
            "amqp": ports.amqp,
            "amqp_dist": ports.amqp_dist,
            "keystone": ports.keystone,
            "placement": ports.placement,
            "glance": ports.glance,
            "nova": ports.nova,
            "heat": ports.heat,
            "neutron": ports.neutron,
        },
        "endpoints": {
            "identity": endpoint("identity"),
            "compute": endpoint("compute"),
            "image": endpoint("image"),
            "placement": endpoint("placement"),
            "network": endpoint("network"),
            "orchestration": endpoint("orchestration"),
            "block-storage": cinder.map(|c| c.endpoint("$(project_id)s")),
        },
        "rabbit": {
            "transport_url": cloud.layout.transport_url(),
            "node": format!("gate{}@localhost", ports.amqp),
            "port": ports.amqp,
            "epmd_port": ports.epmd,
        },
        "cinder": cinder.map(|c| json!({
            "dir": c.dir(),
            "logs": c.dir().join("logs"),
            "port": c.port(),
            "started_in_secs": c.started_in().as_secs_f64(),
        })),
    })
}

/// Attaches to the services described in `path` (see [`OpenStack::attach`]).
pub(super) fn attach(path: &Path) -> Result<OpenStack> {
    let failed = |detail: String| HarnessError::Command {
        command: format!(
            "attaching to the OpenStack services described in {}",
            path.display()
        ),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|error| {
        failed(if error.kind() == std::io::ErrorKind::NotFound {
            format!(
                "the file does not exist: the services are not running. Start them with \
                 `target/debug/openstack-services {}` (scripts/test does), or unset \
                 {SERVICES_ENV} to start a set in each test process",
                path.display()
            )
        } else {
            format!("reading it: {error}")
        })
    })?;
    let doc: Value = serde_json::from_str(&text)
        .map_err(|error| failed(format!("not a description of services: {error}")))?;
    let cloud = from_description(&doc).map_err(failed)?;
    let owner = doc["pid"].as_u64().unwrap_or_default();
    if !alive(owner) {
        return Err(failed(format!(
            "the process that started them (pid {owner}) is gone; start them again with \
             `target/debug/openstack-services {}`",
            path.display()
        )));
    }
    check_answering(&cloud).map_err(|error| {
        failed(format!(
            "they do not answer (started by pid {owner}; logs in {}): {error}",
            cloud.log_dir().display()
        ))
    })?;
    Ok(cloud)
}

/// An [`OpenStack`] of the services `doc` describes, owned by another process.
fn from_description(doc: &Value) -> std::result::Result<OpenStack, String> {
    let format = doc["format"].as_u64();
    if format != Some(FORMAT) {
        return Err(format!(
            "format {format:?}, this harness reads format {FORMAT}: rebuild and restart \
             openstack-services"
        ));
    }
    let text = |pointer: &str| {
        doc.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("`{pointer}` is missing"))
    };
    let port = |name: &str| {
        doc["ports"][name]
            .as_u64()
            .and_then(|port| u16::try_from(port).ok())
            .ok_or_else(|| format!("the port of {name} is missing"))
    };
    let seconds = |value: &Value| {
        Duration::try_from_secs_f64(value.as_f64().unwrap_or_default()).unwrap_or_default()
    };
    let layout = Layout {
        dir: PathBuf::from(text("/dir")?),
        venv: PathBuf::from(text("/venv")?),
        ports: Ports {
            epmd: port("epmd")?,
            amqp: port("amqp")?,
            amqp_dist: port("amqp_dist")?,
            keystone: port("keystone")?,
            placement: port("placement")?,
            glance: port("glance")?,
            nova: port("nova")?,
            heat: port("heat")?,
            neutron: port("neutron")?,
        },
        // Only configuration files need it, and they are written.
        service_password: String::new(),
    };
    let admin = Credentials {
        auth_url: layout.auth_url(),
        username: text("/admin/username")?,
        password: text("/admin/password")?,
        user_id: text("/admin/user_id")?,
        project_name: text("/admin/project_name")?,
        project_id: text("/admin/project_id")?,
    };
    let cinder = OnceLock::new();
    let described = match &doc["cinder"] {
        Value::Null => Err("the shared services were started without Cinder".to_owned()),
        described => Ok(Cinder::attached(
            PathBuf::from(text("/cinder/dir")?),
            described["port"]
                .as_u64()
                .and_then(|port| u16::try_from(port).ok())
                .ok_or("the port of Cinder is missing")?,
            seconds(&described["started_in_secs"]),
        )),
    };
    let _ = cinder.set(described);
    Ok(OpenStack {
        layout,
        processes: Processes::Attached,
        admin,
        image_id: text("/image_id")?,
        flavor_id: text("/flavor_id")?,
        started_in: seconds(&doc["started_in_secs"]),
        projects: AtomicUsize::new(0),
        cinder,
    })
}

/// Whether process `pid` exists.
fn alive(pid: u64) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    pid > 0 && !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

/// Fails unless Keystone issues the admin a token, RabbitMQ accepts connections and every
/// API (Cinder's too, when it runs) answers with a status below 500.
fn check_answering(cloud: &OpenStack) -> Result<()> {
    cloud
        .admin
        .session()
        .map_err(|error| HarnessError::Command {
            command: format!("Keystone at {}", cloud.auth_url()),
            detail: format!("no admin token: {error}"),
        })?;
    let amqp = SocketAddr::from(([127, 0, 0, 1], cloud.layout.ports.amqp));
    TcpStream::connect_timeout(&amqp, Duration::from_secs(5))
        .map_err(io(format!("connecting to RabbitMQ on {amqp}")))?;
    let ports = cloud.layout.ports;
    let mut apis = vec![
        ("placement", ports.placement),
        ("glance", ports.glance),
        ("nova-api", ports.nova),
        ("heat-api", ports.heat),
        ("neutron-standin", ports.neutron),
    ];
    if let Some(Ok(cinder)) = cloud.cinder.get() {
        apis.push(("cinder-api", cinder.port()));
    }
    for (service, port) in apis {
        let url = format!("http://127.0.0.1:{port}/");
        let answer = request("GET", &url, &[], None)?;
        if answer.status >= 500 {
            return Err(HarnessError::Command {
                command: format!("GET {url} ({service})"),
                detail: format!("HTTP {}: {}", answer.status, answer.text()),
            });
        }
    }
    Ok(())
}
