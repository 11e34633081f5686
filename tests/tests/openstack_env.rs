//! Logging in from the `OS_*` environment (an openrc sourced by the CI job), with no
//! `cloud` in the config and no clouds.yaml anywhere gate looks: `gate sweep --dry-run`
//! on the harness's real Keystone and Nova sees the project's old gate server; a wrong
//! `OS_PASSWORD` is an authentication error naming the environment, never printing it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gate_test_harness::OpenStack;
use gate_tests::{Workspace, text};
use serde_json::json;

fn cloud() -> &'static OpenStack {
    OpenStack::shared().unwrap_or_else(|e| panic!("the OpenStack services did not start: {e}"))
}

const CONFIG: &str = "[provider]\nbackend = \"pubcloud\"\nflavor = \"gate.small\"\n\
                      image = \"gate-tiny\"\nnetworks = [\"none\"]\n\
                      [provider.api]\ntries = 2\nfirst_delay_secs = 0.1\nmax_delay_secs = 0.2\n";

/// `gate ARGS` in `ws` with `env` as the only OpenStack settings (none inherited).
fn gate(ws: &Workspace, env: &[(&str, String)], args: &[&str]) -> std::process::Output {
    let mut cmd = ws.gate();
    for (key, _) in std::env::vars() {
        if key.starts_with("OS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("HOME", ws.path())
        .envs(env.iter().map(|(k, v)| (*k, v)));
    cmd.args(args).output().unwrap()
}

#[test]
fn the_os_environment_logs_in_and_a_wrong_password_is_a_clear_auth_error() {
    let creds = cloud().project("osenv").unwrap();
    let session = creds.session().unwrap();
    let body = json!({"server": {"name": "gate-osenv-leftover-1", "imageRef": cloud().image_id(),
        "flavorRef": cloud().flavor_id(), "networks": "none",
        "metadata": {"gate_run_id": "gate-osenv-run", "gate_created_at": "2026-01-01T00:00:00Z"}}});
    let id = session.post("compute", "/servers", &body).unwrap()["server"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ws = Workspace::new();
    ws.config(CONFIG);
    let env = creds.os_env();
    let sweep = [
        "sweep",
        "-c",
        "gate.toml",
        "--dry-run",
        "--confirm-after",
        "0s",
    ];

    let out = gate(&ws, &env, &sweep);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("gate-osenv-leftover-1"),
        "{}",
        text(&out)
    );

    let wrong = "osenv-wrong-password-3f9a1c";
    let bad: Vec<(&str, String)> = env
        .iter()
        .map(|(k, v)| match *k {
            "OS_PASSWORD" => (*k, wrong.to_owned()),
            _ => (*k, v.clone()),
        })
        .collect();
    let out = gate(&ws, &bad, &sweep);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(3), "{shown}");
    assert!(
        shown.contains("authentication failed for the OS_* environment"),
        "{shown}"
    );
    assert!(shown.contains("not swept: pubcloud"), "{shown}");
    assert!(
        !shown.contains(wrong) && !shown.contains(creds.password()),
        "{shown}"
    );

    // No cloud named and no OS_AUTH_URL: an error saying what to set.
    let out = gate(&ws, &[], &sweep);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("OS_AUTH_URL"), "{}", text(&out));

    session
        .call_ok("DELETE", "compute", &format!("/servers/{id}"), None)
        .unwrap();
}
