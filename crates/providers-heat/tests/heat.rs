//! The `heat` provider against the harness's real Heat, Nova (fake driver), Keystone,
//! Placement and Glance; the stack's servers joined to real sshd fleet hosts by the
//! harness's cloud-init stand-in. Needs `scripts/openstack-env` and root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use gate_core::testkit::{self, Subject};
use gate_core::{AllocateContext, BackendConfig, Ledger, ResourceAllocator, RunId, TracingEvents};
use gate_providers_heat::HeatProvider;
use gate_ssh::testkit::fleet_connector;
use gate_test_harness::openstack::Credentials;
use gate_test_harness::{OpenStack, SshFleet};

/// Two servers; gate's user data on both; the hosts output lists them, primary first, by
/// server id (the harness's cloud-init stand-in sets each address after Heat has read the
/// server's attributes, so gate reads the addresses from Nova).
const TEMPLATE: &str = r#"
heat_template_version: 2021-04-16
parameters:
  image: {type: string}
  flavor: {type: string}
  user_data: {type: string, default: ""}
resources:
  controller:
    type: OS::Nova::Server
    properties:
      name: {list_join: ['-', [{get_param: 'OS::stack_name'}, controller]]}
      image: {get_param: image}
      flavor: {get_param: flavor}
      networks: [{allocate_network: none}]
      user_data_format: RAW
      user_data: {get_param: user_data}
      software_config_transport: POLL_SERVER_HEAT
  compute:
    type: OS::Nova::Server
    properties:
      name: {list_join: ['-', [{get_param: 'OS::stack_name'}, compute]]}
      image: {get_param: image}
      flavor: {get_param: flavor}
      networks: [{allocate_network: none}]
      user_data_format: RAW
      user_data: {get_param: user_data}
      software_config_transport: POLL_SERVER_HEAT
outputs:
  hosts:
    value:
      - {name: {get_attr: [controller, name]}, server: {get_resource: controller}}
      - {name: {get_attr: [compute, name]}, server: {get_resource: compute}}
"#;

fn cloud() -> &'static OpenStack {
    OpenStack::shared().unwrap_or_else(|e| panic!("the OpenStack services did not start: {e}"))
}

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
        std::fs::write(dir.path().join("stack.yaml"), TEMPLATE).unwrap();
        Project { creds, dir }
    }

    fn provider(&self, flavor: &str, extra: &str) -> Arc<HeatProvider> {
        let toml = format!(
            "cloud = \"test\"\nclouds_file = \"{dir}/clouds.yaml\"\ntemplate = \"{dir}/stack.yaml\"\n\
             region = \"RegionOne\"\nuser_data_parameter = \"user_data\"\npoll_secs = 0.5\n{extra}\n\
             [parameters]\nimage = \"gate-tiny\"\nflavor = \"{flavor}\"\n\
             [api]\ntries = 4\nfirst_delay_secs = 0.05\nmax_delay_secs = 0.5\n",
            dir = self.dir.path().display()
        );
        let section = BackendConfig::from_toml("provider", "heat", &toml).unwrap();
        Arc::new(HeatProvider::from_config(&section).unwrap())
    }

    fn count(&self, service: &str, path: &str, key: &str) -> usize {
        let list = self.creds.session().unwrap().get(service, path).unwrap();
        list[key].as_array().unwrap().len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heat_passes_the_conformance_checks_with_hosts_from_the_stack_output() {
    let project = Project::new("heat");
    let fleet = SshFleet::start(4).unwrap();
    let join = cloud()
        .join_servers_to(&fleet, Some(project.creds.project_id()))
        .unwrap();
    let connector = Arc::new(fleet_connector(
        &fleet,
        &project.dir.path().join("known_hosts"),
    ));
    let provider = project.provider("gate.small", "");
    let subject = Subject::new(provider.clone(), provider, connector.clone());
    let inventory = testkit::allocate_then_cleanup_leaves_nothing(&subject).await;
    assert_eq!(inventory.len(), 2);
    assert!(
        inventory.primary().name.ends_with("-controller"),
        "{inventory:?}"
    );
    assert!(
        inventory.hosts()[1].name.ends_with("-compute"),
        "{inventory:?}"
    );
    assert_eq!(project.count("compute", "/servers", "servers"), 0);
    testkit::cleanup_of_intent_only_entries_is_fine(&subject).await;

    // Cancelled while the stack's servers wait for addresses that never come.
    let lonely = Project::new("heat-cancel");
    let provider = lonely.provider("gate.small", "");
    let subject = Subject::new(provider.clone(), provider, connector);
    testkit::cancelled_allocation_stops_and_is_recorded(&subject, Duration::from_secs(6)).await;
    assert_eq!(lonely.count("orchestration", "/stacks", "stacks"), 0);
    assert_eq!(lonely.count("compute", "/servers", "servers"), 0);
    assert!(join.errors().is_empty(), "{:?}", join.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_failed_names_the_failing_resource_and_cleanup_deletes_the_stack() {
    let cloud = cloud();
    cloud.flavor("gate.huge", 1, 512, 10_000_000).unwrap();
    let project = Project::new("heat-failed");
    let provider = project.provider("gate.huge", "name = \"gate-failing\"");
    let dir = tempfile::tempdir().unwrap();
    let run_id = RunId::generate();
    let cx = AllocateContext {
        run_id: run_id.clone(),
        job: None,
        ledger: Ledger::open(dir.path().join("ledger.jsonl"), run_id).unwrap(),
        connector: Arc::new(gate_core::local::LocalConnector),
        keys: Default::default(),
        cancel: Default::default(),
        events: Arc::new(TracingEvents),
        logs_dir: dir.path().join("logs"),
        concurrency: 2,
    };
    let error = provider.allocate(&cx).await.unwrap_err().to_string();
    assert!(
        error.contains("stack `gate-failing` is CREATE_FAILED"),
        "{error}"
    );
    assert!(
        error.contains("`controller` (OS::Nova::Server)")
            || error.contains("`compute` (OS::Nova::Server)"),
        "{error}"
    );
    assert!(error.contains("No valid host"), "{error}");
    let live = cx.ledger.live().unwrap();
    assert_eq!(live.len(), 1, "the failed stack stays for cleanup");
    let lookup: gate_core::CleanerLookup =
        Arc::new(move |_: &str| Ok(provider.clone() as Arc<dyn gate_core::Cleaner>));
    gate_core::cleanup_ledger(
        &cx.ledger,
        &lookup,
        &gate_core::CleanContext::new(cx.connector.clone()),
    )
    .await
    .unwrap();
    assert_eq!(project.count("orchestration", "/stacks", "stacks"), 0);
    assert_eq!(project.count("compute", "/servers", "servers"), 0);
}
