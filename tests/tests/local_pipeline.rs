//! The local example end to end: every stage's effect on every host, valid JUnit, a
//! clean ledger, and stages run one process at a time giving the same result.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::MetadataExt;

use gate_core::junit::read_counts;
use gate_tests::{Workspace, repo_root, text};

fn example() -> String {
    repo_root()
        .join("examples/local.toml")
        .display()
        .to_string()
}

/// Checks everything the local example must leave, for a run whose workspace is `ws`.
fn assert_example_effects(ws: &Workspace) {
    let run = ws.run_json();
    for stage in [
        "allocate",
        "prepare-deployment",
        "deploy",
        "test",
        "upgrade",
        "archive",
        "cleanup",
    ] {
        assert_eq!(ws.stage_status(stage), "passed", "{stage}: {run:#}");
    }
    let inventory: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ws.artifacts().join("inventory.json")).unwrap(),
    )
    .unwrap();
    let hosts: Vec<String> = inventory["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(hosts.len(), 3);
    let primary = &hosts[0];
    for host in &hosts {
        let dir = ws.artifacts().join(host);
        let read = |p: &str| {
            std::fs::read_to_string(dir.join(p)).unwrap_or_else(|e| panic!("{host}/{p}: {e}"))
        };
        // allocate (the provider's setup script)
        assert_eq!(read("etc/hostname"), format!("{host}\n"));
        assert!(read("logs/boot.log").contains(&format!("booted {host}")));
        // prepare-deployment
        assert_eq!(
            read("etc/deploy.conf"),
            format!("release=27.1.0\nhost={host}\nprimary={primary}\n")
        );
        // deploy, then upgrade
        assert_eq!(
            read("srv/service.txt"),
            format!("service on {host} at 27.2.0\n")
        );
        assert_eq!(
            read("logs/deploy.log"),
            "deployed 27.1.0\nupgraded 27.1.0 to 27.2.0\n"
        );
        // the `hooks` deployer: pre before run, post after it with the job status, under
        // the GATE_* and the RE_* names; what `run` left in its result dir came home
        assert_eq!(
            read("logs/hooks.log"),
            "deploy pre\ndeploy post SUCCESS\nupgrade post SUCCESS\n"
        );
        assert_eq!(
            std::fs::read_to_string(
                ws.artifacts()
                    .join("hooks")
                    .join(host)
                    .join("deploy/results/deploy.txt")
            )
            .unwrap(),
            format!("{host} ok\n")
        );
        // gate's own per-host logs of each stage
        for stage in ["prepare-deployment", "deploy", "test", "upgrade"] {
            assert!(
                ws.artifacts()
                    .join("logs")
                    .join(stage)
                    .join(format!("{host}.log"))
                    .exists(),
                "no {stage} log for {host}"
            );
        }
    }
    // test: real JUnit from real commands, a case per test and host
    let results = ws.artifacts().join("results/local-smoke.xml");
    let counts = read_counts(&results).unwrap();
    assert_eq!((counts.tests, counts.failures, counts.errors), (7, 0, 0));
    let xml = std::fs::read_to_string(&results).unwrap();
    for host in &hosts {
        assert!(
            xml.contains(&format!("classname=\"local-smoke.{host}\"")),
            "{xml}"
        );
    }
    // cleanup: every created resource deleted, no host directory left
    assert!(ws.live().is_empty(), "live ledger entries: {:?}", ws.live());
    assert!(ws.observe(&ws.run_id()).is_empty());
    assert!(ws.leftovers().is_empty(), "left: {:?}", ws.leftovers());
}

#[test]
fn local_example_runs_every_stage_on_every_host() {
    let ws = Workspace::new();
    let out = ws.run(&["run", "-c", &example()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_example_effects(&ws);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\u{1b}'),
        "plain output has control codes: {stderr}"
    );
}

#[test]
fn local_example_runs_as_a_non_root_user() {
    let ws = Workspace::new();
    let mut cmd = ws.gate();
    if nix::unistd::geteuid().is_root() {
        // Give the scratch dir to `nobody` and drop to it, as a CI agent without root would be.
        for path in [ws.path().to_owned(), ws.tmp()] {
            std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        }
        let mut dropped = std::process::Command::new("setpriv");
        dropped
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(cmd.get_program())
            .current_dir(ws.path())
            .env("TMPDIR", ws.tmp())
            .env("HOME", ws.path())
            .env_remove(gate_core::ledger::CRASH_POINT_ENV);
        cmd = dropped;
    }
    let out = cmd.args(["run", "-c", &example()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_example_effects(&ws);
    let owner = std::fs::metadata(ws.state().join("run.json"))
        .unwrap()
        .uid();
    assert_ne!(owner, 0, "the run wrote its state as root");
}

#[test]
fn the_embedded_default_runs_without_a_config_file() {
    let ws = Workspace::new();
    let out = ws.run(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_example_effects(&ws);
}

/// Host names contain the run id; replace it so two runs can be compared.
fn normalized(paths: Vec<std::path::PathBuf>, run_id: &str) -> Vec<String> {
    paths
        .into_iter()
        .map(|p| p.display().to_string().replace(run_id, "RUN"))
        .collect()
}

#[test]
fn stages_in_separate_processes_match_a_whole_run() {
    let whole = Workspace::new();
    let out = whole.run(&["run", "-c", &example()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let staged = Workspace::new();
    for stage in gate_core::Stage::ALL {
        let out = staged.run(&["stage", stage.name(), "-c", &example()]);
        assert_eq!(out.status.code(), Some(0), "stage {stage}: {}", text(&out));
    }
    assert_example_effects(&staged);

    let summary = |ws: &Workspace| -> Vec<(String, String, String)> {
        ws.run_json()["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["stage"].as_str().unwrap().to_owned(),
                    r["status"].as_str().unwrap().to_owned(),
                    r["backend"].as_str().unwrap_or("-").to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(summary(&whole), summary(&staged));
    assert_eq!(
        whole.run_json()["exit_code"],
        staged.run_json()["exit_code"]
    );
    let files = |ws: &Workspace| {
        let mut files = normalized(
            Workspace::files_under(&ws.artifacts()),
            ws.run_id().as_str(),
        );
        files.retain(|f| !f.starts_with("logs/"));
        files
    };
    assert_eq!(files(&whole), files(&staged));
}

#[test]
fn a_stage_without_a_run_is_a_usage_error() {
    let ws = Workspace::new();
    let out = ws.run(&["stage", "deploy", "-c", &example()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run is recorded"));
}

#[test]
fn plan_has_no_side_effects_and_init_writes_a_config_plan_accepts() {
    let ws = Workspace::new();
    let out = ws.run(&["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let again = ws.run(&["init"]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "init must not overwrite: {}",
        text(&again)
    );
    let out = ws.run(&["plan", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("allocate") && plan.contains("local"),
        "{plan}"
    );
    assert!(
        plan.contains("publish") && plan.contains("not configured"),
        "{plan}"
    );
    assert!(!ws.state().exists() && !ws.artifacts().exists());
    assert!(ws.leftovers().is_empty());
}

#[test]
fn providers_lists_every_registered_backend() {
    let ws = Workspace::new();
    let out = ws.run(&["providers"]);
    assert_eq!(out.status.code(), Some(0));
    let listing = String::from_utf8_lossy(&out.stdout);
    for name in [
        "local", "script", "hooks", "osa", "rpco", "command", "plain",
    ] {
        assert!(listing.contains(name), "{listing}");
    }
}
