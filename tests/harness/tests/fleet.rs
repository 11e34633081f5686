//! The SSH fleet: real sshd hosts on loopback, isolated from each other and the machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use gate_test_harness::{FleetHost, SshFleet};

fn start(count: usize) -> SshFleet {
    let started = Instant::now();
    let fleet = SshFleet::start(count).expect("the fleet starts (run the tests as root)");
    eprintln!("SshFleet::start({count}) took {:?}", started.elapsed());
    fleet
}

/// Runs the real `ssh` client from the machine against `host`.
fn ssh(host: &FleetHost, known_hosts: &Path, command: &str) -> Output {
    Command::new("ssh")
        .arg("-i")
        .arg(host.client_key())
        .args([
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "BatchMode=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "ConnectTimeout=10", "-o", "HashKnownHosts=no", "-p"])
        .arg(host.port().to_string())
        .arg(format!("{}@{}", host.user(), host.address()))
        .arg(command)
        .output()
        .expect("ssh runs")
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn hosts_have_names_addresses_and_distinct_host_keys() {
    let fleet = start(3);
    let hosts = fleet.hosts();
    assert_eq!(hosts.len(), 3);
    for (i, host) in hosts.iter().enumerate() {
        assert_eq!(host.name(), format!("fleet-{}", i + 1));
        assert!(host.address().starts_with("127.0."), "{}", host.address());
        assert_eq!(host.user(), "root");
        assert!(host.host_key().starts_with("ssh-ed25519 "));
        assert_eq!(host.exec_ok("hostname").unwrap().trim(), host.name());
    }
    let mut addresses: Vec<String> = hosts.iter().map(FleetHost::address).collect();
    addresses.dedup();
    assert_eq!(addresses.len(), 3);
    assert_ne!(hosts[0].host_key(), hosts[1].host_key());
    assert_ne!(hosts[1].host_key(), hosts[2].host_key());
    assert_ne!(hosts[0].host_key(), hosts[2].host_key());
}

#[test]
fn file_written_on_one_host_is_absent_on_the_others_and_on_the_machine() {
    let fleet = start(2);
    let (one, two) = (&fleet.hosts()[0], &fleet.hosts()[1]);
    let marker = format!("/root/gate-fleet-isolation-{}", std::process::id());
    one.exec_ok(&format!("echo one > {marker} && echo changed >> /etc/motd"))
        .unwrap();
    assert_eq!(one.exec_ok(&format!("cat {marker}")).unwrap().trim(), "one");
    assert!(!two.exec(&format!("test -e {marker}")).status.success());
    assert!(!Path::new(&marker).exists(), "the machine must not see it");
    assert!(!two.exec_ok("cat /etc/motd").unwrap().contains("changed"));
    assert!(
        !std::fs::read_to_string("/etc/motd")
            .unwrap_or_default()
            .contains("changed")
    );
    // host_path reads the same file from the machine side.
    assert_eq!(
        std::fs::read_to_string(one.host_path(&marker))
            .unwrap()
            .trim(),
        "one"
    );
    // The machine's files are visible (the overlay's lower layer).
    assert!(one.exec("test -x /usr/sbin/sshd").status.success());
}

#[test]
fn real_ssh_client_logs_in_as_root_with_the_fleet_key() {
    let fleet = start(2);
    let scratch = tempfile::tempdir().unwrap();
    let known_hosts = scratch.path().join("known_hosts");
    for host in fleet.hosts() {
        let output = ssh(host, &known_hosts, "true");
        assert!(output.status.success(), "{output:?}\n{}", host.sshd_log());
        let output = ssh(host, &known_hosts, "hostname; id -u");
        assert_eq!(text(&output), format!("{}\n0", host.name()));
    }
    // accept-new recorded exactly the keys the harness reports.
    let recorded = std::fs::read_to_string(&known_hosts).unwrap();
    for host in fleet.hosts() {
        assert!(recorded.contains(&host.known_hosts_line()), "{recorded}");
    }
}

#[test]
fn files_written_over_ssh_land_only_on_that_host() {
    let fleet = start(2);
    let scratch = tempfile::tempdir().unwrap();
    let known_hosts = scratch.path().join("known_hosts");
    let host = &fleet.hosts()[1];
    let output = ssh(host, &known_hosts, "echo via-ssh > /opt/gate-ssh-marker");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        host.exec_ok("cat /opt/gate-ssh-marker").unwrap().trim(),
        "via-ssh"
    );
    assert!(
        !fleet.hosts()[0]
            .exec("test -e /opt/gate-ssh-marker")
            .status
            .success()
    );
    assert!(!Path::new("/opt/gate-ssh-marker").exists());
}

#[test]
fn password_login_is_refused() {
    let fleet = start(1);
    let host = &fleet.hosts()[0];
    let output = Command::new("ssh")
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "BatchMode=yes", "-o", "PubkeyAuthentication=no"])
        .arg(format!("root@{}", host.address()))
        .arg("true")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("Permission denied"));
}

#[test]
fn kill_sshd_drops_a_running_command_and_restart_serves_again() {
    let fleet = start(1);
    let host = &fleet.hosts()[0];
    let scratch = tempfile::tempdir().unwrap();
    let known_hosts = scratch.path().join("known_hosts");
    assert!(ssh(host, &known_hosts, "true").status.success());

    // A long command over SSH, killed with sshd.
    let mut long = Command::new("ssh")
        .arg("-i")
        .arg(host.client_key())
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "BatchMode=yes"])
        .arg(format!("root@{}", host.address()))
        .arg("touch /root/started; sleep 600")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !host.exec("test -e /root/started").status.success() {
        assert!(Instant::now() < deadline, "the long command never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let listener = host.sshd_pid().expect("sshd runs");
    host.kill_sshd().unwrap();
    assert!(host.sshd_pid().is_none());
    // The killed listener is gone once reaped: poll with a deadline, do not look once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{listener}")).exists() {
        assert!(
            Instant::now() < deadline,
            "sshd {listener} outlived its kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = long.wait().unwrap();
    assert!(!status.success(), "ssh must fail when sshd dies: {status}");
    assert!(
        !host.exec("pgrep -x sleep").status.success(),
        "the command died with sshd"
    );
    assert!(
        !ssh(host, &known_hosts, "true").status.success(),
        "refused while down"
    );

    host.restart_sshd().unwrap();
    assert_ne!(host.sshd_pid(), Some(listener));
    let output = ssh(host, &known_hosts, "cat /root/started && echo back");
    assert_eq!(text(&output), "back", "{output:?}");
}

#[test]
fn regenerated_host_key_is_refused_by_a_client_that_pinned_the_old_one() {
    let fleet = start(1);
    let host = &fleet.hosts()[0];
    let scratch = tempfile::tempdir().unwrap();
    let known_hosts = scratch.path().join("known_hosts");
    std::fs::write(&known_hosts, fleet.known_hosts()).unwrap();
    assert!(ssh(host, &known_hosts, "true").status.success());

    let old = host.host_key();
    let new = host.regenerate_host_key().unwrap();
    assert_ne!(old, new);
    assert_eq!(host.host_key(), new);
    let output = ssh(host, &known_hosts, "true");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{stderr}"
    );

    std::fs::write(&known_hosts, fleet.known_hosts()).unwrap();
    assert!(ssh(host, &known_hosts, "true").status.success());
}

#[test]
fn concurrent_fleets_get_distinct_addresses() {
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| start(2));
        let b = scope.spawn(|| start(2));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut all: Vec<String> = a
        .hosts()
        .iter()
        .chain(b.hosts())
        .map(FleetHost::address)
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 4);
}

#[test]
#[ignore = "benchmark-sized: run with --ignored"]
fn fleet_of_64_starts_and_every_host_answers() {
    let started = Instant::now();
    let fleet = start(64);
    let up = started.elapsed();
    for host in fleet.hosts() {
        assert_eq!(host.exec_ok("hostname").unwrap().trim(), host.name());
    }
    let dropped = Instant::now();
    drop(fleet);
    eprintln!("64 hosts: up in {up:?}, dropped in {:?}", dropped.elapsed());
}

#[test]
fn exec_reports_failures_and_output() {
    let fleet = start(1);
    let host = &fleet.hosts()[0];
    let output = host.exec("echo out; echo err >&2; exit 3");
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(text(&output), "out");
    assert_eq!(String::from_utf8_lossy(&output.stderr).trim(), "err");
    assert!(host.exec_ok("exit 1").is_err());
    // Its own process table: PID 1 is the host's keeper.
    assert_eq!(host.exec_ok("cat /proc/1/comm").unwrap().trim(), "bash");
}

/// Run by `start_as_non_root_fails_saying_it_needs_root` as user nobody.
#[test]
#[ignore = "helper of start_as_non_root_fails_saying_it_needs_root"]
fn helper_start_fleet_and_print_the_error() {
    if std::env::var_os("GATE_HARNESS_NON_ROOT_HELPER").is_none() {
        return; // run by `--ignored` on its own: nothing to do
    }
    match SshFleet::start(1) {
        Ok(_) => println!("STARTED"),
        Err(error) => println!("ERROR {error}"),
    }
}

#[test]
fn start_as_non_root_fails_saying_it_needs_root() {
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_start_fleet_and_print_the_error",
        ])
        .args(["--nocapture", "--test-threads=1"])
        .env("GATE_HARNESS_NON_ROOT_HELPER", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(
            "ERROR the SSH fleet needs root (mount namespaces and sshd on 127.0.0.x); \
             run the tests as root"
        ),
        "{output:?}"
    );
}

#[test]
fn fleet_and_servers_can_be_shared_across_threads_and_tasks() {
    fn shareable<T: Send + Sync>() {}
    shareable::<SshFleet>();
    shareable::<FleetHost>();
    shareable::<gate_test_harness::Mirror>();
    shareable::<gate_test_harness::StaticServer>();
    shareable::<gate_test_harness::HttpsServer>();
}
