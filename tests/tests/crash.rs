//! `kill -9` at every point of the ledger's life: after each line k, between a create and
//! its `created` line, and with a torn last line; `gate cleanup` then leaves nothing real.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use gate_core::ledger::CRASH_POINT_ENV;
use gate_tests::{Workspace, text};

const CONFIG: &str = r#"
[provider]
backend = "local"
hosts = 3
setup = "mkdir -p etc"

[deployer]
backend = "script"
[[deployer.deploy]]
run = ["true"]
"#;

/// Ledger lines of a whole run of CONFIG: the run dir and 3 hosts, intent + created each,
/// then 4 deleted lines.
const LINES: usize = 4 * 2 + 4;

/// Runs CONFIG with the crash point armed and checks the process died by SIGKILL.
fn crashed_run(point: &str) -> Workspace {
    let ws = Workspace::new();
    ws.config(CONFIG);
    let out = ws
        .gate()
        .args(["run", "-c", "gate.toml"])
        .env(CRASH_POINT_ENV, point)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9), "{point}: {}", text(&out));
    ws
}

/// `gate cleanup` succeeds and nothing the run made is left.
fn cleanup_leaves_nothing(ws: &Workspace, point: &str) {
    let out = ws.run(&["cleanup", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(0), "{point}: {}", text(&out));
    assert!(
        ws.observe(&ws.run_id()).is_empty(),
        "{point}: observe finds leftovers"
    );
    assert!(
        ws.leftovers().is_empty(),
        "{point}: left {:?}",
        ws.leftovers()
    );
    assert!(
        ws.live().is_empty(),
        "{point}: live entries {:?}",
        ws.live()
    );
}

#[test]
fn a_whole_run_writes_the_expected_number_of_ledger_lines() {
    let ws = Workspace::new();
    ws.config(CONFIG);
    let out = ws.run(&["run", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let ledger = std::fs::read_to_string(ws.state().join("resources.jsonl")).unwrap();
    assert_eq!(ledger.lines().count(), LINES, "{ledger}");
}

#[test]
fn kill_9_after_every_ledger_line_then_cleanup_leaves_nothing() {
    for k in 1..=LINES {
        let point = format!("line:{k}");
        let ws = crashed_run(&point);
        let ledger = std::fs::read_to_string(ws.state().join("resources.jsonl")).unwrap();
        assert_eq!(
            ledger.lines().count(),
            k,
            "{point}: the crash came at the wrong line"
        );
        cleanup_leaves_nothing(&ws, &point);
    }
}

#[test]
fn kill_9_between_a_create_and_its_created_line_then_cleanup_leaves_nothing() {
    for k in 1..=4 {
        let point = format!("before-created:{k}");
        let ws = crashed_run(&point);
        // The resource exists but the ledger only holds its intent (hosts are created
        // concurrently, so it need not be the last entry).
        let live = ws.live();
        let observed = ws.observe(&ws.run_id());
        let intent_only: Vec<_> = live.iter().filter(|r| r.id.is_none()).collect();
        assert!(!intent_only.is_empty(), "{point}: {live:?}");
        assert!(
            intent_only
                .iter()
                .any(|r| observed.iter().any(|o| o.name == r.spec.name)),
            "{point}: no intent-only resource exists, so the crash came too early: {live:?}"
        );
        cleanup_leaves_nothing(&ws, &point);
    }
}

#[test]
fn a_torn_last_line_is_skipped_and_cleanup_still_finds_everything() {
    for k in 2..=8 {
        let point = format!("line:{k}");
        let ws = crashed_run(&point);
        let path = ws.state().join("resources.jsonl");
        let ledger = std::fs::read(&path).unwrap();
        // Cut the last line in half, as a crash in the middle of its write would.
        let last_start = ledger[..ledger.len() - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let cut = last_start + (ledger.len() - last_start) / 2;
        std::fs::write(&path, &ledger[..cut]).unwrap();
        let status = ws.run(&["status", "-c", "gate.toml"]);
        assert!(
            String::from_utf8_lossy(&status.stdout).contains("torn"),
            "{point}: status warns about the torn line: {}",
            text(&status)
        );
        cleanup_leaves_nothing(&ws, &point);
    }
}
