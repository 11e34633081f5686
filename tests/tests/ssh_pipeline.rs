//! Whole pipelines over SSH on real sshd lab hosts (the tests/harness fleet), with the
//! `static` provider, a keys file fetched over HTTPS with the test's own CA, `gate exec`
//! and `gate inventory`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gate_test_harness::{HttpsServer, SshFleet};
use gate_tests::{Workspace, text};

/// Two real public keys for the keys file.
const TEAM_KEYS: &str = "# the team\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHQ9bmWwIYG5vUmv8a9x4UHNdZ0zQ7yqTEG2+XyB4xXk alice@example\r\n\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBx2xEN6n9LOr7RUNBPuwXn1dhuCIpZgbJ+0C9Hmt3X0 bob@example\n";

/// Serves `keys` over HTTPS; returns the server (keep it alive) and its URL.
fn keys_server(dir: &std::path::Path, keys: &str) -> (HttpsServer, String) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("keys"), keys).unwrap();
    let server = HttpsServer::start(dir).unwrap();
    let url = server.url("keys");
    (server, url)
}

/// A config for `fleet` with the static provider, `extra` appended.
fn config(fleet: &SshFleet, keys_url: &str, ca: &std::path::Path, extra: &str) -> String {
    let mut hosts = String::new();
    for host in fleet.hosts() {
        hosts.push_str(&format!(
            "[[provider.hosts]]\nname = \"{}\"\naddress = \"{}\"\nport = {}\nlabels = [\"infra\"]\n",
            host.name(),
            host.address(),
            host.port()
        ));
    }
    format!(
        r#"
[run]
keys_file = "{keys_url}"
keys_ca = "{ca}"

[transport.ssh]
identities = ["{key}"]
agent = false
connect_timeout_secs = 30
poll_secs = 1

[provider]
backend = "static"
{hosts}
{extra}
"#,
        ca = ca.display(),
        key = fleet.client_key().display(),
    )
}

const PIPELINE: &str = r#"
[validator]
backend = "hosts"
reach_timeout_secs = 20
commands = ["git", "ssh", "tar"]
disk = [{ path = "/", min_free = "10M" }]
keys = "skip"

[preparer]
backend = "steps"
[[preparer.steps]]
type = "authorized-keys"
[[preparer.steps]]
type = "ssh-mesh"
# The fleet's sshd keeps its host key outside /etc/ssh: ask the servers themselves.
known_hosts = "scan"
[[preparer.steps]]
type = "script"
name = "mark prepared"
hosts = "all"
run = ["touch", "/etc/gate-prepared"]

[deployer]
backend = "script"
hosts = "all"
env = { RELEASE = "27.1.0" }
[[deployer.prepare]]
script = 'mkdir -p /etc/gate-demo /var/log/gate-demo; echo "release=$RELEASE" > /etc/gate-demo/deploy.conf'
[[deployer.deploy]]
script = 'grep -qx "release=$RELEASE" /etc/gate-demo/deploy.conf; hostname > /var/log/gate-demo/deployed; echo "deployed on $(hostname)"'

[tester]
backend = "command"
hosts = "all"
[[tester.tests]]
name = "deployed here"
script = 'test "$(cat /var/log/gate-demo/deployed)" = "$(hostname)"'

[archiver]
paths = ["/etc/gate-demo", "/var/log/gate-demo", "/no/such/dir"]
"#;

#[test]
fn a_whole_pipeline_runs_over_ssh_on_three_lab_hosts() {
    let fleet = SshFleet::start(3).unwrap();
    let ws = Workspace::new();
    let (server, url) = keys_server(&ws.path().join("www"), TEAM_KEYS);
    ws.config(&config(&fleet, &url, &server.ca_cert_path(), PIPELINE));
    let out = ws.run(&["run", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("keys file: 2 key(s)"));

    for stage in [
        "validate",
        "prepare-hosts",
        "prepare-deployment",
        "deploy",
        "test",
        "archive",
        "cleanup",
    ] {
        assert_eq!(ws.stage_status(stage), "passed", "{stage}");
    }
    let validate = ws.artifacts().join("results/validate.xml");
    assert!(
        std::fs::read_to_string(&validate)
            .unwrap()
            .contains("fleet-3"),
        "validate.xml names every host"
    );
    for host in fleet.hosts() {
        let name = host.name();
        // prepare-hosts: the keys file and the run key in root's authorized_keys, once each...
        let authorized = host.exec_ok("cat /root/.ssh/authorized_keys").unwrap();
        for key in ["alice@example", "bob@example"] {
            assert_eq!(authorized.matches(key).count(), 1, "{name}: {authorized}");
        }
        assert!(host.exec("test -e /etc/gate-prepared").status.success());
        // ...the primary reaches every host over the mesh...
        let from_primary = fleet.hosts()[0]
            .exec_ok(&format!("ssh -o BatchMode=yes {name} hostname"))
            .unwrap();
        assert_eq!(from_primary.trim(), name);
        // deploy ran on the host itself (its own filesystem view)...
        assert_eq!(
            host.exec_ok("cat /var/log/gate-demo/deployed")
                .unwrap()
                .trim(),
            name
        );
        // ...archive brought its files home...
        let archived = ws.artifacts().join(name).join("var/log/gate-demo/deployed");
        assert_eq!(std::fs::read_to_string(archived).unwrap().trim(), name);
        // ...and cleanup released the reservation.
        assert!(
            !host
                .exec("test -e /var/lock/gate-reservation")
                .status
                .success()
        );
        // The host key was pinned on first contact.
        let pinned = std::fs::read_to_string(ws.state().join("known_hosts")).unwrap();
        assert!(pinned.contains(&host.address()), "{pinned}");
    }
    assert_eq!(ws.stage_status("cleanup"), "passed");
    assert!(ws.live().is_empty());
    let ledger = std::fs::read_to_string(ws.state().join("resources.jsonl")).unwrap();
    assert_eq!(ledger.matches("\"op\":\"released\"").count(), 3, "{ledger}");
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ws.state().join("keys/keys_file.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["keys"].as_array().unwrap().len(), 2);
    assert_eq!(saved["digest"].as_str().unwrap().len(), 64);
}

#[test]
fn exec_and_inventory_work_on_the_kept_hosts() {
    let fleet = SshFleet::start(3).unwrap();
    let ws = Workspace::new();
    let (server, url) = keys_server(&ws.path().join("www"), TEAM_KEYS);
    ws.config(&config(&fleet, &url, &server.ca_cert_path(), ""));
    let out = ws.run(&["run", "-c", "gate.toml", "--keep"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let out = ws.run(&["exec", "-c", "gate.toml", "--", "hostname"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for host in fleet.hosts() {
        assert!(
            stdout.contains(&format!("== {} (exited with status 0", host.name())),
            "{stdout}"
        );
        assert!(stdout.lines().any(|l| l == host.name()), "{stdout}");
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 host(s): 3 ok, 0 failed"));

    let out = ws.run(&[
        "exec",
        "-c",
        "gate.toml",
        "--",
        "sh",
        "-c",
        "test \"$(hostname)\" != fleet-2 || { echo broken >&2; exit 3; }",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("== fleet-2 (exited with status 3") && stdout.contains("! broken"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 host(s): 2 ok, 1 failed"));

    let out = ws.run(&["inventory", "-c", "gate.toml", "--format", "ansible"]);
    let ansible = String::from_utf8_lossy(&out.stdout);
    let first = &fleet.hosts()[0];
    assert!(
        ansible.contains(&format!(
            "fleet-1 ansible_host={} ansible_port={} ansible_user=root",
            first.address(),
            first.port()
        )),
        "{ansible}"
    );
    assert!(
        ansible.contains("[infra]\nfleet-1\nfleet-2\nfleet-3\n"),
        "{ansible}"
    );

    // The real ssh client reaches a host with what `gate inventory --format ssh-config` says
    // (plus the fleet's key, which is not the run's own key).
    let out = ws.run(&["inventory", "-c", "gate.toml", "--format", "ssh-config"]);
    let ssh_config = ws.path().join("ssh_config");
    std::fs::write(&ssh_config, &out.stdout).unwrap();
    let status = std::process::Command::new("ssh")
        .current_dir(ws.path())
        .arg("-F")
        .arg(&ssh_config)
        .arg("-i")
        .arg(fleet.client_key())
        .args(["-o", "BatchMode=yes", "fleet-3", "hostname"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&status.stdout).trim(),
        "fleet-3",
        "{}",
        text(&status)
    );

    let out = ws.run(&["cleanup", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for host in fleet.hosts() {
        assert!(
            !host
                .exec("test -e /var/lock/gate-reservation")
                .status
                .success()
        );
    }
}

#[test]
fn a_bad_keys_file_stops_the_run_before_anything_is_applied() {
    let fleet = SshFleet::start(1).unwrap();
    let ws = Workspace::new();
    let bad = format!(
        "{TEAM_KEYS}command=\"/bin/evil\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHQ9bmWwIYG5vUmv8a9x4UHNdZ0zQ7yqTEG2+XyB4xXk x\n"
    );
    let (server, url) = keys_server(&ws.path().join("www"), &bad);
    ws.config(&config(&fleet, &url, &server.ca_cert_path(), ""));
    let out = ws.run(&["run", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 5: key options") && stderr.contains("no keys were applied"),
        "{stderr}"
    );
    assert!(!ws.state().join("run.json").exists());
    assert!(
        !fleet.hosts()[0]
            .exec("test -e /var/lock/gate-reservation")
            .status
            .success()
    );

    // Without the test CA the HTTPS server is not trusted.
    let (server, url) = keys_server(&ws.path().join("www2"), TEAM_KEYS);
    let untrusted =
        config(&fleet, &url, &server.ca_cert_path(), "").replace("keys_ca = ", "# keys_ca = ");
    ws.config(&untrusted);
    let out = ws.run(&["run", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&url),
        "{}",
        text(&out)
    );
}

#[test]
fn exec_authenticates_with_the_ssh_agent_and_ssh_opens_a_host() {
    let fleet = SshFleet::start(2).unwrap();
    let ws = Workspace::new();
    let socket = ws.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "ssh-agent did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let added = std::process::Command::new("ssh-add")
        .arg(fleet.client_key())
        .env("SSH_AUTH_SOCK", &socket)
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", text(&added));

    // An inventory file of the fleet, and a config with the agent and no key file.
    let hosts: Vec<serde_json::Value> = fleet
        .hosts()
        .iter()
        .map(|h| {
            serde_json::json!({"name": h.name(), "address": h.address(), "port": h.port(),
                               "user": "root", "transport": "ssh"})
        })
        .collect();
    let inventory = ws.path().join("inventory.json");
    std::fs::write(
        &inventory,
        serde_json::json!({ "hosts": hosts }).to_string(),
    )
    .unwrap();
    ws.config("[transport.ssh]\nagent = true\nconnect_timeout_secs = 10\n");
    let out = ws
        .gate()
        .args([
            "exec",
            "-c",
            "gate.toml",
            "-i",
            "inventory.json",
            "--",
            "hostname",
        ])
        .env("SSH_AUTH_SOCK", &socket)
        .output()
        .unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().any(|l| l == "fleet-2"), "{stdout}");

    // Without the agent and without a key, authentication fails naming host and user.
    let out = ws
        .gate()
        .args([
            "exec",
            "-c",
            "gate.toml",
            "-i",
            "inventory.json",
            "--",
            "hostname",
        ])
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("host fleet-1: authentication as `root`"),
        "{stdout}"
    );
}

#[test]
fn gate_ssh_runs_a_command_on_a_named_host() {
    let fleet = SshFleet::start(2).unwrap();
    let ws = Workspace::new();
    let (server, url) = keys_server(&ws.path().join("www"), TEAM_KEYS);
    ws.config(&config(&fleet, &url, &server.ca_cert_path(), ""));
    let out = ws.run(&["run", "-c", "gate.toml", "--to", "allocate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // `gate ssh` hands over to the ssh client with the run's known_hosts; the fleet key
    // comes from [transport.ssh] identities.
    let out = ws.run(&["ssh", "-c", "gate.toml", "fleet-2", "--", "hostname"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "fleet-2",
        "{}",
        text(&out)
    );
    let out = ws.run(&["ssh", "-c", "gate.toml", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hosts: fleet-1, fleet-2"));
    let out = ws.run(&["cleanup", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn sshd_killed_mid_deploy_names_the_host_and_archive_and_cleanup_still_run() {
    let fleet = SshFleet::start(3).unwrap();
    let ws = Workspace::new();
    let (server, url) = keys_server(&ws.path().join("www"), TEAM_KEYS);
    let deploy = r#"
[deployer]
backend = "script"
hosts = "all"
[[deployer.deploy]]
script = 'mkdir -p /var/log/gate-demo; hostname > /var/log/gate-demo/started; sleep 30'
timeout_secs = 120

[archiver]
paths = ["/var/log/gate-demo"]
"#;
    ws.config(&config(&fleet, &url, &server.ca_cert_path(), deploy));
    let child = ws
        .gate()
        .args(["run", "-c", "gate.toml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let victim = &fleet.hosts()[1];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !fleet.hosts().iter().all(|h| {
        h.exec("test -e /var/log/gate-demo/started")
            .status
            .success()
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "the deploy never started everywhere"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    victim.kill_sshd().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // deploy failed naming the host; archive and cleanup ran; fleet-2's reservation could
    // not be released while its sshd is down, so cleanup reports it: exit 3.
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(ws.stage_status("deploy"), "failed");
    assert!(stderr.contains("host fleet-2: unreachable"), "{stderr}");
    assert_eq!(ws.stage_status("archive"), "failed");
    assert_eq!(ws.stage_status("cleanup"), "failed");
    for name in ["fleet-1", "fleet-3"] {
        let archived = ws.artifacts().join(name).join("var/log/gate-demo/started");
        assert_eq!(std::fs::read_to_string(archived).unwrap().trim(), name);
        let host = fleet.hosts().iter().find(|h| h.name() == name).unwrap();
        assert!(
            !host
                .exec("test -e /var/lock/gate-reservation")
                .status
                .success(),
            "{name} released"
        );
    }
    let live = ws.live();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].spec.name, "fleet-2");

    // Once the host is back, `gate cleanup` frees what was left.
    victim.restart_sshd().unwrap();
    let out = ws.run(&["cleanup", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(ws.live().is_empty());
    assert!(
        !victim
            .exec("test -e /var/lock/gate-reservation")
            .status
            .success()
    );
}

#[test]
fn the_keys_file_is_fetched_once_per_run_from_file_and_http_urls() {
    let ws = Workspace::new();
    let www = ws.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("keys"), TEAM_KEYS).unwrap();
    let server = gate_test_harness::StaticServer::start(&www).unwrap();
    for url in [
        format!("file://{}", www.join("keys").display()),
        www.join("keys").display().to_string(),
        server.url("keys"),
    ] {
        ws.config(&format!(
            "[run]\nkeys_file = \"{url}\"\n[provider]\nhosts = 1\n"
        ));
        let out = ws.run(&["run", "-c", "gate.toml", "--to", "allocate"]);
        assert_eq!(out.status.code(), Some(0), "{url}: {}", text(&out));
        let saved: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(ws.state().join("keys/keys_file.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(saved["source"], url.as_str());
        assert_eq!(saved["keys"].as_array().unwrap().len(), 2, "{url}");
        // Later stages read the saved copy: the source may disappear.
        let fetched_before = server.requests().len();
        let out = ws.run(&["stage", "cleanup", "-c", "gate.toml"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(
            server.requests().len(),
            fetched_before,
            "cleanup fetched the keys again"
        );
    }
    ws.config("[run]\nkeys_file = \"ftp://example.invalid/keys\"\n");
    let out = ws.run(&["run", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only https://, http:// and file://"));
}
