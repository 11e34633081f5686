//! Dropping a fleet leaves no processes, mounts, namespaces or directories behind, also
//! when the test panics or its process is killed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gate_test_harness::SshFleet;

/// What a fleet had on the machine, to check that it is all gone.
#[derive(Debug)]
struct Footprint {
    pids: Vec<i32>,
    mount_namespaces: Vec<String>,
    dir: PathBuf,
}

fn footprint(fleet: &SshFleet) -> Footprint {
    let mut pids = Vec::new();
    let mut mount_namespaces = Vec::new();
    for host in fleet.hosts() {
        pids.push(host.keeper_pid());
        pids.extend(host.sshd_pid());
        mount_namespaces.push(
            std::fs::read_link(format!("/proc/{}/ns/mnt", host.keeper_pid()))
                .unwrap()
                .display()
                .to_string(),
        );
    }
    Footprint {
        pids,
        mount_namespaces,
        dir: fleet.dir().to_owned(),
    }
}

/// Every process on the machine, with its mount namespace and command line.
fn process_table() -> Vec<(i32, String, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let ns = std::fs::read_link(entry.path().join("ns/mnt")).ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            Some((
                pid,
                ns.display().to_string(),
                String::from_utf8_lossy(&cmdline).replace('\0', " "),
            ))
        })
        .collect()
}

fn assert_nothing_left(footprint: &Footprint) {
    for pid in &footprint.pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} is left"
        );
    }
    let dir = footprint.dir.display().to_string();
    for (pid, ns, cmdline) in process_table() {
        assert!(
            !footprint.mount_namespaces.contains(&ns),
            "process {pid} ({cmdline}) is still in a host's mount namespace"
        );
        assert!(!cmdline.contains(&dir), "process {pid} ({cmdline}) is left");
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(&dir), "mounts left: {mounts}");
    assert!(!mounts.contains("gate-fleet"), "mounts left: {mounts}");
    assert!(
        !footprint.dir.exists(),
        "{} is left",
        footprint.dir.display()
    );
}

#[test]
fn drop_leaves_no_processes_mounts_or_directories() {
    let fleet = SshFleet::start(3).unwrap();
    let footprint = footprint(&fleet);
    // While it runs, the machine's own mount table shows none of the hosts' mounts.
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(&footprint.dir.display().to_string()));
    // A process a test left running in a host (a daemon) goes too.
    fleet.hosts()[0]
        .exec_ok("setsid sleep 600 >/dev/null 2>&1 < /dev/null &")
        .unwrap();
    drop(fleet);
    assert_nothing_left(&footprint);
}

#[test]
fn drop_during_a_panicking_test_leaves_nothing() {
    let mut seen = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let fleet = SshFleet::start(2).unwrap();
        seen = Some(footprint(&fleet));
        panic!("a failing test");
    }));
    assert!(result.is_err());
    assert_nothing_left(&seen.unwrap());
}

/// Not a test on its own: run by `killed_test_process_leaves_no_hosts` in a child process,
/// which it SIGKILLs while the fleet runs.
#[test]
#[ignore = "helper of killed_test_process_leaves_no_hosts"]
fn helper_fleet_until_killed() {
    if std::env::var_os("GATE_HARNESS_KILL_HELPER").is_none() {
        return; // run by `--ignored` on its own: nothing to do
    }
    let fleet = SshFleet::start(2).unwrap();
    let pids: Vec<String> = fleet
        .hosts()
        .iter()
        .map(|h| h.keeper_pid().to_string())
        .collect();
    println!("KEEPERS {}", pids.join(" "));
    println!("DIR {}", fleet.dir().display());
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn killed_test_process_leaves_no_hosts() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_fleet_until_killed",
            "--nocapture",
        ])
        .env("GATE_HARNESS_KILL_HELPER", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut keepers = Vec::new();
    let mut dir = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("KEEPERS ") {
            keepers = rest.split(' ').map(|p| p.parse::<i32>().unwrap()).collect();
        }
        if let Some(rest) = line.strip_prefix("DIR ") {
            dir = Some(PathBuf::from(rest));
            break;
        }
    }
    assert_eq!(keepers.len(), 2, "the helper did not start its fleet");
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while keepers
        .iter()
        .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "hosts outlived their test process"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The next fleet removes the directory the killed one left.
    let dir = dir.unwrap();
    let fleet = SshFleet::start(1).unwrap();
    assert!(!dir.exists(), "{} is left", dir.display());
    drop(fleet);
}
