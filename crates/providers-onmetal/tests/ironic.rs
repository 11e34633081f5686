//! `onmetal` in Ironic mode against a real standalone Ironic from PyPI (the harness's
//! `Ironic`: fake-hardware nodes, sqlite, JSON-RPC, noauth and http_basic APIs), nodes
//! reached as real sshd fleet hosts. Needs `scripts/ironic-env` and root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gate_core::ledger::Op;
use gate_core::testkit::{self, Subject};
use gate_core::{
    AllocateContext, BackendConfig, CleanContext, Cleaner, CleanerLookup, Connector, Ledger,
    ResourceAllocator, RunId, SweepFilter, TracingEvents, cleanup_ledger,
};
use gate_providers_onmetal::OnmetalProvider;
use gate_ssh::testkit::fleet_connector;
use gate_test_harness::SshFleet;
use gate_test_harness::openstack::{FaultProxy, Faults, Hold, Ironic};

fn ironic() -> &'static Ironic {
    Ironic::shared().unwrap_or_else(|e| panic!("Ironic did not start: {e}"))
}

/// `count` nodes `<label>-<pid>-N` of a resource class of their own.
fn nodes(label: &str, count: usize) -> (String, Vec<String>) {
    let class = ironic().resource_class(label);
    let names: Vec<String> = (1..=count)
        .map(|n| format!("{label}-{}-{n}", std::process::id()))
        .collect();
    for name in &names {
        ironic().enroll(name, &class).unwrap();
    }
    (class, names)
}

/// The `addresses` table mapping each node to a fleet host.
fn addresses(names: &[String], fleet: &SshFleet) -> String {
    let pairs: Vec<String> = names
        .iter()
        .zip(fleet.hosts())
        .map(|(name, host)| format!("\"{name}\" = \"{}\"", host.address()))
        .collect();
    format!("addresses = {{ {} }}", pairs.join(", "))
}

fn provider(endpoint: &str, extra: &str) -> Arc<OnmetalProvider> {
    let toml = format!(
        "mode = \"ironic\"\nendpoint = \"{endpoint}\"\n\
         image_source = \"http://images.invalid/gate.qcow2\"\n\
         instance_info = {{ root_gb = \"10\" }}\npoll_secs = 0.2\n\
         boot_timeout_secs = 120\ndelete_timeout_secs = 120\n{extra}\n\
         [api]\ntries = 4\nfirst_delay_secs = 0.05\nmax_delay_secs = 0.5\n"
    );
    let section = BackendConfig::from_toml("provider", "onmetal", &toml).unwrap();
    Arc::new(OnmetalProvider::from_config(&section).unwrap())
}

fn context(connector: Arc<dyn Connector>, dir: &Path) -> AllocateContext {
    let run_id = RunId::generate();
    AllocateContext {
        ledger: Ledger::open(dir.join(format!("{run_id}.jsonl")), run_id.clone()).unwrap(),
        run_id,
        job: Some("onmetal-test".into()),
        connector,
        keys: Default::default(),
        cancel: Default::default(),
        events: Arc::new(TracingEvents),
        logs_dir: dir.join("logs"),
        concurrency: 4,
    }
}

async fn cleanup(provider: Arc<OnmetalProvider>, cx: &AllocateContext) {
    let lookup: CleanerLookup = Arc::new(move |_: &str| Ok(provider.clone() as Arc<dyn Cleaner>));
    cleanup_ledger(
        &cx.ledger,
        &lookup,
        &CleanContext::new(cx.connector.clone()),
    )
    .await
    .unwrap();
}

/// Every node back to `available`, unclaimed, without gate's marks.
fn assert_given_back(names: &[String]) {
    for name in names {
        let node = ironic().node(name).unwrap().unwrap();
        assert_eq!(node["provision_state"], "available", "{name}: {node}");
        assert!(node["instance_uuid"].is_null(), "{name}: {node}");
        assert!(node["extra"].get("gate_run_id").is_none(), "{name}: {node}");
        assert!(
            node["instance_info"].as_object().unwrap().is_empty(),
            "{name}: {node}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onmetal_ironic_passes_the_conformance_checks_on_real_ironic() {
    let (class, names) = nodes("conform", 3);
    let fleet = SshFleet::start(3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let connector = Arc::new(fleet_connector(&fleet, &dir.path().join("known_hosts")));
    let extra = format!(
        "resource_class = \"{class}\"\nhosts = 2\n{}",
        addresses(&names, &fleet)
    );
    let provider = provider(&ironic().endpoint(), &extra);
    let subject = Subject::new(provider.clone(), provider, connector.clone());
    let inventory = testkit::allocate_then_cleanup_leaves_nothing(&subject).await;
    assert_eq!(inventory.len(), 2);
    for host in inventory.hosts() {
        assert!(names.contains(&host.name), "{host:?}");
    }
    assert_given_back(&names);
    testkit::cleanup_of_intent_only_entries_is_fine(&subject).await;
    assert_given_back(&names);

    // Cancelled while waiting for an address that never comes (none configured, nothing
    // sets `extra/address`): the nodes are active and in the ledger, cleanup releases them.
    let lonely = self::provider(
        &ironic().endpoint(),
        &format!("resource_class = \"{class}\"\nhosts = 2"),
    );
    let subject = Subject::new(lonely.clone(), lonely, connector);
    testkit::cancelled_allocation_stops_and_is_recorded(&subject, Duration::from_secs(4)).await;
    assert_given_back(&names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_drive_carries_the_run_key_to_root_and_the_node_is_released() {
    let (class, names) = nodes("drive", 1);
    let fleet = SshFleet::start(1).unwrap();
    let join = ironic().join_nodes_to(&fleet, &class).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cx = context(Arc::new(gate_core::local::LocalConnector), dir.path());
    // The run's own key is the only key the host accepts after the deploy.
    let run_key =
        gate_core::keys::RunKey::generate(&dir.path().join("keys"), cx.run_id.as_str()).unwrap();
    cx.connector = Arc::new(gate_ssh::SshConnector::new(gate_ssh::SshConfig {
        identities: vec![run_key.private_path.clone()],
        agent: false,
        known_hosts: Some(dir.path().join("known_hosts")),
        connect_timeout_secs: 30,
        poll_secs: 1,
        ..gate_ssh::SshConfig::default()
    }));
    cx.keys.run_key = Some(run_key.clone());
    let provider = provider(
        &ironic().endpoint(),
        &format!(
            "nodes = [\"{}\"]\naddress_field = \"instance_info/address\"",
            names[0]
        ),
    );
    let inventory = provider.allocate(&cx).await.unwrap();
    assert_eq!(inventory.primary().name, names[0]);
    assert_eq!(inventory.primary().address, fleet.hosts()[0].address());
    let joined = join.wait_joined(&names[0], Duration::from_secs(5)).unwrap();
    assert!(
        joined.keys.iter().any(|k| k.contains(&run_key.public.blob)),
        "{joined:?}"
    );
    let authorized = fleet.hosts()[0]
        .exec_ok("cat /root/.ssh/authorized_keys")
        .unwrap();
    assert!(authorized.contains(&run_key.public.blob), "{authorized}");

    // What Ironic holds: the claim, the tags, the instance info, the config drive.
    let node = ironic().node(&names[0]).unwrap().unwrap();
    assert_eq!(node["provision_state"], "active");
    assert_eq!(node["extra"]["gate_run_id"], cx.run_id.as_str());
    assert_eq!(node["extra"]["gate_job"], "onmetal-test");
    assert_eq!(node["instance_info"]["gate_run_id"], cx.run_id.as_str());
    assert_eq!(node["instance_info"]["root_gb"], "10");
    assert!(node["instance_uuid"].is_string(), "{node}");
    let drive = ironic().config_drive(&names[0]).unwrap().unwrap();
    let user_data = drive["user_data"].as_str().unwrap();
    assert!(user_data.starts_with("#cloud-config"), "{user_data}");
    assert!(user_data.contains(&run_key.public.blob), "{user_data}");
    assert_eq!(drive["meta_data"]["hostname"], names[0].as_str());
    let public_keys = drive["meta_data"]["public_keys"].to_string();
    assert!(public_keys.contains(&run_key.public.blob), "{public_keys}");

    let live = cx.ledger.live().unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].spec.kind, "node");
    assert_eq!(live[0].spec.name, names[0]);
    assert_eq!(live[0].spec.scope, ironic().endpoint());
    assert_eq!(live[0].id.as_deref(), node["uuid"].as_str());

    cleanup(provider, &cx).await;
    assert_given_back(&names);
    let ops: Vec<Op> = cx
        .ledger
        .replay()
        .unwrap()
        .entries
        .iter()
        .map(|e| e.op)
        .collect();
    assert_eq!(ops, [Op::Intent, Op::Created, Op::Released]);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while fleet.hosts()[0]
        .exec_ok("cat /root/.ssh/authorized_keys")
        .unwrap()
        .contains(&run_key.public.blob)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the host kept the run key"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(join.errors().is_empty(), "{:?}", join.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deploy_names_the_node_and_its_error_and_releases_it() {
    let class = ironic().resource_class("fails");
    let bad = format!("fails-{}-bad", std::process::id());
    ironic().enroll_failing(&bad, &class).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cx = context(Arc::new(gate_core::local::LocalConnector), dir.path());
    let provider = provider(
        &ironic().endpoint(),
        &format!("resource_class = \"{class}\"\naddresses = {{ \"{bad}\" = \"127.0.0.1\" }}"),
    );
    let error = provider.allocate(&cx).await.unwrap_err().to_string();
    assert!(error.contains(&format!("node `{bad}`")), "{error}");
    assert!(error.contains("failed to deploy"), "{error}");
    // Ironic's own last_error, from the conductor.
    let log = ironic().log("ironic-conductor");
    assert!(
        error.contains("Couldn't get the URL of the Ironic API"),
        "{error}\n{log}"
    );
    assert!(error.contains("it is released"), "{error}");
    assert_given_back(std::slice::from_ref(&bad));
    assert!(cx.ledger.live().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_available_nodes_fail_clearly_and_change_nothing() {
    let (class, names) = nodes("few", 1);
    let dir = tempfile::tempdir().unwrap();
    let cx = context(Arc::new(gate_core::local::LocalConnector), dir.path());
    let before = ironic().node(&names[0]).unwrap().unwrap();

    let by_class = provider(
        &ironic().endpoint(),
        &format!("resource_class = \"{class}\"\nhosts = 2"),
    );
    let error = by_class.allocate(&cx).await.unwrap_err().to_string();
    assert!(
        error.contains(&format!(
            "2 node(s) of resource class `{class}` wanted but 1 available"
        )),
        "{error}"
    );
    assert!(error.contains("nothing was changed"), "{error}");

    let missing = format!("few-{}-missing", std::process::id());
    let by_name = provider(
        &ironic().endpoint(),
        &format!("nodes = [\"{}\", \"{missing}\"]", names[0]),
    );
    let error = by_name.allocate(&cx).await.unwrap_err().to_string();
    assert!(
        error.contains(&format!("`{missing}` does not exist")),
        "{error}"
    );

    assert!(cx.ledger.replay().unwrap().entries.is_empty());
    let after = ironic().node(&names[0]).unwrap().unwrap();
    assert_eq!(before["updated_at"], after["updated_at"], "{after}");
    assert_given_back(&names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_basic_logs_in_and_a_wrong_password_fails_without_showing_it() {
    let (class, names) = nodes("basic", 1);
    let fleet = SshFleet::start(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let connector = Arc::new(fleet_connector(&fleet, &dir.path().join("known_hosts")));
    let wrong = "not-the-password-0123456789";
    let bad = provider(
        &ironic().basic_endpoint(),
        &format!(
            "resource_class = \"{class}\"\nauth = \"http_basic\"\nusername = \"gate\"\n\
             password = {{ secret = \"{wrong}\" }}"
        ),
    );
    let cx = context(connector.clone(), dir.path());
    let error = bad.allocate(&cx).await.unwrap_err().to_string();
    assert!(error.contains("HTTP 401"), "{error}");
    assert!(!error.contains(wrong), "the password leaked: {error}");
    assert!(!format!("{bad:?}").contains(wrong));

    let good = provider(
        &ironic().basic_endpoint(),
        &format!(
            "resource_class = \"{class}\"\nauth = \"http_basic\"\nusername = \"gate\"\n\
             password = {{ secret = \"{}\" }}\n{}",
            ironic().basic_password(),
            addresses(&names, &fleet)
        ),
    );
    let inventory = good.allocate(&cx).await.unwrap();
    assert_eq!(inventory.primary().name, names[0]);
    cleanup(good, &cx).await;
    assert_given_back(&names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_releases_marked_nodes_of_a_lost_ledger_but_not_protected_ones() {
    let (class, names) = nodes("sweep", 2);
    let fleet = SshFleet::start(2).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let connector = Arc::new(fleet_connector(&fleet, &dir.path().join("known_hosts")));
    let extra = format!(
        "resource_class = \"{class}\"\nhosts = 2\nprotected = [\"{}\"]\n{}",
        names[1],
        addresses(&names, &fleet)
    );
    let provider = provider(&ironic().endpoint(), &extra);
    let cx = context(connector.clone(), dir.path());
    provider.allocate(&cx).await.unwrap();
    std::fs::remove_file(cx.ledger.path()).unwrap();

    let clean = CleanContext::new(connector);
    // Other tests share this Ironic: every sweep here names the run.
    let young = SweepFilter {
        older_than: Duration::from_secs(3600),
        run_id: Some(cx.run_id.clone()),
        delete: true,
    };
    assert!(provider.sweep(&young, &clean).await.unwrap().is_empty());
    let listed = SweepFilter {
        older_than: Duration::ZERO,
        run_id: Some(cx.run_id.clone()),
        delete: false,
    };
    let found = provider.sweep(&listed, &clean).await.unwrap();
    let found: Vec<&str> = found.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        found,
        [names[0].as_str()],
        "the protected node is never listed"
    );
    let swept = provider
        .sweep(
            &SweepFilter {
                delete: true,
                ..listed
            },
            &clean,
        )
        .await
        .unwrap();
    assert_eq!(swept.len(), 1);
    assert_given_back(&names[..1]);
    let kept = ironic().node(&names[1]).unwrap().unwrap();
    assert_eq!(kept["provision_state"], "active");

    // The protected node is the test's to give back: cleanup by name and run id.
    let ledger = Ledger::open(dir.path().join("protected.jsonl"), cx.run_id.clone()).unwrap();
    let spec = gate_core::ledger::Resource::new("onmetal", "node", ironic().endpoint(), &names[1]);
    ledger.intent(&spec).await.unwrap();
    let observed = provider.observe(&cx.run_id, &clean).await.unwrap();
    assert_eq!(observed.len(), 1, "{observed:?}");
    assert_eq!(observed[0].scope, ironic().endpoint());
    let cleaner = provider.clone();
    let lookup: CleanerLookup = Arc::new(move |_: &str| Ok(cleaner.clone() as Arc<dyn Cleaner>));
    cleanup_ledger(&ledger, &lookup, &clean).await.unwrap();
    assert_given_back(&names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_deploy_concurrently_and_503s_and_429s_are_retried() {
    let (class, names) = nodes("faults", 2);
    let fleet = SshFleet::start(2).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let connector = Arc::new(fleet_connector(&fleet, &dir.path().join("known_hosts")));
    let upstream = ironic()
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let proxy = FaultProxy::start(upstream).unwrap();
    let extra = format!(
        "resource_class = \"{class}\"\nhosts = 2\n{}",
        addresses(&names, &fleet)
    );
    let provider = provider(&proxy.url_for(&ironic().endpoint()), &extra);
    // Both deploy requests must be in flight at once before either reaches Ironic; every
    // 4th request is a 503 that never reaches it.
    proxy.set_faults(Faults {
        every: Some((4, 503, None)),
        hold: Some(Hold {
            method: "PUT".into(),
            path_suffix: "/states/provision".into(),
            count: 2,
            give_up: Duration::from_secs(30),
        }),
        rewrite: None,
    });
    let cx = context(connector.clone(), dir.path());
    let inventory = provider.allocate(&cx).await.unwrap();
    assert_eq!(inventory.len(), 2);
    assert_eq!(proxy.held_max(), 2, "the deploys did not overlap");
    let injected = proxy.seen().iter().filter(|s| s.injected).count();
    assert!(injected >= 2, "{:?}", proxy.seen());

    proxy.set_faults(Faults {
        every: Some((3, 429, Some(1))),
        ..Faults::default()
    });
    cleanup(provider, &cx).await;
    assert!(proxy.seen().iter().any(|s| s.status == 429));
    assert_given_back(&names);
}
