//! Real OpenStack services on 127.0.0.1 for tests: Keystone, Nova (fake virt driver),
//! Placement, Glance and Heat from the pinned virtualenv (`scripts/openstack-env`), on
//! sqlite, with RabbitMQ from Debian, plus the one stand-in, a small Neutron API (reads, ports and floating IPs).

mod attach;
mod cinder;
mod config;
mod ironic;
mod join;
mod project;
mod proxy;
mod region;
mod rest;
mod services;
mod start;
mod wait;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::error::{HarnessError, Result};

pub use attach::SERVICES_ENV;
pub use cinder::Cinder;
pub use ironic::{Ironic, IronicJoin, JoinedNode};
pub use join::{FloatingNetwork, JoinGuard, Joined};
pub use project::Credentials;
pub use proxy::{FaultProxy, Faults, Hold, Rewrite, Seen};
pub use rest::{ApiSession, HttpResponse};

/// The name of the tiny public image every set of services has.
pub const IMAGE_NAME: &str = "gate-tiny";
/// The name of the public flavor every set of services has (1 vCPU, 512 MiB, 1 GB).
pub const FLAVOR_NAME: &str = "gate.small";
/// The one region.
pub const REGION: &str = "RegionOne";

/// One set of real OpenStack services on 127.0.0.1, each on a port of its own:
///
/// - RabbitMQ (Debian's, its own `epmd`; loopback only),
/// - Keystone (fernet tokens; `admin` in project `admin`; public and internal endpoints),
/// - Placement, Glance (file store, with the public image [`IMAGE_NAME`]),
/// - Nova: API, conductor, scheduler and one compute with `fake.FakeDriver` (1000 vCPUs,
///   800 GB RAM: tens of servers fit), cell0 and cell1, hosts discovered; the public
///   flavor [`FLAVOR_NAME`]; default quotas 50 instances, 100 cores, 200 GiB RAM,
/// - Heat: API and one engine worker, roles `heat_stack_owner` and `heat_stack_user`,
/// - the one stand-in: a small Neutron API (version document, empty collections, quotas;
///   a port per server, external networks and floating IPs), so servers boot with
///   `networks: "none"` (compute microversion ≥ 2.37).
///
/// Each service runs in a process group of its own, logs under [`log_dir`](Self::log_dir);
/// everything is stopped and removed on drop, and by a watchdog process when the test
/// process dies (even by SIGKILL). A test gets a project of its own with
/// [`project`](Self::project), so tests never see each other's servers.
///
/// Most tests share one set through [`shared`](Self::shared): one set per test run when
/// [`SERVICES_ENV`] names the description of running services (`scripts/test` starts them
/// with the harness's `openstack-services` binary), else one set per test process; two
/// test binaries running at once without it each get their own set, on other ports.
///
/// ```no_run
/// use gate_test_harness::OpenStack;
///
/// let cloud = OpenStack::shared()?;
/// let creds = cloud.project("boot")?;
/// let session = creds.session()?;
/// let servers = session.get("compute", "/servers")?;
/// assert_eq!(servers["servers"].as_array().map(Vec::len), Some(0));
/// std::fs::write("clouds.yaml", creds.clouds_yaml("gate-test"))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct OpenStack {
    layout: config::Layout,
    processes: Processes,
    admin: Credentials,
    image_id: String,
    flavor_id: String,
    started_in: Duration,
    projects: AtomicUsize,
    /// Cinder, once [`cinder`](Self::cinder) started it (or failed to).
    cinder: OnceLock<std::result::Result<Cinder, String>>,
}

/// Who runs the service processes of a set.
#[derive(Debug)]
enum Processes {
    /// This process started them: they are stopped on drop.
    Owned(services::Supervisor),
    /// Another process did (see [`OpenStack::attach`]): they outlive this one.
    Attached,
}

impl OpenStack {
    /// Starts a set of services of its own (about a minute), stopped on drop. Fails with
    /// "run scripts/openstack-env first" when the virtualenv or RabbitMQ is missing, and
    /// with the service's log when a service does not come up.
    pub fn start() -> Result<OpenStack> {
        start::start()
    }

    /// Attaches to the running services described in `path`, as
    /// [`write_description`](Self::write_description) wrote it in the process that owns
    /// them. Nothing is stopped on drop. Their Cinder, if they have one, is
    /// [`cinder`](Self::cinder)'s. Fails with what to do when the file is missing, when
    /// its process is gone, or when a service does not answer.
    pub fn attach(path: &Path) -> Result<OpenStack> {
        attach::attach(path)
    }

    /// The set shared by every test of this test process: attached to the services that
    /// [`SERVICES_ENV`] names the description of when it is set (one set for the whole
    /// test run), else started by the first caller and stopped when the process exits (by
    /// the watchdog). A failed start or attach is reported to every caller.
    pub fn shared() -> Result<&'static OpenStack> {
        static SHARED: OnceLock<std::result::Result<OpenStack, String>> = OnceLock::new();
        let described = std::env::var_os(SERVICES_ENV).filter(|path| !path.is_empty());
        SHARED
            .get_or_init(|| {
                match &described {
                    Some(path) => OpenStack::attach(Path::new(path)),
                    None => OpenStack::start(),
                }
                .map_err(|error| error.to_string())
            })
            .as_ref()
            .map_err(|detail| HarnessError::Command {
                command: match &described {
                    Some(_) => format!("the shared OpenStack services ({SERVICES_ENV} is set)"),
                    None => "starting the shared OpenStack services".into(),
                },
                detail: detail.clone(),
            })
    }

    /// Writes what another process needs to [`attach`](Self::attach) to this set
    /// (endpoints, ports, the run directory, RabbitMQ, the admin's credentials, Cinder if
    /// [`cinder`](Self::cinder) started it) to `path` as JSON, mode 0600, once every
    /// service answers; atomically (a temporary file renamed), so a reader never sees
    /// half of it.
    pub fn write_description(&self, path: &Path) -> Result<()> {
        attach::write(self, path)
    }

    /// Whether another process owns these services ([`attach`](Self::attach)).
    pub fn attached(&self) -> bool {
        matches!(self.processes, Processes::Attached)
    }

    /// Keystone's URL for clients: `http://127.0.0.1:PORT/v3`.
    pub fn auth_url(&self) -> String {
        self.layout.auth_url()
    }

    /// The region of every endpoint: [`REGION`].
    pub fn region(&self) -> &str {
        REGION
    }

    /// The cloud admin (`admin` in project `admin`). Tests use [`project`](Self::project).
    pub fn admin(&self) -> &Credentials {
        &self.admin
    }

    /// A fresh project and a user of its own with the `member` (so also `reader`) and
    /// `heat_stack_owner` roles on it, named `gate-test-<label>-<pid>-<n>`: an ordinary
    /// cloud user, as a CI job has on a public cloud. Servers and stacks made with these
    /// credentials are in that project only, and other projects' are invisible to it (not
    /// listed, 404 by id). Quotas, flavors and the like are set with [`admin`](Self::admin).
    pub fn project(&self, label: &str) -> Result<Credentials> {
        loop {
            let n = self.projects.fetch_add(1, Ordering::SeqCst) + 1;
            let name = format!("gate-test-{label}-{}-{n}", std::process::id());
            // Attached services outlive test processes: an earlier one with this pid may
            // have left a project of this name.
            if !self.attached() || !self.project_exists(&name)? {
                return project::create(&self.admin, &name);
            }
        }
    }

    /// Whether Keystone has a project called `name`.
    fn project_exists(&self, name: &str) -> Result<bool> {
        let found = self
            .admin
            .session()?
            .get("identity", &format!("/projects?name={name}"))?;
        Ok(found["projects"].as_array().is_some_and(|p| !p.is_empty()))
    }

    /// The id of the public image [`IMAGE_NAME`].
    pub fn image_id(&self) -> &str {
        &self.image_id
    }

    /// The id of the public flavor [`FLAVOR_NAME`].
    pub fn flavor_id(&self) -> &str {
        &self.flavor_id
    }

    /// The public URL of a service on 127.0.0.1: `identity` (with `/v3`), `compute`
    /// (with `/v2.1`), `image`, `placement`, `network` (the stand-in), `orchestration`
    /// (without the project part).
    pub fn endpoint(&self, service_type: &str) -> Option<String> {
        let ports = &self.layout.ports;
        let url = |port: u16, path: &str| format!("http://127.0.0.1:{port}{path}");
        Some(match service_type {
            "identity" => self.auth_url(),
            "compute" => url(ports.nova, "/v2.1"),
            "image" => url(ports.glance, ""),
            "placement" => url(ports.placement, ""),
            "network" => url(ports.neutron, ""),
            "orchestration" => url(ports.heat, "/v1"),
            _ => return None,
        })
    }

    /// A [`FaultProxy`] in front of `service_type`'s API (`compute`, `image`, …).
    pub fn proxy(&self, service_type: &str) -> Result<FaultProxy> {
        let url = self
            .endpoint(service_type)
            .ok_or_else(|| HarnessError::Command {
                command: format!("a proxy for {service_type}"),
                detail: "no such service".into(),
            })?;
        let authority = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let upstream = authority.parse().map_err(|_| HarnessError::Command {
            command: format!("a proxy for {service_type}"),
            detail: format!("{authority} is not an address"),
        })?;
        FaultProxy::start(upstream)
    }

    /// Registers another region, `name`, with every service of [`REGION`]; the services in
    /// `through` are reached through their proxies. Regions are global to the set, which
    /// attached test processes share: use unique names (with the pid). A region of that
    /// name that is already there (left by an earlier process with the same pid) gets its
    /// endpoints replaced.
    pub fn add_region(&self, name: &str, through: &[(&str, &FaultProxy)]) -> Result<()> {
        region::add(&self.admin, name, through)
    }

    /// A public flavor `name` (id = name) with `vcpus`, `ram_mb` and `disk_gb`, made by the
    /// admin; an existing one is kept.
    pub fn flavor(&self, name: &str, vcpus: u32, ram_mb: u32, disk_gb: u32) -> Result<()> {
        let session = self.admin.session()?;
        let answer = session.call(
            "POST",
            "compute",
            "/flavors",
            Some(
                &serde_json::json!({"flavor": {"name": name, "id": name, "vcpus": vcpus,
                                   "ram": ram_mb, "disk": disk_gb}}),
            ),
        )?;
        match answer.status {
            200 | 409 => Ok(()),
            status => Err(HarnessError::Command {
                command: format!("creating flavor {name}"),
                detail: format!("HTTP {status}: {}", answer.text()),
            }),
        }
    }

    /// Plays cloud-init for the servers of `project` (a project id; `None`: every
    /// project): each server that becomes ACTIVE gets a free host of `fleet`, the SSH keys
    /// of its user data (`ssh_authorized_keys` of a `#cloud-config`, or the public keys
    /// written in a script) appended to that host's `/root/.ssh/authorized_keys`, then the
    /// host's address as its `accessIPv4` through the Nova API. A deleted server's host
    /// gets its keys back and is free again. Stops on drop of the guard.
    pub fn join_servers_to<'fleet>(
        &self,
        fleet: &'fleet crate::SshFleet,
        project: Option<&str>,
    ) -> Result<JoinGuard<'fleet>> {
        join::start(&self.admin, fleet, project)
    }

    /// Plays cloud-init and the L3 agent for floating IPs of the servers of `project` (a
    /// project id; `None`: every project). It makes an external network in the Neutron
    /// stand-in (named `gate-test-<label>-<pid>-<n>`, see
    /// [`JoinGuard::floating_network`]) whose floating addresses are the fleet's host
    /// addresses; when a floating IP of that network is associated with the port of an
    /// ACTIVE server, the SSH keys of the server's user data go to the fleet host with
    /// that address, then the floating IP turns `ACTIVE` — so a provider that connects to
    /// the floating address reaches that host. The server's `accessIPv4` stays unset. A
    /// host whose floating IP is deleted or disassociated (or whose server is gone) gets
    /// its keys back. Stops on drop of the guard, which also removes the network.
    pub fn join_floating_ips_to<'fleet>(
        &self,
        fleet: &'fleet crate::SshFleet,
        project: Option<&str>,
        label: &str,
    ) -> Result<JoinGuard<'fleet>> {
        let n = self.projects.fetch_add(1, Ordering::SeqCst) + 1;
        let name = format!("gate-test-{label}-{}-{n}", std::process::id());
        join::start_floating(&self.admin, fleet, project, &name)
    }

    /// A real Cinder for this set, started by the first caller (10–40 s) and stopped with
    /// the set: cinder-api, cinder-scheduler and cinder-volume with Cinder's fake volume
    /// driver, from `target/cinder-venv` (`scripts/cinder-env`), on sqlite and this set's
    /// RabbitMQ, in its catalog as `block-storage` and `volumev3` — so only tokens issued
    /// after this call see it. Not part of [`start`](Self::start): a set without it has
    /// no block-storage service. A failed start is reported to every caller. Attached
    /// services bring the Cinder their owner started (`openstack-services` starts it with
    /// the set); this never starts one beside them.
    pub fn cinder(&self) -> Result<&Cinder> {
        self.cinder
            .get_or_init(|| {
                Cinder::start(&self.layout, &self.admin).map_err(|error| error.to_string())
            })
            .as_ref()
            .map_err(|detail| HarnessError::Command {
                command: "starting Cinder".into(),
                detail: detail.clone(),
            })
    }

    /// The directory of the services' logs (`<service>.log`); removed on drop (of the set
    /// that owns the services).
    pub fn log_dir(&self) -> PathBuf {
        self.layout.path("logs")
    }

    /// The log of one service (`keystone`, `nova-api`, `nova-compute`, `heat-engine`,
    /// `neutron-standin`, …), for a failing test's message.
    pub fn log(&self, service: &str) -> String {
        let path = self.log_dir().join(format!("{service}.log"));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// How long the start took (of attached services: in the process that owns them).
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The resident memory of every service process now (Cinder's aside), in bytes.
    pub fn memory_bytes(&self) -> u64 {
        let pgids = match &self.processes {
            Processes::Owned(supervisor) => supervisor.pgids(),
            // The owner records each service's process group in the run directory.
            Processes::Attached => std::fs::read_to_string(self.layout.path("pgids"))
                .unwrap_or_default()
                .lines()
                .filter_map(|line| line.trim().parse().ok())
                .collect(),
        };
        services::groups_rss(&pgids)
    }

    /// The run directory (configuration, databases, logs, images).
    pub fn dir(&self) -> &Path {
        &self.layout.dir
    }
}

impl Drop for OpenStack {
    fn drop(&mut self) {
        if let Processes::Owned(supervisor) = &self.processes {
            supervisor.stop(Duration::from_secs(15));
        }
    }
}
