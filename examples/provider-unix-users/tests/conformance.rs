//! The provider against gate-core's conformance testkit, and through a `gate` binary that
//! registers it next to the built-ins. Needs root (useradd); skipped otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use gate_core::testkit::{self, Subject};
use gate_core::{BackendConfig, Registry};
use gate_provider_unix_users::{NAME, UserConnector, UsersProvider, register};

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn subject(home_root: &std::path::Path, toml: &str) -> Subject {
    let toml = format!("home_root = {:?}\n{toml}", home_root);
    let section = BackendConfig::from_toml("provider", NAME, &toml).unwrap();
    let provider = Arc::new(UsersProvider::new(&section).unwrap());
    Subject::new(provider.clone(), provider, Arc::new(UserConnector))
}

#[tokio::test]
async fn unix_users_pass_the_conformance_testkit() {
    if !is_root() {
        eprintln!("skipped: creating users needs root");
        return;
    }
    let homes = tempfile::tempdir().unwrap();
    // A setup that proves commands run as the host's own user, in its home.
    let fast = subject(
        homes.path(),
        "hosts = 2\nsetup = 'test \"$(id -un)\" = \"$USER\" && test \"$PWD\" = \"$HOME\" && touch ok'",
    );
    let inventory = testkit::allocate_then_cleanup_leaves_nothing(&fast).await;
    assert_eq!(inventory.len(), 2);
    assert_eq!(inventory.primary().user, inventory.primary().name);
    testkit::cleanup_of_intent_only_entries_is_fine(&fast).await;
    // A slow setup, so the cancel lands mid-allocation.
    let slow = subject(homes.path(), "hosts = 3\nsetup = 'sleep 20'");
    testkit::cancelled_allocation_stops_and_is_recorded(&slow, Duration::from_millis(500)).await;
    let left: Vec<_> = std::fs::read_dir(homes.path()).unwrap().collect();
    assert!(left.is_empty(), "home directories left: {left:?}");
}

#[test]
fn bad_config_names_the_key_and_the_backend_registers() {
    let section = BackendConfig::from_toml("provider", NAME, "hosts = 0").unwrap();
    let err = UsersProvider::new(&section).unwrap_err().to_string();
    assert!(err.contains("[provider] hosts: must be between 1 and 16"), "{err}");
    let section = BackendConfig::from_toml("provider", NAME, "hostz = 2").unwrap();
    let err = UsersProvider::new(&section).unwrap_err().to_string();
    assert!(err.contains("unknown field `hostz`"), "{err}");

    let mut registry = Registry::new();
    register(&mut registry);
    let roles = registry.roles();
    let names = |role: &str| roles.iter().find(|(r, _)| *r == role).unwrap().1.clone();
    assert!(names("provider").contains(&NAME.to_owned()));
    assert!(names("cleaner").contains(&NAME.to_owned()));
    assert!(names("transport").contains(&"unix-user".to_owned()));
}

/// The binary is gate's CLI plus this provider: `gate run` allocates users, runs a test as
/// each, and cleanup removes them.
#[test]
fn a_gate_binary_with_the_provider_runs_a_whole_pipeline() {
    if !is_root() {
        eprintln!("skipped: creating users needs root");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[provider]
backend = "unix-users"
hosts = 2
home_root = {:?}

[tester]
backend = "command"
hosts = "all"
[[tester.tests]]
name = "runs as the host's user"
script = 'test "$(id -un)" = "$GATE_HOST"'
"#,
        work.path().join("homes")
    );
    std::fs::create_dir(work.path().join("homes")).unwrap();
    std::fs::write(work.path().join("gate.toml"), config).unwrap();
    let gate = env!("CARGO_BIN_EXE_gate-unix-users");
    let out = Command::new(gate)
        .args(["run", "-c", "gate.toml"])
        .current_dir(work.path())
        .env_remove("JOB_NAME")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let results =
        std::fs::read_to_string(work.path().join("artifacts/results/command.xml")).unwrap();
    assert_eq!(results.matches("<testcase").count(), 2, "{results}");
    assert!(!results.contains("<failure"), "{results}");
    let left: Vec<_> = std::fs::read_dir(work.path().join("homes")).unwrap().collect();
    assert!(left.is_empty(), "home directories left: {left:?}");
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let run_json = std::fs::read_to_string(work.path().join(".gate/run.json")).unwrap();
    let run: serde_json::Value = serde_json::from_str(&run_json).unwrap();
    let run_id = run["run_id"].as_str().unwrap();
    assert!(!passwd.contains(run_id), "users of {run_id} left in /etc/passwd");
}

/// Without a ledger, `sweep` finds a run's users by the tag in their comment field (and
/// only that run's, with `run_id` set), and deletes them.
#[tokio::test]
async fn sweep_finds_and_removes_a_runs_users_without_a_ledger() {
    if !is_root() {
        eprintln!("skipped: creating users needs root");
        return;
    }
    use gate_core::{AllocateContext, CleanContext, Ledger, RunId, SweepFilter};
    let (homes, scratch) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let subject = subject(homes.path(), "hosts = 2");
    let run_id = RunId::generate();
    let cx = AllocateContext {
        run_id: run_id.clone(),
        job: None,
        ledger: Ledger::open(scratch.path().join("lost.jsonl"), run_id.clone()).unwrap(),
        connector: subject.connector.clone(),
        keys: Default::default(),
        cancel: Default::default(),
        events: Arc::new(gate_core::TracingEvents),
        logs_dir: scratch.path().join("logs"),
        concurrency: 2,
    };
    subject.allocator.allocate(&cx).await.unwrap();
    let clean = CleanContext::new(subject.connector.clone());
    let mut filter =
        SweepFilter { older_than: Duration::ZERO, run_id: Some(run_id.clone()), delete: false };
    let listed = subject.cleaner.sweep(&filter, &clean).await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(subject.cleaner.observe(&run_id, &clean).await.unwrap().len(), 2);
    filter.delete = true;
    subject.cleaner.sweep(&filter, &clean).await.unwrap();
    assert!(subject.cleaner.observe(&run_id, &clean).await.unwrap().is_empty());
    let left: Vec<_> = std::fs::read_dir(homes.path()).unwrap().collect();
    assert!(left.is_empty(), "home directories left: {left:?}");
}
