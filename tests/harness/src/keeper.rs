//! The keeper of one fleet host: PID 1 of the host's own mount, PID and UTS namespaces.
//!
//! `unshare` makes the namespaces and forks the keeper, a bash script that mounts the
//! host's filesystem view (below), chroots into it and starts `sshd -D -e`, then reads
//! commands from its stdin (`start` starts sshd again). The keeper holds the namespaces:
//! when it exits, the kernel SIGKILLs every process of the host's PID namespace and the
//! host's mounts vanish with its mount namespace. It exits when killed, and when its stdin
//! closes, i.e. when the test process is gone — even after a SIGKILL.
//!
//! The view: a tmpfs per host holds the overlay's upper and work dirs (overlay refuses an
//! upper dir inside its lower layer); the overlay's lower layer is the machine's root
//! filesystem (`/` without the filesystems mounted below it); fresh `proc`, `/tmp`, `/run`
//! and `/dev/shm`; `/dev` and `/sys` bound from the machine. All mounts are private to the
//! namespace: the machine's mount table never sees them.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::error::{Result, io};
use crate::proc;

/// Mounts the view and starts the keeper loop. Arguments: host dir, host name, address.
const SETUP: &str = r#"
set -eu
dir=$1 name=$2 address=$3
root=$dir/root
mount -t tmpfs -o mode=0755 "gate-$name" "$dir/rw"
mkdir "$dir/rw/upper" "$dir/rw/work"
mount -t overlay -o "lowerdir=/,upperdir=$dir/rw/upper,workdir=$dir/rw/work" "gate-$name" "$root"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=1777 shm "$root/dev/shm"
mount --rbind /sys "$root/sys"
mount -t tmpfs -o mode=1777 tmp "$root/tmp"
mount -t tmpfs -o mode=0755 run "$root/run"
mkdir -p "$root/run/sshd" "$root/run/lock" "$root/etc/ssh/gate" "$root/root/.ssh" "$root/var/log"
chmod 0700 "$root/root/.ssh"
install -m 0600 "$dir/seed/authorized_keys" "$root/root/.ssh/authorized_keys"
install -m 0644 "$dir/seed/sshd_config" "$root/etc/ssh/gate/sshd_config"
ssh-keygen -q -t ed25519 -N '' -C "root@$name" -f "$root/etc/ssh/gate/ssh_host_ed25519_key"
# sshd without PAM refuses a locked account ("!" password): unlock root, in this host only.
sed -i 's/^root:![^:]*:/root:*:/' "$root/etc/shadow"
echo "$name" > "$root/etc/hostname"
printf '%s %s\n' "$address" "$name" >> "$root/etc/hosts"
hostname "$name"
exec chroot "$root" /bin/bash -c '
cd /
start() { /usr/sbin/sshd -D -e -f /etc/ssh/gate/sshd_config </dev/null >>/var/log/gate-sshd.log 2>&1 & }
start
while read -r command; do
    case $command in
        start) start ;;
    esac
done
'
"#;

/// A running keeper.
#[derive(Debug)]
pub(crate) struct Keeper {
    unshare: Mutex<Child>,
    stdin: Mutex<Option<ChildStdin>>,
    pid: OnceLock<i32>,
    log: PathBuf,
}

impl Keeper {
    /// Starts the keeper of host `name` whose files (seed, mount points) are under `dir`.
    pub(crate) fn spawn(dir: &Path, name: &str, address: &str) -> Result<Keeper> {
        let log = dir.join("keeper.log");
        let stderr = File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let mut child = Command::new("unshare")
            .args([
                "--mount",
                "--uts",
                "--pid",
                "--fork",
                "--propagation",
                "private",
                "--kill-child",
                "--",
                "/bin/bash",
                "-c",
                SETUP,
                "gate-fleet-keeper",
            ])
            .arg(dir)
            .args([name, address])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(io(format!("starting the keeper of {name} (unshare)")))?;
        let stdin = child.stdin.take();
        Ok(Keeper {
            unshare: Mutex::new(child),
            stdin: Mutex::new(stdin),
            pid: OnceLock::new(),
            log,
        })
    }

    /// The pid of `unshare` while it runs (not yet reaped, so the pid is still its own).
    fn unshare_pid(&self) -> Option<i32> {
        let mut child = self.unshare.lock().ok()?;
        match child.try_wait() {
            Ok(None) => i32::try_from(child.id()).ok(),
            _ => None,
        }
    }

    /// The keeper's pid (in the machine's PID namespace), once it is forked; `None` once
    /// it has exited.
    pub(crate) fn pid(&self) -> Option<i32> {
        let unshare = self.unshare_pid()?;
        if let Some(&pid) = self.pid.get() {
            return Some(pid);
        }
        let pid = proc::children(unshare).into_iter().next()?;
        Some(*self.pid.get_or_init(|| pid))
    }

    /// Whether the keeper has exited (setup failed, or it was killed).
    pub(crate) fn exited(&self) -> bool {
        match self.unshare.lock() {
            Ok(mut child) => !matches!(child.try_wait(), Ok(None)),
            Err(_) => true,
        }
    }

    /// The keeper's stderr so far (setup errors).
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Asks the keeper to start sshd.
    pub(crate) fn start_sshd(&self) -> Result<()> {
        let mut stdin = self.stdin.lock().map_err(|_| poisoned())?;
        let pipe = stdin.as_mut().ok_or_else(poisoned)?;
        pipe.write_all(b"start\n")
            .and_then(|()| pipe.flush())
            .map_err(io("asking the keeper to start sshd"))
    }

    /// SIGKILLs the keeper (which ends its namespaces) without waiting.
    pub(crate) fn signal_stop(&self) {
        if let Some(pid) = self.pid() {
            proc::signal(pid, Signal::SIGKILL);
        }
        if let Ok(mut stdin) = self.stdin.lock() {
            stdin.take();
        }
    }

    /// Stops the keeper and waits until it and every process of the host are gone.
    pub(crate) fn stop(&self) {
        self.signal_stop();
        let Ok(mut child) = self.unshare.lock() else {
            return;
        };
        // unshare exits once its child, the keeper, has; the keeper (PID 1 of the host's
        // PID namespace) is reaped only after every process in that namespace is.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        // Still there: kill unshare, whose --kill-child takes the keeper along.
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.stop();
    }
}

fn poisoned() -> crate::HarnessError {
    crate::HarnessError::Io {
        what: "talking to the keeper".into(),
        source: std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the keeper is stopped"),
    }
}
