//! The `pubcloud` provider against the harness's real Keystone, Nova (fake driver),
//! Placement, Glance and the Neutron stand-in; servers joined to real sshd fleet hosts by the
//! harness's cloud-init stand-in (or, for floating IPs, its L3-agent part). One test binary,
//! so one set of services. Needs
//! `scripts/openstack-env` and root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod faults;
mod floating;
mod keypairs;
mod os_cloud;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gate_core::testkit::{self, Subject};
use gate_core::{AllocateContext, BackendConfig, Ledger, ResourceAllocator, RunId, TracingEvents};
use gate_providers_pubcloud::PubcloudProvider;
use gate_ssh::testkit::fleet_connector;
use gate_test_harness::openstack::{ApiSession, Credentials};
use gate_test_harness::{OpenStack, SshFleet};

pub(crate) fn cloud() -> &'static OpenStack {
    OpenStack::shared().unwrap_or_else(|e| panic!("the OpenStack services did not start: {e}"))
}

/// A project of its own with its clouds.yaml.
pub(crate) struct Project {
    pub(crate) creds: Credentials,
    pub(crate) dir: tempfile::TempDir,
}

impl Project {
    pub(crate) fn new(label: &str) -> Project {
        let creds = cloud().project(label).unwrap();
        let dir = tempfile::tempdir().unwrap();
        creds
            .write_clouds_yaml(&dir.path().join("clouds.yaml"), "test")
            .unwrap();
        Project { creds, dir }
    }

    fn clouds_file(&self) -> PathBuf {
        self.dir.path().join("clouds.yaml")
    }

    fn session(&self) -> ApiSession {
        self.creds.session().unwrap()
    }

    /// The provider section over this project; `extra` holds top-level keys.
    pub(crate) fn provider_toml(&self, extra: &str) -> String {
        format!(
            "cloud = \"test\"\nclouds_file = \"{}\"\nflavor = \"gate.small\"\nimage = \"gate-tiny\"\n\
             networks = [\"none\"]\npoll_secs = 0.2\n{extra}\n\
             [api]\ntries = 10\nfirst_delay_secs = 0.05\nmax_delay_secs = 1.5\n",
            self.clouds_file().display()
        )
    }

    /// A provider over this project; `extra` holds top-level keys.
    pub(crate) fn provider(&self, extra: &str) -> Arc<PubcloudProvider> {
        let toml = self.provider_toml(extra);
        let section = BackendConfig::from_toml("provider", "pubcloud", &toml).unwrap();
        Arc::new(PubcloudProvider::from_config(&section).unwrap())
    }

    /// Every server of the project, as Nova shows it.
    pub(crate) fn servers(&self) -> Vec<serde_json::Value> {
        let list = self.session().get("compute", "/servers/detail").unwrap();
        list["servers"].as_array().unwrap().clone()
    }

    /// An allocation context with a fresh run id and a ledger in the project's dir.
    pub(crate) fn context(&self, connector: Arc<dyn gate_core::Connector>) -> AllocateContext {
        context(connector, self.dir.path(), &RunId::generate())
    }

    fn server_names(&self) -> Vec<String> {
        let list = self.session().get("compute", "/servers").unwrap();
        list["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn context(
    provider_connector: Arc<dyn gate_core::Connector>,
    dir: &Path,
    run_id: &RunId,
) -> AllocateContext {
    AllocateContext {
        run_id: run_id.clone(),
        job: Some("pubcloud-test".into()),
        ledger: Ledger::open(dir.join(format!("{run_id}.jsonl")), run_id.clone()).unwrap(),
        connector: provider_connector,
        keys: Default::default(),
        cancel: Default::default(),
        events: Arc::new(TracingEvents),
        logs_dir: dir.join("logs"),
        concurrency: 4,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubcloud_passes_the_conformance_checks_on_real_nova() {
    let project = Project::new("conformance");
    let fleet = SshFleet::start(4).unwrap();
    let join = cloud()
        .join_servers_to(&fleet, Some(project.creds.project_id()))
        .unwrap();
    let connector = Arc::new(fleet_connector(
        &fleet,
        &project.dir.path().join("known_hosts"),
    ));
    let provider = project.provider("hosts = 2\nregions = [\"RegionOne\"]");
    let subject = Subject::new(provider.clone(), provider, connector.clone());
    let inventory = testkit::allocate_then_cleanup_leaves_nothing(&subject).await;
    assert_eq!(inventory.len(), 2);
    assert!(inventory.primary().name.ends_with("-1"), "{inventory:?}");
    testkit::cleanup_of_intent_only_entries_is_fine(&subject).await;

    // Cancelled while waiting for an address that never comes (no cloud-init stand-in for
    // this provider's project): the servers exist and are in the ledger, cleanup frees them.
    let lonely = Project::new("cancel");
    let provider = lonely.provider("hosts = 3\nregions = [\"RegionOne\"]");
    let subject = Subject::new(provider.clone(), provider, connector);
    testkit::cancelled_allocation_stops_and_is_recorded(&subject, Duration::from_secs(4)).await;
    assert!(
        lonely.server_names().is_empty(),
        "{:?}",
        lonely.server_names()
    );
    assert!(join.errors().is_empty(), "{:?}", join.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_carry_tags_and_root_gets_the_keys_files_and_the_run_keys_from_user_data() {
    let project = Project::new("tags");
    let fleet = SshFleet::start(1).unwrap();
    let join = cloud()
        .join_servers_to(&fleet, Some(project.creds.project_id()))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run_id = RunId::generate();
    // The run's own key is the only key the host accepts after boot: the connector uses it.
    let keys_dir = dir.path().join("keys");
    let run_key = gate_core::keys::RunKey::generate(&keys_dir, run_id.as_str()).unwrap();
    let connector = Arc::new(gate_ssh::SshConnector::new(gate_ssh::SshConfig {
        identities: vec![run_key.private_path.clone()],
        agent: false,
        known_hosts: Some(dir.path().join("known_hosts")),
        connect_timeout_secs: 30,
        poll_secs: 1,
        ..gate_ssh::SshConfig::default()
    }));
    let provider = project.provider("hosts = 1\nname = \"gate-tagged\"\nregions = [\"RegionOne\"]");
    // The team's keys file: two keys besides the run's own.
    let team: Vec<gate_core::keys::RunKey> = ["alice", "bob"]
        .iter()
        .map(|who| gate_core::keys::RunKey::generate(&dir.path().join(who), who).unwrap())
        .collect();
    let keys_text: String = team.iter().map(|k| k.public.line() + "\n").collect();
    let keys_file =
        gate_core::keys::KeysFile::parse("file:///team-keys", keys_text.as_bytes()).unwrap();
    let mut cx = context(connector, dir.path(), &run_id);
    cx.keys.keys_file = Some(keys_file);
    cx.keys.run_key = Some(run_key.clone());
    let inventory = provider.allocate(&cx).await.unwrap();
    assert_eq!(inventory.primary().name, "gate-tagged-1");
    assert_eq!(inventory.primary().address, fleet.hosts()[0].address());

    let list = project.session().get("compute", "/servers/detail").unwrap();
    let server = &list["servers"][0];
    assert_eq!(server["name"], "gate-tagged-1");
    assert_eq!(server["metadata"]["gate_run_id"], run_id.as_str());
    assert_eq!(server["metadata"]["gate_job"], "pubcloud-test");
    assert!(
        server["metadata"]["gate_created_at"]
            .as_str()
            .unwrap()
            .ends_with('Z'),
        "{server}"
    );
    // Every key is in the user data Nova keeps for the server (as the admin sees it), so
    // in root's authorized_keys on the host that played cloud-init for it.
    let id = server["id"].as_str().unwrap();
    let user_data = admin_user_data(id);
    let authorized = fleet.hosts()[0]
        .exec_ok("cat /root/.ssh/authorized_keys")
        .unwrap();
    for key in team.iter().chain([&run_key]) {
        assert!(
            user_data.contains(&key.public.line()),
            "{:?} not in the user data:\n{user_data}",
            key.public.comment
        );
        assert!(authorized.contains(&key.public.blob), "{authorized}");
    }
    // A team member logs in as root with their own key.
    let alice = gate_ssh::SshConnector::new(gate_ssh::SshConfig {
        identities: vec![team[0].private_path.clone()],
        agent: false,
        known_hosts: Some(dir.path().join("known_hosts_alice")),
        connect_timeout_secs: 30,
        poll_secs: 1,
        ..gate_ssh::SshConfig::default()
    });
    let transport = gate_core::Connector::connect(&alice, inventory.primary(), &Default::default())
        .await
        .unwrap_or_else(|e| panic!("alice's key was refused: {e}"));
    drop(transport);

    let live = cx.ledger.live().unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id.as_deref(), server["id"].as_str());
    assert_eq!(live[0].spec.scope, "RegionOne");
    gate_core::cleanup_ledger(
        &cx.ledger,
        &lookup(provider),
        &gate_core::CleanContext::new(cx.connector.clone()),
    )
    .await
    .unwrap();
    assert!(project.server_names().is_empty());
    drop(join);
}

/// The user data of server `id`, decoded, as the cloud admin reads it from Nova
/// (`OS-EXT-SRV-ATTR:user_data`, base64).
fn admin_user_data(id: &str) -> String {
    let admin = cloud().admin().session().unwrap();
    let server = admin.get("compute", &format!("/servers/{id}")).unwrap();
    let encoded = server["server"]["OS-EXT-SRV-ATTR:user_data"]
        .as_str()
        .unwrap_or_else(|| panic!("no user data: {server}"));
    let mut decode = std::process::Command::new("base64")
        .arg("--decode")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut decode.stdin.take().unwrap(), encoded.as_bytes()).unwrap();
    let output = decode.wait_with_output().unwrap();
    assert!(output.status.success(), "{encoded} is not base64");
    String::from_utf8(output.stdout).unwrap()
}

pub(crate) fn lookup(provider: Arc<PubcloudProvider>) -> gate_core::CleanerLookup {
    Arc::new(move |_backend: &str| Ok(provider.clone() as Arc<dyn gate_core::Cleaner>))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_a_hosts_name_is_a_dirty_node_unless_adopted() {
    let project = Project::new("dirty");
    let fleet = SshFleet::start(1).unwrap();
    let join = cloud()
        .join_servers_to(&fleet, Some(project.creds.project_id()))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let connector = Arc::new(fleet_connector(&fleet, &dir.path().join("known_hosts")));

    // An earlier run's leftover, with the name this run's first host will have.
    let earlier = RunId::generate();
    let leftover = project.provider("hosts = 1\nname = \"gate-dirty\"\nregions = [\"RegionOne\"]");
    let cx = context(connector.clone(), dir.path(), &earlier);
    leftover.allocate(&cx).await.unwrap();

    let run_id = RunId::generate();
    let cx = context(connector.clone(), dir.path(), &run_id);
    let error = leftover.allocate(&cx).await.unwrap_err().to_string();
    assert!(
        error.contains("a server named `gate-dirty-1` already exists"),
        "{error}"
    );
    assert!(error.contains(earlier.as_str()), "{error}");
    assert!(
        cx.ledger.live().unwrap().is_empty(),
        "nothing may be recorded"
    );

    let adopting = project
        .provider("hosts = 1\nname = \"gate-dirty\"\nadopt = true\nregions = [\"RegionOne\"]");
    let inventory = adopting.allocate(&cx).await.unwrap();
    assert_eq!(inventory.primary().name, "gate-dirty-1");
    let list = project.session().get("compute", "/servers/detail").unwrap();
    assert_eq!(list["servers"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(
        list["servers"][0]["metadata"]["gate_run_id"],
        run_id.as_str()
    );
    gate_core::cleanup_ledger(
        &cx.ledger,
        &lookup(adopting),
        &gate_core::CleanContext::new(connector),
    )
    .await
    .unwrap();
    assert!(project.server_names().is_empty());
    drop(join);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_clearly_without_the_password() {
    let project = Project::new("badpass");
    let yaml = std::fs::read_to_string(project.clouds_file()).unwrap();
    let password = project.creds.password().to_owned();
    let wrong = "not-the-password-0123456789";
    std::fs::write(project.clouds_file(), yaml.replace(&password, wrong)).unwrap();
    let provider = project.provider("hosts = 1\nregions = [\"RegionOne\"]");
    let dir = tempfile::tempdir().unwrap();
    let connector = Arc::new(gate_core::local::LocalConnector);
    let cx = context(connector, dir.path(), &RunId::generate());
    let error = provider.allocate(&cx).await.unwrap_err().to_string();
    assert!(error.contains("authentication failed"), "{error}");
    assert!(error.contains("cloud `test`"), "{error}");
    assert!(!error.contains(wrong), "the password leaked: {error}");
    assert!(!format!("{provider:?}").contains(wrong));
}
