//! Attaching to OpenStack services another process runs (`GATE_OPENSTACK_SERVICES`) fails
//! clearly, with what to do, when the description is missing, broken, its process gone or
//! its services silent. Needs nothing running: attaching to real services is proven by
//! `openstack.rs` and `cinder.rs` run with `GATE_OPENSTACK_SERVICES` set (`scripts/test`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::Path;

use gate_test_harness::OpenStack;
use serde_json::{Value, json};

/// A description in the format `openstack-services` writes, every port `port`, owned by
/// process `pid`.
fn description(pid: u32, port: u16) -> Value {
    let ports: serde_json::Map<String, Value> = [
        "epmd",
        "amqp",
        "amqp_dist",
        "keystone",
        "placement",
        "glance",
        "nova",
        "heat",
        "neutron",
    ]
    .iter()
    .map(|name| ((*name).to_owned(), json!(port)))
    .collect();
    json!({
        "format": 1,
        "pid": pid,
        "dir": "/nonexistent/gate-openstack",
        "venv": "/nonexistent/venv",
        "admin": {"username": "admin", "password": "not-shown", "user_id": "",
                  "project_name": "admin", "project_id": "p"},
        "image_id": "i",
        "flavor_id": "f",
        "started_in_secs": 1.0,
        "ports": ports,
        "cinder": null,
    })
}

fn attach_error(doc: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.json");
    std::fs::write(&path, doc).unwrap();
    OpenStack::attach(&path).unwrap_err().to_string()
}

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn a_missing_description_says_how_to_start_the_services() {
    let error = OpenStack::attach(Path::new("/nonexistent/services.json"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("/nonexistent/services.json"), "{error}");
    assert!(error.contains("does not exist"), "{error}");
    assert!(error.contains("openstack-services"), "{error}");
    assert!(error.contains("GATE_OPENSTACK_SERVICES"), "{error}");
}

#[test]
fn a_broken_description_is_refused() {
    let error = attach_error("{\"format\": 1");
    assert!(error.contains("not a description"), "{error}");
    let error = attach_error(&json!({"format": 99}).to_string());
    assert!(error.contains("format"), "{error}");
    let mut doc = description(std::process::id(), 1);
    doc["ports"]["nova"] = Value::Null;
    let error = attach_error(&doc.to_string());
    assert!(error.contains("port of nova"), "{error}");
}

#[test]
fn services_whose_process_is_gone_are_refused() {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let error = attach_error(&description(pid, closed_port()).to_string());
    assert!(error.contains(&format!("pid {pid}) is gone")), "{error}");
}

#[test]
fn services_that_do_not_answer_are_refused_and_the_password_is_not_shown() {
    let error = attach_error(&description(std::process::id(), closed_port()).to_string());
    assert!(error.contains("do not answer"), "{error}");
    assert!(error.contains("Keystone"), "{error}");
    assert!(!error.contains("not-shown"), "{error}");
}
