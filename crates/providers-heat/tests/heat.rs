//! The `heat` provider against the harness's real Heat, Nova (fake driver), Keystone,
//! Placement and Glance; the stack's servers joined to real sshd fleet hosts by the
//! harness's cloud-init stand-in; a real `DELETE_FAILED` from Heat's own calls through the
//! harness's fault proxy. Needs `scripts/openstack-env` and root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gate_core::testkit::{self, Subject};
use gate_core::{
    AllocateContext, BackendConfig, CleanContext, Cleaner, CleanerLookup, Connector, Ledger,
    ResourceAllocator, RunId, TracingEvents, cleanup_ledger,
};
use gate_providers_heat::HeatProvider;
use gate_ssh::testkit::fleet_connector;
use gate_test_harness::openstack::{ApiSession, Credentials, Faults};
use gate_test_harness::{OpenStack, SshFleet};
use serde_json::Value;

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

/// One remote stack, which Heat makes, polls and deletes through the orchestration endpoint
/// of region `region`; the hosts output names one fleet host.
const REMOTE_TEMPLATE: &str = r#"
heat_template_version: 2021-04-16
parameters:
  region: {type: string}
  address: {type: string}
resources:
  remote:
    type: OS::Heat::Stack
    properties:
      context: {region_name: {get_param: region}}
      template: |
        heat_template_version: 2021-04-16
        resources:
          nothing: {type: OS::Heat::None}
outputs:
  hosts:
    value:
      - {name: node, address: {get_param: address}}
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
        Project::with_template(label, TEMPLATE)
    }

    fn with_template(label: &str, template: &str) -> Project {
        let creds = cloud().project(label).unwrap();
        let dir = tempfile::tempdir().unwrap();
        creds
            .write_clouds_yaml(&dir.path().join("clouds.yaml"), "test")
            .unwrap();
        std::fs::write(dir.path().join("stack.yaml"), template).unwrap();
        Project { creds, dir }
    }

    /// A provider for [`TEMPLATE`]: its servers of `flavor` get gate's user data.
    fn provider(&self, flavor: &str, extra: &str) -> Arc<HeatProvider> {
        self.provider_with(
            &format!("user_data_parameter = \"user_data\"\n{extra}"),
            &format!("image = \"gate-tiny\"\nflavor = \"{flavor}\""),
        )
    }

    /// A provider with `extra` keys and the template `parameters` (TOML lines).
    fn provider_with(&self, extra: &str, parameters: &str) -> Arc<HeatProvider> {
        let toml = format!(
            "cloud = \"test\"\nclouds_file = \"{dir}/clouds.yaml\"\ntemplate = \"{dir}/stack.yaml\"\n\
             region = \"RegionOne\"\npoll_secs = 0.5\n{extra}\n\
             [parameters]\n{parameters}\n\
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

/// An allocation context for a new run, its ledger and logs under `dir`.
fn context(dir: &Path, connector: Arc<dyn Connector>) -> AllocateContext {
    let run_id = RunId::generate();
    AllocateContext {
        run_id: run_id.clone(),
        job: None,
        ledger: Ledger::open(dir.join("ledger.jsonl"), run_id).unwrap(),
        connector,
        keys: Default::default(),
        cancel: Default::default(),
        events: Arc::new(TracingEvents),
        logs_dir: dir.join("logs"),
        concurrency: 2,
    }
}

/// Every backend's cleaner is `provider`.
fn lookup(provider: Arc<HeatProvider>) -> CleanerLookup {
    Arc::new(move |_: &str| Ok(provider.clone() as Arc<dyn Cleaner>))
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
    let cx = context(dir.path(), Arc::new(gate_core::local::LocalConnector));
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
    cleanup_ledger(
        &cx.ledger,
        &lookup(provider),
        &CleanContext::new(cx.connector.clone()),
    )
    .await
    .unwrap();
    assert_eq!(project.count("orchestration", "/stacks", "stacks"), 0);
    assert_eq!(project.count("compute", "/servers", "servers"), 0);
}

/// The events of stack `name`/`id` itself (not of its resources) that reached `status`.
fn stack_events(session: &ApiSession, name: &str, id: &str, status: &str) -> Vec<Value> {
    let list = session
        .get("orchestration", &format!("/stacks/{name}/{id}/events"))
        .unwrap();
    list["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource_name"] == name && e["resource_status"] == status)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_again_after_a_real_delete_failed_until_the_stack_is_gone() {
    let cloud = cloud();
    // Heat reaches the remote stack of REMOTE_TEMPLATE through this proxy: while the proxy
    // answers every call with a 500, Heat cannot delete the remote stack, and the stack
    // goes DELETE_FAILED.
    let proxy = cloud.proxy("orchestration").unwrap();
    let region = format!("RegionHeatRetry{}", std::process::id());
    cloud
        .add_region(&region, &[("orchestration", &proxy)])
        .unwrap();
    let project = Project::with_template("heat-retry", REMOTE_TEMPLATE);
    let session = project.creds.session().unwrap();
    let heat = cloud.endpoint("orchestration").unwrap();
    assert!(
        session
            .endpoint("orchestration")
            .unwrap()
            .starts_with(&heat),
        "the test asks Heat itself, not through the proxy"
    );

    let fleet = SshFleet::start(1).unwrap();
    let node = &fleet.hosts()[0];
    let provider = project.provider_with(
        &format!(
            "port = {}\nuser = \"{}\"\ndelete_timeout_secs = 120",
            node.port(),
            node.user()
        ),
        &format!("region = \"{region}\"\naddress = \"{}\"", node.address()),
    );
    let connector = Arc::new(fleet_connector(
        &fleet,
        &project.dir.path().join("known_hosts"),
    ));
    let cx = context(project.dir.path(), connector);
    let inventory = provider.allocate(&cx).await.unwrap();
    assert_eq!(inventory.primary().address, node.address());
    let live = cx.ledger.live().unwrap();
    assert_eq!(live.len(), 1, "{live:?}");
    let (name, id) = (live[0].spec.name.clone(), live[0].id.clone().unwrap());
    assert_eq!(
        project.count("orchestration", "/stacks", "stacks"),
        2,
        "the stack and its remote stack"
    );

    proxy.set_faults(Faults {
        every: Some((1, 500, None)),
        ..Faults::default()
    });
    let started = Instant::now();
    let clean_cx = CleanContext::new(cx.connector.clone());
    let ledger = cx.ledger;
    let cleanup =
        tokio::spawn(async move { cleanup_ledger(&ledger, &lookup(provider), &clean_cx).await });
    // Heat records each stack delete it is asked for ("Stack DELETE started") and how it
    // ends: a second DELETE_FAILED of the stack means gate deleted again after the first.
    let deadline = started + Duration::from_secs(90);
    let failed = tokio::task::block_in_place(|| {
        loop {
            let failed = stack_events(&session, &name, &id, "DELETE_FAILED");
            if failed.len() >= 2 || cleanup.is_finished() || Instant::now() >= deadline {
                break failed;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    proxy.set_faults(Faults::default());
    assert!(
        failed.len() >= 2,
        "Heat failed the delete {} time(s) in {:.0}s (cleanup finished: {}): {failed:?}",
        failed.len(),
        started.elapsed().as_secs_f64(),
        cleanup.is_finished()
    );
    assert!(
        failed.iter().all(|e| e["resource_status_reason"]
            .as_str()
            .is_some_and(|r| r.contains("injected by the fault proxy"))),
        "{failed:?}"
    );

    let report = tokio::time::timeout(Duration::from_secs(150), cleanup)
        .await
        .expect("cleanup ends within the delete timeout")
        .unwrap()
        .unwrap();
    assert_eq!(report.deleted, 1, "{report:?}");
    // Asked of Heat, not of the ledger: the stack is gone, and its remote stack too.
    let answer = session
        .call(
            "GET",
            "orchestration",
            &format!("/stacks/{name}/{id}"),
            None,
        )
        .unwrap();
    assert!(
        answer.status == 404 || answer.json()["stack"]["stack_status"] == "DELETE_COMPLETE",
        "HTTP {}: {}",
        answer.status,
        answer.text()
    );
    assert_eq!(project.count("orchestration", "/stacks", "stacks"), 0);
    let seen = proxy.seen();
    let deletes = |injected: bool| {
        seen.iter()
            .filter(|s| s.method == "DELETE" && s.injected == injected)
            .count()
    };
    assert!(deletes(true) >= 2, "{seen:?}");
    assert!(deletes(false) >= 1, "no delete went through: {seen:?}");
    eprintln!(
        "{} DELETE_FAILED, then deleted, in {:.0}s",
        failed.len(),
        started.elapsed().as_secs_f64()
    );
}
