//! The harness's real OpenStack services: Keystone tokens, Nova servers from the Glance
//! image, Heat stacks, per-test projects, and servers joined to SSH fleet hosts.
//! Needs `scripts/openstack-env` (the virtualenv and RabbitMQ) and root (the fleet).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use gate_test_harness::openstack::ApiSession;
use gate_test_harness::{OpenStack, SshFleet};
use serde_json::{Value, json};

fn cloud() -> &'static OpenStack {
    match OpenStack::shared() {
        Ok(cloud) => cloud,
        Err(error) => panic!("the OpenStack services did not start: {error}"),
    }
}

/// Polls a server until `done` says so about its JSON (`None`: it is gone, 404).
fn wait_server(
    session: &ApiSession,
    id: &str,
    timeout: Duration,
    done: impl Fn(Option<&Value>) -> bool,
) -> Option<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let answer = session
            .call("GET", "compute", &format!("/servers/{id}"), None)
            .unwrap();
        let server = (answer.status != 404).then(|| answer.json()["server"].clone());
        assert!(
            answer.status == 200 || answer.status == 404,
            "GET server: HTTP {}: {}",
            answer.status,
            answer.text()
        );
        if done(server.as_ref()) {
            return server;
        }
        if let Some(server) = &server {
            assert_ne!(server["status"], "ERROR", "server in ERROR: {server}");
        }
        assert!(
            Instant::now() < deadline,
            "server {id} not done in time: {server:?}\nnova-compute log:\n{}",
            cloud().log("nova-compute")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn boot(session: &ApiSession, name: &str, user_data: Option<&str>) -> String {
    let cloud = cloud();
    let mut server = json!({"name": name, "imageRef": cloud.image_id(),
                            "flavorRef": cloud.flavor_id(), "networks": "none",
                            "metadata": {"gate_run_id": "gate-harness-test"}});
    if let Some(text) = user_data {
        use base64::Engine as _;
        server["user_data"] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
    let made = session
        .post("compute", "/servers", &json!({"server": server}))
        .unwrap();
    made["server"]["id"].as_str().unwrap().to_owned()
}

fn delete_server(session: &ApiSession, id: &str) {
    let answer = session
        .call("DELETE", "compute", &format!("/servers/{id}"), None)
        .unwrap();
    assert_eq!(answer.status, 204, "{}", answer.text());
    wait_server(session, id, Duration::from_secs(60), |s| s.is_none());
}

fn server_names(session: &ApiSession) -> Vec<String> {
    let list = session.get("compute", "/servers").unwrap();
    list["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn keystone_issues_a_token_with_every_service_in_its_catalog() {
    let cloud = cloud();
    let creds = cloud.project("token").unwrap();
    let session = creds.session().unwrap();
    assert!(!session.token().is_empty());
    assert_eq!(session.project_id(), creds.project_id());
    for service in [
        "identity",
        "compute",
        "image",
        "placement",
        "network",
        "orchestration",
    ] {
        let url = session.endpoint(service).unwrap();
        assert!(url.starts_with("http://127.0.0.1:"), "{service}: {url}");
    }
    // A wrong password is refused with 401, and the error does not show it.
    let refused = ApiSession::authenticate(
        creds.auth_url(),
        creds.username(),
        "not-the-password",
        creds.project_name(),
        creds.domain(),
    )
    .unwrap_err()
    .to_string();
    assert!(refused.contains("HTTP 401"), "{refused}");
    assert!(!refused.contains("not-the-password"), "{refused}");
    println!(
        "started in {:.1}s, {} MiB resident",
        cloud.started_in().as_secs_f64(),
        cloud.memory_bytes() / (1024 * 1024)
    );
}

#[test]
fn a_server_from_the_image_becomes_active_and_deletes_to_404() {
    let cloud = cloud();
    let session = cloud.project("server").unwrap().session().unwrap();
    let started = Instant::now();
    let id = boot(&session, "gate-harness-server", None);
    let server = wait_server(&session, &id, Duration::from_secs(120), |s| {
        s.is_some_and(|s| s["status"] == "ACTIVE")
    })
    .unwrap();
    println!("ACTIVE after {:.1}s", started.elapsed().as_secs_f64());
    assert_eq!(server["image"]["id"], cloud.image_id());
    assert_eq!(server["metadata"]["gate_run_id"], "gate-harness-test");
    let started = Instant::now();
    delete_server(&session, &id);
    println!("404 after {:.1}s", started.elapsed().as_secs_f64());
}

#[test]
fn test_projects_do_not_see_each_others_servers() {
    let cloud = cloud();
    let one = cloud.project("one").unwrap().session().unwrap();
    let two = cloud.project("two").unwrap().session().unwrap();
    let id = boot(&one, "gate-harness-only-in-one", None);
    assert_eq!(server_names(&one), ["gate-harness-only-in-one"]);
    assert!(server_names(&two).is_empty());
    let other = two
        .call("GET", "compute", &format!("/servers/{id}"), None)
        .unwrap();
    assert_eq!(other.status, 404, "{}", other.text());
    wait_server(&one, &id, Duration::from_secs(120), |s| {
        s.is_some_and(|s| s["status"] == "ACTIVE")
    });
    delete_server(&one, &id);
}

const STACK: &str = r#"
heat_template_version: 2021-04-16
parameters:
  image: {type: string}
  flavor: {type: string}
resources:
  nothing:
    type: OS::Heat::None
  secret:
    type: OS::Heat::RandomString
    properties: {length: 12}
  server:
    type: OS::Nova::Server
    properties:
      image: {get_param: image}
      flavor: {get_param: flavor}
      networks: [{allocate_network: none}]
      user_data_format: RAW
      software_config_transport: POLL_SERVER_HEAT
      metadata: {gate_run_id: gate-harness-test}
outputs:
  server_id: {value: {get_resource: server}}
  secret_length: {value: {str_split: ['', {get_attr: [secret, value]}]}}
  secret: {value: {get_attr: [secret, value]}}
"#;

fn wait_stack(session: &ApiSession, path: &str, want: &str) -> Option<Value> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let answer = session.call("GET", "orchestration", path, None).unwrap();
        if answer.status == 404 {
            return None;
        }
        let stack = answer.json()["stack"].clone();
        let status = stack["stack_status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if status == want {
            return Some(stack);
        }
        assert!(
            !status.ends_with("FAILED"),
            "stack {status}: {}\nheat-engine log:\n{}",
            stack["stack_status_reason"],
            cloud().log("heat-engine")
        );
        assert!(Instant::now() < deadline, "stack still {status}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_heat_stack_with_a_server_completes_with_its_outputs_and_deletes() {
    let cloud = cloud();
    let session = cloud.project("heat").unwrap().session().unwrap();
    let started = Instant::now();
    let made = session
        .post(
            "orchestration",
            "/stacks",
            &json!({"stack_name": "gate-harness-stack", "template": STACK, "timeout_mins": 5,
                    "parameters": {"image": cloud.image_id(), "flavor": "gate.small"}}),
        )
        .unwrap();
    let id = made["stack"]["id"].as_str().unwrap().to_owned();
    let path = format!("/stacks/gate-harness-stack/{id}");
    let stack = wait_stack(&session, &path, "CREATE_COMPLETE").unwrap();
    println!(
        "CREATE_COMPLETE after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let output = |key: &str| {
        stack["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["output_key"] == key)
            .map(|o| o["output_value"].clone())
            .unwrap_or_else(|| panic!("no output {key}: {stack}"))
    };
    let secret = output("secret");
    assert_eq!(secret.as_str().map(str::len), Some(12), "{secret}");
    let server_id = output("server_id");
    let server = session
        .get(
            "compute",
            &format!("/servers/{}", server_id.as_str().unwrap()),
        )
        .unwrap();
    assert_eq!(server["server"]["status"], "ACTIVE");
    let started = Instant::now();
    let answer = session
        .call("DELETE", "orchestration", &path, None)
        .unwrap();
    assert_eq!(answer.status, 204, "{}", answer.text());
    let gone = wait_stack(&session, &path, "DELETE_COMPLETE");
    println!("deleted after {:.1}s", started.elapsed().as_secs_f64());
    assert!(gone.is_none() || gone.is_some_and(|s| s["stack_status"] == "DELETE_COMPLETE"));
    // Heat counts a server whose status reads DELETED as gone; Nova lists it until the
    // compute host has destroyed it a moment later.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server_names(&session).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the stack's server outlived the stack: {:?}",
            server_names(&session)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_joined_server_answers_ssh_with_the_key_of_its_user_data() {
    let cloud = cloud();
    let creds = cloud.project("join").unwrap();
    let session = creds.session().unwrap();
    let fleet = SshFleet::start(1).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "user-data-key", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let user_data = format!(
        "#cloud-config\nssh_authorized_keys:\n  - {}\n",
        public.trim()
    );
    let join = cloud
        .join_servers_to(&fleet, Some(creds.project_id()))
        .unwrap();
    let id = boot(&session, "gate-harness-joined", Some(&user_data));
    let joined = join.wait_joined(&id, Duration::from_secs(120)).unwrap();
    let host = &fleet.hosts()[0];
    assert_eq!(joined.address, host.address());
    let server = session.get("compute", &format!("/servers/{id}")).unwrap();
    assert_eq!(server["server"]["accessIPv4"], host.address().as_str());

    // The user-data key (not the fleet's own) logs in as root.
    let ssh = Command::new("ssh")
        .arg("-i")
        .arg(&key)
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
        .args([
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .arg(format!("root@{}", host.address()))
        .arg("hostname")
        .output()
        .unwrap();
    assert!(
        ssh.status.success(),
        "ssh: {}\n{}",
        String::from_utf8_lossy(&ssh.stderr),
        host.sshd_log()
    );
    assert_eq!(String::from_utf8_lossy(&ssh.stdout).trim(), "fleet-1");

    // Deleted: the host gets its own keys back.
    delete_server(&session, &id);
    let deadline = Instant::now() + Duration::from_secs(10);
    while host
        .exec_ok("cat /root/.ssh/authorized_keys")
        .unwrap()
        .contains("user-data-key")
        || host
            .exec_ok("cat /root/.ssh/authorized_keys")
            .unwrap()
            .contains(public.split_whitespace().nth(1).unwrap())
    {
        assert!(Instant::now() < deadline, "keys not taken back");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(join.errors().is_empty(), "{:?}", join.errors());
}
