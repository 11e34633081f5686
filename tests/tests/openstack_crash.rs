//! `gate` with the `pubcloud` provider on the harness's real Nova: `kill -9` during a
//! 20-server allocation at a fixed sample of ledger points, then `gate cleanup` leaves no
//! server (asked of Nova, not of the ledger); and with the ledger lost, `gate sweep` in two
//! passes removes the leftovers but not a younger or a protected server, while a dry run
//! and a pass inside the confirmation window delete nothing.
//!
//! The sample in CI: after every 4th ledger line of the allocation, and between a create
//! call and its `created` line for the 1st and 20th server. The full sweep of points (every
//! line) is `GATE_CRASH_ALL_POINTS=1 cargo test -p gate-tests --test openstack_crash`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::process::{Output, Stdio};

use gate_core::ledger::CRASH_POINT_ENV;
use gate_test_harness::OpenStack;
use gate_test_harness::openstack::{ApiSession, Credentials};
use gate_tests::{Workspace, text};
use serde_json::{Value, json};

/// Servers per allocation.
const HOSTS: usize = 20;

fn cloud() -> &'static OpenStack {
    OpenStack::shared().unwrap_or_else(|e| panic!("the OpenStack services did not start: {e}"))
}

/// A workspace whose gate.toml allocates HOSTS servers in `creds`' project.
fn workspace(creds: &Credentials, extra: &str) -> Workspace {
    let ws = Workspace::new();
    creds
        .write_clouds_yaml(&ws.path().join("clouds.yaml"), "test")
        .unwrap();
    ws.config(&format!(
        "[provider]\nbackend = \"pubcloud\"\ncloud = \"test\"\nclouds_file = \"clouds.yaml\"\n\
         hosts = {HOSTS}\nflavor = \"gate.small\"\nimage = \"gate-tiny\"\nnetworks = [\"none\"]\n\
         regions = [\"RegionOne\"]\nconcurrency = 20\npoll_secs = 0.5\n{extra}\n\
         [provider.api]\ntries = 5\nfirst_delay_secs = 0.1\nmax_delay_secs = 1\n"
    ));
    ws
}

fn servers(session: &ApiSession) -> Vec<Value> {
    let list = session.get("compute", "/servers/detail").unwrap();
    list["servers"].as_array().unwrap().clone()
}

/// Polls until `count` servers are ACTIVE (metadata cannot change while one builds).
fn wait_active(session: &ApiSession, count: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let all = servers(session);
        if all.len() == count && all.iter().all(|s| s["status"] == "ACTIVE") {
            return;
        }
        assert!(all.iter().all(|s| s["status"] != "ERROR"), "{all:?}");
        assert!(
            std::time::Instant::now() < deadline,
            "not ACTIVE in time: {all:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// `gate run` with the crash point armed; it must die by SIGKILL.
fn crash(ws: &Workspace, point: &str) {
    let out = ws
        .gate()
        .args(["run", "-c", "gate.toml"])
        .env(CRASH_POINT_ENV, point)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9), "{point}: {}", text(&out));
}

/// `gate sweep -c gate.toml <args>`, which must succeed.
fn sweep(ws: &Workspace, args: &[&str]) -> Output {
    let out = ws
        .gate()
        .args(["sweep", "-c", "gate.toml"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "sweep {args:?}: {}", text(&out));
    out
}

/// Checks that `gate sweep`'s table lists exactly the servers `names`, each once, each with
/// a status `expected` accepts.
fn assert_listed(out: &Output, names: &BTreeSet<String>, expected: impl Fn(&str) -> bool) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut listed = BTreeSet::new();
    for line in stdout.lines() {
        // BACKEND KIND NAME WHERE RUN STATUS; only the status has spaces.
        let cells: Vec<&str> = line.split_whitespace().collect();
        if cells.len() < 6 || cells[0] != "pubcloud" {
            continue;
        }
        assert!(
            listed.insert(cells[2]),
            "{} listed twice: {}",
            cells[2],
            text(out)
        );
        let status = cells[5..].join(" ");
        assert!(
            expected(&status),
            "{}: status `{status}`: {}",
            cells[2],
            text(out)
        );
    }
    let names: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(listed, names, "{}", text(out));
}

fn points() -> Vec<String> {
    // An allocation writes an intent and a created line per server.
    let lines = 2 * HOSTS;
    let every = if std::env::var_os("GATE_CRASH_ALL_POINTS").is_some() {
        1
    } else {
        4
    };
    let mut points: Vec<String> = (every..=lines)
        .step_by(every)
        .map(|k| format!("line:{k}"))
        .collect();
    points.push("before-created:1".into());
    points.push(format!("before-created:{HOSTS}"));
    points
}

#[test]
fn kill_9_during_a_20_server_allocation_then_cleanup_leaves_no_server() {
    let creds = cloud().project("crash").unwrap();
    let session = creds.session().unwrap();
    for point in points() {
        let started = std::time::Instant::now();
        let ws = workspace(&creds, "");
        crash(&ws, &point);
        let ledger =
            std::fs::read_to_string(ws.state().join("resources.jsonl")).unwrap_or_default();
        if let Some(k) = point.strip_prefix("line:") {
            assert_eq!(
                ledger.lines().count(),
                k.parse::<usize>().unwrap(),
                "{point}: {ledger}"
            );
        }
        let out = ws.run(&["cleanup", "-c", "gate.toml"]);
        assert_eq!(out.status.code(), Some(0), "{point}: {}", text(&out));
        let left = servers(&session);
        assert!(
            left.is_empty(),
            "{point}: Nova still has {} server(s): {left:?}",
            left.len()
        );
        assert!(ws.live().is_empty(), "{point}: {:?}", ws.live());
        eprintln!(
            "{point}: crashed, cleaned up, no server left ({:.0}s)",
            started.elapsed().as_secs_f64()
        );
    }
}

#[test]
fn with_the_ledger_lost_two_sweep_passes_remove_the_leftovers_only() {
    let creds = cloud().project("sweep").unwrap();
    let session = creds.session().unwrap();
    let ws = workspace(&creds, "protected = [\"gate-keep-*\"]");
    // Crash once all 20 servers exist; then the state dir is lost.
    crash(&ws, &format!("line:{}", 2 * HOSTS));
    let leaked: Vec<String> = servers(&session)
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(leaked.len(), HOSTS);
    std::fs::remove_dir_all(ws.state()).unwrap();

    wait_active(&session, HOSTS);
    // Age the leftovers (gate's own creation tag) and add a protected old server and a
    // younger gate server.
    let old = json!({"metadata": {"gate_created_at": "2026-01-01T00:00:00Z"}});
    for id in &leaked {
        session
            .post("compute", &format!("/servers/{id}/metadata"), &old)
            .unwrap();
    }
    let boot = |name: &str, created: &str| {
        let body = json!({"server": {"name": name, "imageRef": cloud().image_id(),
            "flavorRef": cloud().flavor_id(), "networks": "none",
            "metadata": {"gate_run_id": "gate-other-run", "gate_created_at": created}}});
        session.post("compute", "/servers", &body).unwrap()["server"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let protected = boot("gate-keep-db", "2026-01-01T00:00:00Z");
    let younger = boot("gate-young-1", &gate_core::time::now_rfc3339());

    let names: BTreeSet<String> = servers(&session)
        .iter()
        .filter(|s| leaked.iter().any(|id| s["id"] == id.as_str()))
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), HOSTS, "the leftovers have distinct names");
    let sightings = ws.state().join("sweep-sightings.json");
    let nothing_deleted = |what: &str| {
        assert_eq!(
            servers(&session).len(),
            HOSTS + 2,
            "{what} deleted something"
        );
    };

    // A dry run lists every leftover by name, and nothing else; it deletes nothing and
    // writes no sightings file.
    let out = sweep(&ws, &["--dry-run", "--confirm-after", "0s"]);
    assert_listed(&out, &names, |status| status == "seen");
    assert!(
        !sightings.exists(),
        "the dry run wrote {}",
        sightings.display()
    );
    nothing_deleted("the dry run");

    // The first pass only records sightings.
    let out = sweep(&ws, &["--confirm-after", "0s"]);
    assert_listed(&out, &names, |status| status == "first seen");
    nothing_deleted("the first pass");
    let recorded: Value = serde_json::from_slice(&std::fs::read(&sightings).unwrap()).unwrap();
    assert_eq!(recorded.as_object().unwrap().len(), HOSTS, "{recorded}");

    // A second pass inside the confirmation window (the default 5 minutes) deletes nothing
    // and says why: each leftover waits for a sighting old enough.
    let out = sweep(&ws, &[]);
    assert_listed(&out, &names, |status| {
        status.starts_with("seen ") && status.ends_with("s ago, waiting")
    });
    let summary = format!("0 deleted; {HOSTS} waiting for a second sighting ≥ 300s apart");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&summary),
        "{}",
        text(&out)
    );
    nothing_deleted("a pass inside the window");

    // Seen before, the leftovers are what a dry run would delete; it still deletes and
    // records nothing.
    let before = std::fs::read(&sightings).unwrap();
    let out = sweep(&ws, &["--dry-run", "--confirm-after", "0s"]);
    assert_listed(&out, &names, |status| status == "would delete");
    assert_eq!(
        std::fs::read(&sightings).unwrap(),
        before,
        "the dry run changed the sightings"
    );
    nothing_deleted("the dry run");

    // A pass past the window deletes what the earlier passes saw, and only that.
    let out = sweep(&ws, &["--confirm-after", "0s"]);
    assert_listed(&out, &names, |status| status == "deleted");
    let mut left: Vec<String> = servers(&session)
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    left.sort();
    let mut expected = vec![protected.clone(), younger.clone()];
    expected.sort();
    assert_eq!(left, expected, "{}", text(&out));

    for id in [protected, younger] {
        session
            .call_ok("DELETE", "compute", &format!("/servers/{id}"), None)
            .unwrap();
    }
}
