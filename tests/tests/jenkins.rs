//! gate under Jenkins: the generated Jenkinsfile (golden copy in docs/jenkins/, checked for
//! structure), and a run split into separate `gate stage` processes with the state dir
//! copied between two working directories (as a Jenkins stash would), a failure in the
//! middle and archive and cleanup in later processes, compared with one `gate run`. The
//! controller is the Jenkins simulator of the harness; the hosts are real sshd hosts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use gate_test_harness::{FleetHost, JenkinsSim, MonitoringSim, SshFleet};
use gate_tests::{Workspace, gate_binary, repo_root, text};

const TOKEN: &str = "tok-e2e-5d1c0a9b-jenkins-sentinel";

fn docs() -> std::path::PathBuf {
    repo_root().join("docs/jenkins")
}

/// `gate jenkinsfile ARGS` run in docs/jenkins/ (so the config path is `gate.toml`).
fn generate(args: &[&str]) -> String {
    let out = Command::new(gate_binary())
        .current_dir(docs())
        .env_remove("RUST_LOG")
        .args(["jenkinsfile", "-c", "gate.toml"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_golden_jenkinsfile_and_jjb_template_are_current() {
    let golden = std::fs::read_to_string(docs().join("Jenkinsfile")).unwrap();
    assert_eq!(
        generate(&[]),
        golden,
        "docs/jenkins/Jenkinsfile is stale: cd docs/jenkins && gate jenkinsfile -c gate.toml > Jenkinsfile"
    );
    let jjb = std::fs::read_to_string(docs().join("gate-job.yaml")).unwrap();
    assert_eq!(
        generate(&["--format", "jjb"]),
        jjb,
        "docs/jenkins/gate-job.yaml is stale: gate jenkinsfile -c gate.toml --format jjb > gate-job.yaml"
    );
}

/// The text of the block that starts at `head` (through its matching brace).
fn block<'a>(text: &'a str, head: &str) -> &'a str {
    let start = text
        .find(head)
        .unwrap_or_else(|| panic!("no `{head}` in:\n{text}"));
    let open = start + text[start..].find('{').unwrap();
    let mut depth = 0;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &text[start..open + i + 1];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced braces after `{head}`")
}

#[test]
fn the_jenkinsfile_runs_every_stage_on_its_node_with_stashes_junit_and_artifacts() {
    let file = std::fs::read_to_string(docs().join("Jenkinsfile")).unwrap();
    let pipeline = block(&file, "pipeline {");
    let stages = block(pipeline, "    stages {");
    // Controller side: allocate and connect (cleanup is in post).
    for stage in ["allocate", "connect"] {
        let body = block(stages, &format!("stage('{stage}')"));
        assert!(
            body.contains("agent { label params.CONTROLLER_LABEL }"),
            "{body}"
        );
        assert!(body.contains(&format!("gate('stage {stage}')")), "{body}");
        assert!(body.contains("keepState()"), "{body}");
    }
    let allocate = block(stages, "stage('allocate')");
    assert!(
        allocate.contains("stash name: 'gate-bin'"),
        "the binary goes to the node"
    );
    let connect = block(stages, "stage('connect')");
    assert!(
        connect.contains("env.GATE_NODE = readFile('.gate/jenkins-node')"),
        "{connect}"
    );
    // The node: every other stage, in order, after the binary and the state arrive.
    let node = block(stages, "stage('on the node')");
    assert!(node.contains("agent { label \"${env.GATE_NODE"), "{node}");
    let mut at = 0;
    for stage in [
        "validate",
        "prepare-hosts",
        "prepare-deployment",
        "deploy",
        "test",
        "upgrade",
        "publish",
    ] {
        let found = node[at..]
            .find(&format!("gate('stage {stage}')"))
            .unwrap_or_else(|| panic!("{stage} missing or out of order in:\n{node}"));
        at += found;
    }
    let first = block(node, "stage('validate')");
    assert!(first.contains("takeState()") && first.contains("useGateBinary()"));
    assert!(block(node, "post {").contains("keepState()"));
    // post/always: archive on the node with junit and archiveArtifacts, then cleanup on
    // the controller side.
    let post = block(pipeline, "\n    post {");
    let always = block(post, "always {");
    let archive = always
        .find("gate('stage archive')")
        .expect("archive in post/always");
    let cleanup = always
        .find("gate('stage cleanup')")
        .expect("cleanup in post/always");
    assert!(archive < cleanup);
    assert!(always.contains("junit testResults: 'artifacts/results/*.xml'"));
    assert!(always.contains("archiveArtifacts artifacts: 'artifacts/**'"));
    assert!(always.contains("node(params.CONTROLLER_LABEL)"));
    // Stashes: the state dir and the binary, under fixed names.
    assert!(file.contains("stash name: 'gate-state', includes: '.gate/**'"));
    assert!(file.contains("unstash 'gate-state'") && file.contains("unstash 'gate-bin'"));
    // Parameters: the config, overrides, the controller label and the config's knobs.
    let params = block(pipeline, "parameters {");
    for p in [
        "GATE_CONFIG",
        "GATE_SETS",
        "CONTROLLER_LABEL",
        "KEEP_HOSTS",
        "RELEASE",
        "SCENARIO",
    ] {
        assert!(params.contains(&format!("name: '{p}'")), "{p} in {params}");
    }
    assert!(file.contains("args+=(--set \"deployer.env.RELEASE=$RELEASE\")"));
    // No secret reference of the config leaks into the job.
    assert!(!file.contains("JENKINS_TOKEN") && !file.contains("DEPLOY_TOKEN"));
}

/// The config of both runs: two lab hosts, the Jenkins agent, a deploy that fails.
fn config(fleet: &SshFleet, sim: &JenkinsSim) -> String {
    let lab = gate_tests::static_lab_config(fleet);
    format!(
        r#"
{lab}
[agent]
backend = "jenkins"
url = "{url}"
user = "gate-bot"
token = {{ env = "JENKINS_TOKEN" }}
launcher = "inbound"
sshd_config = "/etc/ssh/gate/sshd_config"
register_delay_secs = 1
online_timeout_secs = 30
poll_secs = 1

[validator]
backend = "hosts"
keys = "skip"
commands = ["bash"]

[deployer]
backend = "script"
hosts = "all"
[[deployer.prepare]]
script = 'mkdir -p /var/log/demo && hostname > /var/log/demo/prepared'
[[deployer.deploy]]
name = "deploy breaks"
script = 'echo "deploy is broken on $(hostname)" | tee /var/log/demo/deploy.log; exit 3'

[tester]
backend = "command"
[[tester.tests]]
run = ["true"]

[archiver]
paths = ["/var/log/demo"]
"#,
        url = sim.url(),
    )
}

fn gate(ws: &Workspace, args: &[&str]) -> std::process::Output {
    ws.gate()
        .env("JENKINS_TOKEN", TOKEN)
        .args(args)
        .output()
        .unwrap()
}

/// Replaces `to`'s state dir with a copy of `from`'s, as `stash`/`unstash` would.
fn carry_state(from: &Workspace, to: &Workspace) {
    let _ = std::fs::remove_dir_all(to.state());
    let status = Command::new("cp")
        .arg("-a")
        .arg(from.state())
        .arg(to.state())
        .status()
        .unwrap();
    assert!(status.success());
}

/// (stage, status) of every stage that ran, from run.json.
fn statuses(ws: &Workspace) -> Vec<(String, String)> {
    ws.run_json()["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["stage"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .filter(|(_, status)| status != "skipped")
        .collect()
}

/// (op, backend, kind, parent is set) of every ledger line.
fn ledger_shape(ws: &Workspace) -> Vec<String> {
    let text = std::fs::read_to_string(ws.state().join("resources.jsonl")).unwrap();
    let run_id = ws.run_id();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{} {} {} {} parent={}",
                v["op"].as_str().unwrap(),
                v["backend"].as_str().unwrap(),
                v["kind"].as_str().unwrap(),
                v["name"].as_str().unwrap().replace(run_id.as_str(), "RUN"),
                v["parent"]
                    .as_str()
                    .unwrap_or("-")
                    .replace(run_id.as_str(), "RUN"),
            )
        })
        .collect()
}

fn archived(ws: &Workspace) -> Vec<String> {
    let mut files: Vec<String> = Workspace::files_under(&ws.artifacts())
        .into_iter()
        .map(|p| p.display().to_string())
        .filter(|p| p.starts_with("fleet-"))
        .collect();
    files.sort();
    files
}

fn assert_nothing_left(fleet: &SshFleet, sim: &JenkinsSim, ws: &Workspace) {
    assert!(sim.nodes().is_empty(), "{:?}", sim.nodes());
    assert!(ws.live().is_empty(), "{:?}", ws.live());
    for host in fleet.hosts() {
        assert!(
            !host
                .exec("test -e /var/lock/gate-reservation")
                .status
                .success()
        );
        assert!(
            !host.exec("pgrep -u jenkins").status.success(),
            "an agent still runs"
        );
    }
}

fn secrets_absent(dir: &Path) {
    for file in Workspace::files_under(dir) {
        let bytes = std::fs::read(dir.join(&file)).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(TOKEN),
            "the API token is in {}",
            file.display()
        );
    }
}

/// The simulator's stand-in `java` on `host` (no JRE can be installed here).
fn install_java_stand_in(host: &FleetHost) {
    std::fs::write(
        host.host_path("/usr/local/bin/java"),
        JenkinsSim::java_stand_in(),
    )
    .unwrap();
    host.exec_ok("chmod 755 /usr/local/bin/java").unwrap();
}

#[test]
fn a_run_in_pieces_across_two_workdirs_ends_like_one_run_also_after_a_failure() {
    let fleet = SshFleet::start(2).unwrap();
    let sim = JenkinsSim::start("gate-bot", TOKEN).unwrap();
    let primary = &fleet.hosts()[0];
    install_java_stand_in(primary);
    let toml = config(&fleet, &sim);

    // One process.
    let whole = Workspace::new();
    whole.config(&toml);
    let out = gate(&whole, &["run", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_nothing_left(&fleet, &sim, &whole);

    // One process per stage, alternating between two working directories, the state dir
    // carried across; deploy fails, then archive and cleanup run in later processes.
    let (a, b) = (Workspace::new(), Workspace::new());
    a.config(&toml);
    b.config(&toml);
    let plan = [
        ("allocate", 0),
        ("connect", 0),
        ("validate", 0),
        ("prepare-hosts", 0),
        ("prepare-deployment", 0),
        ("deploy", 1),
        ("archive", 0),
        ("cleanup", 0),
    ];
    let mut here = &a;
    for (i, (stage, code)) in plan.iter().enumerate() {
        let out = gate(here, &["stage", stage, "-c", "gate.toml"]);
        assert_eq!(
            out.status.code(),
            Some(*code),
            "stage {stage}: {}",
            text(&out)
        );
        if *stage == "connect" {
            // The node is online and its agent outlives the process that started it.
            let node = sim.node(a.run_id().as_str()).expect("the node exists");
            assert!(node.online, "{node:?}");
            assert!(primary.exec("pgrep -u jenkins").status.success());
        }
        if i + 1 < plan.len() {
            let next = if std::ptr::eq(here, &a) { &b } else { &a };
            carry_state(here, next);
            here = next;
        }
    }
    let last = here;
    assert_nothing_left(&fleet, &sim, last);

    assert_eq!(statuses(&whole), statuses(last));
    assert_eq!(whole.run_json()["exit_code"], 1);
    assert_eq!(last.run_json()["exit_code"], whole.run_json()["exit_code"]);
    // The same ledger lines (hosts are reserved in parallel, so in any order)...
    let sorted = |ws: &Workspace| {
        let mut lines = ledger_shape(ws);
        lines.sort();
        lines
    };
    assert_eq!(sorted(&whole), sorted(last));
    // ...and the node went before the server it runs on, in both.
    for ws in [&whole, last] {
        let lines = ledger_shape(ws);
        let at = |line: &str| {
            lines
                .iter()
                .position(|l| l == line)
                .unwrap_or_else(|| panic!("{line}: {lines:?}"))
        };
        assert!(
            at("deleted jenkins agent-process RUN parent=RUN")
                < at("deleted jenkins node RUN parent=fleet-1")
        );
        assert!(
            at("deleted jenkins node RUN parent=fleet-1")
                < at("released static reservation fleet-1 parent=-")
        );
    }
    assert!(
        ledger_shape(last).contains(&"created jenkins node RUN parent=fleet-1".to_owned()),
        "{:?}",
        ledger_shape(last)
    );
    // archive ran in `a` (the 6th process): it brought the same files home.
    assert_eq!(archived(&whole), archived(&a));
    assert!(archived(&a).contains(&"fleet-2/var/log/demo/deploy.log".to_owned()));
    for ws in [&whole, &a, &b] {
        secrets_absent(&ws.state());
        secrets_absent(&ws.artifacts());
    }
}

const MONITORING_TOKEN: &str = "tok-e2e-0b7f3c2d-monitoring-sentinel";

/// `[[agent]]` twice: the Jenkins node and a monitoring entity with a check per host, in
/// one run; cleanup frees both (checks, then entities, then the node, then the hosts).
#[test]
fn jenkins_and_monitoring_agents_in_one_config_both_connect_and_both_are_freed() {
    let fleet = SshFleet::start(2).unwrap();
    let sim = JenkinsSim::start("gate-bot", TOKEN).unwrap();
    let monitoring = MonitoringSim::start("123456", MONITORING_TOKEN).unwrap();
    let primary = &fleet.hosts()[0];
    install_java_stand_in(primary);
    let lab = gate_tests::static_lab_config(&fleet);
    let toml = format!(
        r#"
{lab}
[[agent]]
backend = "jenkins"
url = "{url}"
user = "gate-bot"
token = {{ env = "JENKINS_TOKEN" }}
launcher = "inbound"
sshd_config = "/etc/ssh/gate/sshd_config"
register_delay_secs = 1
online_timeout_secs = 30
poll_secs = 1

[[agent]]
backend = "monitoring"
url = "{monitoring_url}"
token = {{ env = "MONITORING_TOKEN" }}
[[agent.resources]]
kind = "entity"
create = "entities"
body = '''{{"label": "{{label}}", "ip_addresses": {{"default": "{{address}}"}},
           "metadata": {{"gate_run_id": "{{run_id}}"}}}}'''
delete = "entities/{{id}}"
[[agent.resources]]
kind = "check"
parent = "entity"
label = "{{run_id}}-{{name}}-ping"
create = "entities/{{parent_id}}/checks"
body = '''{{"label": "{{label}}", "type": "remote.ping", "monitoring_zones_poll": ["mzord"],
           "target_alias": "default"}}'''
delete = "entities/{{parent_id}}/checks/{{id}}"

[tester]
backend = "command"
[[tester.tests]]
run = ["true"]
"#,
        url = sim.url(),
        monitoring_url = monitoring.url(),
    );
    let ws = Workspace::new();
    ws.config(&toml);

    let gate = |args: &[&str]| {
        ws.gate()
            .env("JENKINS_TOKEN", TOKEN)
            .env("MONITORING_TOKEN", MONITORING_TOKEN)
            .args(args)
            .output()
            .unwrap()
    };
    let plan = gate(&["plan", "-c", "gate.toml"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(
        text(&plan).contains("jenkins+monitoring"),
        "{}",
        text(&plan)
    );

    let out = gate(&["run", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Both connected: a node, and an entity plus a check for each of the two hosts.
    let created = |prefix: &str| {
        monitoring
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.status == 201 && r.path.ends_with(prefix))
            .count()
    };
    assert_eq!(created("/entities"), 2);
    assert_eq!(created("/checks"), 2);
    let shape = ledger_shape(&ws);
    assert!(
        shape.contains(&"created jenkins node RUN parent=fleet-1".to_owned()),
        "{shape:?}"
    );
    assert_eq!(
        shape
            .iter()
            .filter(|l| l.starts_with("created monitoring "))
            .count(),
        4,
        "{shape:?}"
    );
    // Both freed.
    assert!(
        monitoring.entities().is_empty(),
        "{:?}",
        monitoring.entities()
    );
    assert!(monitoring.checks().is_empty(), "{:?}", monitoring.checks());
    assert_nothing_left(&fleet, &sim, &ws);
    for dir in [ws.state(), ws.artifacts()] {
        secrets_absent(&dir);
        for file in Workspace::files_under(&dir) {
            let bytes = std::fs::read(dir.join(&file)).unwrap();
            assert!(!String::from_utf8_lossy(&bytes).contains(MONITORING_TOKEN));
        }
    }
}
