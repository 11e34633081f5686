//! `gate init --provider X --deployer Y --tester Z` writes a config `gate plan` accepts, for
//! every combination; an unknown name is a usage error listing the choices.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::{Command, Output};

fn gate(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gate"))
        .args(args)
        .current_dir(dir)
        .env_remove("OS_CLOUD")
        .output()
        .unwrap()
}

#[test]
fn every_combination_passes_gate_plan() {
    let work = tempfile::tempdir().unwrap();
    let providers = gate_cli::init::choices("provider");
    let deployers = gate_cli::init::choices("deployer");
    let testers = gate_cli::init::choices("tester");
    assert!(providers.len() >= 5 && deployers.len() >= 4 && testers.len() >= 3);
    let mut checked = 0;
    for provider in &providers {
        let deployer_choices = deployers.iter().map(Some).chain([None]);
        for deployer in deployer_choices {
            for tester in testers.iter().map(Some).chain([None]) {
                let mut args = vec!["init", "gate.toml", "--force", "--provider", provider];
                if let Some(deployer) = deployer {
                    args.extend(["--deployer", deployer]);
                }
                if let Some(tester) = tester {
                    args.extend(["--tester", tester]);
                }
                let out = gate(work.path(), &args);
                assert!(
                    out.status.success(),
                    "{args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let text = std::fs::read_to_string(work.path().join("gate.toml")).unwrap();
                assert!(
                    text.contains(&format!("backend = \"{provider}\"")),
                    "{text}"
                );
                let mut plan = Command::new(env!("CARGO_BIN_EXE_gate"));
                // Secrets from the environment are read at plan time: give them a value.
                for name in text.split("{ env = \"").skip(1) {
                    plan.env(name.split('"').next().unwrap(), "placeholder");
                }
                let out = plan
                    .args(["plan", "-c", "gate.toml"])
                    .current_dir(work.path())
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{args:?}: gate plan refused it:\n{}\n{text}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let plan = String::from_utf8_lossy(&out.stdout);
                if let Some(deployer) = deployer {
                    assert!(
                        plan.contains(&format!("deploy               {deployer}")),
                        "{plan}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert_eq!(
        checked,
        providers.len() * (deployers.len() + 1) * (testers.len() + 1)
    );
}

#[test]
fn unknown_names_are_usage_errors_listing_the_choices() {
    let work = tempfile::tempdir().unwrap();
    let out = gate(work.path(), &["init", "--provider", "nova"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--provider nova: unknown provider; choose one of: local, static, pubcloud"),
        "{err}"
    );
    let out = gate(work.path(), &["init", "--deployer", "salt"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("script, hooks, osa, rpco"));
    assert!(
        !work.path().join("gate.toml").exists(),
        "nothing is written on an error"
    );
}

#[test]
fn plain_init_still_writes_the_local_example() {
    let work = tempfile::tempdir().unwrap();
    let out = gate(work.path(), &["init"]);
    assert!(out.status.success());
    let text = std::fs::read_to_string(work.path().join("gate.toml")).unwrap();
    assert_eq!(text, gate_cli::config::EMBEDDED);
}

#[test]
fn the_local_script_command_config_runs_green_and_leaves_nothing() {
    let work = tempfile::tempdir().unwrap();
    let hosts = work.path().join("tmp");
    std::fs::create_dir(&hosts).unwrap();
    let args = [
        "init",
        "--provider",
        "local",
        "--deployer",
        "script",
        "--tester",
        "command",
    ];
    assert!(gate(work.path(), &args).status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_gate"))
        .arg("run")
        .current_dir(work.path())
        .env("TMPDIR", &hosts)
        .env_remove("JOB_NAME")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("2 tests passed"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&hosts).unwrap().collect();
    assert!(left.is_empty(), "hosts left: {left:?}");
}
