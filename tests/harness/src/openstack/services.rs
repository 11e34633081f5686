//! The service processes: each in a process group of its own, its output in a log file of
//! the run directory, stopped as a group. A watchdog process stops every group and removes
//! the run directory when the test process is gone, even after a SIGKILL.

use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::error::{HarnessError, Result, io};

/// Stops every process group named in `$dir/pgids` and removes `$dir` (unless `$2` is
/// not empty), once its stdin closes (the test process dropped the services, or died).
const WATCHDOG: &str = r#"
dir=$1
cat >/dev/null
groups=$(cat "$dir/pgids" 2>/dev/null)
for g in $groups; do kill -TERM -- "-$g" 2>/dev/null; done
for _ in $(seq 150); do
    alive=
    for g in $groups; do kill -0 -- "-$g" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.1
done
for g in $groups; do kill -KILL -- "-$g" 2>/dev/null; done
[ -n "$2" ] || rm -rf "$dir"
"#;

/// One running service process (the leader of its process group).
#[derive(Debug)]
pub(crate) struct Process {
    pub(crate) name: String,
    child: Child,
    pub(crate) log: PathBuf,
}

impl Process {
    /// Whether the leader has exited.
    pub(crate) fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    fn pgid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(0)
    }
}

/// The processes of one set of services, and the watchdog that outlives the test process.
#[derive(Debug)]
pub(crate) struct Supervisor {
    dir: PathBuf,
    processes: Mutex<Vec<Process>>,
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
}

impl Supervisor {
    /// Starts the watchdog of `dir` (the run directory, removed at the end).
    pub(crate) fn new(dir: &Path) -> Result<Supervisor> {
        let mut child = Command::new("/bin/bash")
            .args(["-c", WATCHDOG, "gate-openstack-watchdog"])
            .arg(dir)
            // GATE_OPENSTACK_KEEP=1 keeps the run directory (logs, configs) for a look.
            .arg(std::env::var("GATE_OPENSTACK_KEEP").unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(io("starting the OpenStack watchdog"))?;
        let stdin = child.stdin.take().ok_or_else(|| HarnessError::Command {
            command: "the OpenStack watchdog".into(),
            detail: "no stdin pipe".into(),
        })?;
        Ok(Supervisor {
            dir: dir.to_owned(),
            processes: Mutex::new(Vec::new()),
            watchdog: Mutex::new(Some((child, stdin))),
        })
    }

    /// Starts `command` as service `name`, in a new process group, stdout and stderr to
    /// `logs/<name>.log`.
    pub(crate) fn spawn(&self, name: &str, command: &mut Command) -> Result<()> {
        let log = self.dir.join("logs").join(format!("{name}.log"));
        let out = File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(io(format!("opening {}", log.display())))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(io(format!("starting {name}")))?;
        let process = Process {
            name: name.to_owned(),
            child,
            log,
        };
        // Recorded before anything else can fail, for the watchdog.
        let pgids = self.dir.join("pgids");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&pgids)
            .map_err(io(format!("opening {}", pgids.display())))?;
        writeln!(file, "{}", process.pgid()).map_err(io(format!("writing {}", pgids.display())))?;
        self.processes.lock().map_err(|_| poisoned())?.push(process);
        Ok(())
    }

    /// Fails with the service's log when service `name` has exited.
    pub(crate) fn check_alive(&self, name: &str) -> Result<()> {
        let mut processes = self.processes.lock().map_err(|_| poisoned())?;
        for process in processes.iter_mut().filter(|p| p.name == name) {
            if process.exited() {
                return Err(HarnessError::Command {
                    command: format!("OpenStack service {name}"),
                    detail: format!("it exited; {}", log_tail(&process.log, 40)),
                });
            }
        }
        Ok(())
    }

    /// The log file of service `name`.
    pub(crate) fn log_of(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }

    /// The process group ids of the services.
    pub(crate) fn pgids(&self) -> Vec<i32> {
        self.processes
            .lock()
            .map(|processes| processes.iter().map(Process::pgid).collect())
            .unwrap_or_default()
    }

    /// Stops every service group (SIGTERM, then SIGKILL after `grace`), reaps the leaders,
    /// then lets the watchdog remove the run directory and waits for it.
    pub(crate) fn stop(&self, grace: Duration) {
        if let Ok(mut processes) = self.processes.lock() {
            for process in processes.iter() {
                let _ = killpg(Pid::from_raw(process.pgid()), Signal::SIGTERM);
            }
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && processes.iter().any(|p| group_alive(p.pgid())) {
                for process in processes.iter_mut() {
                    let _ = process.exited();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            for process in processes.iter_mut() {
                let _ = killpg(Pid::from_raw(process.pgid()), Signal::SIGKILL);
                let _ = process.child.wait();
            }
            processes.clear();
        }
        if let Ok(mut watchdog) = self.watchdog.lock()
            && let Some((mut child, stdin)) = watchdog.take()
        {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// Whether any process of group `pgid` is still running (zombies do not count).
pub(crate) fn group_alive(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // Fields after the command name: state ppid pgrp …
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields
            .first()
            .is_some_and(|state| !matches!(*state, "Z" | "X"))
            && fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
    })
}

/// The resident memory of every process in the given groups, in bytes.
pub(crate) fn groups_rss(pgids: &[i32]) -> u64 {
    let page = 4096;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let pgid: i32 = fields.get(2)?.parse().ok()?;
            if !pgids.contains(&pgid) {
                return None;
            }
            let statm = std::fs::read_to_string(entry.path().join("statm")).ok()?;
            let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
            Some(pages * page)
        })
        .sum()
}

/// The last `lines` lines of a log file, for an error message.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    format!("last lines of {}:\n{tail}", path.display())
}

fn poisoned() -> HarnessError {
    HarnessError::Command {
        command: "the OpenStack services".into(),
        detail: "a test panicked while holding the process list".into(),
    }
}

/// Runs a setup command to completion, its output appended to `<logs>/<log>.log`; a failure
/// names the command and shows the log's tail.
pub(crate) fn run_logged(logs: &Path, log: &str, command: &mut Command) -> Result<()> {
    let path = logs.join(format!("{log}.log"));
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io(format!("opening {}", path.display())))?;
    let err = out
        .try_clone()
        .map_err(io(format!("opening {}", path.display())))?;
    let shown = format!("{command:?}");
    let status = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(io(format!("running {shown}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(HarnessError::Command {
            command: shown,
            detail: format!("{status}; {}", log_tail(&path, 40)),
        })
    }
}
