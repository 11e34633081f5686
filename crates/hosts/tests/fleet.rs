//! The `hosts` validator and every `steps` preparer step over SSH, on a fleet of 3 real
//! sshd hosts (`gate_test_harness::SshFleet`: each its own 127.0.0.x address and its own
//! view of the filesystem), packages and wheels from the loopback `Mirror`.
//!
//! Hosts are inspected with `FleetHost::exec` (inside the host, not over SSH), so what the
//! tests see does not depend on the code under test. Needs root, sshd, and the mirror
//! cache filled by `scripts/fetch-mirror`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gate_core::junit::read_counts;
use gate_core::keys::{KeysFile, RunKeys};
use gate_core::{BackendConfig, HostPreparer, HostValidator, Registry, Stage};
use gate_ssh::testkit::FleetStage;
use gate_test_harness::{FleetHost, Mirror};

const ALICE: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHQ9bmWwIYG5vUmv8a9x4UHNdZ0zQ7yqTEG2+XyB4xXk alice@laptop";

/// A stage over a fleet of `hosts`, whose keys file holds the key the "provider" (the
/// harness) injected at boot.
async fn fleet_stage(hosts: usize, stage: Stage) -> FleetStage {
    let mut f = FleetStage::start(hosts, stage).await;
    let keys = format!("{}\n", f.fleet.client_public_key().unwrap());
    f.stage.cx.keys = RunKeys {
        keys_file: Some(KeysFile::parse("https://keys.example/team", keys.as_bytes()).unwrap()),
        run_key: None,
    };
    f
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    gate_hosts::register(&mut registry);
    registry
}

fn validator(toml: &str) -> Arc<dyn HostValidator> {
    let section = BackendConfig::from_toml("validator", gate_hosts::VALIDATOR, toml).unwrap();
    registry().validator(&section).unwrap()
}

fn preparer(toml: &str) -> Arc<dyn HostPreparer> {
    let section = BackendConfig::from_toml("preparer", gate_hosts::PREPARER, toml).unwrap();
    registry().preparer(&section).unwrap()
}

/// `shell` inside `host`; its stdout, or a panic with what went wrong.
fn on(host: &FleetHost, shell: &str) -> String {
    host.exec_ok(shell)
        .unwrap_or_else(|e| panic!("{e}"))
        .trim()
        .to_owned()
}

/// Whether `shell` succeeds inside `host`.
fn holds(host: &FleetHost, shell: &str) -> bool {
    host.exec(shell).status.success()
}

/// Every process of a fleet host stopped (SIGSTOP): it holds its connections and answers
/// nothing. Dropping this lets them go on (SIGCONT), also when a test fails.
struct Frozen(Vec<i32>);

impl Frozen {
    fn host(host: &FleetHost) -> Self {
        let mut pids = Vec::new();
        let mut todo = vec![host.keeper_pid()];
        while let Some(pid) = todo.pop() {
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
                .into_iter()
                .flatten();
            for task in tasks.flatten() {
                let children =
                    std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
                todo.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<i32>().ok()),
                );
            }
            if pid != host.keeper_pid() {
                pids.push(pid);
            }
        }
        assert!(!pids.is_empty(), "{} has no processes to stop", host.name());
        signal("STOP", &pids);
        Self(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal("CONT", &self.0);
    }
}

fn signal(name: &str, pids: &[i32]) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .args(pids.iter().map(i32::to_string))
        .status();
}

const CHECKS: &str = r#"
commands = ["ssh", "python3"]
disk = [{ path = "/", min_free = "1M" }]
"#;

#[tokio::test]
async fn validate_over_ssh_passes_on_a_clean_fleet_and_names_a_leftover() {
    let f = fleet_stage(3, Stage::Validate).await;
    validator(CHECKS)
        .validate(&f.stage.cx)
        .await
        .unwrap_or_else(|e| panic!("a clean fleet fails validation: {e}"));
    let report = read_counts(&f.stage.cx.results_dir().join("validate.xml")).unwrap();
    // reachable, cloud-init (not installed: skipped), /etc/openstack_deploy, 2 commands,
    // disk, the keys file's keys in root's authorized_keys: 7 per host.
    assert_eq!(
        (report.tests, report.skipped, report.failures),
        (21, 3, 0),
        "{report:?}"
    );

    on(f.host(2), "mkdir -p /etc/openstack_deploy");
    assert!(
        !Path::new("/etc/openstack_deploy").exists(),
        "the leftover is on fleet-2 only"
    );
    let err = validator(CHECKS)
        .validate(&f.stage.cx)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("1 of 3 hosts failed")
            && err.contains("host fleet-2: validate: clean: /etc/openstack_deploy absent: present"),
        "{err}"
    );
}

#[tokio::test]
async fn validate_lists_a_host_that_never_answers_and_one_whose_sshd_died_after_the_deadline() {
    let f = fleet_stage(3, Stage::Validate).await;
    f.host(3).kill_sshd().unwrap();
    let frozen = Frozen::host(f.host(2));
    let started = Instant::now();
    let err = validator("reach_timeout_secs = 3\nmarkers = []")
        .validate(&f.stage.cx)
        .await
        .unwrap_err();
    let took = started.elapsed();
    drop(frozen);
    assert!(err.is_infrastructure(), "{err}");
    let text = err.to_string();
    assert!(text.contains("2 of 3 hosts failed"), "{text}");
    assert!(
        text.contains("host fleet-2: unreachable: no answer within 3s"),
        "{text}"
    );
    assert!(text.contains("host fleet-3: unreachable"), "{text}");
    assert!(!text.contains("host fleet-1"), "{text}");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(30),
        "validation took {took:?} with a 3 s deadline"
    );
    let report = read_counts(&f.stage.cx.results_dir().join("validate.xml")).unwrap();
    assert_eq!(report.errors, 2, "{report:?}");
}

#[tokio::test]
async fn authorized_keys_and_ssh_mesh_let_the_primary_ssh_to_every_host_and_twice_is_harmless() {
    let mut f = fleet_stage(3, Stage::PrepareHosts).await;
    let team = format!("{ALICE}\n{}\n", f.fleet.client_public_key().unwrap());
    f.stage.cx.keys.keys_file =
        Some(KeysFile::parse("https://keys.example/team", team.as_bytes()).unwrap());
    let p = preparer(
        r#"
        [[steps]]
        type = "authorized-keys"
        [[steps]]
        type = "ssh-mesh"
        host_key_files = ["/etc/ssh/gate/ssh_host_ed25519_key.pub"]
        "#,
    );
    p.prepare(&f.stage.cx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // The proof: plain ssh from the primary, by name and by address, to every other host.
    let primary = f.host(1);
    for n in 2..=3 {
        let other = f.host(n);
        let by_name = on(primary, &format!("ssh {} hostname", other.name()));
        assert_eq!(by_name, other.name());
        let by_address = on(
            primary,
            &format!("ssh -o BatchMode=yes root@{} hostname", other.address()),
        );
        assert_eq!(by_address, other.name());
        assert!(
            !holds(other, "test -e /root/.ssh/id_ed25519"),
            "the private key is on {} too",
            other.name()
        );
    }
    let public = on(primary, "cat /root/.ssh/id_ed25519.pub");
    let files = "cat /root/.ssh/authorized_keys /root/.ssh/known_hosts /root/.ssh/config 2>/dev/null || true";
    let before: Vec<String> = f.fleet.hosts().iter().map(|h| on(h, files)).collect();

    p.prepare(&f.stage.cx)
        .await
        .unwrap_or_else(|e| panic!("a second run failed: {e}"));
    // The same mesh from ssh-keyscan instead of the host key files.
    preparer("[[steps]]\ntype = \"ssh-mesh\"\nknown_hosts = \"scan\"")
        .prepare(&f.stage.cx)
        .await
        .unwrap_or_else(|e| panic!("the scanned mesh failed: {e}"));
    let after: Vec<String> = f.fleet.hosts().iter().map(|h| on(h, files)).collect();
    assert_eq!(after, before, "running again changed a file");
    assert_eq!(on(primary, "cat /root/.ssh/id_ed25519.pub"), public);
    for host in f.fleet.hosts() {
        let keys = on(host, "cat /root/.ssh/authorized_keys");
        for key in [
            ALICE,
            public.as_str(),
            &f.fleet.client_public_key().unwrap(),
        ] {
            let blob = key.split_whitespace().nth(1).unwrap();
            assert_eq!(keys.matches(blob).count(), 1, "{}: {keys}", host.name());
        }
        assert_eq!(on(host, "stat -c %a /root/.ssh/authorized_keys"), "600");
    }
    // What validate checks of the keys file now holds on every host.
    validator("")
        .validate(&f.stage.cx)
        .await
        .unwrap_or_else(|e| panic!("validate after authorized-keys: {e}"));
}

#[tokio::test]
async fn packages_come_from_the_mirror_only_and_a_second_run_needs_no_network() {
    let mirror =
        Mirror::start_cached().unwrap_or_else(|e| panic!("{e} (run scripts/fetch-mirror)"));
    let f = fleet_stage(3, Stage::PrepareHosts).await;
    let p = preparer(&format!(
        r#"
        [[steps]]
        type = "packages"
        packages = ["hello", "sl"]
        mirror = {{ url = "{}/apt", suite = "./", trusted = true }}
        retry_delay_secs = 1
        "#,
        mirror.url()
    ));
    p.prepare(&f.stage.cx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for host in f.fleet.hosts() {
        assert_eq!(on(host, "hello"), "Hello, world!");
        assert!(holds(host, "dpkg-query -W sl"));
        let policy = on(host, "apt-cache policy");
        assert!(policy.contains(&mirror.url()), "{policy}");
        assert!(
            !policy.contains("debian.org"),
            "apt still uses other sources: {policy}"
        );
    }
    assert!(
        !Path::new("/usr/bin/hello").exists(),
        "hello is installed on the fleet hosts, not on this machine"
    );
    let requests = mirror.server().requests().len();
    p.prepare(&f.stage.cx)
        .await
        .unwrap_or_else(|e| panic!("a second run failed: {e}"));
    assert_eq!(
        mirror.server().requests().len(),
        requests,
        "the second run fetched again"
    );
}

#[tokio::test]
async fn a_failing_mirror_is_retried_and_then_named() {
    let f = fleet_stage(3, Stage::PrepareHosts).await;
    // A port nothing listens on: apt-get update fails on every attempt.
    let p = preparer(
        r#"
        [[steps]]
        type = "packages"
        packages = ["hello"]
        mirror = { url = "http://127.0.0.1:9/apt", suite = "./", trusted = true }
        retries = 2
        retry_delay_secs = 1
        "#,
    );
    let err = p.prepare(&f.stage.cx).await.unwrap_err().to_string();
    assert!(
        err.contains("step 1/1 `packages`: 3 of 3 hosts failed"),
        "{err}"
    );
    assert!(err.contains("host fleet-1: `install hello`"), "{err}");
    let log = std::fs::read_to_string(f.stage.cx.logs_dir().join("fleet-2.log")).unwrap();
    assert!(log.contains("attempt 1 of 2 failed"), "{log}");
}

#[tokio::test]
async fn ansible_is_pinned_in_a_venv_on_the_primary_from_the_mirror_wheels_once() {
    let mirror =
        Mirror::start_cached().unwrap_or_else(|e| panic!("{e} (run scripts/fetch-mirror)"));
    let version = mirror.ansible_core_version().unwrap();
    let f = fleet_stage(3, Stage::PrepareHosts).await;
    let p = preparer(&format!(
        r#"
        [[steps]]
        type = "ansible"
        version = "{version}"
        python = "/usr/bin/python3"
        index_url = "{}"
        "#,
        mirror.pip_index_url()
    ));
    p.prepare(&f.stage.cx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let shown = on(f.host(1), "/opt/ansible-runtime/bin/ansible --version");
    assert!(shown.contains(&format!("[core {version}]")), "{shown}");
    assert!(
        !holds(f.host(2), "test -e /opt/ansible-runtime"),
        "ansible is for the primary"
    );
    let requests = mirror.server().requests().len();
    p.prepare(&f.stage.cx)
        .await
        .unwrap_or_else(|e| panic!("a second run failed: {e}"));
    assert_eq!(
        mirror.server().requests().len(),
        requests,
        "the second run fetched again"
    );
}

/// Detaches, from this machine, every loop device whose backing file path holds `token`
/// (the fleet hosts' files), when dropped: also when a test fails.
struct Loops(String);

impl Loops {
    fn attached(&self) -> Vec<String> {
        let listing = Command::new("losetup")
            .args(["--list", "--noheadings", "--output", "NAME,BACK-FILE"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        listing
            .lines()
            .filter(|l| l.contains(&self.0))
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    }
}

impl Drop for Loops {
    fn drop(&mut self) {
        for dev in self.attached() {
            let _ = Command::new("losetup").args(["-d", &dev]).status();
        }
    }
}

#[tokio::test]
async fn loop_devices_are_made_on_every_host_once_and_removed_after() {
    let f = fleet_stage(3, Stage::PrepareHosts).await;
    let token = format!("gate-hosts-test-{}", std::process::id());
    let loops = Loops(token.clone());
    let dir = format!("/var/lib/{token}");
    let p = preparer(&format!(
        r#"
        [[steps]]
        type = "devices"
        dir = "{dir}"
        loop = [{{ name = "swift1", size = "16M", filesystem = "ext4" }}]
        "#
    ));
    p.prepare(&f.stage.cx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let manifests: Vec<String> = f
        .fleet
        .hosts()
        .iter()
        .map(|h| on(h, &format!("cat {dir}/devices.tsv")))
        .collect();
    let mut devices = Vec::new();
    for (host, manifest) in f.fleet.hosts().iter().zip(&manifests) {
        let device = manifest.split('\t').nth(1).unwrap().to_owned();
        assert_eq!(
            on(host, &format!("blkid -p -o value -s LABEL {device}")),
            "swift1"
        );
        assert_eq!(
            on(
                host,
                &format!("losetup --list --noheadings --output NAME --associated {dir}/swift1.img")
            ),
            device
        );
        devices.push(device);
    }
    devices.sort();
    devices.dedup();
    assert_eq!(
        devices.len(),
        3,
        "each host has its own device: {devices:?}"
    );

    p.prepare(&f.stage.cx)
        .await
        .unwrap_or_else(|e| panic!("a second run failed: {e}"));
    for (host, manifest) in f.fleet.hosts().iter().zip(&manifests) {
        assert_eq!(&on(host, &format!("cat {dir}/devices.tsv")), manifest);
        let count = on(
            host,
            &format!("losetup --list --noheadings --associated {dir}/swift1.img | wc -l"),
        );
        assert_eq!(count, "1", "{}: a second device", host.name());
    }
    assert_eq!(
        loops.attached().len(),
        3,
        "the machine sees the hosts' devices"
    );
    drop(loops);
    assert!(
        Loops(token).attached().is_empty(),
        "loop devices left behind"
    );
}

#[tokio::test]
async fn networking_from_a_local_file_and_scripts_run_on_every_host_over_ssh_twice() {
    let f = fleet_stage(3, Stage::PrepareHosts).await;
    let template = f.stage.dir.path().join("bridges.sh");
    // Written to run twice: the address is set, not appended.
    std::fs::write(
        &template,
        "mkdir -p /etc/gate-net\n\
         echo \"br-mgmt 172.29.236.$((10 + GATE_HOST_INDEX))/22 mtu $MTU via $GATE_HOST_ADDRESS\" > /etc/gate-net/br-mgmt\n",
    )
    .unwrap();
    let p = preparer(&format!(
        r#"
        env = {{ MTU = "1500" }}
        [[steps]]
        type = "networking"
        file = "{}"
        env = {{ MTU = "9000" }}
        [[steps]]
        type = "script"
        name = "hosts file"
        script = 'grep -q "$GATE_PRIMARY" /etc/hosts || echo "127.0.0.1 $GATE_PRIMARY" >> /etc/hosts'
        "#,
        template.display()
    ));
    for _ in 0..2 {
        p.prepare(&f.stage.cx)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for (i, host) in f.fleet.hosts().iter().enumerate() {
        assert_eq!(
            on(host, "cat /etc/gate-net/br-mgmt"),
            format!(
                "br-mgmt 172.29.236.{}/22 mtu 9000 via {}",
                11 + i,
                host.address()
            )
        );
        assert_eq!(on(host, "grep -c fleet-1 /etc/hosts"), "1");
        assert_eq!(
            on(host, "stat -c %a /root/.gate/prepare/networking.sh"),
            "700"
        );
    }
    assert!(
        !Path::new("/etc/gate-net").exists(),
        "written on the hosts, not here"
    );
}
