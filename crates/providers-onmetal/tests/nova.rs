//! `onmetal` in Nova mode against the harness's real Keystone, Nova (fake driver),
//! Placement, Glance and the Neutron stand-in, the public flavor `gate.small` standing in
//! for a bare-metal flavor; servers joined to real sshd fleet hosts by the harness's
//! cloud-init stand-in. Needs `scripts/openstack-env` and root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use gate_core::testkit::{self, Subject};
use gate_core::{
    AllocateContext, BackendConfig, CleanContext, Cleaner, CleanerLookup, Ledger,
    ResourceAllocator, RunId, TracingEvents, cleanup_ledger,
};
use gate_providers_onmetal::OnmetalProvider;
use gate_ssh::testkit::fleet_connector;
use gate_test_harness::openstack::{Credentials, Ironic};
use gate_test_harness::{OpenStack, SshFleet};
use serde_json::json;

fn cloud() -> &'static OpenStack {
    OpenStack::shared().unwrap_or_else(|e| panic!("the OpenStack services did not start: {e}"))
}

/// A project of its own with its clouds.yaml.
struct Project {
    creds: Credentials,
    dir: tempfile::TempDir,
}

impl Project {
    fn new(label: &str) -> Project {
        let creds = cloud().project(label).unwrap();
        let dir = tempfile::tempdir().unwrap();
        creds
            .write_clouds_yaml(&dir.path().join("clouds.yaml"), "test")
            .unwrap();
        Project { creds, dir }
    }

    /// A provider over this project; `extra` holds top-level keys.
    fn provider(&self, extra: &str) -> Arc<OnmetalProvider> {
        let toml = format!(
            "mode = \"nova\"\ncloud = \"test\"\nclouds_file = \"{}\"\nimage = \"gate-tiny\"\n\
             networks = [\"none\"]\npoll_secs = 0.2\nregion = \"RegionOne\"\n{extra}\n\
             [api]\ntries = 4\nfirst_delay_secs = 0.05\nmax_delay_secs = 0.5\n",
            self.dir.path().join("clouds.yaml").display()
        );
        let section = BackendConfig::from_toml("provider", "onmetal", &toml).unwrap();
        Arc::new(OnmetalProvider::from_config(&section).unwrap())
    }

    fn servers(&self) -> Vec<serde_json::Value> {
        let list = self
            .creds
            .session()
            .unwrap()
            .get("compute", "/servers/detail")
            .unwrap();
        list["servers"].as_array().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onmetal_nova_passes_the_conformance_checks_on_real_nova() {
    let project = Project::new("metal");
    let fleet = SshFleet::start(2).unwrap();
    let join = cloud()
        .join_servers_to(&fleet, Some(project.creds.project_id()))
        .unwrap();
    let connector = Arc::new(fleet_connector(
        &fleet,
        &project.dir.path().join("known_hosts"),
    ));
    let provider = project.provider("flavor = \"gate.small\"\nhosts = 2");
    let subject = Subject::new(provider.clone(), provider, connector.clone());
    let inventory = testkit::allocate_then_cleanup_leaves_nothing(&subject).await;
    assert_eq!(inventory.len(), 2);
    assert!(inventory.primary().name.ends_with("-1"), "{inventory:?}");
    testkit::cleanup_of_intent_only_entries_is_fine(&subject).await;

    // Cancelled while waiting for an address that never comes (no cloud-init stand-in for
    // this project): the servers exist and are in the ledger, cleanup deletes them.
    let lonely = Project::new("metal-cancel");
    let provider = lonely.provider("flavor = \"gate.small\"\nhosts = 2");
    let subject = Subject::new(provider.clone(), provider, connector);
    testkit::cancelled_allocation_stops_and_is_recorded(&subject, Duration::from_secs(4)).await;
    assert!(lonely.servers().is_empty(), "{:?}", lonely.servers());
    assert!(join.errors().is_empty(), "{:?}", join.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_build_without_fallback_regions_fails_and_leaves_the_server_to_cleanup() {
    // A disk far larger than the fake compute host's (and no quota on disk): a real
    // NoValidHost, the server in ERROR.
    cloud()
        .flavor("gate.metal-huge", 1, 512, 10_000_000)
        .unwrap();
    let project = Project::new("metal-novalid");
    let provider = project.provider("flavor = \"gate.metal-huge\"\nhosts = 1");
    let dir = tempfile::tempdir().unwrap();
    let run_id = RunId::generate();
    let connector = Arc::new(gate_core::local::LocalConnector);
    let cx = AllocateContext {
        ledger: Ledger::open(dir.path().join("ledger.jsonl"), run_id.clone()).unwrap(),
        run_id,
        job: None,
        connector: connector.clone(),
        keys: Default::default(),
        cancel: Default::default(),
        events: Arc::new(TracingEvents),
        logs_dir: dir.path().join("logs"),
        concurrency: 4,
    };
    let error = provider.allocate(&cx).await.unwrap_err().to_string();
    assert!(error.contains("went to ERROR"), "{error}");
    assert!(error.contains("RegionOne"), "{error}");
    assert!(!error.contains("no region could provide"), "{error}");
    // No fallback: nothing was undone, the server waits for cleanup.
    let live = cx.ledger.live().unwrap();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(project.servers().len(), 1);
    let cleaner = provider.clone();
    let lookup: CleanerLookup = Arc::new(move |_: &str| Ok(cleaner.clone() as Arc<dyn Cleaner>));
    cleanup_ledger(&cx.ledger, &lookup, &CleanContext::new(connector))
        .await
        .unwrap();
    assert!(project.servers().is_empty(), "{:?}", project.servers());
}

/// Ironic mode without an endpoint: the harness's standalone Ironic registered in the real
/// Keystone's catalog as `baremetal` (it ignores the token: noauth), found through the
/// project's token like any catalog service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ironic_mode_finds_baremetal_in_the_keystone_catalog() {
    let ironic = Ironic::shared().unwrap();
    let admin = cloud().admin().session().unwrap();
    let service = admin
        .post(
            "identity",
            "/services",
            &json!({"service": {"type": "baremetal", "name": "ironic"}}),
        )
        .unwrap();
    for interface in ["public", "internal"] {
        admin
            .post(
                "identity",
                "/endpoints",
                &json!({"endpoint": {"service_id": service["service"]["id"],
                        "interface": interface, "url": ironic.endpoint(),
                        "region_id": cloud().region()}}),
            )
            .unwrap();
    }
    let class = ironic.resource_class("catalog");
    let name = format!("catalog-{}-1", std::process::id());
    ironic.enroll(&name, &class).unwrap();
    let fleet = SshFleet::start(1).unwrap();
    let project = Project::new("metal-catalog");
    let toml = format!(
        "mode = \"ironic\"\ncloud = \"test\"\nclouds_file = \"{}\"\nregion = \"RegionOne\"\n\
         resource_class = \"{class}\"\nimage_source = \"http://images.invalid/x.qcow2\"\n\
         addresses = {{ \"{name}\" = \"{}\" }}\npoll_secs = 0.2\n",
        project.dir.path().join("clouds.yaml").display(),
        fleet.hosts()[0].address()
    );
    let section = BackendConfig::from_toml("provider", "onmetal", &toml).unwrap();
    let provider = Arc::new(OnmetalProvider::from_config(&section).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let connector = Arc::new(fleet_connector(&fleet, &dir.path().join("known_hosts")));
    let run_id = RunId::generate();
    let cx = AllocateContext {
        ledger: Ledger::open(dir.path().join("ledger.jsonl"), run_id.clone()).unwrap(),
        run_id,
        job: None,
        connector: connector.clone(),
        keys: Default::default(),
        cancel: Default::default(),
        events: Arc::new(TracingEvents),
        logs_dir: dir.path().join("logs"),
        concurrency: 4,
    };
    let inventory = provider.allocate(&cx).await.unwrap();
    assert_eq!(inventory.primary().name, name);
    let live = cx.ledger.live().unwrap();
    assert_eq!(live[0].spec.scope, "RegionOne");
    assert_eq!(
        ironic.node(&name).unwrap().unwrap()["provision_state"],
        "active"
    );
    let cleaner = provider.clone();
    let lookup: CleanerLookup = Arc::new(move |_: &str| Ok(cleaner.clone() as Arc<dyn Cleaner>));
    cleanup_ledger(&cx.ledger, &lookup, &CleanContext::new(connector))
        .await
        .unwrap();
    let node = ironic.node(&name).unwrap().unwrap();
    assert_eq!(node["provision_state"], "available", "{node}");
    assert!(node["extra"].get("gate_run_id").is_none(), "{node}");
}
