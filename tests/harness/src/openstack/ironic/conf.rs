//! The run directory of one Ironic: its ports, configuration files and commands.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{HarnessError, Result, io};

const GATE_WSGI: &str = include_str!("../../../openstack/gate_wsgi.py");
const SITECUSTOMIZE: &str = include_str!("../../../openstack/sitecustomize.py");

/// The ports of one Ironic (all on 127.0.0.1).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ports {
    /// The API without authentication.
    pub(crate) api: u16,
    /// The API with HTTP basic auth.
    pub(crate) basic: u16,
    /// The conductor's JSON-RPC server.
    pub(crate) rpc: u16,
}

/// Where everything of one Ironic is.
#[derive(Clone)]
pub(crate) struct Layout {
    pub(crate) dir: PathBuf,
    pub(crate) venv: PathBuf,
    pub(crate) ports: Ports,
    pub(crate) basic_password: String,
}

impl std::fmt::Debug for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layout")
            .field("dir", &self.dir)
            .field("venv", &self.venv)
            .field("ports", &self.ports)
            .field("basic_password", &"***")
            .finish()
    }
}

impl Layout {
    /// A layout in `dir` on three free ports.
    pub(crate) fn new(dir: PathBuf, venv: PathBuf, basic_password: String) -> Result<Layout> {
        let listeners = (0..3)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(io("picking free ports on 127.0.0.1"))?;
        let ports = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(io("picking free ports on 127.0.0.1"))?;
        Ok(Layout {
            dir,
            venv,
            ports: Ports {
                api: ports[0],
                basic: ports[1],
                rpc: ports[2],
            },
            basic_password,
        })
    }

    /// `dir/sub`.
    pub(crate) fn path(&self, sub: &str) -> PathBuf {
        self.dir.join(sub)
    }

    /// The configuration of the conductor and the noauth API.
    pub(crate) fn conf(&self) -> PathBuf {
        self.path("etc/ironic/ironic.conf")
    }

    /// The configuration of the `http_basic` API.
    pub(crate) fn basic_conf(&self) -> PathBuf {
        self.path("etc/ironic/ironic-basic.conf")
    }

    fn sqlite(&self) -> String {
        format!(
            "sqlite:///{}?timeout=60",
            self.path("db/ironic.sqlite").display()
        )
    }

    /// `ironic.conf`: fake hardware only, sqlite, JSON-RPC on 127.0.0.1, no Keystone, the
    /// config drive kept in the node (no Swift), instance secrets shown (policy.yaml) so
    /// tests can read the config drive.
    fn ironic_conf(&self, auth_strategy: &str) -> String {
        format!(
            "[DEFAULT]\n\
             debug = false\n\
             auth_strategy = {auth_strategy}\n\
             http_basic_auth_user_file = {htpasswd}\n\
             host = 127.0.0.1\n\
             rpc_transport = json-rpc\n\
             enabled_hardware_types = fake-hardware\n\
             enabled_bios_interfaces = no-bios\n\
             enabled_boot_interfaces = fake\n\
             enabled_console_interfaces = no-console\n\
             enabled_deploy_interfaces = fake,custom-agent\n\
             enabled_firmware_interfaces = no-firmware\n\
             enabled_inspect_interfaces = no-inspect\n\
             enabled_management_interfaces = fake\n\
             enabled_network_interfaces = noop\n\
             enabled_power_interfaces = fake\n\
             enabled_raid_interfaces = no-raid\n\
             enabled_rescue_interfaces = no-rescue\n\
             enabled_storage_interfaces = noop\n\
             enabled_vendor_interfaces = no-vendor\n\
             default_deploy_interface = fake\n\
             default_network_interface = noop\n\
             [api]\n\
             host_ip = 127.0.0.1\n\
             port = {api}\n\
             [conductor]\n\
             automated_clean = true\n\
             sync_power_state_interval = 0\n\
             [json_rpc]\n\
             auth_strategy = noauth\n\
             host_ip = 127.0.0.1\n\
             port = {rpc}\n\
             [database]\n\
             connection = {db}\n\
             sqlite_synchronous = false\n\
             [dhcp]\n\
             dhcp_provider = none\n\
             [deploy]\n\
             configdrive_use_object_store = false\n\
             [oslo_concurrency]\n\
             lock_path = {locks}\n\
             [oslo_policy]\n\
             policy_file = {policy}\n",
            htpasswd = self.path("etc/ironic/htpasswd").display(),
            api = self.ports.api,
            rpc = self.ports.rpc,
            db = self.sqlite(),
            locks = self.path("locks").display(),
            policy = self.path("etc/ironic/policy.yaml").display(),
        )
    }

    /// The run directory's layout and files.
    pub(crate) fn write_files(&self) -> Result<()> {
        for sub in ["logs", "db", "locks", "wsgi", "pylib", "etc/ironic"] {
            let path = self.path(sub);
            std::fs::create_dir_all(&path).map_err(io(format!("creating {}", path.display())))?;
        }
        let files = [
            (self.path("wsgi/gate_wsgi.py"), GATE_WSGI.to_owned()),
            (
                self.path("pylib/sitecustomize.py"),
                SITECUSTOMIZE.to_owned(),
            ),
            (self.conf(), self.ironic_conf("noauth")),
            (self.basic_conf(), self.ironic_conf("http_basic")),
            (
                self.path("etc/ironic/policy.yaml"),
                "\"show_instance_secrets\": \"@\"\n".to_owned(),
            ),
            (
                self.path("etc/ironic/htpasswd"),
                format!("{}:{}\n", super::BASIC_USER, self.bcrypt()?),
            ),
        ];
        for (path, text) in files {
            std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
        }
        Ok(())
    }

    /// The bcrypt hash of the basic-auth password (the venv's bcrypt; the password goes in
    /// the environment, not on the command line).
    fn bcrypt(&self) -> Result<String> {
        let output = self
            .command("python3")
            .args([
                "-c",
                "import bcrypt, os\n\
                 print(bcrypt.hashpw(os.environ['GATE_PW'].encode(), bcrypt.gensalt(4)).decode())",
            ])
            .env("GATE_PW", &self.basic_password)
            .output()
            .map_err(io("hashing the basic-auth password"))?;
        let hash = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !output.status.success() || hash.is_empty() {
            return Err(HarnessError::Command {
                command: "bcrypt of the basic-auth password".into(),
                detail: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        Ok(hash)
    }

    /// A program of the virtualenv with a clean OpenStack environment, unbuffered output
    /// and the harness's `sitecustomize.py`.
    pub(crate) fn command(&self, program: &str) -> Command {
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

    /// gunicorn serving Ironic's WSGI API with `conf` on `port`: one worker, a few threads.
    pub(crate) fn gunicorn(&self, port: u16, prog: &str, conf: &Path) -> Command {
        let mut command = self.command("gunicorn");
        command
            .env("GATE_SQLITE_IMMEDIATE", "1")
            .env("GATE_WSGI_APP", "ironic.wsgi")
            .env("GATE_WSGI_PROG", prog)
            .env(
                "GATE_WSGI_ARGV",
                format!("--config-file {}", conf.display()),
            )
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
            .arg(self.path("wsgi"))
            .arg("gate_wsgi:application");
        command
    }

    /// Puts the database in WAL mode (kept in the file): the API's readers and the
    /// conductor's writer do not block each other.
    pub(crate) fn wal_mode(&self) -> Result<()> {
        let db = self.path("db/ironic.sqlite");
        let output = self
            .command("python3")
            .args([
                "-c",
                "import sqlite3, sys\n\
                 sqlite3.connect(sys.argv[1]).execute('PRAGMA journal_mode=WAL').fetchall()",
            ])
            .arg(&db)
            .output()
            .map_err(io("setting WAL mode"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(HarnessError::Command {
                command: format!("WAL mode of {}", db.display()),
                detail: crate::tools::describe(&output),
            })
        }
    }
}
