//! A fleet of real OpenSSH servers on loopback.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::addresses::{Lease, lease};
use crate::error::{HarnessError, Result, io};
use crate::host::FleetHost;
use crate::keeper::Keeper;
use crate::tools::{is_root, require, run};

/// Prefix of a fleet's directory in /tmp, followed by the owning process's pid.
const DIR_PREFIX: &str = "gate-fleet-";

/// N real OpenSSH servers, each a separate host on its own loopback address.
///
/// Host *i* (`fleet-i`, from 1) listens on port 22 of a 127.0.0.x address of its own:
/// 127.0.0.(10+i) when no other fleet runs, else the next free ones (see
/// [`FleetHost::address`]). Each host is a mount, PID and UTS namespace whose root is an
/// overlay: the machine's root filesystem below, a tmpfs of the host's own above, so a file
/// written or a package installed on one host is on no other host and not on the machine.
/// sshd runs chrooted in that view with its own ed25519 host key, `PermitRootLogin
/// prohibit-password`, no passwords, no PAM, SFTP (`internal-sftp`) and
/// `AcceptEnv LANG LC_*` as in Debian. One client key per fleet is authorized for root on
/// every host.
///
/// Dropping the fleet kills every process of every host and removes all it made; so does
/// the death of the test process (the hosts' PID 1 exits when its stdin closes). Needs root.
///
/// ```no_run
/// use gate_test_harness::SshFleet;
///
/// let fleet = SshFleet::start(3)?;
/// for host in fleet.hosts() {
///     let status = std::process::Command::new("ssh")
///         .arg("-i").arg(fleet.client_key())
///         .args(["-o", "StrictHostKeyChecking=accept-new", "-o", "BatchMode=yes"])
///         .arg(format!("root@{}", host.address()))
///         .arg("true")
///         .status()?;
///     assert!(status.success());
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SshFleet {
    hosts: Vec<FleetHost>,
    client_key: PathBuf,
    // Dropped last: removed once every host is gone.
    dir: TempDir,
}

impl SshFleet {
    /// Starts `count` hosts in parallel and returns once every one answers with an SSH
    /// banner. Fails when not root, when a tool is missing (openssh-server,
    /// openssh-client, util-linux), or when a host does not come up (with its logs).
    pub fn start(count: usize) -> Result<SshFleet> {
        if !is_root() {
            return Err(HarnessError::NotRoot);
        }
        require("/usr/sbin/sshd", "openssh-server")?;
        require("ssh-keygen", "openssh-client")?;
        require("unshare", "util-linux")?;
        require("nsenter", "util-linux")?;
        let port = fleet_port()?;
        remove_stale_dirs();

        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir_in("/tmp")
            .map_err(io("creating the fleet directory in /tmp"))?;
        let client_key = dir.path().join("client").join("id_ed25519");
        make_client_key(&client_key)?;
        let public_key = std::fs::read_to_string(client_key.with_extension("pub"))
            .map_err(io("reading the client public key"))?;

        let leases = lease(count, port)?;
        let started = Instant::now();
        let deadline =
            started + Duration::from_secs(30) + Duration::from_millis(250) * count as u32;
        let mut pending = Vec::with_capacity(count);
        for (index, lease) in leases.into_iter().enumerate() {
            let name = format!("fleet-{}", index + 1);
            let host_dir = dir.path().join(&name);
            write_seed(&host_dir, &lease, port, &public_key)?;
            let keeper = Keeper::spawn(&host_dir, &name, &lease.address.to_string())?;
            pending.push((name, lease, keeper));
        }

        let mut hosts = Vec::with_capacity(count);
        for (name, lease, keeper) in pending {
            let keeper_pid = wait_keeper(&name, &keeper, deadline)?;
            hosts.push(FleetHost {
                name,
                lease,
                port,
                client_key: client_key.clone(),
                host_key: Mutex::new(String::new()),
                keeper,
                keeper_pid,
            });
        }
        let fleet = SshFleet {
            hosts,
            client_key,
            dir,
        };
        for host in &fleet.hosts {
            host.wait_ready(deadline)?;
            host.read_host_key()?;
        }
        Ok(fleet)
    }

    /// The hosts, `fleet-1` first.
    pub fn hosts(&self) -> &[FleetHost] {
        &self.hosts
    }

    /// The client private key every host authorizes for root (ed25519, mode 0600).
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// The client public key line (`ssh-ed25519 AAAA… gate-fleet`).
    pub fn client_public_key(&self) -> Result<String> {
        let path = self.client_key.with_extension("pub");
        std::fs::read_to_string(&path)
            .map(|key| key.trim().to_owned())
            .map_err(io(format!("reading {}", path.display())))
    }

    /// A `known_hosts` text with every host's current key, one line each.
    pub fn known_hosts(&self) -> String {
        self.hosts
            .iter()
            .map(|host| host.known_hosts_line() + "\n")
            .collect()
    }

    /// The fleet's directory on the machine (client key, per-host mount points and logs);
    /// removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SshFleet {
    fn drop(&mut self) {
        // Signal every keeper first so the hosts wind down in parallel; each host's Keeper
        // then waits for its own end when the hosts are dropped, before the directory and
        // the address locks go.
        for host in &self.hosts {
            host.keeper.signal_stop();
        }
        for host in &self.hosts {
            host.keeper.stop();
        }
    }
}

/// The port every host listens on: `GATE_FLEET_PORT`, else 22.
fn fleet_port() -> Result<u16> {
    match std::env::var("GATE_FLEET_PORT") {
        Err(_) => Ok(22),
        Ok(text) => text.parse().map_err(|_| HarnessError::Command {
            command: "GATE_FLEET_PORT".into(),
            detail: format!("{text:?} is not a port number"),
        }),
    }
}

/// Generates the fleet's client key pair.
fn make_client_key(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "gate-fleet", "-f"])
        .arg(path))?;
    Ok(())
}

/// Makes a host's directory: mount points `rw` and `root`, and `seed/` with what the
/// keeper installs into the host (authorized keys, sshd config).
fn write_seed(host_dir: &Path, lease: &Lease, port: u16, public_key: &str) -> Result<()> {
    for sub in ["rw", "root", "seed"] {
        let path = host_dir.join(sub);
        std::fs::create_dir_all(&path).map_err(io(format!("creating {}", path.display())))?;
    }
    let seed = host_dir.join("seed");
    let write = |name: &str, text: &str| {
        let path = seed.join(name);
        std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))
    };
    write("authorized_keys", public_key)?;
    write(
        "sshd_config",
        &sshd_config(&lease.address.to_string(), port),
    )
}

/// The sshd configuration of one host.
fn sshd_config(address: &str, port: u16) -> String {
    format!(
        "# gate test fleet host\n\
         Port {port}\n\
         ListenAddress {address}\n\
         HostKey /etc/ssh/gate/ssh_host_ed25519_key\n\
         PidFile /run/sshd.pid\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         AuthorizedKeysFile .ssh/authorized_keys\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         StrictModes yes\n\
         UseDNS no\n\
         PrintMotd no\n\
         AcceptEnv LANG LC_*\n\
         MaxStartups 256\n\
         MaxSessions 256\n\
         Subsystem sftp internal-sftp\n\
         LogLevel VERBOSE\n"
    )
}

/// Waits until the keeper has forked (its pid is known).
fn wait_keeper(name: &str, keeper: &Keeper, deadline: Instant) -> Result<i32> {
    loop {
        if let Some(pid) = keeper.pid() {
            return Ok(pid);
        }
        if keeper.exited() || Instant::now() > deadline {
            return Err(HarnessError::NotReady {
                host: name.to_owned(),
                seconds: 30,
                detail: format!("keeper: {}", keeper.log().trim()),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Removes the directories of fleets whose process is gone (killed before its Drop ran).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
