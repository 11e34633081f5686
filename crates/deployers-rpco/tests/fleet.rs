//! The `rpco` deployer over real SSH on a fleet host, against a real git repository laid
//! out like rpc-openstack whose scripts record their argv, environment, working dir,
//! version and the config files they see. Needs root, sshd and git.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use gate_core::{BackendConfig, Deployer, Stage, StageOutcome};
use gate_ssh::testkit::FleetStage;
use gate_test_harness::deploy_repos::{self, fail_step, rpco_layout};
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

fn env<'a>(record: &'a Value, key: &str) -> Option<&'a str> {
    record["env"][key].as_str()
}

/// r16.2.0, r17.0.0, r17.1.0 (tags), master after them, and `broken`.
fn rpco_repo() -> GitServer {
    let server = GitServer::start().unwrap();
    let repo = GitRepo::create(&server, "rpc-openstack.git").unwrap();
    for version in ["r16.2.0", "r17.0.0", "r17.1.0", "master-dev"] {
        rpco_layout(&repo, version).unwrap();
        repo.commit(version).unwrap();
        if version != "master-dev" {
            repo.tag(version).unwrap();
        }
    }
    repo.branch("broken").unwrap();
    fail_step(
        &repo,
        "deploy.sh",
        "FAILED: bootstrap could not reach the mirror\n",
    )
    .unwrap();
    repo.commit("broken").unwrap();
    repo.git(&["checkout", "--quiet", "master"]).unwrap();
    repo.push().unwrap();
    server
}

fn deployer(server: &GitServer, extra: &str) -> Arc<dyn Deployer> {
    let toml = format!(
        "repo = \"{}\"\ntimeout_secs = 120\n{extra}",
        server.url("rpc-openstack.git")
    );
    let section = BackendConfig::from_toml("deployer", gate_deployers_rpco::NAME, &toml).unwrap();
    let mut registry = gate_core::Registry::new();
    gate_deployers_rpco::register(&mut registry);
    registry.deployer(&section).unwrap()
}

#[tokio::test]
async fn prepare_deploy_and_upgrade_run_deploy_sh_with_the_deploy_flags_then_the_upgrade() {
    let server = rpco_repo();
    let fs = fleet_stage().await;
    let d = deployer(
        &server,
        r#"
        version = "r16.2.0"
        upgrade_to = "latest:r17."
        flags = { aio = true, ceph = true, elk = true }
        gating_variables = { maas_use_api = false, tempest_test_sets = ["smoke"] }
        env = { DEPLOY_HARDENING = "yes" }
        "#,
    );
    assert_eq!(
        d.prepare_deployment(&fs.cx(Stage::PrepareDeployment))
            .await
            .unwrap(),
        StageOutcome::Done
    );
    d.deploy(&fs.cx(Stage::Deploy)).await.unwrap();
    d.upgrade(&fs.cx(Stage::Upgrade)).await.unwrap();
    let records = take_records(&fs);
    let steps: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["step"].as_str().unwrap(),
                r["version"].as_str().unwrap(),
                env(r, "DEPLOY_OA").unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("deploy.sh", "r16.2.0", "no"),  // bootstrap only
            ("deploy.sh", "r16.2.0", "yes"), // deploy
            ("upgrade.sh", "r17.1.0", "-"),  // the newest r17. tag
            ("deploy.sh", "r17.1.0", "yes"), // the post-upgrade check
        ]
    );
    for r in &records {
        assert_eq!(r["cwd"], "/opt/rpc-openstack");
        assert_eq!(env(r, "DEPLOY_AIO"), Some("yes"));
        assert_eq!(env(r, "DEPLOY_CEPH"), Some("yes"));
        assert_eq!(env(r, "DEPLOY_ELK"), Some("yes"));
        assert_eq!(env(r, "DEPLOY_SWIFT"), Some("no"));
        assert_eq!(env(r, "DEPLOY_IRONIC"), Some("no"));
        assert_eq!(env(r, "DEPLOY_HAPROXY"), Some("no"));
        assert_eq!(env(r, "DEPLOY_TEMPEST"), Some("no"));
        assert_eq!(
            env(r, "DEPLOY_HARDENING"),
            Some("yes"),
            "the user's env wins"
        );
        assert_eq!(env(r, "ANSIBLE_HOST_KEY_CHECKING"), Some("False"));
    }
    assert_eq!(env(&records[0], "DEPLOY_RPC"), Some("no"));
    assert_eq!(
        env(&records[2], "I_REALLY_KNOW_WHAT_I_AM_DOING"),
        Some("true")
    );
    // The gating variables were written after the bootstrap and seen by the deploy.
    assert!(
        records[0]["files"]
            .get("user_zzz_gating_variables.yml")
            .is_none()
    );
    let text = records[1]["files"]["user_zzz_gating_variables.yml"]
        .as_str()
        .unwrap();
    let vars: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).unwrap();
    assert_eq!(vars["maas_use_api"], false);
    assert_eq!(vars["tempest_test_sets"][0], "smoke");
}

#[tokio::test]
async fn a_failing_bootstrap_shows_its_output_and_nothing_else_runs() {
    let server = rpco_repo();
    let fs = fleet_stage().await;
    let d = deployer(&server, "version = \"broken\"\n");
    let err = d
        .prepare_deployment(&fs.cx(Stage::PrepareDeployment))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("step `deploy.sh (bootstrap only)`"), "{err}");
    assert!(
        err.contains("FAILED: bootstrap could not reach the mirror"),
        "{err}"
    );
    assert_eq!(take_records(&fs).len(), 1);
    let d = deployer(&server, "version = \"r17.0.0\"\n");
    assert!(matches!(
        d.upgrade(&fs.cx(Stage::Upgrade)).await.unwrap(),
        StageOutcome::Skipped(_)
    ));
}
