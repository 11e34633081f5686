//! Starting one set of services: files, databases, processes, then the cloud's contents
//! (service users, catalog, flavor, image, roles), each step polled with a deadline.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use serde_json::json;

use super::OpenStack;
use super::config::{Layout, Ports, etc};
use super::project::{Credentials, grant, random_hex};
use super::rest::{ApiSession, request};
use super::services::{Supervisor, run_logged};
use super::wait::{not_ready, wait_http, wait_tcp, wait_until, with_logs};
use crate::error::{HarnessError, Result, io};
use crate::tools::require;

const GATE_WSGI: &str = include_str!("../../openstack/gate_wsgi.py");
const NEUTRON_STANDIN: &str = include_str!("../../openstack/neutron_standin.py");
const SITECUSTOMIZE: &str = include_str!("../../openstack/sitecustomize.py");
const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// How long the whole start may take before it is given up.
pub(crate) const START_DEADLINE: Duration = Duration::from_secs(360);

pub(crate) fn start() -> Result<OpenStack> {
    let started = Instant::now();
    let venv = venv_dir();
    if !venv.join("bin").join("gunicorn").exists() || !Path::new(RABBITMQ_SERVER).exists() {
        return Err(HarnessError::Command {
            command: "starting the OpenStack services".into(),
            detail: format!(
                "the virtualenv {} or RabbitMQ is missing: run scripts/openstack-env first",
                venv.display()
            ),
        });
    }
    require("epmd", "erlang-base (with rabbitmq-server)")?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("gate-openstack-{}-", std::process::id()))
        .tempdir_in("/tmp")
        .map_err(io("creating the OpenStack run directory in /tmp"))?
        .keep();
    // From here on the watchdog removes the directory, also if the start fails.
    let supervisor = Supervisor::new(&dir)?;
    let layout = Layout {
        dir,
        venv,
        ports: free_ports()?,
        service_password: random_hex()?,
    };
    let admin_password = random_hex()?;
    match bring_up(&layout, &supervisor, &admin_password) {
        Ok((admin, image_id, flavor_id)) => Ok(OpenStack {
            layout,
            processes: super::Processes::Owned(supervisor),
            admin,
            image_id,
            flavor_id,
            started_in: started.elapsed(),
            projects: AtomicUsize::new(0),
            cinder: std::sync::OnceLock::new(),
        }),
        Err(error) => {
            supervisor.stop(Duration::from_secs(5));
            Err(error)
        }
    }
}

/// `GATE_OPENSTACK_VENV`, else `target/openstack-venv` of the workspace.
fn venv_dir() -> PathBuf {
    match std::env::var_os("GATE_OPENSTACK_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/openstack-venv"),
    }
}

/// Nine free ports on 127.0.0.1, held together while they are picked.
fn free_ports() -> Result<Ports> {
    let listeners = (0..9)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io("picking free ports on 127.0.0.1"))?;
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io("picking free ports on 127.0.0.1"))?;
    Ok(Ports {
        epmd: ports[0],
        amqp: ports[1],
        amqp_dist: ports[2],
        keystone: ports[3],
        placement: ports[4],
        glance: ports[5],
        nova: ports[6],
        heat: ports[7],
        neutron: ports[8],
    })
}

fn bring_up(
    layout: &Layout,
    supervisor: &Supervisor,
    admin_password: &str,
) -> Result<(Credentials, String, String)> {
    let deadline = Instant::now() + START_DEADLINE;
    write_files(layout)?;
    let ports = layout.ports;

    // The broker and the stand-in need nothing else.
    supervisor.spawn(
        "epmd",
        Command::new("epmd").args(["-port", &ports.epmd.to_string(), "-address", "127.0.0.1"]),
    )?;
    let mut rabbit = Command::new(RABBITMQ_SERVER);
    rabbit.envs(layout.rabbit_env());
    supervisor.spawn("rabbitmq", &mut rabbit)?;
    // The stand-in learns a caller's project from Keystone (each token validated with
    // itself), so projects see only their own ports and floating IPs.
    supervisor.spawn(
        "neutron-standin",
        gunicorn(
            layout,
            ports.neutron,
            "neutron_standin",
            "neutron-standin",
            &[],
        )
        .env("GATE_STANDIN_KEYSTONE", layout.auth_url()),
    )?;

    // Databases: Keystone's chain here, the others' on a second thread (two cores).
    std::thread::scope(|scope| -> Result<()> {
        let others = scope.spawn(|| sync_other_databases(layout));
        let keystone = sync_keystone(layout, admin_password);
        let others = others.join().unwrap_or_else(|_| {
            Err(HarnessError::Command {
                command: "database sync".into(),
                detail: "the thread panicked".into(),
            })
        });
        keystone.and(others)
    })?;

    wal_mode(layout)?;

    let keystone_dir = etc(&layout.dir, "keystone");
    supervisor.spawn(
        "keystone",
        gunicorn(layout, ports.keystone, "keystone.wsgi.api", "keystone", &[])
            .env("OS_KEYSTONE_CONFIG_DIR", &keystone_dir)
            .env("OS_KEYSTONE_CONFIG_FILES", "keystone.conf"),
    )?;
    wait_http(supervisor, "keystone", &layout.auth_url(), deadline)?;
    let admin_session = ApiSession::authenticate(
        &layout.auth_url(),
        "admin",
        admin_password,
        "admin",
        "Default",
    )?;
    register_services(layout, &admin_session)?;

    spawn_apis(layout, supervisor)?;
    for (name, command) in [
        ("nova-conductor", "nova-conductor"),
        ("nova-scheduler", "nova-scheduler"),
    ] {
        supervisor.spawn(name, &mut python_service(layout, command, "nova"))?;
    }
    supervisor.spawn(
        "heat-engine",
        &mut python_service(layout, "heat-engine", "heat"),
    )?;
    wait_tcp(supervisor, "rabbitmq", ports.amqp, deadline)?;
    wait_http(
        supervisor,
        "placement",
        &format!("http://127.0.0.1:{}/", ports.placement),
        deadline,
    )?;
    supervisor.spawn(
        "nova-compute",
        &mut python_service(layout, "nova-compute", "nova"),
    )?;
    for (name, url) in [
        (
            "neutron-standin",
            format!("http://127.0.0.1:{}/", ports.neutron),
        ),
        (
            "glance",
            format!("http://127.0.0.1:{}/versions", ports.glance),
        ),
        ("nova-api", format!("http://127.0.0.1:{}/", ports.nova)),
        ("heat-api", format!("http://127.0.0.1:{}/", ports.heat)),
    ] {
        wait_http(supervisor, name, &url, deadline)?;
    }

    // New token: the one before the catalog was filled does not see the endpoints.
    let admin = Credentials {
        auth_url: layout.auth_url(),
        username: "admin".into(),
        password: admin_password.to_owned(),
        user_id: String::new(),
        project_name: "admin".into(),
        project_id: admin_session.project_id().to_owned(),
    };
    let session = admin.session()?;
    let image_id = upload_image(&session)?;
    let flavor = session.post(
        "compute",
        "/flavors",
        &json!({"flavor": {"name": super::FLAVOR_NAME, "ram": 512, "vcpus": 1, "disk": 1}}),
    )?;
    let flavor_id = flavor["flavor"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    wait_compute(layout, supervisor, &session, deadline)?;
    wait_until(supervisor, &["heat-engine", "heat-api"], deadline, || {
        session
            .call("GET", "orchestration", "/build_info", None)
            .ok()
            .filter(|answer| answer.status == 200)
    })
    .map_err(|error| with_logs(error, supervisor, &["heat-engine", "heat-api"]))?;
    Ok((admin, image_id, flavor_id))
}

/// The run directory's layout and files.
fn write_files(layout: &Layout) -> Result<()> {
    for sub in [
        "logs",
        "db",
        "locks",
        "wsgi",
        "keystone/fernet-keys",
        "keystone/credential-keys",
        "glance/images",
        "glance/staging",
        "glance/tasks",
        "glance/cache",
        "nova/instances",
        "rabbitmq/mnesia",
        "rabbitmq/log",
    ] {
        let path = layout.path(sub);
        std::fs::create_dir_all(&path).map_err(io(format!("creating {}", path.display())))?;
    }
    let files: [(PathBuf, String); 11] = [
        (layout.path("wsgi/gate_wsgi.py"), GATE_WSGI.into()),
        (layout.path("pylib/sitecustomize.py"), SITECUSTOMIZE.into()),
        (
            layout.path("wsgi/neutron_standin.py"),
            NEUTRON_STANDIN.into(),
        ),
        (
            etc(&layout.dir, "keystone").join("keystone.conf"),
            layout.keystone_conf(),
        ),
        (
            etc(&layout.dir, "placement").join("placement.conf"),
            layout.placement_conf(),
        ),
        (
            etc(&layout.dir, "glance").join("glance-api.conf"),
            layout.glance_conf(),
        ),
        (
            etc(&layout.dir, "nova").join("nova.conf"),
            layout.nova_conf(),
        ),
        (
            etc(&layout.dir, "heat").join("heat.conf"),
            layout.heat_conf(),
        ),
        (layout.path("rabbitmq/enabled_plugins"), "[].\n".into()),
        (layout.path("rabbitmq/rabbitmq-env.conf"), String::new()),
        (layout.path("rabbitmq/advanced.config"), "[].\n".into()),
    ];
    // Nova's WSGI app reads its paste pipeline from the first file of its config dir.
    let paste = layout.venv.join("etc/nova/api-paste.ini");
    let copy = etc(&layout.dir, "nova").join("api-paste.ini");
    std::fs::create_dir_all(etc(&layout.dir, "nova"))
        .and_then(|()| std::fs::copy(&paste, &copy))
        .map_err(io(format!("copying {}", paste.display())))?;
    for (path, text) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
    }
    Ok(())
}

/// A command of the virtualenv with a clean OpenStack environment and unbuffered output.
fn venv_command(layout: &Layout, program: &str) -> Command {
    let mut command = Command::new(layout.bin(program));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OS_") {
            command.env_remove(key);
        }
    }
    command
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONPATH", layout.path("pylib"))
        .current_dir(&layout.dir);
    command
}

/// gunicorn serving `module` (a WSGI entry point, or the stand-in) on `port`: one worker,
/// a few threads, no control socket.
fn gunicorn(layout: &Layout, port: u16, module: &str, prog: &str, argv: &[&str]) -> Command {
    let mut command = venv_command(layout, "gunicorn");
    command.env("GATE_SQLITE_IMMEDIATE", "1");
    let app = if module == "neutron_standin" {
        "neutron_standin:application".to_owned()
    } else {
        command
            .env("GATE_WSGI_APP", module)
            .env("GATE_WSGI_PROG", prog)
            .env("GATE_WSGI_ARGV", argv.join(" "));
        "gate_wsgi:application".to_owned()
    };
    command
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .args(["--workers", "1", "--threads", "4", "--timeout", "300"])
        .args([
            "--graceful-timeout",
            "5",
            "--no-control-socket",
            "--name",
            prog,
        ])
        .arg("--chdir")
        .arg(layout.path("wsgi"))
        .arg(app);
    command
}

/// A long-running service of the venv with its config file.
fn python_service(layout: &Layout, program: &str, service: &str) -> Command {
    let mut command = venv_command(layout, program);
    command
        .env("GATE_SQLITE_IMMEDIATE", "1")
        .arg("--config-file")
        .arg(etc(&layout.dir, service).join(format!("{service}.conf")));
    command
}

fn spawn_apis(layout: &Layout, supervisor: &Supervisor) -> Result<()> {
    let ports = layout.ports;
    let heat_conf = etc(&layout.dir, "heat").join("heat.conf");
    let heat_conf = heat_conf.display().to_string();
    supervisor.spawn(
        "placement",
        gunicorn(
            layout,
            ports.placement,
            "placement.wsgi.api",
            "placement-api",
            &[],
        )
        .env("OS_PLACEMENT_CONFIG_DIR", etc(&layout.dir, "placement"))
        // Placement alone writes its database, so one request at a time keeps its
        // transactions apart; BEGIN IMMEDIATE would deadlock it, as a claim opens a second
        // connection inside its transaction.
        .env_remove("GATE_SQLITE_IMMEDIATE")
        .args(["--threads", "1"]),
    )?;
    supervisor.spawn(
        "glance",
        gunicorn(layout, ports.glance, "glance.wsgi.api", "glance-api", &[])
            .env("OS_GLANCE_CONFIG_DIR", etc(&layout.dir, "glance")),
    )?;
    supervisor.spawn(
        "nova-api",
        gunicorn(
            layout,
            ports.nova,
            "nova.wsgi.osapi_compute",
            "nova-api",
            &[],
        )
        .env("OS_NOVA_CONFIG_DIR", etc(&layout.dir, "nova")),
    )?;
    supervisor.spawn(
        "heat-api",
        &mut gunicorn(
            layout,
            ports.heat,
            "heat.wsgi.api",
            "heat-api",
            &["--config-file", &heat_conf],
        ),
    )
}

/// A `*-manage` command of the venv with the service's config file.
fn manage(layout: &Layout, program: &str, service: &str, conf: &str, args: &[&str]) -> Command {
    let mut command = venv_command(layout, program);
    command
        .arg("--config-file")
        .arg(etc(&layout.dir, service).join(conf))
        .args(args);
    command
}

fn sync_keystone(layout: &Layout, admin_password: &str) -> Result<()> {
    let ks = |args: &[&str]| manage(layout, "keystone-manage", "keystone", "keystone.conf", args);
    let url = layout.auth_url();
    let owner = ["--keystone-user", "root", "--keystone-group", "root"];
    run_logged(
        &layout.path("logs"),
        "keystone-manage",
        &mut ks(&["db_sync"]),
    )?;
    run_logged(
        &layout.path("logs"),
        "keystone-manage",
        ks(&["fernet_setup"]).args(owner),
    )?;
    run_logged(
        &layout.path("logs"),
        "keystone-manage",
        ks(&["credential_setup"]).args(owner),
    )?;
    run_logged(
        &layout.path("logs"),
        "keystone-manage",
        ks(&["bootstrap", "--bootstrap-password", admin_password])
            .args(["--bootstrap-admin-url", &url])
            .args(["--bootstrap-public-url", &url])
            .args(["--bootstrap-internal-url", &url])
            .args(["--bootstrap-region-id", super::REGION]),
    )
}

fn sync_other_databases(layout: &Layout) -> Result<()> {
    let nova = |args: &[&str]| manage(layout, "nova-manage", "nova", "nova.conf", args);
    let cell0 = layout.sqlite("nova_cell0.sqlite");
    run_logged(
        &layout.path("logs"),
        "placement-manage",
        &mut manage(
            layout,
            "placement-manage",
            "placement",
            "placement.conf",
            &["db", "sync"],
        ),
    )?;
    run_logged(
        &layout.path("logs"),
        "nova-manage",
        &mut nova(&["api_db", "sync"]),
    )?;
    run_logged(
        &layout.path("logs"),
        "nova-manage",
        &mut nova(&["cell_v2", "map_cell0", "--database_connection", &cell0]),
    )?;
    run_logged(
        &layout.path("logs"),
        "nova-manage",
        &mut nova(&["cell_v2", "create_cell", "--name", "cell1"]),
    )?;
    run_logged(
        &layout.path("logs"),
        "nova-manage",
        &mut nova(&["db", "sync"]),
    )?;
    run_logged(
        &layout.path("logs"),
        "glance-manage",
        &mut manage(
            layout,
            "glance-manage",
            "glance",
            "glance-api.conf",
            &["db_sync"],
        ),
    )?;
    run_logged(
        &layout.path("logs"),
        "heat-manage",
        &mut manage(layout, "heat-manage", "heat", "heat.conf", &["db_sync"]),
    )
}

/// Puts every database in WAL mode (kept in the file), so that the many readers of Nova's
/// and Heat's processes do not block its writer, nor it them.
fn wal_mode(layout: &Layout) -> Result<()> {
    let dir = layout.path("db");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(io(format!("listing {}", dir.display())))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "sqlite"))
        .collect();
    run_logged(
        &layout.path("logs"),
        "sqlite-wal",
        venv_command(layout, "python3")
            .args([
                "-c",
                "import sqlite3, sys\n\
                 for p in sys.argv[1:]:\n    \
                 sqlite3.connect(p).execute('PRAGMA journal_mode=WAL').fetchall()",
            ])
            .args(&files),
    )
}

/// The service project and users, the roles, and the catalog.
fn register_services(layout: &Layout, admin: &ApiSession) -> Result<()> {
    let project = admin.post(
        "identity",
        "/projects",
        &json!({"project": {"name": "service", "domain_id": "default"}}),
    )?;
    let service_project = project["project"]["id"].as_str().unwrap_or_default();
    // Keystone's bootstrap makes `service` too (with admin, manager, member, reader).
    for role in ["service", "heat_stack_owner", "heat_stack_user"] {
        let found = admin.get("identity", &format!("/roles?name={role}"))?;
        if found["roles"].as_array().is_none_or(Vec::is_empty) {
            admin.post("identity", "/roles", &json!({"role": {"name": role}}))?;
        }
    }
    for user in ["nova", "placement", "glance", "heat"] {
        let made = admin.post(
            "identity",
            "/users",
            &json!({"user": {"name": user, "password": layout.service_password,
                     "domain_id": "default"}}),
        )?;
        let user_id = made["user"]["id"].as_str().unwrap_or_default();
        for role in ["admin", "service"] {
            grant(admin, service_project, user_id, role)?;
        }
    }
    let ports = layout.ports;
    let url = |port: u16, path: &str| format!("http://127.0.0.1:{port}{path}");
    for (kind, name, endpoint) in [
        ("compute", "nova", url(ports.nova, "/v2.1")),
        ("placement", "placement", url(ports.placement, "")),
        ("image", "glance", url(ports.glance, "")),
        ("network", "neutron", url(ports.neutron, "")),
        (
            "orchestration",
            "heat",
            url(ports.heat, "/v1/$(project_id)s"),
        ),
    ] {
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
                         "url": endpoint, "region_id": super::REGION}}),
            )?;
        }
    }
    Ok(())
}

/// Uploads the tiny public image; gives its id once it is `active`.
fn upload_image(session: &ApiSession) -> Result<String> {
    let image = session.post(
        "image",
        "/v2/images",
        &json!({"name": super::IMAGE_NAME, "disk_format": "raw", "container_format": "bare",
                 "visibility": "public"}),
    )?;
    let id = image["id"].as_str().unwrap_or_default().to_owned();
    let url = format!("{}/v2/images/{id}/file", session.endpoint("image")?);
    let data = b"gate test image: the fake virt driver never reads it\n".repeat(20);
    let answer = request(
        "PUT",
        &url,
        &[("X-Auth-Token", session.token())],
        Some(("application/octet-stream", &data)),
    )?;
    if answer.status != 204 {
        return Err(HarnessError::Command {
            command: format!("PUT {url}"),
            detail: format!("HTTP {}: {}", answer.status, answer.text()),
        });
    }
    Ok(id)
}

/// Waits until every Nova service is up and the compute host is in cell1.
fn wait_compute(
    layout: &Layout,
    supervisor: &Supervisor,
    session: &ApiSession,
    deadline: Instant,
) -> Result<()> {
    let nova = [
        "nova-compute",
        "nova-conductor",
        "nova-scheduler",
        "nova-api",
    ];
    wait_until(supervisor, &nova, deadline, || {
        let services = session.get("compute", "/os-services").ok()?;
        let up = |binary: &str| {
            services["services"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|service| service["binary"] == binary && service["state"] == "up")
        };
        (up("nova-compute") && up("nova-conductor") && up("nova-scheduler")).then_some(())
    })
    .map_err(|error| with_logs(error, supervisor, &nova))?;
    // Map the compute host to cell1 (the hypervisor API shows mapped hosts only);
    // --strict fails until the compute node is there to map.
    let mut last = None;
    while Instant::now() < deadline {
        supervisor.check_alive("nova-compute")?;
        match run_logged(
            &layout.path("logs"),
            "nova-manage",
            // The services run by now: write as they do (see sitecustomize.py).
            manage(
                layout,
                "nova-manage",
                "nova",
                "nova.conf",
                &["cell_v2", "discover_hosts", "--strict"],
            )
            .env("GATE_SQLITE_IMMEDIATE", "1"),
        ) {
            Ok(()) => return Ok(()),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| not_ready("nova cell_v2 discover_hosts", "deadline passed")))
}
