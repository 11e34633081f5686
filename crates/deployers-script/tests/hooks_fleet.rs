//! The `hooks` deployer over real SSH on a fleet host: the repository under test is checked
//! out from a real git server at a pull-request ref, and its `gating/<action>/{pre,run,post}`
//! hooks record the order they ran in and the environment they got. Needs root, sshd, git.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use gate_core::{BackendConfig, Deployer, Stage, StageOutcome};
use gate_ssh::testkit::FleetStage;
use gate_test_harness::deploy_repos::{self, recorder};
use gate_test_harness::{GitRepo, GitServer};
use serde_json::Value;

/// One fleet host connected over SSH for prepare-deployment.
async fn fleet_stage() -> FleetStage {
    FleetStage::start(1, Stage::PrepareDeployment).await
}

/// What the fake scripts recorded on the host since the last call.
fn take_records(fs: &FleetStage) -> Vec<Value> {
    deploy_repos::take_records(fs.host(1)).unwrap()
}

fn hook(step: &str, body: &str) -> String {
    format!("#!/usr/bin/env bash\nset -euo pipefail\npython3 .gate-fake/record.py {step}\n{body}")
}

/// master has no hooks; the pull request `refs/pull/3/head` adds them.
fn project() -> GitServer {
    let server = GitServer::start().unwrap();
    let repo = GitRepo::create(&server, "project.git").unwrap();
    recorder(&repo, "master").unwrap();
    repo.commit("master").unwrap();
    repo.branch("pr-3").unwrap();
    recorder(&repo, "pr-3").unwrap();
    repo.write("gating/prepare/run", &hook("prepare-run", ""), true)
        .unwrap();
    repo.write(
        "gating/deploy/pre",
        &hook(
            "deploy-pre",
            "mkdir -p /var/lib/gate-fake\n\
             n=$(( $(cat /var/lib/gate-fake/pre-count 2>/dev/null || echo 0) + 1 ))\n\
             echo $n > /var/lib/gate-fake/pre-count\n\
             echo \"pre attempt $n\"\n\
             [ \"$n\" -ge \"$PRE_SUCCEEDS_AT\" ]\n",
        ),
        true,
    )
    .unwrap();
    repo.write(
        "gating/deploy/run",
        &hook(
            "deploy-run",
            "echo '<testsuite name=\"x\" tests=\"0\"/>' > \"$GATE_RESULT_DIR/result.xml\"\n\
             echo ran > \"$RE_HOOK_ARTIFACT_DIR/run.log\"\n\
             if [ -n \"${RUN_FAILS:-}\" ]; then echo 'the functional tests failed' >&2; exit 4; fi\n",
        ),
        true,
    )
    .unwrap();
    repo.write(
        "gating/deploy/post",
        &hook(
            "deploy-post",
            "echo 'post fails, and that changes nothing'; exit 1\n",
        ),
        true,
    )
    .unwrap();
    repo.write("gating/upgrade/run", &hook("upgrade-run", ""), true)
        .unwrap();
    repo.commit("gating hooks").unwrap();
    repo.push_ref("refs/pull/3/head").unwrap();
    repo.git(&["checkout", "--quiet", "master"]).unwrap();
    repo.git(&["branch", "-D", "pr-3"]).unwrap();
    repo.push().unwrap();
    server
}

fn deployer(server: &GitServer, env: &str) -> Arc<dyn Deployer> {
    let toml = format!(
        r#"
        repo = "{}"
        version = "refs/pull/3/head"
        path = "/opt/project"
        job = "PR_project-check"
        scenario = "ceph"
        image = "bionic"
        timeout_secs = 60
        env = {{ {env} }}
        "#,
        server.url("project.git")
    );
    let section =
        BackendConfig::from_toml("deployer", gate_deployers_script::HOOKS, &toml).unwrap();
    let mut registry = gate_core::Registry::new();
    gate_deployers_script::register(&mut registry);
    registry.deployer(&section).unwrap()
}

fn env<'a>(record: &'a Value, key: &str) -> &'a str {
    record["env"][key].as_str().unwrap_or("<unset>")
}

#[tokio::test]
async fn hooks_run_pre_with_retries_then_run_then_post_with_gate_and_re_variables() {
    let server = project();
    let fs = fleet_stage().await;
    let d = deployer(&server, "PRE_SUCCEEDS_AT = \"3\"");
    assert_eq!(
        d.prepare_deployment(&fs.cx(Stage::PrepareDeployment))
            .await
            .unwrap(),
        StageOutcome::Done
    );
    assert_eq!(
        d.deploy(&fs.cx(Stage::Deploy)).await.unwrap(),
        StageOutcome::Done,
        "a failing post never changes the result"
    );
    assert_eq!(
        d.upgrade(&fs.cx(Stage::Upgrade)).await.unwrap(),
        StageOutcome::Done
    );
    let records = take_records(&fs);
    let steps: Vec<&str> = records
        .iter()
        .map(|r| r["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "prepare-run",
            "deploy-pre",
            "deploy-pre",
            "deploy-pre",
            "deploy-run",
            "deploy-post",
            "upgrade-run"
        ]
    );
    for r in &records {
        assert_eq!(r["version"], "pr-3", "checked out at the pull request");
        assert_eq!(r["cwd"], "/opt/project");
        let action = r["step"].as_str().unwrap().split('-').next().unwrap();
        for (gate, re, value) in [
            ("GATE_ACTION", "RE_JOB_ACTION", action),
            ("GATE_JOB_NAME", "RE_JOB_NAME", "PR_project-check"),
            ("GATE_SCENARIO", "RE_JOB_SCENARIO", "ceph"),
            ("GATE_IMAGE", "RE_JOB_IMAGE", "bionic"),
            ("GATE_BRANCH", "RE_JOB_BRANCH", "refs/pull/3/head"),
        ] {
            assert_eq!(env(r, gate), value, "{gate}");
            assert_eq!(env(r, re), value, "{re}");
        }
        let artifacts = format!("/root/gate-hooks/{action}/artifacts");
        assert_eq!(env(r, "GATE_ARTIFACT_DIR"), artifacts);
        assert_eq!(env(r, "RE_HOOK_ARTIFACT_DIR"), artifacts);
        assert_eq!(
            env(r, "GATE_RESULT_DIR"),
            format!("/root/gate-hooks/{action}/results")
        );
        assert_eq!(env(r, "GATE_HOST"), "fleet-1");
        let status = if r["step"] == "deploy-post" {
            "SUCCESS"
        } else {
            "<unset>"
        };
        assert_eq!(env(r, "GATE_JOB_STATUS"), status);
        assert_eq!(env(r, "RE_JOB_STATUS"), status);
    }
    // What the hooks left in their directories came home.
    let home = fs.stage.cx.artifacts_dir.join("hooks/fleet-1/deploy");
    assert!(home.join("results/result.xml").is_file());
    assert_eq!(
        std::fs::read_to_string(home.join("artifacts/run.log")).unwrap(),
        "ran\n"
    );
    let log = std::fs::read_to_string(fs.cx(Stage::Deploy).logs_dir().join("fleet-1.log")).unwrap();
    assert!(log.contains("pre attempt 3"), "{log}");
    assert!(
        log.contains("post fails, and that changes nothing"),
        "{log}"
    );
}

#[tokio::test]
async fn a_failing_run_or_pre_still_runs_post_with_failure_and_fails_the_stage() {
    let server = project();
    let fs = fleet_stage().await;
    let d = deployer(&server, "PRE_SUCCEEDS_AT = \"1\", RUN_FAILS = \"yes\"");
    d.prepare_deployment(&fs.cx(Stage::PrepareDeployment))
        .await
        .unwrap();
    take_records(&fs);
    let err = d
        .deploy(&fs.cx(Stage::Deploy))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("host fleet-1") && err.contains("deploy/run"),
        "{err}"
    );
    assert!(err.contains("the functional tests failed"), "{err}");
    let records = take_records(&fs);
    let steps: Vec<&str> = records
        .iter()
        .map(|r| r["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["deploy-pre", "deploy-run", "deploy-post"]);
    assert_eq!(env(&records[2], "GATE_JOB_STATUS"), "FAILURE");
    assert_eq!(env(&records[2], "RE_JOB_STATUS"), "FAILURE");

    fs.host(1)
        .exec_ok("rm -f /var/lib/gate-fake/pre-count")
        .unwrap();
    let d = deployer(&server, "PRE_SUCCEEDS_AT = \"99\"");
    let err = d
        .deploy(&fs.cx(Stage::Deploy))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("deploy/pre (attempt 3 of 3)"), "{err}");
    let records = take_records(&fs);
    let steps: Vec<&str> = records
        .iter()
        .map(|r| r["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["deploy-pre", "deploy-pre", "deploy-pre", "deploy-post"]
    );
    assert_eq!(env(&records[3], "GATE_JOB_STATUS"), "FAILURE");
}
