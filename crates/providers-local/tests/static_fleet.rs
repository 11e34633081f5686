//! The `static` provider on real sshd lab hosts (the tests/harness fleet): the conformance
//! checks, reservations that keep two runs apart, expiry, and rekick.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gate_core::testkit::{self, Subject};
use gate_core::{AllocateContext, BackendConfig, Ledger, RunId, TracingEvents};
use gate_providers_local::StaticProvider;
use gate_ssh::{SshConfig, SshConnector};
use gate_test_harness::SshFleet;

fn provider(fleet: &SshFleet, extra: &str) -> Arc<StaticProvider> {
    let mut toml = String::new();
    for host in fleet.hosts() {
        toml.push_str(&format!(
            "[[hosts]]\nname = \"{}\"\naddress = \"{}\"\nport = {}\n",
            host.name(),
            host.address(),
            host.port()
        ));
    }
    toml = format!("{extra}\n{toml}");
    let section = BackendConfig::from_toml("provider", "static", &toml).unwrap();
    Arc::new(StaticProvider::from_config(&section).unwrap())
}

fn connector(fleet: &SshFleet, scratch: &Path) -> Arc<SshConnector> {
    Arc::new(SshConnector::new(SshConfig {
        identities: vec![fleet.client_key().to_owned()],
        agent: false,
        known_hosts: Some(scratch.join("known_hosts")),
        connect_timeout_secs: 20,
        poll_secs: 1,
        ..SshConfig::default()
    }))
}

fn context(connector: Arc<SshConnector>, scratch: &Path, run_id: &RunId) -> AllocateContext {
    AllocateContext {
        run_id: run_id.clone(),
        job: None,
        ledger: Ledger::open(scratch.join(format!("{run_id}.jsonl")), run_id.clone()).unwrap(),
        connector,
        keys: Default::default(),
        cancel: Default::default(),
        events: Arc::new(TracingEvents),
        logs_dir: scratch.join("logs"),
        concurrency: 4,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_passes_the_conformance_checks_on_real_lab_hosts() {
    let fleet = SshFleet::start(3).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let p = provider(&fleet, "");
    let subject = Subject::new(p.clone(), p, connector(&fleet, scratch.path()));
    let inventory = testkit::allocate_then_cleanup_leaves_nothing(&subject).await;
    assert_eq!(inventory.primary().name, "fleet-1");
    testkit::cleanup_of_intent_only_entries_is_fine(&subject).await;

    // A slow rekick so the cancel lands mid-allocation.
    let slow = provider(&fleet, "[rekick]\nrun = [\"sleep\", \"30\"]\n");
    let subject = Subject::new(slow.clone(), slow, connector(&fleet, scratch.path()));
    testkit::cancelled_allocation_stops_and_is_recorded(&subject, Duration::from_millis(1500))
        .await;
    for host in fleet.hosts() {
        assert!(
            !host
                .exec("test -e /var/lock/gate-reservation")
                .status
                .success(),
            "{} is still reserved",
            host.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_host_is_refused_to_another_run_until_released_or_expired() {
    use gate_core::ResourceAllocator;
    let fleet = SshFleet::start(1).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let p = provider(&fleet, "reservation_ttl_secs = 2");
    let conn = connector(&fleet, scratch.path());
    let first = RunId::generate();
    p.allocate(&context(conn.clone(), scratch.path(), &first))
        .await
        .unwrap();
    let owner = fleet.hosts()[0]
        .exec_ok("sed -n 1p /var/lock/gate-reservation/owner")
        .unwrap();
    assert_eq!(owner.trim(), first.as_str());

    let second = RunId::generate();
    let err = p
        .allocate(&context(conn.clone(), scratch.path(), &second))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("reserved by run {first}")), "{err}");
    assert!(err.contains("fleet-1"), "{err}");

    // Past its expiry the reservation may be taken over.
    tokio::time::sleep(Duration::from_secs(3)).await;
    p.allocate(&context(conn, scratch.path(), &second))
        .await
        .unwrap();
    let owner = fleet.hosts()[0]
        .exec_ok("sed -n 1p /var/lock/gate-reservation/owner")
        .unwrap();
    assert_eq!(owner.trim(), second.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekick_runs_on_the_controller_and_the_host_is_reserved_after_it() {
    use gate_core::ResourceAllocator;
    let fleet = SshFleet::start(1).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("rekicked");
    // The "reinstall" wipes the host's lock directory, as a real reinstall would.
    let script = format!(
        "echo \"$GATE_HOST $GATE_ADDRESS $GATE_RUN_ID\" > {}",
        marker.display()
    );
    let p = provider(
        &fleet,
        &format!("[rekick]\nrun = [\"sh\", \"-c\", '{script}']\n"),
    );
    let run = RunId::generate();
    p.allocate(&context(
        connector(&fleet, scratch.path()),
        scratch.path(),
        &run,
    ))
    .await
    .unwrap();
    let host = &fleet.hosts()[0];
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().trim(),
        format!("fleet-1 {} {run}", host.address())
    );
    assert_eq!(
        host.exec_ok("sed -n 1p /var/lock/gate-reservation/owner")
            .unwrap()
            .trim(),
        run.as_str()
    );
}

#[test]
fn config_errors_name_the_key() {
    for (toml, key) in [
        ("hosts = []", "[provider] hosts"),
        (
            "[[hosts]]\nname = \"a\"\naddress = \"x\"\n[[hosts]]\nname = \"a\"\naddress = \"y\"",
            "[provider] hosts[1].name",
        ),
        (
            "[[hosts]]\nname = \"a\"\naddres = \"x\"",
            "unknown field `addres`",
        ),
        (
            "[rekick]\nrun = []\n[[hosts]]\nname = \"a\"\naddress = \"x\"",
            "[provider] rekick.run",
        ),
    ] {
        let section = BackendConfig::from_toml("provider", "static", toml).unwrap();
        let err = StaticProvider::from_config(&section)
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{toml}: {err}");
    }
}
