//! The upgrade checks of the `osa` deployer over real SSH: probes from the primary see a
//! TCP service on another fleet host stopped and restarted while the upgrade script is held
//! (`UpgradeHold`), and record the outage to artifacts and JUnit; test servers made in a
//! real Nova before the upgrade are pinged during it, verified after it and freed by
//! cleanup, and one deleted behind gate's back fails the checks. Needs root, sshd, git and
//! `scripts/openstack-env`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{FleetStage, deployer, osa_repo, steps};
use gate_core::junit::read_counts;
use gate_core::local::LocalConnector;
use gate_core::{
    BackendConfig, CleanContext, CleanerLookup, Deployer, Registry, Stage, cleanup_ledger,
};
use gate_test_harness::deploy_repos::UpgradeHold;
use gate_test_harness::openstack::{Credentials, FLAVOR_NAME, IMAGE_NAME};
use gate_test_harness::{FleetHost, OpenStack, SshFleet, StaticServer};
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

// ---------------------------------------------------------------------------------------
// Test servers in a real cloud: Keystone, Nova (fake driver), Placement, Glance and the
// Neutron stand-in of the harness. Servers that turn ACTIVE are joined to hosts of a fleet
// of their own, whose loopback address becomes their `accessIPv4`: the only address the
// probes are told to use (`address = "access_ipv4"`), so no traffic leaves loopback.

/// The shared OpenStack services of this test process.
fn cloud() -> &'static OpenStack {
    OpenStack::shared().unwrap_or_else(|e| panic!("the OpenStack services did not start: {e}"))
}

/// A project of its own, its clouds.yaml, and a fleet its servers are joined to.
struct TestCloud {
    creds: Credentials,
    dir: tempfile::TempDir,
}

impl TestCloud {
    fn new(label: &str) -> Self {
        let creds = cloud().project(label).unwrap();
        let dir = tempfile::tempdir().unwrap();
        creds
            .write_clouds_yaml(&dir.path().join("clouds.yaml"), "deployed")
            .unwrap();
        Self { creds, dir }
    }

    /// The `[upgrade_checks.resources]` keys that reach this project.
    fn resources_toml(&self, servers: u32, extra: &str) -> String {
        format!(
            r#"
            [upgrade_checks.resources]
            servers = {servers}
            cloud = "deployed"
            clouds_file = "{}"
            flavor = "{FLAVOR_NAME}"
            image = "{IMAGE_NAME}"
            network = "none"
            address = "access_ipv4"
            poll_secs = 0.2
            boot_timeout_secs = 180
            delete_timeout_secs = 60
            {extra}
            [upgrade_checks.resources.api]
            first_delay_secs = 0.2
            max_delay_secs = 2
            "#,
            self.dir.path().join("clouds.yaml").display()
        )
    }

    /// Every server of the project, as Nova shows it.
    fn servers(&self) -> Vec<Value> {
        self.list("compute", "servers")
    }

    /// Every volume of the project, as Cinder shows it.
    fn volumes(&self) -> Vec<Value> {
        self.list("block-storage", "volumes")
    }

    /// The `collection` of `service` (`servers`, `volumes`) in detail.
    fn list(&self, service: &str, collection: &str) -> Vec<Value> {
        let session = self.creds.session().unwrap();
        let list = session
            .get(service, &format!("/{collection}/detail"))
            .unwrap();
        list[collection].as_array().unwrap().clone()
    }

    /// Deletes `/<collection>/<id>` of `service` behind gate's back and waits for its 404.
    fn delete_behind_gates_back(&self, service: &str, collection: &str, id: &str) {
        let session = self.creds.session().unwrap();
        let path = format!("/{collection}/{id}");
        session.call_ok("DELETE", service, &path, None).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while session.call("GET", service, &path, None).unwrap().status != 404 {
            assert!(Instant::now() < deadline, "{path} was never deleted");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The `osa` deployer of `toml` and the cleaner of its section, from one registry, as the
/// CLI builds them.
fn osa_and_cleaner(osa: &common::Osa, toml: &str) -> (Arc<dyn Deployer>, CleanerLookup) {
    let toml = format!(
        "repo = \"{}\"\ntimeout_secs = 120\n{toml}",
        osa.server.url("openstack-ansible.git")
    );
    let section = BackendConfig::from_toml("deployer", gate_deployers_osa::NAME, &toml).unwrap();
    let mut registry = Registry::new();
    gate_deployers_osa::register(&mut registry);
    let deployer = registry.deployer(&section).unwrap();
    let registry = Arc::new(registry);
    let lookup: CleanerLookup = Arc::new(move |backend: &str| {
        assert_eq!(
            backend,
            gate_deployers_osa::NAME,
            "a ledger entry of another backend"
        );
        registry.cleaner(&section)
    });
    (deployer, lookup)
}

/// Runs the upgrade in the background; once the upgrade script is held, runs `during`
/// and lets it go. Returns the upgrade's result (also when it ended before the hold).
async fn upgrade_holding(
    fs: &FleetStage,
    d: &Arc<dyn Deployer>,
    during: impl FnOnce(),
) -> gate_core::Result<gate_core::StageOutcome> {
    let hold = UpgradeHold::arm(fs.host(1)).unwrap();
    let cx = fs.cx(Stage::Upgrade);
    let upgrade = tokio::spawn({
        let d = d.clone();
        async move { d.upgrade(&cx).await }
    });
    let held = tokio::task::block_in_place(|| {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if hold.wait_started(Duration::from_millis(200)).is_ok() {
                return true;
            }
            if upgrade.is_finished() {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "the upgrade never reached its script"
            );
        }
    });
    if held {
        tokio::task::block_in_place(during);
        hold.release().unwrap();
    }
    upgrade.await.unwrap()
}

fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Cleanup as the pipeline runs it; returns what it freed.
async fn cleanup(fs: &FleetStage, lookup: &CleanerLookup) -> gate_core::CleanupReport {
    let cx = CleanContext::new(Arc::new(LocalConnector));
    cleanup_ledger(&fs.stage.cx.ledger, lookup, &cx)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_servers_are_made_before_the_upgrade_pinged_during_it_verified_after_it_and_freed_by_cleanup()
 {
    let tc = TestCloud::new("osa-upgrade");
    let server_hosts = SshFleet::start(2).unwrap();
    let join = cloud()
        .join_servers_to(&server_hosts, Some(tc.creds.project_id()))
        .unwrap();
    let osa = osa_repo();
    let fs = common::fleet_stage(&[&[]]).await;
    let ssh_port = server_hosts.hosts()[0].port();
    let (d, lookup) = osa_and_cleaner(
        &osa,
        &format!(
            "version = \"27.2.0\"\nupgrade_to = \"27.10.0\"\n\
             [upgrade_checks]\ninterval_ms = 200\ntimeout_secs = 1\n{}",
            tc.resources_toml(2, &format!("tcp_ports = [{ssh_port}]"))
        ),
    );
    d.prepare_deployment(&fs.cx(Stage::PrepareDeployment))
        .await
        .unwrap();
    common::take_records(&fs, 1);
    let run_id = fs.stage.cx.run_id.as_str().to_owned();
    let names = [format!("{run_id}-upgrade-1"), format!("{run_id}-upgrade-2")];

    let mut during_upgrade = Vec::new();
    let outcome = upgrade_holding(&fs, &d, || {
        // Made before the upgrade: in Nova, ACTIVE, tagged, joined to a loopback host …
        during_upgrade = tc.servers();
        // … and pinged and probed all through it: every probe answered since.
        for index in 0..4 {
            wait_probe(fs.host(1), index, "ok", 0);
        }
    })
    .await;
    outcome.unwrap_or_else(|e| panic!("the upgrade failed: {e}"));

    assert_eq!(during_upgrade.len(), 2, "{during_upgrade:#?}");
    let joined = join.joined();
    let mut ids = Vec::new();
    for server in &during_upgrade {
        let name = server["name"].as_str().unwrap();
        assert!(
            names.contains(&name.to_owned()),
            "{name} carries the run id"
        );
        assert_eq!(server["status"], "ACTIVE");
        assert_eq!(server["metadata"]["gate_run_id"], run_id.as_str());
        assert_eq!(server["metadata"]["gate_purpose"], "upgrade-check");
        let id = server["id"].as_str().unwrap();
        let host = joined.iter().find(|j| j.server_id == id).unwrap();
        assert!(host.address.starts_with("127."), "{host:?}");
        ids.push((name.to_owned(), id.to_owned(), host.address.clone()));
    }
    // In the ledger, under the deployer's name, with Nova's ids.
    let live = fs.stage.cx.ledger.live().unwrap();
    assert_eq!(live.len(), 2, "{live:#?}");
    for (name, id, _) in &ids {
        let entry = live.iter().find(|l| &l.spec.name == name).unwrap();
        assert_eq!(entry.spec.backend, "osa");
        assert_eq!(entry.spec.kind, "server");
        assert_eq!(entry.id.as_deref(), Some(id.as_str()));
    }
    assert_eq!(
        steps(&common::take_records(&fs, 1))[0],
        "run-upgrade",
        "the upgrade ran"
    );

    // The timeline has a ping and a TCP probe per server, at its joined loopback address only.
    let dir = fs.stage.cx.artifacts_dir.join("upgrade-checks");
    let timeline = read_json(&dir.join("timeline.json"));
    let probes = timeline["probes"].as_array().unwrap();
    assert_eq!(probes.len(), 4, "{timeline:#}");
    for (name, _, address) in &ids {
        for (kind, target) in [
            ("ping", address.clone()),
            ("tcp", format!("{address}:{ssh_port}")),
        ] {
            let probe = probes
                .iter()
                .find(|p| p["kind"] == kind && p["target"] == target.as_str())
                .unwrap_or_else(|| panic!("no {kind} probe of {name} at {target}: {timeline:#}"));
            assert!(probe["name"].as_str().unwrap().contains(name.as_str()));
            assert!(probe["rounds"].as_u64().unwrap() >= 1, "{probe:#}");
            assert!(probe["outages"].as_array().unwrap().is_empty(), "{probe:#}");
        }
    }
    for probe in probes {
        assert!(
            probe["target"].as_str().unwrap().starts_with("127."),
            "{probe:#}"
        );
    }
    // Verified after it: a passing JUnit case per server, with Nova's view as evidence.
    let resources = read_json(&dir.join("resources.json"));
    let list = resources["resources"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{resources:#}");
    for resource in list {
        assert_eq!(resource["survived"], true, "{resource:#}");
        let evidence = resource["evidence"].as_str().unwrap();
        assert!(evidence.contains("\"ACTIVE\""), "{resource:#}");
        // The fake driver's console, through Nova's real os-getConsoleOutput action.
        assert!(evidence.contains("FAKE CONSOLE OUTPUT"), "{resource:#}");
    }
    let results = fs.stage.cx.results_dir().join("upgrade-checks.xml");
    let counts = read_counts(&results).unwrap();
    assert_eq!((counts.tests, counts.failures, counts.errors), (6, 0, 0));
    let junit = std::fs::read_to_string(&results).unwrap();
    for (name, _, _) in &ids {
        assert!(
            junit.contains(&format!("{name} survived the upgrade")),
            "{junit}"
        );
    }

    // The cleaner sees the truth in Nova: the run's two servers, by their tag.
    let cleaner = lookup("osa").unwrap();
    let clean_cx = CleanContext::new(Arc::new(LocalConnector));
    let mut observed: Vec<String> = cleaner
        .observe(&fs.stage.cx.run_id, &clean_cx)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    observed.sort();
    assert_eq!(observed, names);

    // Cleanup frees them: Nova lists nothing, the ledger has nothing live; again is fine.
    let report = cleanup(&fs, &lookup).await;
    assert_eq!(report.deleted, 2, "{report:?}");
    assert!(tc.servers().is_empty(), "{:#?}", tc.servers());
    assert!(fs.stage.cx.ledger.live().unwrap().is_empty());
    cleanup(&fs, &lookup).await;
    let observed = cleaner
        .observe(&fs.stage.cx.run_id, &clean_cx)
        .await
        .unwrap();
    assert!(observed.is_empty(), "{observed:?}");
    assert!(join.errors().is_empty(), "{:?}", join.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_server_deleted_behind_gates_back_mid_upgrade_fails_the_checks_naming_it() {
    let tc = TestCloud::new("osa-gone");
    let server_hosts = SshFleet::start(2).unwrap();
    let join = cloud()
        .join_servers_to(&server_hosts, Some(tc.creds.project_id()))
        .unwrap();
    let osa = osa_repo();
    let fs = common::fleet_stage(&[&[]]).await;
    let (d, lookup) = osa_and_cleaner(
        &osa,
        &format!(
            "version = \"27.2.0\"\nupgrade_to = \"27.10.0\"\n\
             [upgrade_checks]\ninterval_ms = 200\ntimeout_secs = 1\n{}",
            tc.resources_toml(2, "")
        ),
    );
    d.prepare_deployment(&fs.cx(Stage::PrepareDeployment))
        .await
        .unwrap();
    common::take_records(&fs, 1);
    let run_id = fs.stage.cx.run_id.as_str().to_owned();
    let victim = format!("{run_id}-upgrade-1");
    let survivor = format!("{run_id}-upgrade-2");

    let err = upgrade_holding(&fs, &d, || {
        let servers = tc.servers();
        let id = servers
            .iter()
            .find(|s| s["name"] == victim.as_str())
            .and_then(|s| s["id"].as_str())
            .unwrap_or_else(|| panic!("no {victim}: {servers:#?}"));
        wait_probe(fs.host(1), 0, "ok", 0);
        tc.delete_behind_gates_back("compute", "servers", id);
    })
    .await
    .unwrap_err()
    .to_string();
    // The upgrade went through; the verification after it found the server gone.
    assert!(err.contains("checks failed"), "{err}");
    assert!(err.contains(&format!("server {victim}: gone")), "{err}");
    assert!(!err.contains(&survivor), "{err}");
    assert_eq!(
        steps(&common::take_records(&fs, 1))[0],
        "run-upgrade",
        "the upgrade ran"
    );

    let dir = fs.stage.cx.artifacts_dir.join("upgrade-checks");
    let resources = read_json(&dir.join("resources.json"));
    let list = resources["resources"].as_array().unwrap();
    let gone = list.iter().find(|r| r["name"] == victim.as_str()).unwrap();
    assert_eq!(gone["survived"], false, "{resources:#}");
    assert!(
        gone["problem"].as_str().unwrap().contains("404"),
        "{gone:#}"
    );
    let kept = list
        .iter()
        .find(|r| r["name"] == survivor.as_str())
        .unwrap();
    assert_eq!(kept["survived"], true, "{resources:#}");
    let counts = read_counts(&fs.stage.cx.results_dir().join("upgrade-checks.xml")).unwrap();
    // Two pings (loopback answers for the deleted one too) and two servers, one failed.
    assert_eq!((counts.tests, counts.failures, counts.errors), (4, 1, 0));

    // Cleanup: the gone one counts as deleted, the other is deleted; Nova is empty.
    let report = cleanup(&fs, &lookup).await;
    assert_eq!(report.deleted, 2, "{report:?}");
    assert!(tc.servers().is_empty(), "{:#?}", tc.servers());
    assert!(join.errors().is_empty(), "{:?}", join.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_networks_on_a_read_only_neutron_fail_naming_the_key_and_leave_nothing() {
    let tc = TestCloud::new("osa-net");
    let osa = osa_repo();
    let fs = common::fleet_stage(&[&[]]).await;
    let (d, lookup) = osa_and_cleaner(
        &osa,
        &format!(
            "version = \"27.2.0\"\nupgrade_to = \"27.10.0\"\n{}",
            tc.resources_toml(0, "networks = 1")
        ),
    );
    d.prepare_deployment(&fs.cx(Stage::PrepareDeployment))
        .await
        .unwrap();
    common::take_records(&fs, 1);
    let err = d
        .upgrade(&fs.cx(Stage::Upgrade))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("upgrade_checks.resources.networks"), "{err}");
    assert!(err.contains("501"), "{err}");
    assert!(
        common::take_records(&fs, 1).is_empty(),
        "the upgrade must not start without its test resources"
    );
    // The intent is in the ledger; cleanup finds nothing by name and run id, and is done.
    assert_eq!(fs.stage.cx.ledger.live().unwrap().len(), 1);
    cleanup(&fs, &lookup).await;
    assert!(fs.stage.cx.ledger.live().unwrap().is_empty());
    assert!(tc.servers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_volumes_are_made_available_before_the_upgrade_verified_after_it_and_freed_by_cleanup()
{
    let cinder = cloud()
        .cinder()
        .unwrap_or_else(|e| panic!("the harness's Cinder did not start: {e}"));
    let tc = TestCloud::new("osa-volumes");
    let osa = osa_repo();
    let fs = common::fleet_stage(&[&[]]).await;
    let (d, lookup) = osa_and_cleaner(
        &osa,
        &format!(
            "version = \"27.2.0\"\nupgrade_to = \"27.10.0\"\n{}",
            tc.resources_toml(0, "volumes = 2\nvolume_size_gb = 1")
        ),
    );
    d.prepare_deployment(&fs.cx(Stage::PrepareDeployment))
        .await
        .unwrap();
    common::take_records(&fs, 1);
    let run_id = fs.stage.cx.run_id.as_str().to_owned();
    let victim = format!("{run_id}-upgrade-vol-1");
    let survivor = format!("{run_id}-upgrade-vol-2");

    let mut during_upgrade = Vec::new();
    let err = upgrade_holding(&fs, &d, || {
        // Made before the upgrade: in Cinder, available, tagged with the run.
        during_upgrade = tc.volumes();
        let id = during_upgrade
            .iter()
            .find(|v| v["name"] == victim.as_str())
            .and_then(|v| v["id"].as_str())
            .unwrap_or_else(|| panic!("no {victim}: {during_upgrade:#?}"));
        tc.delete_behind_gates_back("block-storage", "volumes", id);
    })
    .await
    .unwrap_err()
    .to_string();
    assert_eq!(
        during_upgrade.len(),
        2,
        "{during_upgrade:#?}\ncinder-volume log:\n{}",
        cinder.log("cinder-volume")
    );
    for volume in &during_upgrade {
        assert_eq!(volume["status"], "available", "{volume:#}");
        assert_eq!(volume["size"], 1, "{volume:#}");
        assert_eq!(volume["metadata"]["gate_run_id"], run_id.as_str());
        assert_eq!(volume["metadata"]["gate_purpose"], "upgrade-check");
    }
    // In the ledger under the deployer's name, with Cinder's ids.
    let live = fs.stage.cx.ledger.live().unwrap();
    assert_eq!(live.len(), 2, "{live:#?}");
    for volume in &during_upgrade {
        let entry = live
            .iter()
            .find(|l| l.spec.name == volume["name"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            (entry.spec.backend.as_str(), entry.spec.kind.as_str()),
            ("osa", "volume")
        );
        assert_eq!(entry.id.as_deref(), volume["id"].as_str());
    }
    // The upgrade went through; the verification after it found one volume gone.
    assert_eq!(
        steps(&common::take_records(&fs, 1))[0],
        "run-upgrade",
        "the upgrade ran"
    );
    assert!(err.contains(&format!("volume {victim}: gone")), "{err}");
    assert!(!err.contains(&survivor), "{err}");
    let dir = fs.stage.cx.artifacts_dir.join("upgrade-checks");
    let resources = read_json(&dir.join("resources.json"));
    let list = resources["resources"].as_array().unwrap();
    let kept = list
        .iter()
        .find(|r| r["name"] == survivor.as_str())
        .unwrap();
    assert_eq!(kept["survived"], true, "{resources:#}");
    assert!(
        kept["evidence"].as_str().unwrap().contains("\"available\""),
        "Cinder's view is the evidence: {kept:#}"
    );
    let counts = read_counts(&fs.stage.cx.results_dir().join("upgrade-checks.xml")).unwrap();
    assert_eq!((counts.tests, counts.failures, counts.errors), (2, 1, 0));

    // The cleaner sees the truth in Cinder, by the run's tag: the survivor.
    let cleaner = lookup("osa").unwrap();
    let clean_cx = CleanContext::new(Arc::new(LocalConnector));
    let observed = cleaner
        .observe(&fs.stage.cx.run_id, &clean_cx)
        .await
        .unwrap();
    let names: Vec<&str> = observed.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, [survivor.as_str()]);

    // Cleanup: the gone one counts as deleted, the other is deleted to 404; again is fine.
    let report = cleanup(&fs, &lookup).await;
    assert_eq!(report.deleted, 2, "{report:?}");
    assert!(tc.volumes().is_empty(), "{:#?}", tc.volumes());
    assert!(fs.stage.cx.ledger.live().unwrap().is_empty());
    cleanup(&fs, &lookup).await;
}
