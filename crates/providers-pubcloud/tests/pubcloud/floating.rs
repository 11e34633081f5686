//! `pubcloud` with `floating_ip = true` against the real Nova and the harness's Neutron
//! stand-in (ports, external networks, floating IPs): every server gets a floating IP that
//! is associated with its port and is the address gate reaches it at; cleanup deletes the
//! floating IPs before their servers; a crash between a floating IP's create call and its
//! `created` line is found by name and run id (observe, sweep, cleanup); a floating-IP
//! quota fails the allocation clearly and frees the servers.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::Duration;

use gate_core::ledger::Op;
use gate_core::testkit::{self, Subject};
use gate_core::{
    CleanContext, Cleaner, Connector, Ledger, ResourceAllocator, RunId, SweepFilter, cleanup_ledger,
};
use gate_providers_pubcloud::{FLOATING_IP, PubcloudProvider, SERVER};
use gate_ssh::testkit::fleet_connector;
use gate_test_harness::SshFleet;
use serde_json::{Value, json};

use super::{Project, cloud, context, lookup};

/// The environment variable that turns [`a_floating_ip_allocation_that_crashes`] on.
const CRASH_DIR_ENV: &str = "GATE_TEST_FIP_CRASH_DIR";

impl Project {
    /// The project's floating IPs, as Neutron shows them to the project.
    fn floating_ips(&self) -> Vec<Value> {
        let list = self.session().get("network", "/v2.0/floatingips").unwrap();
        list["floatingips"].as_array().unwrap().clone()
    }

    /// The id of server `id`'s port.
    fn port_of(&self, id: &str) -> String {
        let ports = self
            .session()
            .get("network", &format!("/v2.0/ports?device_id={id}"))
            .unwrap();
        assert_eq!(ports["ports"].as_array().unwrap().len(), 1, "{ports}");
        ports["ports"][0]["id"].as_str().unwrap().to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_are_reached_at_their_floating_ips_which_cleanup_frees_first() {
    let project = Project::new("floating");
    let fleet = SshFleet::start(2).unwrap();
    let join = cloud()
        .join_floating_ips_to(&fleet, Some(project.creds.project_id()), "fip")
        .unwrap();
    let network = join.floating_network().unwrap().clone();
    let connector = Arc::new(fleet_connector(
        &fleet,
        &project.dir.path().join("known_hosts"),
    ));
    let provider = project.provider(&format!(
        "hosts = 2\nregions = [\"RegionOne\"]\nfloating_ip = true\nfloating_network = \"{}\"",
        network.name
    ));
    let cx = project.context(connector.clone());
    let inventory = provider.allocate(&cx).await.unwrap();

    // The hosts' addresses are the floating addresses, which the join gave fleet hosts.
    let addresses: BTreeSet<String> = inventory
        .hosts()
        .iter()
        .map(|h| h.address.clone())
        .collect();
    let fleet_addresses: BTreeSet<String> = fleet.hosts().iter().map(|h| h.address()).collect();
    assert_eq!(addresses, fleet_addresses);
    let fips = project.floating_ips();
    assert_eq!(fips.len(), 2, "{fips:?}");
    for server in project.servers() {
        let (id, name) = (
            server["id"].as_str().unwrap(),
            server["name"].as_str().unwrap(),
        );
        assert!(
            server["accessIPv4"].as_str().unwrap_or_default().is_empty(),
            "the address must come from the floating IP: {server}"
        );
        let port = project.port_of(id);
        let fip = fips
            .iter()
            .find(|f| f["port_id"] == port.as_str())
            .unwrap_or_else(|| panic!("no floating IP on the port of {name}: {fips:?}"));
        assert_eq!(fip["status"], "ACTIVE", "{fip}");
        assert_eq!(fip["floating_network_id"], network.id.as_str());
        let host = inventory.hosts().iter().find(|h| h.name == name).unwrap();
        assert_eq!(fip["floating_ip_address"], host.address.as_str());
        let tags: Value = serde_json::from_str(fip["description"].as_str().unwrap()).unwrap();
        assert_eq!(tags["gate_name"], format!("{name}-fip"));
        assert_eq!(tags["gate_run_id"], cx.run_id.as_str());
        let joined = join.wait_joined(id, Duration::from_secs(5)).unwrap();
        assert_eq!(joined.address, host.address);
        // SSH reaches the host behind the floating address.
        let transport = connector
            .connect(host, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("{name} at {}: {e}", host.address));
        drop(transport);
    }

    // Each floating IP is in the ledger as its server's child, intent before created.
    let live = cx.ledger.live().unwrap();
    assert_eq!(live.len(), 4, "{live:?}");
    for fip in live.iter().filter(|r| r.spec.kind == FLOATING_IP) {
        let parent = fip.spec.parent.as_deref().unwrap();
        assert_eq!(fip.spec.name, format!("{parent}-fip"));
        assert!(
            fips.iter().any(|f| f["id"].as_str() == fip.id.as_deref()),
            "{fip:?}"
        );
    }
    let entries = cx.ledger.replay().unwrap().entries;
    let line = |op: Op, kind: &str, name: &str| {
        entries
            .iter()
            .position(|e| e.op == op && e.spec.kind == kind && e.spec.name == name)
            .unwrap_or_else(|| panic!("no {op:?} line for {kind} {name}: {entries:?}"))
    };
    for host in inventory.hosts() {
        let fip = format!("{}-fip", host.name);
        assert!(line(Op::Intent, FLOATING_IP, &fip) < line(Op::Created, FLOATING_IP, &fip));
        assert!(line(Op::Created, SERVER, &host.name) < line(Op::Intent, FLOATING_IP, &fip));
    }
    let clean_cx = CleanContext::new(cx.connector.clone());
    let observed = provider.observe(&cx.run_id, &clean_cx).await.unwrap();
    let kinds: Vec<&str> = observed.iter().map(|o| o.kind.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == FLOATING_IP).count(),
        2,
        "{observed:?}"
    );

    // Cleanup: every floating IP before its server, and nothing left in Neutron or Nova.
    cleanup_ledger(&cx.ledger, &lookup(provider.clone()), &clean_cx)
        .await
        .unwrap();
    let entries = cx.ledger.replay().unwrap().entries;
    for host in inventory.hosts() {
        let fip = format!("{}-fip", host.name);
        let deleted = |kind: &str, name: &str| {
            entries
                .iter()
                .position(|e| e.op == Op::Deleted && e.spec.kind == kind && e.spec.name == name)
                .unwrap()
        };
        assert!(deleted(FLOATING_IP, &fip) < deleted(SERVER, &host.name));
    }
    assert!(
        project.floating_ips().is_empty(),
        "{:?}",
        project.floating_ips()
    );
    assert!(project.server_names().is_empty());
    assert!(
        provider
            .observe(&cx.run_id, &clean_cx)
            .await
            .unwrap()
            .is_empty()
    );

    // The conformance checks hold with floating IPs too: everything real is in the ledger,
    // cleanup leaves nothing, and intent-only entries are found by name and run id.
    let subject = Subject::new(provider.clone(), provider, connector);
    testkit::allocate_then_cleanup_leaves_nothing(&subject).await;
    testkit::cleanup_of_intent_only_entries_is_fine(&subject).await;
    assert!(
        project.floating_ips().is_empty(),
        "{:?}",
        project.floating_ips()
    );
    assert!(join.errors().is_empty(), "{:?}", join.errors());
}

/// Run as a child process by
/// [`a_crash_between_a_floating_ips_create_and_its_created_line_is_found_and_freed`]
/// (does nothing without [`CRASH_DIR_ENV`]): allocates with the config and run id found
/// in that directory until the crash point kills it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the crash test"]
async fn a_floating_ip_allocation_that_crashes() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let toml = std::fs::read_to_string(dir.join("provider.toml")).unwrap();
    let section = gate_core::BackendConfig::from_toml("provider", "pubcloud", &toml).unwrap();
    let provider = PubcloudProvider::from_config(&section).unwrap();
    let run_id = RunId::try_from(std::fs::read_to_string(dir.join("run-id")).unwrap()).unwrap();
    let mut cx = context(Arc::new(gate_core::local::LocalConnector), &dir, &run_id);
    cx.ledger = Ledger::open(dir.join("ledger.jsonl"), run_id.clone()).unwrap();
    let outcome = provider.allocate(&cx).await;
    panic!("the crash point was not reached: {outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_a_floating_ips_create_and_its_created_line_is_found_and_freed() {
    let project = Project::new("fipcrash");
    let dir = project.dir.path().join("crash");
    std::fs::create_dir_all(&dir).unwrap();
    let run_id = RunId::generate();
    std::fs::write(dir.join("run-id"), run_id.as_str()).unwrap();
    let extra =
        "hosts = 1\nregions = [\"RegionOne\"]\nfloating_ip = true\nfloating_network = \"public\"";
    let provider = project.provider(extra);
    std::fs::write(dir.join("provider.toml"), project.provider_toml(extra)).unwrap();

    // A real crash: the child is killed by SIGKILL after the floating IP's create call
    // answered, before its `created` line (the server's is the first `created`).
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "floating::a_floating_ip_allocation_that_crashes",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CRASH_DIR_ENV, &dir)
        .env(gate_core::ledger::CRASH_POINT_ENV, "before-created:2")
        .status()
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the child was not killed: {status:?}"
    );

    let ledger = Ledger::open(dir.join("ledger.jsonl"), run_id.clone()).unwrap();
    let live = ledger.live().unwrap();
    assert_eq!(live.len(), 2, "{live:?}");
    let fip_entry = live.iter().find(|r| r.spec.kind == FLOATING_IP).unwrap();
    assert_eq!(fip_entry.id, None, "only the intent was written");
    let fips = project.floating_ips();
    assert_eq!(fips.len(), 1, "the floating IP exists: {fips:?}");
    assert!(fips[0]["port_id"].is_null(), "{fips:?}");

    // What really exists is seen by its description: observe, and a sweep of this run.
    let clean_cx = CleanContext::new(Arc::new(gate_core::local::LocalConnector));
    let observed = provider.observe(&run_id, &clean_cx).await.unwrap();
    let seen_fip = observed.iter().find(|o| o.kind == FLOATING_IP).unwrap();
    assert_eq!(seen_fip.name, fip_entry.spec.name);
    assert_eq!(seen_fip.id, fips[0]["id"].as_str().unwrap());
    let swept = provider
        .sweep(
            &SweepFilter {
                older_than: Duration::ZERO,
                run_id: Some(run_id.clone()),
                delete: false,
            },
            &clean_cx,
        )
        .await
        .unwrap();
    let kinds: BTreeSet<&str> = swept.iter().map(|o| o.kind.as_str()).collect();
    assert_eq!(kinds, BTreeSet::from([FLOATING_IP, SERVER]), "{swept:?}");

    // Cleanup finds the floating IP by its exact name and the run id, then the server.
    cleanup_ledger(&ledger, &lookup(provider.clone()), &clean_cx)
        .await
        .unwrap();
    assert!(
        project.floating_ips().is_empty(),
        "{:?}",
        project.floating_ips()
    );
    assert!(project.server_names().is_empty());
    assert!(ledger.live().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_floating_ip_quota_fails_clearly_and_frees_the_servers() {
    let project = Project::new("fipquota");
    let admin = cloud().admin().session().unwrap();
    admin
        .call_ok(
            "PUT",
            "network",
            &format!("/v2.0/quotas/{}", project.creds.project_id()),
            Some(&json!({"quota": {"floatingip": 1}})),
        )
        .unwrap();
    let provider = project.provider(
        "hosts = 2\nregions = [\"RegionOne\"]\nfloating_ip = true\nfloating_network = \"public\"",
    );
    let connector: Arc<dyn Connector> = Arc::new(gate_core::local::LocalConnector);
    let cx = project.context(connector);
    let error = provider.allocate(&cx).await.unwrap_err().to_string();
    assert!(error.contains("quota exceeded"), "{error}");
    assert!(error.contains("floatingip"), "{error}");
    assert!(error.contains("-fip`"), "the floating IP is named: {error}");
    assert!(project.server_names().is_empty(), "{:?}", project.servers());
    assert!(
        project.floating_ips().is_empty(),
        "{:?}",
        project.floating_ips()
    );
    assert!(cx.ledger.live().unwrap().is_empty());
}
