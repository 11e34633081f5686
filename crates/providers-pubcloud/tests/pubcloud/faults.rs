//! `pubcloud` fault cases against real services, faults on a fixed schedule from the
//! harness's fault-injecting proxy: a region whose builds fail (a real NoValidHost) falls
//! back to the next, 429/503 answers are retried, a real Nova quota stops a region with a
//! clear message (and the next region serves), a boot that never finishes times out, and
//! 20 servers boot concurrently within the bound.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gate_core::{AllocateContext, CleanContext, ResourceAllocator, cleanup_ledger};
use gate_providers_pubcloud::PubcloudProvider;
use gate_ssh::testkit::fleet_connector;
use gate_test_harness::SshFleet;
use gate_test_harness::openstack::{FaultProxy, Faults, Hold, Rewrite};
use serde_json::json;

use super::{Project, cloud, lookup};

/// A region name no other test uses.
fn region(label: &str) -> String {
    format!("Region{label}{}", std::process::id())
}

/// A region (named after `label`) whose compute endpoint is a proxy that makes every server
/// create ask for `flavor` instead of the provider's: the real Nova then answers as it
/// answers for that flavor. Gives the proxy (its `seen()`) and the region's name.
fn region_creating(flavor: &str, label: &str) -> (FaultProxy, String) {
    let cloud = cloud();
    let proxy = cloud.proxy("compute").unwrap();
    proxy.set_faults(Faults {
        rewrite: Some(Rewrite {
            method: "POST".into(),
            path_suffix: "/servers".into(),
            from: format!("\"flavorRef\":\"{}\"", cloud.flavor_id()),
            to: format!("\"flavorRef\":\"{flavor}\""),
        }),
        ..Faults::default()
    });
    let name = region(label);
    cloud.add_region(&name, &[("compute", &proxy)]).unwrap();
    (proxy, name)
}

async fn cleanup(provider: Arc<PubcloudProvider>, cx: &AllocateContext) {
    cleanup_ledger(
        &cx.ledger,
        &lookup(provider),
        &CleanContext::new(cx.connector.clone()),
    )
    .await
    .unwrap();
}

fn known_hosts(dir: &Path) -> std::path::PathBuf {
    dir.join("known_hosts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_whose_builds_fail_is_emptied_and_the_fallback_region_serves() {
    let cloud = cloud();
    // A disk bigger than the fake compute host's (within every quota): Nova's scheduler
    // answers NoValidHost for real.
    cloud.flavor("gate.huge", 1, 512, 10_000_000).unwrap();
    let (proxy, broken) = region_creating("gate.huge", "Broken");

    let project = Project::new("fallback");
    let fleet = SshFleet::start(2).unwrap();
    let join = cloud
        .join_servers_to(&fleet, Some(project.creds.project_id()))
        .unwrap();
    let connector = Arc::new(fleet_connector(&fleet, &known_hosts(project.dir.path())));
    let provider = project.provider(&format!(
        "hosts = 2\nregions = [\"{broken}\"]\nfallback_regions = [\"RegionOne\"]"
    ));
    let cx = project.context(connector);
    let inventory = provider.allocate(&cx).await.unwrap();
    assert_eq!(inventory.len(), 2);

    let posts = proxy.seen().iter().filter(|s| s.method == "POST").count();
    assert_eq!(posts, 2, "both servers were first tried in {broken}");
    let servers = project.servers();
    assert_eq!(servers.len(), 2, "the ERROR servers are gone: {servers:?}");
    assert!(
        servers.iter().all(|s| s["status"] == "ACTIVE"),
        "{servers:?}"
    );
    let live = cx.ledger.live().unwrap();
    assert!(live.iter().all(|r| r.spec.scope == "RegionOne"), "{live:?}");
    let replay = cx.ledger.replay().unwrap();
    let broken_lines = replay
        .entries
        .iter()
        .filter(|e| e.spec.scope == broken)
        .count();
    assert_eq!(
        broken_lines, 6,
        "intent, created and deleted for both: {:?}",
        replay.entries
    );

    cleanup(provider, &cx).await;
    assert!(project.servers().is_empty());
    assert!(join.errors().is_empty(), "{:?}", join.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fifth_call_answered_429_or_503_still_allocates_and_cleans() {
    let cloud = cloud();
    let proxy: FaultProxy = cloud.proxy("compute").unwrap();
    let flaky = region("Flaky");
    cloud.add_region(&flaky, &[("compute", &proxy)]).unwrap();
    let project = Project::new("flaky");
    let fleet = SshFleet::start(2).unwrap();
    let join = cloud
        .join_servers_to(&fleet, Some(project.creds.project_id()))
        .unwrap();
    let connector = Arc::new(fleet_connector(&fleet, &known_hosts(project.dir.path())));
    let provider = project.provider(&format!("hosts = 2\nregions = [\"{flaky}\"]"));

    for (status, retry_after) in [(429, Some(1)), (503, None)] {
        proxy.set_faults(Faults {
            every: Some((5, status, retry_after)),
            ..Faults::default()
        });
        let cx = project.context(connector.clone());
        let inventory = provider.allocate(&cx).await.unwrap();
        assert_eq!(inventory.len(), 2);
        cleanup(provider.clone(), &cx).await;
        assert!(
            project.servers().is_empty(),
            "after {status}: {:?}",
            project.servers()
        );
        let injected = proxy
            .seen()
            .iter()
            .filter(|s| s.injected && s.status == status)
            .count();
        assert!(
            injected >= 2,
            "the proxy injected only {injected} × {status}"
        );
    }
    assert!(join.errors().is_empty(), "{:?}", join.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_quota_error_fails_the_region_clearly_and_leaves_nothing() {
    let cloud = cloud();
    let project = Project::new("quota");
    let admin = cloud.admin().session().unwrap();
    admin
        .call_ok(
            "PUT",
            "compute",
            &format!("/os-quota-sets/{}", project.creds.project_id()),
            Some(&json!({"quota_set": {"instances": 1}})),
        )
        .unwrap();
    let fleet = SshFleet::start(1).unwrap();
    let join = cloud
        .join_servers_to(&fleet, Some(project.creds.project_id()))
        .unwrap();
    let connector = Arc::new(fleet_connector(&fleet, &known_hosts(project.dir.path())));
    let provider = project.provider("hosts = 2\nregions = [\"RegionOne\"]\nconcurrency = 1");
    let cx = project.context(connector);
    let error = provider.allocate(&cx).await.unwrap_err().to_string();
    assert!(error.contains("quota exceeded"), "{error}");
    assert!(error.contains("instances"), "{error}");
    assert!(project.servers().is_empty(), "{:?}", project.servers());
    assert!(cx.ledger.live().unwrap().is_empty());
    drop(join);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_quota_error_in_the_first_region_falls_back_to_the_next() {
    let cloud = cloud();
    // Nova's quotas are per project, not per region: the proxied region asks for a flavor
    // with more vCPUs than the project's 100-core quota, so Nova itself refuses every
    // create there with its 403 "Quota exceeded for cores" (scheduling never starts).
    cloud.flavor("gate.greedy", 200, 512, 1).unwrap();
    let (proxy, full) = region_creating("gate.greedy", "Full");

    let project = Project::new("quotafallback");
    let fleet = SshFleet::start(2).unwrap();
    let join = cloud
        .join_servers_to(&fleet, Some(project.creds.project_id()))
        .unwrap();
    let connector = Arc::new(fleet_connector(&fleet, &known_hosts(project.dir.path())));
    let provider = project.provider(&format!(
        "hosts = 2\nregions = [\"{full}\"]\nfallback_regions = [\"RegionOne\"]"
    ));
    let cx = project.context(connector);
    let inventory = provider.allocate(&cx).await.unwrap();
    assert_eq!(inventory.len(), 2);

    // The quota answer came from Nova (not the proxy), and only once per create: a quota
    // error is not retried.
    let posts: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST" && s.path.ends_with("/servers"))
        .collect();
    assert!(!posts.is_empty(), "{full} was never tried");
    assert!(
        posts.iter().all(|s| s.status == 403 && !s.injected),
        "{posts:?}"
    );
    assert!(posts.len() <= 2, "a quota error was retried: {posts:?}");
    let servers = project.servers();
    assert_eq!(servers.len(), 2, "{servers:?}");
    assert!(
        servers
            .iter()
            .all(|s| s["status"] == "ACTIVE" && s["flavor"]["original_name"] == "gate.small"),
        "{servers:?}"
    );
    let live = cx.ledger.live().unwrap();
    assert_eq!(live.len(), 2, "{live:?}");
    assert!(live.iter().all(|r| r.spec.scope == "RegionOne"), "{live:?}");
    assert!(
        cx.ledger
            .replay()
            .unwrap()
            .entries
            .iter()
            .all(|e| e.spec.scope != full || e.op != gate_core::ledger::Op::Created),
        "nothing was created in {full}"
    );

    cleanup(provider, &cx).await;
    assert!(project.servers().is_empty());
    assert!(join.errors().is_empty(), "{:?}", join.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_becomes_reachable_times_out_and_is_deleted() {
    // No cloud-init stand-in for this project: servers go ACTIVE but never get an address.
    let project = Project::new("timeout");
    let provider = project.provider("hosts = 1\nregions = [\"RegionOne\"]\nboot_timeout_secs = 8");
    let cx = project.context(Arc::new(gate_core::local::LocalConnector));
    let error = provider.allocate(&cx).await.unwrap_err().to_string();
    assert!(
        error.contains("has no address after 8s") || error.contains("not done after 8s"),
        "{error}"
    );
    assert!(project.servers().is_empty(), "{:?}", project.servers());
    assert!(cx.ledger.live().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_servers_are_created_concurrently_up_to_the_bound() {
    let cloud = cloud();
    let proxy = cloud.proxy("compute").unwrap();
    // Creates wait at the proxy until 10 are in flight: only a concurrent allocation
    // gets past it before the give-up time, and no server exists before that.
    proxy.set_faults(Faults {
        hold: Some(Hold {
            method: "POST".into(),
            path_suffix: "/servers".into(),
            count: 10,
            give_up: Duration::from_secs(120),
        }),
        ..Faults::default()
    });
    let wide = region("Wide");
    cloud.add_region(&wide, &[("compute", &proxy)]).unwrap();
    let project = Project::new("twenty");
    let fleet = SshFleet::start(20).unwrap();
    let join = cloud
        .join_servers_to(&fleet, Some(project.creds.project_id()))
        .unwrap();
    let connector = Arc::new(fleet_connector(&fleet, &known_hosts(project.dir.path())));
    let provider = project.provider(&format!(
        "hosts = 20\nregions = [\"{wide}\"]\nconcurrency = 10"
    ));
    let cx = project.context(connector);
    let inventory = provider.allocate(&cx).await.unwrap();
    assert_eq!(inventory.len(), 20);
    assert_eq!(proxy.held_max(), 10, "creates in flight at once");
    let posts = proxy.seen().iter().filter(|s| s.method == "POST").count();
    assert_eq!(posts, 20);
    cleanup(provider, &cx).await;
    assert!(project.servers().is_empty());
    assert!(join.errors().is_empty(), "{:?}", join.errors());
}
