//! `OS_CLOUD` picks the `clouds.yaml` entry when the config names no `cloud`. The variable
//! is set only in a child process (this binary, running an ignored test), never in this
//! process's environment, so no other test sees it.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use gate_core::{ResourceAllocator, RunId};
use gate_providers_pubcloud::PubcloudProvider;
use gate_test_harness::SshFleet;

use super::{Project, cloud, context, lookup};

/// The environment variable that turns [`an_allocation_in_a_child_process`] on.
const CHILD_DIR_ENV: &str = "GATE_TEST_OS_CLOUD_DIR";

/// Run as a child process by [`os_cloud_selects_the_clouds_yaml_entry_when_no_cloud_is_set`]
/// (does nothing without [`CHILD_DIR_ENV`]): allocates with the config and run id found in
/// that directory, the ledger beside them, reaching the host with the SSH key named there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the OS_CLOUD test"]
async fn an_allocation_in_a_child_process() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let toml = std::fs::read_to_string(dir.join("provider.toml")).unwrap();
    let section = gate_core::BackendConfig::from_toml("provider", "pubcloud", &toml).unwrap();
    let provider = PubcloudProvider::from_config(&section).unwrap();
    let run_id = RunId::try_from(std::fs::read_to_string(dir.join("run-id")).unwrap()).unwrap();
    // The fleet's client key, which the parent wrote down: the host is reached over SSH.
    let identity = std::fs::read_to_string(dir.join("identity")).unwrap();
    let connector = gate_ssh::SshConnector::new(gate_ssh::SshConfig {
        identities: vec![identity.into()],
        agent: false,
        known_hosts: Some(dir.join("known_hosts")),
        connect_timeout_secs: 30,
        poll_secs: 1,
        ..gate_ssh::SshConfig::default()
    });
    let cx = context(Arc::new(connector), &dir, &run_id);
    if let Err(error) = provider.allocate(&cx).await {
        panic!("allocation failed: {error}");
    }
}

/// Runs [`an_allocation_in_a_child_process`] over `dir` with `OS_CLOUD` set to `os_cloud`
/// (`None`: unset).
fn allocate_in_child(dir: &Path, os_cloud: Option<&str>) -> Output {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "os_cloud::an_allocation_in_a_child_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_DIR_ENV, dir)
        .env_remove("OS_CLOUD")
        .env_remove("OS_AUTH_URL")
        .env_remove("OS_CLIENT_CONFIG_FILE");
    if let Some(name) = os_cloud {
        command.env("OS_CLOUD", name);
    }
    command.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn os_cloud_selects_the_clouds_yaml_entry_when_no_cloud_is_set() {
    let decoy = Project::new("oscloud-decoy");
    let chosen = Project::new("oscloud");
    let fleet = SshFleet::start(1).unwrap();
    let join = cloud()
        .join_servers_to(&fleet, Some(chosen.creds.project_id()))
        .unwrap();

    // One clouds.yaml, two real projects: `decoy` first, then `chosen`.
    let dir = chosen.dir.path().join("child");
    std::fs::create_dir_all(&dir).unwrap();
    let clouds_file = dir.join("clouds.yaml");
    let second = chosen.creds.clouds_yaml("chosen");
    let yaml = decoy.creds.clouds_yaml("decoy") + second.strip_prefix("clouds:\n").unwrap();
    std::fs::write(&clouds_file, yaml).unwrap();
    // The provider section of the `chosen` project, without `cloud`, over that file.
    let toml = chosen
        .provider_toml("hosts = 1\nname = \"gate-oscloud\"\nregions = [\"RegionOne\"]")
        .replace("cloud = \"test\"\n", "")
        .replace(
            &chosen.dir.path().join("clouds.yaml").display().to_string(),
            &clouds_file.display().to_string(),
        );
    assert!(!toml.contains("cloud = "), "{toml}");
    std::fs::write(dir.join("provider.toml"), &toml).unwrap();
    let run_id = RunId::generate();
    std::fs::write(dir.join("run-id"), run_id.as_str()).unwrap();
    std::fs::write(
        dir.join("identity"),
        fleet.client_key().display().to_string(),
    )
    .unwrap();

    // Without OS_CLOUD nothing names an entry: refused before any login.
    let unnamed = allocate_in_child(&dir, None);
    let said = String::from_utf8_lossy(&unnamed.stdout) + String::from_utf8_lossy(&unnamed.stderr);
    assert!(!unnamed.status.success(), "{said}");
    assert!(said.contains("no cloud is named"), "{said}");
    assert!(decoy.servers().is_empty() && chosen.servers().is_empty());

    // With OS_CLOUD=chosen the server is booted in that entry's project, not the first one's.
    let named = allocate_in_child(&dir, Some("chosen"));
    let said = String::from_utf8_lossy(&named.stdout) + String::from_utf8_lossy(&named.stderr);
    assert!(named.status.success(), "{said}");
    assert!(decoy.servers().is_empty(), "{:?}", decoy.servers());
    let servers = chosen.servers();
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_eq!(servers[0]["name"], "gate-oscloud-1");
    assert_eq!(servers[0]["metadata"]["gate_run_id"], run_id.as_str());
    join.wait_joined(servers[0]["id"].as_str().unwrap(), Duration::from_secs(5))
        .unwrap();

    // The child's ledger is cleaned up by a provider that names the cloud itself.
    let ledger =
        gate_core::Ledger::open(dir.join(format!("{run_id}.jsonl")), run_id.clone()).unwrap();
    assert_eq!(ledger.live().unwrap().len(), 1);
    gate_core::cleanup_ledger(
        &ledger,
        &lookup(chosen.provider("hosts = 1\nregions = [\"RegionOne\"]")),
        &gate_core::CleanContext::new(Arc::new(gate_core::local::LocalConnector)),
    )
    .await
    .unwrap();
    assert!(chosen.servers().is_empty(), "{:?}", chosen.servers());
}
