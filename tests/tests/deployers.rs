//! The `osa`, `rpco` and `hooks` deployers through the real `gate` binary: a failing
//! bootstrap on a real SSH lab host (the stage fails showing its output, archive and
//! cleanup still run), an unknown feature flag and a hostile version (config errors,
//! exit 2), and a hostile URL that reaches git verbatim.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gate_test_harness::deploy_repos::{fail_step, osa_layout};
use gate_test_harness::{GitRepo, GitServer, SshFleet};
use gate_tests::{Workspace, text};

/// A config with the `static` provider over `fleet`, `extra` appended.
fn fleet_config(fleet: &SshFleet, extra: &str) -> String {
    let lab = gate_tests::static_lab_config(fleet);
    format!(
        r#"
{lab}
{extra}
"#,
    )
}

#[test]
fn a_failing_osa_bootstrap_fails_the_run_with_its_output_and_archive_and_cleanup_still_run() {
    let server = GitServer::start().unwrap();
    let repo = GitRepo::create(&server, "openstack-ansible.git").unwrap();
    osa_layout(&repo, "27.1.0", false).unwrap();
    fail_step(
        &repo,
        "bootstrap-ansible",
        "ERROR: pip could not reach the package index\n",
    )
    .unwrap();
    repo.commit("27.1.0").unwrap();
    repo.tag("27.1.0").unwrap();
    repo.push().unwrap();

    let fleet = SshFleet::start(1).unwrap();
    let ws = Workspace::new();
    ws.config(&fleet_config(
        &fleet,
        &format!(
            r#"
[deployer]
backend = "osa"
repo = "{}"
version = "latest"
timeout_secs = 120

[archiver]
paths = ["/var/log/gate-fake"]
"#,
            server.url("openstack-ansible.git")
        ),
    ));
    let out = ws.run(&["run", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(ws.stage_status("prepare-deployment"), "failed");
    assert_eq!(ws.stage_status("deploy"), "skipped");
    assert_eq!(ws.stage_status("upgrade"), "skipped");
    assert_eq!(ws.stage_status("archive"), "passed");
    assert_eq!(ws.stage_status("cleanup"), "passed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "host fleet-1",
        "step `bootstrap-ansible`",
        "ERROR: pip could not reach the package index",
    ] {
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
    let run = ws.run_json();
    let failed = run["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "prepare-deployment")
        .unwrap();
    assert!(
        failed.to_string().contains("pip could not reach"),
        "{failed:#}"
    );
    // archive brought the host's record home; the stage log has the whole output
    let record = ws
        .artifacts()
        .join("fleet-1/var/log/gate-fake/record.jsonl");
    assert!(
        std::fs::read_to_string(&record)
            .unwrap()
            .contains("\"step\": \"bootstrap-ansible\""),
        "{}",
        record.display()
    );
    let log = std::fs::read_to_string(ws.artifacts().join("logs/prepare-deployment/fleet-1.log"))
        .unwrap();
    assert!(
        log.contains("bootstrap-ansible: recorded at version 27.1.0"),
        "{log}"
    );
    // cleanup released the lab host
    assert!(ws.live().is_empty(), "{:?}", ws.live());
    assert!(
        !fleet.hosts()[0]
            .exec("test -e /var/lock/gate-reservation")
            .status
            .success()
    );
}

#[test]
fn an_unknown_feature_flag_is_a_config_error_and_nothing_runs() {
    for (deployer, flags, unknown) in [
        ("osa", "features = { ceph = true, cepth = true }", "cepth"),
        ("rpco", "flags = { elk = true, kibana = true }", "kibana"),
    ] {
        let ws = Workspace::new();
        ws.config(&format!("[deployer]\nbackend = \"{deployer}\"\n{flags}\n"));
        let out = ws.run(&["run", "-c", "gate.toml"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("gate.toml"), "{stderr}");
        assert!(stderr.contains("[deployer]"), "{stderr}");
        assert!(stderr.contains(unknown), "{stderr}");
        assert!(!ws.state().join("run.json").exists());
        assert!(ws.leftovers().is_empty());
    }
}

#[test]
fn a_hostile_version_is_refused_and_a_hostile_url_reaches_git_verbatim() {
    let ws = Workspace::new();
    let marker = ws.path().join("pwned");
    ws.config(&format!(
        "[deployer]\nbackend = \"osa\"\nversion = \"27.1.0; touch {}\"\n",
        marker.display()
    ));
    let out = ws.run(&["run", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[deployer] version"), "{stderr}");
    assert!(stderr.contains("character ';'"), "{stderr}");

    // The same from the command line.
    ws.config("[deployer]\nbackend = \"rpco\"\n");
    let set = format!("deployer.upgrade_to=$(touch {})", marker.display());
    let out = ws.run(&["run", "-c", "gate.toml", "--set", &set]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[deployer] upgrade_to"));

    // A URL is passed to git as one argument: git looks for a repository of that very
    // name, and no shell ever sees it.
    let url = format!("/nonexistent/repo.git; touch {}", marker.display());
    ws.config(&format!(
        "[deployer]\nbackend = \"hooks\"\nrepo = \"{url}\"\nversion = \"main\"\n"
    ));
    let out = ws.run(&["run", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(ws.stage_status("prepare-deployment"), "failed");
    assert_eq!(ws.stage_status("cleanup"), "passed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("'{url}'")), "verbatim: {stderr}");
    assert!(!marker.exists(), "a shell ran the URL");
    assert!(ws.leftovers().is_empty());
}
