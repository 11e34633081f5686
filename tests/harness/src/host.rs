//! One host of a fleet.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::addresses::Lease;
use crate::banner::try_banner;
use crate::error::{HarnessError, Result};
use crate::keeper::Keeper;
use crate::proc;

/// Where sshd's host key lives inside a host.
const HOST_KEY: &str = "/etc/ssh/gate/ssh_host_ed25519_key";
/// Where sshd's stderr (`-e`) goes inside a host.
const SSHD_LOG: &str = "/var/log/gate-sshd.log";
/// The environment of commands run by [`FleetHost::exec`], like a root login's.
const EXEC_ENV: [(&str, &str); 4] = [
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/root"),
    ("USER", "root"),
    ("LANG", "C.UTF-8"),
];

/// One host of an [`SshFleet`](crate::SshFleet): a real `sshd` on its own loopback address,
/// with its own writable view of the machine's filesystem.
///
/// ```no_run
/// # let fleet = gate_test_harness::SshFleet::start(1)?;
/// let host = &fleet.hosts()[0];
/// assert_eq!(host.name(), "fleet-1");
/// let known_hosts = host.known_hosts_line(); // "127.0.0.11 ssh-ed25519 AAAA…"
/// host.kill_sshd()?; // connections drop, new ones are refused
/// host.restart_sshd()?;
/// # Ok::<(), gate_test_harness::HarnessError>(())
/// ```
#[derive(Debug)]
pub struct FleetHost {
    pub(crate) name: String,
    pub(crate) lease: Lease,
    pub(crate) port: u16,
    pub(crate) client_key: PathBuf,
    pub(crate) host_key: Mutex<String>,
    pub(crate) keeper: Keeper,
    pub(crate) keeper_pid: i32,
}

impl FleetHost {
    /// The host's name, `fleet-1` for the first host of a fleet; also its hostname.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address sshd listens on, e.g. `127.0.0.11`.
    pub fn address(&self) -> String {
        self.lease.address.to_string()
    }

    /// The address as an [`Ipv4Addr`].
    pub fn ip(&self) -> Ipv4Addr {
        self.lease.address
    }

    /// The port sshd listens on (22 unless `GATE_FLEET_PORT` says otherwise).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Address and port.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::from((self.lease.address, self.port))
    }

    /// The user to log in as: `root`.
    pub fn user(&self) -> &str {
        "root"
    }

    /// The client private key (ed25519, one per fleet) that this host's
    /// `/root/.ssh/authorized_keys` accepts.
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// The host's public host key, as in a `.pub` file: `ssh-ed25519 AAAA… root@fleet-1`.
    pub fn host_key(&self) -> String {
        self.host_key
            .lock()
            .map(|key| key.clone())
            .unwrap_or_default()
    }

    /// The host's line for a `known_hosts` file: `127.0.0.11 ssh-ed25519 AAAA…`
    /// (`[127.0.0.11]:2222 …` on a port other than 22).
    pub fn known_hosts_line(&self) -> String {
        let key = self.host_key();
        let mut fields = key.split_whitespace();
        let (kind, blob) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        let host = if self.port == 22 {
            self.address()
        } else {
            format!("[{}]:{}", self.address(), self.port)
        };
        format!("{host} {kind} {blob}")
    }

    /// Runs `shell` with bash *inside* this host's view (its namespaces and root, not over
    /// SSH), as root with a login-like environment, and returns what it did. A command that
    /// could not even be started gives exit status 127 and the reason on stderr.
    pub fn exec(&self, shell: &str) -> Output {
        let result = Command::new("nsenter")
            .arg("--target")
            .arg(self.keeper_pid.to_string())
            .args(["--mount", "--uts", "--pid", "--root", "--wd", "--"])
            .args(["/bin/bash", "-c", shell])
            .env_clear()
            .envs(EXEC_ENV)
            .stdin(Stdio::null())
            .output();
        result.unwrap_or_else(|error| Output {
            status: ExitStatus::from_raw(127 << 8),
            stdout: Vec::new(),
            stderr: format!("could not enter {}: {error}", self.name).into_bytes(),
        })
    }

    /// Like [`exec`](Self::exec), but fails unless the command exits with 0; gives stdout.
    pub fn exec_ok(&self, shell: &str) -> Result<String> {
        let output = self.exec(shell);
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(HarnessError::Command {
                command: format!("{} on {}", shell, self.name),
                detail: crate::tools::describe(&output),
            })
        }
    }

    /// The machine's path to `path` inside this host (through `/proc/<pid>/root`), to read
    /// or write a host's file without [`exec`](Self::exec). Absolute symlinks inside the
    /// host are not followed correctly this way.
    pub fn host_path(&self, path: impl AsRef<Path>) -> PathBuf {
        let relative = path.as_ref().strip_prefix("/").unwrap_or(path.as_ref());
        PathBuf::from(format!("/proc/{}/root", self.keeper_pid)).join(relative)
    }

    /// What sshd wrote to its stderr so far (`-e`), for a failing test's message.
    pub fn sshd_log(&self) -> String {
        std::fs::read_to_string(self.host_path(SSHD_LOG)).unwrap_or_default()
    }

    /// The pid (in the machine's PID namespace) of the host's PID 1, which holds its
    /// namespaces; every process of the host is its descendant.
    pub fn keeper_pid(&self) -> i32 {
        self.keeper_pid
    }

    /// The pid of the listening sshd, when one runs.
    pub fn sshd_pid(&self) -> Option<i32> {
        proc::children(self.keeper_pid)
            .into_iter()
            .find(|&pid| proc::comm(pid).as_deref() == Some("sshd") && !proc::is_gone(pid))
    }

    /// SIGKILLs the listening sshd and all its children (every open SSH session and the
    /// commands they run), and waits until they are gone. New connections are then refused
    /// until [`restart_sshd`](Self::restart_sshd).
    pub fn kill_sshd(&self) -> Result<()> {
        let Some(listener) = self.sshd_pid() else {
            return Ok(());
        };
        let killed = proc::kill_tree(listener);
        if proc::wait_gone(&killed, Duration::from_secs(10)) {
            Ok(())
        } else {
            Err(HarnessError::Command {
                command: format!("kill -9 sshd on {}", self.name),
                detail: format!("processes {killed:?} still exist after 10s"),
            })
        }
    }

    /// Kills sshd (as [`kill_sshd`](Self::kill_sshd)) and starts it again with the same
    /// configuration and host key; returns once it answers with its banner.
    pub fn restart_sshd(&self) -> Result<()> {
        self.kill_sshd()?;
        self.keeper.start_sshd()?;
        self.wait_ready(Instant::now() + Duration::from_secs(20))
    }

    /// Gives the host a new host key and restarts sshd with it; returns the new public key
    /// (also [`host_key`](Self::host_key) from now on). For "the host key changed" tests.
    pub fn regenerate_host_key(&self) -> Result<String> {
        self.exec_ok(&format!(
            "rm -f {HOST_KEY} {HOST_KEY}.pub && \
             ssh-keygen -q -t ed25519 -N '' -C root@{name} -f {HOST_KEY}",
            name = self.name
        ))?;
        let key = self.read_host_key()?;
        self.restart_sshd()?;
        Ok(key)
    }

    /// Reads the public host key from the host and remembers it.
    pub(crate) fn read_host_key(&self) -> Result<String> {
        let path = self.host_path(format!("{HOST_KEY}.pub"));
        let key = std::fs::read_to_string(&path)
            .map_err(crate::error::io(format!("reading {}", path.display())))?
            .trim()
            .to_owned();
        if let Ok(mut held) = self.host_key.lock() {
            held.clone_from(&key);
        }
        Ok(key)
    }

    /// Polls until this host's own sshd runs and answers with an SSH banner.
    pub(crate) fn wait_ready(&self, deadline: Instant) -> Result<()> {
        loop {
            if self.sshd_pid().is_some() && try_banner(self.socket_addr()).is_some() {
                return Ok(());
            }
            if self.keeper.exited() || Instant::now() > deadline {
                return Err(HarnessError::NotReady {
                    host: format!("{} ({})", self.name, self.socket_addr()),
                    seconds: 20,
                    detail: format!(
                        "keeper: {}; sshd: {}",
                        self.keeper.log().trim(),
                        self.sshd_log().trim()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
