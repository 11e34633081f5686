//! The `monitoring` connector and cleaner against the Rackspace Cloud Monitoring simulator
//! (`gate_test_harness::MonitoringSim`): what exists is read from the simulator's own view,
//! what gate recorded from the ledger file, so the tests do not take the code's word.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use gate_core::ledger::{Ledger, Op};
use gate_core::local::LocalConnector;
use gate_core::testkit::LocalStage;
use gate_core::{
    AgentConnector, BackendConfig, CleanContext, Cleaner, CleanerLookup, Host, Inventory, Registry,
    Stage, SweepFilter, cleanup_ledger,
};
use gate_test_harness::{MonitoringSim, MonitoringThing};
use serde_json::Value;

const TENANT: &str = "123456";
const TOKEN: &str = "tok-7c1e55d0a9-monitoring-sentinel";

const CONFIG: &str = r#"
url = "@URL@"
token = "@TOKEN@"

[api]
tries = @TRIES@
first_delay_secs = 0.01
max_delay_secs = 0.05
request_timeout_secs = 5

[[resources]]
kind = "entity"
create = "entities"
body = '''{"label": "{label}", "ip_addresses": {"default": "{address}"},
           "metadata": {"gate_run_id": "{run_id}", "gate_created_at": "{created_at}", "gate_host": "{name}"}}'''
delete = "entities/{id}"
@ENTITY_LIST@

[[resources]]
kind = "check"
parent = "entity"
label = "{run_id}-{name}-ping"
create = "entities/{parent_id}/checks"
body = '''{"label": "{label}", "type": "remote.ping", "monitoring_zones_poll": ["mzord"],
           "target_alias": "default", "period": 60, "timeout": 30}'''
delete = "entities/{parent_id}/checks/{id}"
@CHECK_LIST@
"#;

const ENTITY_LIST: &str = r#"list = { url = "entities?limit=2", run_id = "/metadata/gate_run_id", created_at = "/created_at", next = "/metadata/next_href" }"#;
const CHECK_LIST: &str = r#"list = { url = "entities/{parent_id}/checks", created_at = "/created_at", next = "/metadata/next_href" }"#;

fn section(url: &str, token: &str, tries: u32, lists: (&str, &str)) -> BackendConfig {
    let toml = CONFIG.replace("@URL@", url).replace("@TOKEN@", token);
    let toml = toml.replace("@TRIES@", &tries.to_string());
    let toml = toml
        .replace("@ENTITY_LIST@", lists.0)
        .replace("@CHECK_LIST@", lists.1);
    BackendConfig::from_toml("agent", "monitoring", &toml).unwrap()
}

fn lists(on: bool) -> (&'static str, &'static str) {
    if on {
        (ENTITY_LIST, CHECK_LIST)
    } else {
        ("", "")
    }
}

/// A connect-stage context whose hosts are `names` (addresses 127.0.0.11, …), the
/// simulator, and the connector and cleaner built through the registry.
struct Rig {
    stage: LocalStage,
    sim: MonitoringSim,
    connector: Arc<dyn AgentConnector>,
    cleaner: Arc<dyn Cleaner>,
}

impl Rig {
    async fn start(names: &[&str], tries: u32, with_lists: bool) -> Self {
        let sim = MonitoringSim::start(TENANT, TOKEN).unwrap();
        let mut stage = LocalStage::new(names.len(), Stage::Connect).await;
        let hosts = names
            .iter()
            .enumerate()
            .map(|(i, name)| Host {
                name: (*name).to_owned(),
                address: format!("127.0.0.{}", 11 + i),
                ..stage.cx.inventory.hosts()[i].clone()
            })
            .collect();
        stage.cx.inventory = Inventory::new(hosts).unwrap();
        let mut registry = Registry::new();
        gate_agents::register(&mut registry);
        let config = section(&sim.url(), TOKEN, tries, lists(with_lists));
        let connector = registry.agent(&config).unwrap();
        let cleaner = registry.cleaner(&config).unwrap();
        Self {
            stage,
            sim,
            connector,
            cleaner,
        }
    }

    fn ledger(&self) -> &Ledger {
        &self.stage.cx.ledger
    }

    fn run_id(&self) -> &str {
        self.stage.cx.run_id.as_str()
    }

    async fn cleanup_with(
        &self,
        cleaner: Arc<dyn Cleaner>,
        ledger: &Ledger,
    ) -> gate_core::Result<gate_core::CleanupReport> {
        let lookup: CleanerLookup = Arc::new(move |backend: &str| {
            assert_eq!(backend, gate_agents::monitoring::NAME);
            Ok(cleaner.clone())
        });
        let cx = CleanContext::new(Arc::new(LocalConnector));
        cleanup_ledger(ledger, &lookup, &cx).await
    }

    async fn cleanup(&self) -> gate_core::Result<gate_core::CleanupReport> {
        self.cleanup_with(self.cleaner.clone(), self.ledger()).await
    }

    fn entity_of(&self, check: &MonitoringThing) -> MonitoringThing {
        let id = check.entity_id.as_deref().unwrap();
        self.sim
            .entities()
            .into_iter()
            .find(|e| e.id == id)
            .unwrap()
    }
}

fn lines(ledger: &Ledger, op: Op, kind: &str) -> Vec<gate_core::ledger::LedgerEntry> {
    ledger
        .replay()
        .unwrap()
        .entries
        .into_iter()
        .filter(|e| e.op == op && e.spec.kind == kind)
        .collect()
}

#[tokio::test]
async fn connect_makes_an_entity_and_a_check_per_host_and_cleanup_deletes_them() {
    let rig = Rig::start(&["web-1", "web-2", "db-1"], 3, true).await;
    // Someone else's entity, which nothing of gate's may touch.
    let theirs = rig.sim.add(None, "prod-db", &[], Duration::from_secs(3600));
    rig.connector.connect(&rig.stage.cx).await.unwrap();

    let run = rig.run_id().to_owned();
    let ours: Vec<_> = rig
        .sim
        .entities()
        .into_iter()
        .filter(|e| e.id != theirs)
        .collect();
    let mut labels: Vec<_> = ours.iter().map(|e| e.label.clone()).collect();
    labels.sort();
    assert_eq!(
        labels,
        [
            format!("{run}-db-1"),
            format!("{run}-web-1"),
            format!("{run}-web-2")
        ]
    );
    for (i, host) in rig.stage.cx.inventory.hosts().iter().enumerate() {
        let entity = ours
            .iter()
            .find(|e| e.label == format!("{run}-{}", host.name))
            .unwrap();
        assert_eq!(
            entity.body["ip_addresses"]["default"],
            format!("127.0.0.{}", 11 + i)
        );
        assert_eq!(entity.body["metadata"]["gate_run_id"], run.as_str());
        assert_eq!(entity.body["metadata"]["gate_host"], host.name.as_str());
    }
    let checks = rig.sim.checks();
    assert_eq!(checks.len(), 3);
    for check in &checks {
        let entity = rig.entity_of(check);
        assert_eq!(check.label, format!("{}-ping", entity.label));
        assert_eq!(check.body["type"], "remote.ping");
    }

    // The ledger: an intent before each create, then `created` with the simulator's id.
    let intents = lines(rig.ledger(), Op::Intent, "entity");
    let created = lines(rig.ledger(), Op::Created, "entity");
    assert_eq!((intents.len(), created.len()), (3, 3));
    for line in &created {
        let entity = ours.iter().find(|e| e.label == line.spec.name).unwrap();
        assert_eq!(line.id.as_deref(), Some(entity.id.as_str()));
        assert_eq!(line.spec.scope, rig.sim.url());
        assert_eq!(line.spec.backend, "monitoring");
        let host = line.spec.name.strip_prefix(&format!("{run}-")).unwrap();
        assert_eq!(line.spec.parent.as_deref(), Some(host));
    }
    let replay = rig.ledger().replay().unwrap();
    for check in lines(rig.ledger(), Op::Created, "check") {
        let sim_check = checks.iter().find(|c| c.label == check.spec.name).unwrap();
        let entity = rig.entity_of(sim_check);
        assert_eq!(check.id.as_deref(), Some(sim_check.id.as_str()));
        assert_eq!(
            check.spec.scope,
            format!("{}#entity={}", rig.sim.url(), entity.id)
        );
        assert_eq!(check.spec.parent.as_deref(), Some(entity.label.as_str()));
        let intent_at = replay
            .entries
            .iter()
            .position(|e| e.op == Op::Intent && e.spec == check.spec);
        let entity_created_at = replay
            .entries
            .iter()
            .position(|e| e.op == Op::Created && e.spec.name == entity.label);
        assert!(
            entity_created_at < intent_at,
            "a check's intent comes after its entity exists"
        );
    }

    // observe() sees exactly this run's six things, through paginated lists.
    let cx = CleanContext::new(Arc::new(LocalConnector));
    let observed = rig
        .cleaner
        .observe(&rig.stage.cx.run_id, &cx)
        .await
        .unwrap();
    assert_eq!(observed.len(), 6, "{observed:?}");
    assert!(observed.iter().all(|o| o.scope.starts_with(&rig.sim.url())));
    assert!(
        rig.sim
            .requests()
            .iter()
            .any(|r| r.query.contains("marker=")),
        "the list's next page was not followed"
    );

    let report = rig.cleanup().await.unwrap();
    assert_eq!(report.deleted, 6);
    let left: Vec<_> = rig.sim.entities().into_iter().map(|e| e.id).collect();
    assert_eq!(left, [theirs]);
    assert!(rig.sim.checks().is_empty());
    assert!(rig.ledger().live().unwrap().is_empty());
    // Each check was deleted before its entity (children first), each by its own id.
    let deletes: Vec<String> = rig
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path)
        .collect();
    assert_eq!(deletes.len(), 6);
    for check in &checks {
        let entity = check.entity_id.clone().unwrap();
        let check_at = deletes
            .iter()
            .position(|p| p.ends_with(&format!("/checks/{}", check.id)));
        let entity_at = deletes
            .iter()
            .position(|p| p.ends_with(&format!("/entities/{entity}")));
        assert!(check_at.unwrap() < entity_at.unwrap(), "{deletes:?}");
    }
    assert!(
        rig.cleaner
            .observe(&rig.stage.cx.run_id, &cx)
            .await
            .unwrap()
            .is_empty()
    );

    // A second cleanup is harmless and changes nothing.
    let before = rig.ledger().replay().unwrap().entries.len();
    let requests = rig.sim.requests().len();
    rig.cleanup().await.unwrap();
    assert_eq!(rig.ledger().replay().unwrap().entries.len(), before);
    assert_eq!(rig.sim.requests().len(), requests);
}

#[tokio::test]
async fn things_deleted_behind_gates_back_count_as_gone() {
    let rig = Rig::start(&["web-1", "web-2"], 3, true).await;
    rig.connector.connect(&rig.stage.cx).await.unwrap();
    let entity = rig.sim.entities()[0].id.clone();
    assert!(rig.sim.remove(&entity));
    let report = rig.cleanup().await.unwrap();
    assert_eq!(report.deleted, 4);
    assert!(rig.sim.entities().is_empty() && rig.sim.checks().is_empty());
    let not_found = rig
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE" && r.status == 404)
        .count();
    assert_eq!(not_found, 2, "the removed entity and its check answer 404");
    assert!(rig.ledger().live().unwrap().is_empty());
}

#[tokio::test]
async fn every_third_request_failing_with_503_and_a_429_are_retried() {
    let mut rig = Rig::start(&["web-1", "web-2", "web-3"], 5, true).await;
    // One host at a time: a fixed schedule, so no request can fail twice in a row.
    rig.stage.cx.concurrency = 1;
    rig.sim.fail_next("POST", "entities", 429, 1);
    rig.sim.fail_every(3, 503);
    rig.connector.connect(&rig.stage.cx).await.unwrap();
    assert_eq!(
        rig.sim.entities().len(),
        3,
        "no duplicates from retried creates"
    );
    assert_eq!(rig.sim.checks().len(), 3);
    let statuses: Vec<u16> = rig.sim.requests().iter().map(|r| r.status).collect();
    assert!(
        statuses.contains(&503) && statuses.contains(&429),
        "{statuses:?}"
    );
    let before = statuses.len();
    rig.cleanup().await.unwrap();
    let failed = rig.sim.requests()[before..]
        .iter()
        .filter(|r| r.status == 503)
        .count();
    assert!(failed > 0, "cleanup met 503s too");
    assert!(rig.sim.entities().is_empty() && rig.sim.checks().is_empty());
    assert!(rig.ledger().live().unwrap().is_empty());
}

#[tokio::test]
async fn a_wrong_token_is_refused_clearly_and_never_shown() {
    let rig = Rig::start(&["web-1", "web-2"], 5, true).await;
    let wrong = "tok-wrong-41d9e7b2-never-printed";
    let config = section(&rig.sim.url(), wrong, 5, lists(true));
    let connector = gate_agents::MonitoringConnector::from_config(&config).unwrap();
    assert!(!format!("{connector:?}").contains(wrong));

    let err = connector
        .connect(&rig.stage.cx)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HTTP 401") && err.contains("token is wrong"),
        "{err}"
    );
    assert!(err.contains("unauthorizedError"), "{err}");
    assert!(!err.contains(wrong) && !err.contains(TOKEN), "{err}");
    // Not retried: one refused POST per host, and nothing made.
    let requests = rig.sim.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests.iter().all(|r| r.status == 401 && !r.authenticated));
    assert!(rig.sim.entities().is_empty());
    // The API refused the request itself: the intent is closed, nothing is left to free.
    assert_eq!(lines(rig.ledger(), Op::Intent, "entity").len(), 2);
    assert_eq!(lines(rig.ledger(), Op::Deleted, "entity").len(), 2);
    assert!(rig.ledger().live().unwrap().is_empty());
    let log = std::fs::read_to_string(rig.stage.cx.logs_dir().join("web-1.log")).unwrap();
    assert!(!log.contains(wrong), "{log}");
}

#[tokio::test]
async fn a_create_the_api_refuses_leaves_nothing_for_cleanup_even_without_a_list() {
    let rig = Rig::start(&["web-1"], 3, false).await;
    rig.sim.fail_next("POST", "entities", 400, 1);
    let err = rig
        .connector
        .connect(&rig.stage.cx)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 400"), "{err}");
    assert!(rig.sim.entities().is_empty());
    assert_eq!(lines(rig.ledger(), Op::Deleted, "entity").len(), 1);
    assert!(rig.ledger().live().unwrap().is_empty());
    rig.cleanup().await.unwrap();
}

#[tokio::test]
async fn host_names_with_quotes_and_newlines_arrive_intact() {
    let hostile = "web \"1\"\n\\ {name} ü";
    let rig = Rig::start(&[hostile, "plain"], 3, true).await;
    rig.connector.connect(&rig.stage.cx).await.unwrap();
    let expected = format!("{}-{hostile}", rig.run_id());
    let post = rig
        .sim
        .requests()
        .into_iter()
        .find(|r| {
            r.method == "POST" && r.path.ends_with("/entities") && r.body.contains("\\\"1\\\"")
        })
        .expect("the hostile host's create request");
    let body: Value = serde_json::from_str(&post.body).unwrap();
    assert_eq!(body["label"], expected.as_str());
    assert_eq!(body["metadata"]["gate_host"], hostile);
    assert_eq!(
        body.as_object().unwrap().len(),
        3,
        "no keys injected: {body}"
    );
    assert!(rig.sim.entities().iter().any(|e| e.label == expected));
    let names: Vec<String> = lines(rig.ledger(), Op::Created, "entity")
        .into_iter()
        .map(|e| e.spec.name)
        .collect();
    assert!(names.contains(&expected), "{names:?}");
    rig.cleanup().await.unwrap();
    assert!(rig.sim.entities().is_empty() && rig.sim.checks().is_empty());
}

#[tokio::test]
async fn a_lost_create_answer_is_adopted_not_duplicated() {
    let rig = Rig::start(&["web-1"], 3, true).await;
    rig.sim.lose_next("POST", "entities", 1);
    rig.connector.connect(&rig.stage.cx).await.unwrap();
    let lost = rig.sim.requests().iter().filter(|r| r.status == 0).count();
    assert_eq!(lost, 1, "the simulator lost one answer");
    let entities = rig.sim.entities();
    assert_eq!(entities.len(), 1, "the retry must not make a second entity");
    let created = lines(rig.ledger(), Op::Created, "entity");
    assert_eq!(created[0].id.as_deref(), Some(entities[0].id.as_str()));
    rig.cleanup().await.unwrap();
    assert!(rig.sim.entities().is_empty());
}

#[tokio::test]
async fn an_intent_only_entry_is_found_by_name_and_run_at_cleanup() {
    // tries = 1: the lost answer fails the host, leaving the intent and a real entity.
    let mut rig = Rig::start(&["web-1", "web-2"], 1, true).await;
    rig.stage.cx.concurrency = 1; // web-1 first: its answer is the one lost
    rig.sim.lose_next("POST", "entities", 1);
    let err = rig
        .connector
        .connect(&rig.stage.cx)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("creating entity"), "{err}");
    assert_eq!(rig.sim.entities().len(), 2);
    let live = rig.ledger().live().unwrap();
    let label = format!("{}-web-1", rig.run_id());
    assert!(
        live.iter().any(|r| r.spec.name == label && r.id.is_none()),
        "{live:?}"
    );
    // Another run's entity under a look-alike name is left alone.
    let other = rig.sim.add(
        None,
        &format!("{}-web-1", rig.run_id()),
        &[("gate_run_id", "gate-0000other")],
        Duration::from_secs(60),
    );
    rig.cleanup().await.unwrap();
    let left: Vec<_> = rig.sim.entities().into_iter().map(|e| e.id).collect();
    assert_eq!(left, [other]);
    assert!(rig.sim.checks().is_empty());
    assert!(rig.ledger().live().unwrap().is_empty());
}

#[tokio::test]
async fn a_crash_between_create_and_created_is_cleaned_by_name() {
    let rig = Rig::start(&["web-1", "web-2"], 3, true).await;
    rig.connector.connect(&rig.stage.cx).await.unwrap();
    // The ledger as a crash after every create request left it: intents only, plus an
    // intent whose create never happened.
    let crashed = Ledger::open(
        rig.stage.dir.path().join("crashed.jsonl"),
        rig.stage.cx.run_id.clone(),
    )
    .unwrap();
    for entry in lines(rig.ledger(), Op::Intent, "entity")
        .into_iter()
        .chain(lines(rig.ledger(), Op::Intent, "check"))
    {
        crashed.intent(&entry.spec).await.unwrap();
    }
    let mut never = lines(rig.ledger(), Op::Intent, "entity")[0].spec.clone();
    never.name.push_str("-never-created");
    crashed.intent(&never).await.unwrap();

    let lists_before = rig
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .count();
    rig.cleanup_with(rig.cleaner.clone(), &crashed)
        .await
        .unwrap();
    assert!(rig.sim.entities().is_empty() && rig.sim.checks().is_empty());
    let lists = rig
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .count();
    assert!(lists > lists_before, "found through the lists");
    assert!(crashed.live().unwrap().is_empty());
    // The real ledger's things are gone already; cleaning it is harmless.
    rig.cleanup().await.unwrap();
}

#[tokio::test]
async fn without_a_list_an_intent_only_entry_is_reported_not_forgotten() {
    let rig = Rig::start(&["web-1"], 1, false).await;
    rig.sim.lose_next("POST", "entities", 1);
    rig.connector.connect(&rig.stage.cx).await.unwrap_err();
    let label = format!("{}-web-1", rig.run_id());
    let err = rig.cleanup().await.unwrap_err().to_string();
    assert!(
        err.contains("only an intent") && err.contains(&label) && err.contains("`list`"),
        "{err}"
    );
    assert_eq!(
        rig.ledger().live().unwrap().len(),
        1,
        "the entry stays for the next cleanup"
    );
    assert_eq!(rig.sim.entities().len(), 1);
}

#[tokio::test]
async fn sweep_takes_old_gate_things_only_and_needs_a_creation_time() {
    let rig = Rig::start(&["web-1"], 3, true).await;
    let old = Duration::from_secs(13 * 3600);
    let leak = rig.sim.add(
        None,
        "gate-0000dead-web-1",
        &[("gate_run_id", "gate-0000dead")],
        old,
    );
    let leak_check = rig
        .sim
        .add(Some(&leak), "gate-0000dead-web-1-ping", &[], old);
    let young = rig.sim.add(
        None,
        "gate-0000live-web-1",
        &[("gate_run_id", "gate-0000live")],
        Duration::from_secs(600),
    );
    let theirs = rig.sim.add(None, "prod-db", &[], old);
    let cx = CleanContext::new(Arc::new(LocalConnector));
    let mut filter = SweepFilter {
        older_than: Duration::from_secs(12 * 3600),
        run_id: None,
        delete: false,
    };
    let sorted = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };
    let listed = rig.cleaner.sweep(&filter, &cx).await.unwrap();
    let ids = sorted(listed.into_iter().map(|o| o.id).collect());
    assert_eq!(ids, sorted(vec![leak, leak_check]));
    assert_eq!(rig.sim.entities().len(), 3, "a dry run deletes nothing");

    filter.delete = true;
    rig.cleaner.sweep(&filter, &cx).await.unwrap();
    let left = sorted(rig.sim.entities().into_iter().map(|e| e.id).collect());
    assert_eq!(left, sorted(vec![young, theirs]));
    assert!(rig.sim.checks().is_empty());

    // Without a creation time in the list, nothing is swept.
    let timeless = r#"list = { url = "entities", run_id = "/metadata/gate_run_id" }"#;
    rig.sim.add(
        None,
        "gate-0000dead-web-2",
        &[("gate_run_id", "gate-0000dead")],
        old,
    );
    let config = section(&rig.sim.url(), TOKEN, 3, (timeless, ""));
    let timeless = gate_agents::MonitoringCleaner::from_config(&config).unwrap();
    assert!(timeless.sweep(&filter, &cx).await.unwrap().is_empty());
    assert_eq!(rig.sim.entities().len(), 3);
}

#[tokio::test]
async fn a_token_that_expires_mid_run_leaves_cleanup_for_later_not_lost() {
    let rig = Rig::start(&["web-1", "web-2"], 3, true).await;
    rig.connector.connect(&rig.stage.cx).await.unwrap();
    rig.sim.set_token("tok-renewed-5b0c");
    let err = rig.cleanup().await.unwrap_err().to_string();
    assert!(
        err.contains("4 resource(s) could not be freed") && err.contains("HTTP 401"),
        "{err}"
    );
    assert!(!err.contains(TOKEN), "{err}");
    assert_eq!(rig.ledger().live().unwrap().len(), 4);
    assert_eq!(rig.sim.entities().len(), 2);
    // With a working token the next cleanup finishes the job.
    rig.sim.set_token(TOKEN);
    rig.cleanup().await.unwrap();
    assert!(rig.sim.entities().is_empty() && rig.sim.checks().is_empty());
    assert!(rig.ledger().live().unwrap().is_empty());
}
