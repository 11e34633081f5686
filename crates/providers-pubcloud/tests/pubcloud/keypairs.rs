//! `pubcloud` keypairs against the real Nova: nothing can tag a keypair, so a sweep takes
//! the `gate-` ones by name (not the protected, not anyone else's) once they are old enough,
//! and cleanup frees a keypair the ledger holds under `pubcloud` — by its name, and when only
//! the intent was written, only if the name carries the run id. What is gone is asked of
//! Nova, never of the ledger. Each test has a project, so a user, so keypairs, of its own.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use gate_core::{
    CleanContext, Cleaned, Cleaner, Ledger, LiveResource, Resource, RunId, SweepFilter,
    cleanup_ledger,
};
use gate_openstack::allocator::KEYPAIR_KIND;
use gate_test_harness::openstack::ApiSession;
use serde_json::json;

use super::{Project, lookup};

/// Keypairs made for a test, deleted from Nova when it ends (also when it fails).
struct Keypairs {
    session: ApiSession,
    names: Vec<String>,
}

impl Keypairs {
    /// Imports keypairs `names` (one public key) for the project's user.
    fn create(project: &Project, names: &[&str]) -> Keypairs {
        let dir = tempfile::tempdir().unwrap();
        let key = gate_core::keys::RunKey::generate(dir.path(), "gate-keypair-test").unwrap();
        let session = project.session();
        for name in names {
            session
                .post(
                    "compute",
                    "/os-keypairs",
                    &json!({"keypair": {"name": name, "public_key": key.public.line()}}),
                )
                .unwrap();
        }
        Keypairs {
            session,
            names: names.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    /// The names of the user's keypairs, as Nova lists them.
    fn in_nova(&self) -> BTreeSet<String> {
        let list = self.session.get("compute", "/os-keypairs").unwrap();
        list["keypairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["keypair"]["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Nova's status for `GET /os-keypairs/<name>`.
    fn status_of(&self, name: &str) -> u16 {
        let path = format!("/os-keypairs/{name}");
        self.session
            .call("GET", "compute", &path, None)
            .unwrap()
            .status
    }
}

impl Drop for Keypairs {
    fn drop(&mut self) {
        for name in &self.names {
            let path = format!("/os-keypairs/{name}");
            let _ = self.session.call("DELETE", "compute", &path, None);
        }
    }
}

fn filter(older_than: Duration, run_id: Option<&RunId>, delete: bool) -> SweepFilter {
    SweepFilter {
        older_than,
        run_id: run_id.cloned(),
        delete,
    }
}

fn clean_context() -> CleanContext {
    CleanContext::new(Arc::new(gate_core::local::LocalConnector))
}

fn names(found: &[gate_core::Observed]) -> Vec<&str> {
    found.iter().map(|o| o.name.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_takes_old_gate_keypairs_only_and_leaves_protected_and_foreign_ones() {
    let project = Project::new("keypairs");
    let run_id = RunId::generate();
    let gate = run_id.as_str().to_owned();
    let protected = format!("gate-keep-{}", &gate["gate-".len()..]);
    let foreign = format!("ci-{}", &gate["gate-".len()..]);
    let keypairs = Keypairs::create(&project, &[&gate, &protected, &foreign]);
    let provider =
        project.provider("regions = [\"RegionOne\"]\nprotected = [\"gate-keep-*\", \"other\"]");
    let cx = clean_context();

    // Minutes old at most: not leaked yet by the default age.
    let twelve_hours = Duration::from_secs(12 * 3600);
    let young = provider
        .sweep(&filter(twelve_hours, None, false), &cx)
        .await
        .unwrap();
    assert!(young.is_empty(), "{young:?}");

    // Any age: the dry run lists the gate keypair alone, as a keypair known by its name.
    let found = provider
        .sweep(&filter(Duration::ZERO, None, false), &cx)
        .await
        .unwrap();
    assert_eq!(names(&found), [gate.as_str()], "{found:?}");
    let seen = &found[0];
    assert_eq!(seen.kind, KEYPAIR_KIND);
    assert_eq!(seen.kind, gate_providers_pubcloud::KEYPAIR);
    assert_eq!(
        (seen.id.as_str(), seen.scope.as_str()),
        (gate.as_str(), "RegionOne")
    );
    assert_eq!(
        seen.run_id, None,
        "nothing tags a keypair; no run was asked for"
    );
    assert_eq!(
        keypairs.in_nova(),
        BTreeSet::from([gate.clone(), protected.clone(), foreign.clone()]),
        "a dry run deletes nothing"
    );

    // Another run's sweep does not take it; this run's does, and names the run.
    let other = RunId::generate();
    let theirs = provider
        .sweep(&filter(Duration::ZERO, Some(&other), false), &cx)
        .await
        .unwrap();
    assert!(theirs.is_empty(), "{theirs:?}");
    let ours = provider
        .sweep(&filter(Duration::ZERO, Some(&run_id), false), &cx)
        .await
        .unwrap();
    assert_eq!(names(&ours), [gate.as_str()]);
    assert_eq!(ours[0].run_id.as_ref(), Some(&run_id));

    // With delete: gone from Nova; the protected and the foreign keypair stay.
    let swept = provider
        .sweep(&filter(Duration::ZERO, None, true), &cx)
        .await
        .unwrap();
    assert_eq!(names(&swept), [gate.as_str()]);
    assert_eq!(keypairs.status_of(&gate), 404);
    assert_eq!(
        keypairs.in_nova(),
        BTreeSet::from([protected.clone(), foreign.clone()])
    );
    let again = provider
        .sweep(&filter(Duration::ZERO, None, true), &cx)
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keypair_in_the_ledger_is_cleaned_and_cleaning_again_is_fine() {
    let project = Project::new("keyclean");
    let run_id = RunId::generate();
    let made = format!("{run_id}-key");
    let intent_only = format!("{run_id}-lost");
    let keypairs = Keypairs::create(&project, &[&made, &intent_only]);
    let provider = project.provider("regions = [\"RegionOne\"]");
    let cx = clean_context();

    // As a downstream backend writing keypairs under `pubcloud` would: one created (the
    // id is the name), one whose create answer was lost (only the intent).
    let ledger = Ledger::open(project.dir.path().join("ledger.jsonl"), run_id.clone()).unwrap();
    let spec = Resource::new("pubcloud", KEYPAIR_KIND, "RegionOne", &made);
    ledger.intent(&spec).await.unwrap();
    ledger.created(&spec, &made).await.unwrap();
    let lost = Resource::new("pubcloud", KEYPAIR_KIND, "RegionOne", &intent_only);
    ledger.intent(&lost).await.unwrap();

    let report = cleanup_ledger(&ledger, &lookup(provider.clone()), &cx)
        .await
        .unwrap();
    assert_eq!(report.deleted, 2);
    assert_eq!(keypairs.status_of(&made), 404);
    assert_eq!(keypairs.status_of(&intent_only), 404);
    assert!(keypairs.in_nova().is_empty(), "{:?}", keypairs.in_nova());
    assert!(ledger.live().unwrap().is_empty());

    // Cleaned again (a second `gate cleanup`, a retried entry): gone counts as deleted.
    let entry = LiveResource {
        spec,
        run_id: run_id.clone(),
        id: Some(made.clone()),
        intent_at: None,
    };
    assert_eq!(provider.clean(&entry, &cx).await.unwrap(), Cleaned::Deleted);
    let entry = LiveResource {
        spec: lost,
        run_id,
        id: None,
        intent_at: None,
    };
    assert_eq!(provider.clean(&entry, &cx).await.unwrap(), Cleaned::Deleted);
    cleanup_ledger(&ledger, &lookup(provider), &cx)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intent_only_keypair_not_named_after_the_run_is_left_alone() {
    let project = Project::new("keyintent");
    let run_id = RunId::generate();
    let keypairs = Keypairs::create(&project, &["shared-deploy-key"]);
    let provider = project.provider("regions = [\"RegionOne\"]");
    let cx = clean_context();

    // Only the intent, and a name anyone may have chosen: cleanup must not take it.
    let entry = LiveResource {
        spec: Resource::new("pubcloud", KEYPAIR_KIND, "RegionOne", "shared-deploy-key"),
        run_id: run_id.clone(),
        id: None,
        intent_at: None,
    };
    let error = provider.clean(&entry, &cx).await.unwrap_err().to_string();
    assert!(
        error.contains("keypair `shared-deploy-key` left alone"),
        "{error}"
    );
    assert!(error.contains(run_id.as_str()), "{error}");
    assert_eq!(keypairs.status_of("shared-deploy-key"), 200);

    // Such an entry whose keypair does not exist is simply done.
    let absent = LiveResource {
        spec: Resource::new("pubcloud", KEYPAIR_KIND, "RegionOne", "never-made-key"),
        run_id,
        id: None,
        intent_at: None,
    };
    assert_eq!(
        provider.clean(&absent, &cx).await.unwrap(),
        Cleaned::Deleted
    );
}
