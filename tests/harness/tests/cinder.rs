//! The harness's real Cinder, started on demand beside the shared OpenStack services:
//! in the catalog as `block-storage` and `volumev3`, a volume of a test project made
//! `available` by the fake driver, listed by name, deleted to 404.
//! Needs `scripts/openstack-env` and `scripts/cinder-env`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use gate_test_harness::OpenStack;
use gate_test_harness::openstack::ApiSession;
use serde_json::json;

/// Polls volume `id` until its status is `want` (`None`: until 404); gives the last status.
fn wait_volume(session: &ApiSession, id: &str, want: Option<&str>) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = session
            .call("GET", "block-storage", &format!("/volumes/{id}"), None)
            .unwrap();
        let status = (answer.status != 404).then(|| {
            answer.json()["volume"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        });
        if status.as_deref() == want || Instant::now() > deadline {
            return status;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_volume_becomes_available_and_is_deleted_to_404() {
    let cloud = OpenStack::shared().unwrap();
    let cinder = cloud.cinder().unwrap();
    eprintln!(
        "Cinder started in {:.1}s",
        cinder.started_in().as_secs_f64()
    );
    // A second call gives the same Cinder.
    assert_eq!(cloud.cinder().unwrap().dir(), cinder.dir());
    let session = cloud.project("cinder").unwrap().session().unwrap();
    for kind in ["block-storage", "volumev3"] {
        let url = session.endpoint(kind).unwrap();
        assert_eq!(url, cinder.endpoint(session.project_id()), "{kind}");
    }
    let made = session
        .post(
            "block-storage",
            "/volumes",
            &json!({"volume": {"size": 1, "name": "harness-vol",
                                "metadata": {"gate_run_id": "harness"}}}),
        )
        .unwrap();
    let id = made["volume"]["id"].as_str().unwrap().to_owned();
    let status = wait_volume(&session, &id, Some("available"));
    assert_eq!(
        status.as_deref(),
        Some("available"),
        "cinder-volume log:\n{}",
        cinder.log("cinder-volume")
    );
    let listed = session
        .get("block-storage", "/volumes/detail?name=harness-vol")
        .unwrap();
    let volumes = listed["volumes"].as_array().unwrap();
    assert_eq!(volumes.len(), 1, "{listed}");
    assert_eq!(volumes[0]["metadata"]["gate_run_id"], "harness");
    let answer = session
        .call("DELETE", "block-storage", &format!("/volumes/{id}"), None)
        .unwrap();
    assert_eq!(answer.status, 202, "{}", answer.text());
    assert_eq!(wait_volume(&session, &id, None), None);
}
