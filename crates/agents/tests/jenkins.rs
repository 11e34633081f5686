//! The `jenkins` connector against the Jenkins simulator (`gate_test_harness::JenkinsSim`),
//! with the agent host side on a real sshd fleet host reached over gate-ssh.
//!
//! Hosts are inspected with `FleetHost::exec` (inside the host, not over SSH), the
//! controller with the simulator's own view, so what the tests see does not depend on the
//! code under test. Needs root (the fleet).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use gate_core::keys::{KeysFile, RunKeys};
use gate_core::testkit::LocalStage;
use gate_core::{
    AgentConnector, BackendConfig, CleanContext, Cleaner, CleanerLookup, Connector, Host,
    Inventory, Registry, Stage, SweepFilter, cleanup_ledger,
};
use gate_ssh::{SshConfig, SshConnector};
use gate_test_harness::{FleetHost, JenkinsSim, SshFleet};

const USER: &str = "gate-bot";
const TOKEN: &str = "tok-3f9a1c77e0-jenkins-api-sentinel";
const ALICE: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHQ9bmWwIYG5vUmv8a9x4UHNdZ0zQ7yqTEG2+XyB4xXk alice@laptop";

/// A connect-stage context on one fleet host over SSH, and the simulator. Fields drop in
/// order: the stage's transports before the fleet.
struct Rig {
    stage: LocalStage,
    connector: Arc<SshConnector>,
    fleet: SshFleet,
    sim: JenkinsSim,
}

impl Rig {
    async fn start() -> Self {
        let sim = JenkinsSim::start(USER, TOKEN).unwrap();
        let fleet = SshFleet::start(1).unwrap();
        let mut stage = LocalStage::new(1, Stage::Connect).await;
        let connector = Arc::new(SshConnector::new(SshConfig {
            identities: vec![fleet.client_key().to_owned()],
            agent: false,
            known_hosts: Some(stage.dir.path().join("known_hosts")),
            connect_timeout_secs: 30,
            poll_secs: 1,
            ..SshConfig::default()
        }));
        let fh = &fleet.hosts()[0];
        let host = Host {
            name: fh.name().to_owned(),
            address: fh.address(),
            port: fh.port(),
            user: fh.user().to_owned(),
            labels: Vec::new(),
            transport: gate_ssh::SSH.into(),
            home: None,
        };
        let transport = connector.connect(&host, &stage.cx.cancel).await.unwrap();
        stage.cx.inventory = Inventory::new(vec![host]).unwrap();
        stage.cx.transports = vec![transport];
        stage.cx.keys = RunKeys {
            keys_file: Some(
                KeysFile::parse("https://keys.example/team", ALICE.as_bytes()).unwrap(),
            ),
            run_key: None,
        };
        // The host has no JRE (no mirror has one): the simulator's stand-in java.
        let java = fh.host_path("/usr/local/bin/java");
        std::fs::write(&java, JenkinsSim::java_stand_in()).unwrap();
        fh.exec_ok("chmod 755 /usr/local/bin/java").unwrap();
        Self {
            stage,
            connector,
            fleet,
            sim,
        }
    }

    fn host(&self) -> &FleetHost {
        &self.fleet.hosts()[0]
    }

    /// The `[agent]` section: the simulator, short retries, the fleet's sshd config.
    fn section(&self, extra: &str) -> BackendConfig {
        let mut toml = format!(
            "url = \"{}\"\nuser = \"{USER}\"\ntoken = \"{TOKEN}\"\n{extra}\n",
            self.sim.url()
        );
        // Short retries and deadlines unless the test sets its own.
        for default in [
            "sshd_config = \"/etc/ssh/gate/sshd_config\"",
            "register_attempts = 3",
            "register_delay_secs = 0",
            "online_timeout_secs = 20",
            "poll_secs = 1",
        ] {
            let key = default.split(' ').next().unwrap_or_default();
            if !extra.contains(&format!("{key} =")) {
                toml.push_str(default);
                toml.push('\n');
            }
        }
        BackendConfig::from_toml("agent", gate_agents::NAME, &toml).unwrap()
    }

    fn connector(&self, extra: &str) -> Arc<dyn AgentConnector> {
        registry().agent(&self.section(extra)).unwrap()
    }

    fn cleaner(&self, extra: &str) -> Arc<dyn Cleaner> {
        registry().cleaner(&self.section(extra)).unwrap()
    }

    fn clean_context(&self) -> CleanContext {
        CleanContext::new(self.connector.clone())
    }

    async fn cleanup(&self, extra: &str) -> gate_core::Result<gate_core::CleanupReport> {
        let cleaner = self.cleaner(extra);
        let lookup: CleanerLookup = Arc::new(move |_backend: &str| Ok(cleaner.clone()));
        cleanup_ledger(&self.stage.cx.ledger, &lookup, &self.clean_context()).await
    }

    fn node_name(&self) -> String {
        self.stage.cx.run_id.as_str().to_owned()
    }

    /// Every file gate wrote for this stage (logs, ledger, node file), as one text.
    fn state_text(&self) -> String {
        let mut text = String::new();
        let mut stack = vec![self.stage.cx.state_dir.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    text.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
                }
            }
        }
        text
    }
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    gate_agents::register(&mut registry);
    registry
}

fn on(host: &FleetHost, shell: &str) -> String {
    host.exec_ok(shell)
        .unwrap_or_else(|e| panic!("{e}"))
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_agent_prepares_the_host_registers_and_outlives_the_ssh_session() {
    let rig = Rig::start().await;
    let host = rig.host();
    // Passwords allowed before: the connector must turn them off.
    host.exec_ok("sed -i '1i PasswordAuthentication yes' /etc/ssh/gate/sshd_config")
        .unwrap();

    rig.connector("launcher = \"inbound\"")
        .connect(&rig.stage.cx)
        .await
        .unwrap();

    // The host: Java answers, the agent user with the keys file, sudo, root dir, sshd.
    assert_eq!(on(host, "id -un jenkins"), "jenkins");
    assert_eq!(
        on(host, "getent passwd jenkins | cut -d: -f6"),
        "/var/lib/jenkins"
    );
    assert_eq!(on(host, "stat -c %U /var/lib/jenkins"), "jenkins");
    let keys = on(host, "cat /var/lib/jenkins/.ssh/authorized_keys");
    assert_eq!(keys.matches("alice@laptop").count(), 1, "{keys}");
    assert_eq!(
        on(host, "stat -c %a /var/lib/jenkins/.ssh/authorized_keys"),
        "600"
    );
    assert_eq!(
        on(host, "cat /etc/sudoers.d/gate-agent-jenkins"),
        "jenkins ALL=(ALL) NOPASSWD:ALL"
    );
    let effective = on(host, "/usr/sbin/sshd -T -f /etc/ssh/gate/sshd_config");
    assert!(
        effective.contains("passwordauthentication no"),
        "{effective}"
    );
    assert!(
        effective.contains("kbdinteractiveauthentication no"),
        "{effective}"
    );

    // The controller: the node as the issue describes it, online.
    let name = rig.node_name();
    let node = rig.sim.node(&name).expect("the node exists");
    assert_eq!(node.labels, ["single_use_slave", name.as_str()]);
    assert_eq!((node.executors, node.mode.as_str()), (2, "EXCLUSIVE"));
    assert_eq!(node.remote_fs, "/var/lib/jenkins");
    assert_eq!(node.launcher, "hudson.slaves.JNLPLauncher");
    assert!(node.description.contains(&format!("gate_run_id={name}")));
    assert!(node.online, "{node:?}");
    assert_eq!(
        std::fs::read_to_string(rig.stage.cx.state_dir.join(gate_agents::NODE_FILE)).unwrap(),
        format!("{name}\n")
    );

    // The ledger: the node a child of the primary, the agent process a child of the node.
    let live = rig.stage.cx.ledger.live().unwrap();
    let kinds: Vec<(&str, Option<&str>)> = live
        .iter()
        .map(|r| (r.spec.kind.as_str(), r.spec.parent.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("node", Some(host.name())),
            ("agent-process", Some(name.as_str()))
        ]
    );

    // The agent runs as jenkins, detached: every SSH session killed, it still runs and
    // Jenkins still sees the node online.
    let pid = on(host, "cat /var/lib/jenkins/agent.pid");
    host.kill_sshd().unwrap();
    assert!(
        host.exec(&format!("kill -0 {pid}")).status.success(),
        "the agent died with the session"
    );
    assert_eq!(
        on(host, &format!("ps -o user= -p $(pgrep -s {pid} curl)")),
        "jenkins"
    );
    assert!(rig.sim.node(&name).unwrap().online);
    host.restart_sshd().unwrap();

    // The API token never reached a log, the ledger or any file gate wrote.
    assert!(!rig.state_text().contains(TOKEN));

    // Cleanup: the agent stopped, the node deleted; again is harmless.
    let report = rig.cleanup("launcher = \"inbound\"").await.unwrap();
    assert_eq!(report.deleted, 2);
    assert!(rig.sim.node(&name).is_none());
    assert!(!host.exec(&format!("kill -0 {pid}")).status.success());
    assert!(rig.stage.cx.ledger.live().unwrap().is_empty());
    rig.cleanup("launcher = \"inbound\"").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_launcher_node_goes_online_when_jenkins_reaches_the_hosts_sshd() {
    let rig = Rig::start().await;
    rig.connector("credentials_id = \"ci-ssh-key\"\nname = \"gate-lab-agent\"\nlabels = [\"osa\", \"aio\"]\nexecutors = 1")
        .connect(&rig.stage.cx)
        .await
        .unwrap();
    let node = rig.sim.node("gate-lab-agent").unwrap();
    assert!(node.online, "{node:?}");
    assert_eq!(node.launcher, "hudson.plugins.sshslaves.SSHLauncher");
    assert_eq!(
        node.ssh,
        Some((rig.host().address(), rig.host().port(), "ci-ssh-key".into()))
    );
    assert_eq!(node.labels, ["osa", "aio", "gate-lab-agent"]);
    assert_eq!(node.executors, 1);
    let report = rig
        .cleanup("credentials_id = \"ci-ssh-key\"")
        .await
        .unwrap();
    assert_eq!(report.deleted, 1);
    assert!(rig.sim.nodes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_retried_through_403_and_500_answers() {
    let rig = Rig::start().await;
    rig.sim.fail_next("/crumbIssuer", 403, 1);
    rig.sim.fail_next("/computer/doCreateItem", 500, 1);
    rig.connector("credentials_id = \"k\"\nprepare_host = false")
        .connect(&rig.stage.cx)
        .await
        .unwrap();
    let creates: Vec<u16> = rig
        .sim
        .requests()
        .iter()
        .filter(|r| r.path == "/computer/doCreateItem" || r.path == "/crumbIssuer/api/json")
        .map(|r| r.status)
        .collect();
    // crumb refused; crumb, create 500; crumb, create 302.
    assert_eq!(creates, [403, 200, 500, 200, 302]);
    assert!(rig.sim.node(&rig.node_name()).unwrap().online);
    rig.cleanup("credentials_id = \"k\"").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_gives_up_after_the_configured_attempts_and_cleanup_copes() {
    let rig = Rig::start().await;
    rig.sim.fail_next("/computer/doCreateItem", 500, 10);
    let err = rig
        .connector("credentials_id = \"k\"\nprepare_host = false")
        .connect(&rig.stage.cx)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("after 3 attempt(s)"), "{err}");
    assert!(err.contains("HTTP 500"), "{err}");
    // Only the intent was written; cleanup of it is fine.
    let live = rig.stage.cx.ledger.live().unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, None);
    rig.cleanup("credentials_id = \"k\"").await.unwrap();
    assert!(rig.stage.cx.ledger.live().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_comes_online_fails_at_the_deadline_with_its_offline_cause() {
    let rig = Rig::start().await;
    rig.sim.never_online(Some(
        "Launch failed - cleaning up connection: java.io.EOFException",
    ));
    let started = Instant::now();
    let err = rig
        .connector("launcher = \"inbound\"\nonline_timeout_secs = 3")
        .connect(&rig.stage.cx)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(err.contains("did not come online within 3s"), "{err}");
    assert!(err.contains("java.io.EOFException"), "{err}");
    assert!(err.contains(&rig.node_name()), "{err}");
    // The node and the agent process are in the ledger: cleanup frees both.
    rig.sim.never_online(None);
    assert_eq!(
        rig.cleanup("launcher = \"inbound\"").await.unwrap().deleted,
        2
    );
    assert!(rig.sim.nodes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_fails_at_once_and_no_token_is_ever_shown() {
    let rig = Rig::start().await;
    let wrong = "tok-wrong-77c1d0-never-printed";
    let toml = format!(
        "url = \"{}\"\nuser = \"{USER}\"\ntoken = {{ secret = \"{wrong}\" }}\ncredentials_id = \"k\"\nprepare_host = false\nregister_delay_secs = 0",
        rig.sim.url()
    );
    let section = BackendConfig::from_toml("agent", gate_agents::NAME, &toml).unwrap();
    let connector = registry().agent(&section).unwrap();
    assert!(!format!("{connector:?}").contains(wrong));
    let err = connector
        .connect(&rig.stage.cx)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(err.contains("after 1 attempt(s)"), "{err}");
    assert!(!err.contains(wrong) && !err.contains(TOKEN), "{err}");
    assert!(!rig.state_text().contains(wrong));
    assert_eq!(rig.sim.requests().len(), 1, "{:?}", rig.sim.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_already_gone_counts_as_deleted() {
    let rig = Rig::start().await;
    rig.connector("credentials_id = \"k\"\nprepare_host = false")
        .connect(&rig.stage.cx)
        .await
        .unwrap();
    assert!(rig.sim.remove_node(&rig.node_name()));
    assert_eq!(
        rig.cleanup("credentials_id = \"k\"").await.unwrap().deleted,
        1
    );
    assert!(rig.stage.cx.ledger.live().unwrap().is_empty());
    // A doDelete answered 404 is gone too.
    let requests = rig.sim.requests();
    assert!(
        !requests.iter().any(|r| r.path.ends_with("/doDelete")),
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_takes_only_old_offline_gate_nodes() {
    let rig = Rig::start().await;
    let old = "gate agent on h (gate_run_id=gate-0ld00000; gate_created_at=2020-01-01T00:00:00Z)";
    let now = time_now();
    let fresh = format!("gate agent on h (gate_run_id=gate-fresh000; gate_created_at={now})");
    rig.sim.add_node("gate-0ld00000", old, false);
    rig.sim.add_node("gate-untagged", "made by hand", false);
    rig.sim.add_node("gate-busy", old, true);
    rig.sim.add_node("gate-fresh000", &fresh, false);
    rig.sim.add_node("team-agent", old, false);
    let cleaner = rig.cleaner("credentials_id = \"k\"");
    let mut filter = SweepFilter {
        older_than: Duration::from_secs(3600),
        run_id: None,
        delete: false,
    };
    let names = |found: Vec<gate_core::Observed>| {
        let mut n: Vec<String> = found.into_iter().map(|o| o.name).collect();
        n.sort();
        n
    };
    let listed = cleaner.sweep(&filter, &rig.clean_context()).await.unwrap();
    assert_eq!(names(listed), ["gate-0ld00000", "gate-untagged"]);
    assert_eq!(rig.sim.nodes().len(), 5, "listing deletes nothing");
    filter.delete = true;
    cleaner.sweep(&filter, &rig.clean_context()).await.unwrap();
    let mut left: Vec<String> = rig.sim.nodes().into_iter().map(|n| n.name).collect();
    left.sort();
    assert_eq!(left, ["gate-busy", "gate-fresh000", "team-agent"]);
    // observe() finds a run's node by the id in its description.
    let run = gate_core::RunId::try_from("gate-fresh000".to_owned()).unwrap();
    let seen = cleaner.observe(&run, &rig.clean_context()).await.unwrap();
    assert_eq!(names(seen), ["gate-fresh000"]);
}

fn time_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
