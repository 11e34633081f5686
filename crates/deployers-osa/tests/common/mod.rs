//! What the `osa` fleet tests share: a stage context over SSH on fleet hosts, and the
//! served openstack-ansible lookalike.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use gate_core::{BackendConfig, Deployer, Stage};
use gate_test_harness::deploy_repos::{RECORD, fail_step, osa_layout};
use gate_test_harness::{GitRepo, GitServer, SshFleet};
use serde_json::Value;

pub use gate_ssh::testkit::FleetStage;

/// A fleet of one host per entry of `labels`, connected over SSH, for prepare-deployment.
pub async fn fleet_stage(labels: &[&[&str]]) -> FleetStage {
    let fleet = SshFleet::start(labels.len()).unwrap();
    FleetStage::connect(fleet, Stage::PrepareDeployment, labels).await
}

/// Every record the fake scripts wrote on host `n` of `fs` so far, then cleared.
pub fn take_records(fs: &FleetStage, n: usize) -> Vec<Value> {
    let path = fs.host(n).host_path(RECORD);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `step [argv…]` of each record.
pub fn steps(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            let mut shown = r["step"].as_str().unwrap().to_owned();
            for arg in r["argv"].as_array().unwrap() {
                shown.push(' ');
                shown.push_str(arg.as_str().unwrap());
            }
            shown
        })
        .collect()
}

pub fn env<'a>(record: &'a Value, key: &str) -> Option<&'a str> {
    record["env"][key].as_str()
}

pub fn yaml(text: &str) -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The served openstack-ansible lookalike and the commit of each version.
pub struct Osa {
    pub server: GitServer,
    pub commits: std::collections::BTreeMap<String, String>,
}

/// History: 26.5.0, 27.2.0, 27.10.0 (branch `stable/2023.2`), 28.0.0rc1, 28.0.0
/// (collection-form playbooks), then `29.0.0.dev` on master; a pull request
/// (`refs/pull/7/head` and `/merge`), and `broken` (bootstrap-ansible fails).
pub fn osa_repo() -> Osa {
    let server = GitServer::start().unwrap();
    let repo = GitRepo::create(&server, "openstack-ansible.git").unwrap();
    let mut commits = std::collections::BTreeMap::new();
    for (version, collection) in [
        ("26.5.0", false),
        ("27.2.0", false),
        ("27.10.0", false),
        ("28.0.0rc1", true),
        ("28.0.0", true),
        ("29.0.0.dev", true),
    ] {
        osa_layout(&repo, version, collection).unwrap();
        let sha = repo.commit(&format!("release {version}")).unwrap();
        if version == "27.10.0" {
            repo.git(&["branch", "stable/2023.2"]).unwrap();
        }
        if !version.ends_with(".dev") {
            repo.tag(version).unwrap();
        }
        commits.insert(version.to_owned(), sha);
    }
    repo.branch("pr").unwrap();
    osa_layout(&repo, "pr-7", false).unwrap();
    commits.insert("pr-7".into(), repo.commit("a pull request").unwrap());
    repo.push_ref("refs/pull/7/head").unwrap();
    osa_layout(&repo, "pr-7-merge", false).unwrap();
    commits.insert("pr-7-merge".into(), repo.commit("its merge").unwrap());
    repo.push_ref("refs/pull/7/merge").unwrap();
    repo.git(&["checkout", "--quiet", "master"]).unwrap();
    repo.branch("broken").unwrap();
    osa_layout(&repo, "broken", false).unwrap();
    fail_step(
        &repo,
        "bootstrap-ansible",
        "ERROR: could not install ansible-core: no matching distribution\n",
    )
    .unwrap();
    repo.commit("a broken bootstrap").unwrap();
    repo.git(&["checkout", "--quiet", "master"]).unwrap();
    repo.git(&["branch", "-D", "pr"]).unwrap();
    repo.push().unwrap();
    Osa { server, commits }
}

pub fn deployer(osa: &Osa, extra: &str) -> Arc<dyn Deployer> {
    let toml = format!(
        "repo = \"{}\"\ntimeout_secs = 120\n{extra}",
        osa.server.url("openstack-ansible.git")
    );
    let section = BackendConfig::from_toml("deployer", gate_deployers_osa::NAME, &toml).unwrap();
    let mut registry = gate_core::Registry::new();
    gate_deployers_osa::register(&mut registry);
    registry.deployer(&section).unwrap()
}
