//! The upgrade checks of the `osa` deployer over real SSH: probes from the primary see a
//! TCP service on another fleet host stopped and restarted while the upgrade script is held
//! (`UpgradeHold`), and record the outage to artifacts and JUnit. Needs root, sshd, git.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{deployer, osa_repo, steps};
use gate_core::Stage;
use gate_core::junit::read_counts;
use gate_test_harness::deploy_repos::UpgradeHold;
use gate_test_harness::{FleetHost, StaticServer};
use serde_json::Value;

/// A TCP service on a fleet host: a Python accept loop, stopped and started by the test.
struct TcpService<'a> {
    host: &'a FleetHost,
    port: u16,
}

impl<'a> TcpService<'a> {
    fn start(host: &'a FleetHost) -> Self {
        let port = std::net::TcpListener::bind((host.ip(), 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let service = Self { host, port };
        service.up();
        service
    }

    fn up(&self) {
        let script = format!(
            "import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('{}', {}))\ns.listen(64)\nwhile True:\n    c, _ = s.accept()\n    c.close()\n",
            self.host.address(),
            self.port
        );
        std::fs::write(self.host.host_path("/root/tcp_service.py"), script).unwrap();
        self.host
            .exec_ok("setsid python3 /root/tcp_service.py >/dev/null 2>&1 </dev/null & echo $! > /root/tcp_service.pid")
            .unwrap();
        self.wait(true);
    }

    fn down(&self) {
        self.host
            .exec_ok("kill $(cat /root/tcp_service.pid)")
            .unwrap();
        self.wait(false);
    }

    fn wait(&self, listening: bool) {
        let addr = (self.host.ip(), self.port).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() != listening {
            assert!(
                Instant::now() < deadline,
                "the service never went {listening}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TcpService<'_> {
    fn drop(&mut self) {
        let _ = self.host.exec("kill $(cat /root/tcp_service.pid)");
    }
}

/// Polls the primary's probe log until probe `index` has reported `state` `after` the
/// given number of its own lines.
fn wait_probe(host: &FleetHost, index: usize, state: &str, after: usize) -> usize {
    let path = host.host_path("/root/gate-upgrade-checks/probes.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mine: Vec<&str> = text
            .lines()
            .filter(|l| l.split(' ').nth(1) == Some(&index.to_string()))
            .collect();
        if let Some(pos) = mine.iter().skip(after).position(|l| l.ends_with(state)) {
            return after + pos + 1;
        }
        assert!(
            Instant::now() < deadline,
            "probe {index} never said {state}: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_probes_record_the_outage_of_a_tcp_service_stopped_mid_upgrade() {
    let osa = osa_repo();
    let fs = common::fleet_stage(&[&[], &[]]).await;
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("v3"), "{}").unwrap();
    let http = StaticServer::start(www.path()).unwrap();
    let service = TcpService::start(fs.host(2));
    let d = deployer(
        &osa,
        &format!(
            r#"
            version = "27.2.0"
            upgrade_to = "27.10.0"
            [upgrade_checks]
            interval_ms = 200
            timeout_secs = 1
            [[upgrade_checks.probes]]
            name = "service on fleet-2"
            tcp = "{}:{}"
            max_outage_secs = 0
            [[upgrade_checks.probes]]
            name = "keystone"
            http = "{}"
            [[upgrade_checks.probes]]
            ping = "{}"
            "#,
            fs.host(2).address(),
            service.port,
            http.url("v3"),
            fs.host(2).address(),
        ),
    );
    d.prepare_deployment(&fs.cx(Stage::PrepareDeployment))
        .await
        .unwrap();
    common::take_records(&fs, 1);

    let hold = UpgradeHold::arm(fs.host(1)).unwrap();
    let cx = fs.cx(Stage::Upgrade);
    let upgrade = tokio::spawn({
        let d = d.clone();
        async move { d.upgrade(&cx).await }
    });
    let primary = fs.host(1);
    tokio::task::block_in_place(|| {
        hold.wait_started(Duration::from_secs(60)).unwrap();
        let seen = wait_probe(primary, 0, "ok", 0);
        service.down();
        let seen = wait_probe(primary, 0, "fail", seen);
        wait_probe(primary, 0, "fail", seen); // at least two failed rounds
        service.up();
        wait_probe(primary, 0, "ok", seen);
        hold.release().unwrap();
    });
    let err = upgrade.await.unwrap().unwrap_err().to_string();
    // The upgrade itself went through; the outage broke the probe's tolerance of 0 s.
    assert!(err.contains("checks failed"), "{err}");
    assert!(err.contains("probe `service on fleet-2`"), "{err}");
    assert_eq!(
        steps(&common::take_records(&fs, 1))[0],
        "run-upgrade",
        "the upgrade ran"
    );

    let dir = fs.stage.cx.artifacts_dir.join("upgrade-checks");
    let timeline: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("timeline.json")).unwrap()).unwrap();
    let probes = timeline["probes"].as_array().unwrap();
    assert_eq!(probes.len(), 3);
    let tcp = &probes[0];
    assert_eq!(tcp["kind"], "tcp");
    let outages = tcp["outages"].as_array().unwrap();
    assert_eq!(outages.len(), 1, "{tcp:#}");
    assert_eq!(outages[0]["recovered"], true);
    assert!(
        outages[0]["failed_rounds"].as_u64().unwrap() >= 2,
        "{tcp:#}"
    );
    assert!(
        outages[0]["duration_ms"].as_u64().unwrap() >= 200,
        "{tcp:#}"
    );
    assert_eq!(tcp["violated"], true);
    for other in &probes[1..] {
        assert!(other["outages"].as_array().unwrap().is_empty(), "{other:#}");
        assert!(other["rounds"].as_u64().unwrap() >= 3, "{other:#}");
    }
    assert!(dir.join("probes.log").exists());
    let counts = read_counts(&fs.stage.cx.results_dir().join("upgrade-checks.xml")).unwrap();
    assert_eq!((counts.tests, counts.failures, counts.errors), (3, 1, 0));
    // The loop is gone from the primary, and so are its files.
    assert!(!primary.host_path("/root/gate-upgrade-checks").exists());
    assert!(
        !primary
            .exec("pgrep -f 'gate-prob[e] gate-upgrade'")
            .status
            .success(),
        "the probe loop still runs"
    );
}
