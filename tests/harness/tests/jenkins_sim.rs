//! The Jenkins simulator answers like Jenkins' REST API: auth, crumbs, status codes, JSON
//! shapes, faults. Requests are made with the real `curl`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use gate_test_harness::JenkinsSim;

/// `curl` with `args`; (HTTP status, body).
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_owned())
}

#[test]
fn the_simulator_checks_auth_and_crumbs_and_answers_with_jenkins_codes() {
    let sim = JenkinsSim::start("bot", "tok-sim-1234").unwrap();
    let url = |p: &str| format!("{}{p}", sim.url());
    // No credentials: 403; wrong ones: 401.
    assert_eq!(curl(&[&url("computer/api/json")]).0, 403);
    assert_eq!(curl(&["-u", "bot:nope", &url("computer/api/json")]).0, 401);
    let (code, body) = curl(&["-u", "bot:tok-sim-1234", &url("crumbIssuer/api/json")]);
    assert_eq!(code, 200);
    let crumb: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(crumb["crumbRequestField"], "Jenkins-Crumb");
    let header = format!("Jenkins-Crumb: {}", crumb["crumb"].as_str().unwrap());
    let node = r#"{"name":"n1","nodeDescription":"d","numExecutors":"2","remoteFS":"/r","labelString":"a b","mode":"EXCLUSIVE","launcher":{"stapler-class":"hudson.slaves.JNLPLauncher"},"type":"hudson.slaves.DumbSlave"}"#;
    let create = |with_crumb: bool| {
        let mut args = vec!["-u", "bot:tok-sim-1234", "-X", "POST"];
        if with_crumb {
            args.extend(["-H", header.as_str()]);
        }
        let url = url("computer/doCreateItem");
        let json = format!("json={node}");
        let mut all: Vec<&str> = args;
        all.extend([
            "--data-urlencode",
            "name=n1",
            "--data-urlencode",
            "type=hudson.slaves.DumbSlave",
            "--data-urlencode",
            json.as_str(),
            url.as_str(),
        ]);
        curl(&all).0
    };
    // A POST without the crumb is refused; with it the node is made; a second is a 400.
    assert_eq!(create(false), 403);
    assert_eq!(create(true), 302);
    assert_eq!(create(true), 400);
    let made = sim.node("n1").unwrap();
    assert_eq!(
        (made.labels.len(), made.executors, made.mode.as_str()),
        (2, 2, "EXCLUSIVE")
    );
    let (code, body) = curl(&["-u", "bot:tok-sim-1234", &url("computer/n1/api/json")]);
    assert_eq!(code, 200);
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(state["offline"], true);
    assert_eq!(state["jnlpAgent"], true);
    let (_, jnlp) = curl(&[
        "-u",
        "bot:tok-sim-1234",
        &url("computer/n1/jenkins-agent.jnlp"),
    ]);
    assert!(jnlp.contains(&format!("<argument>{}</argument>", made.secret)));
    // agent.jar needs no credentials, as on Jenkins.
    assert_eq!(curl(&[&url("jnlpJars/agent.jar")]).0, 200);
    // Faults, then delete: 302, then 404 once gone.
    sim.fail_next("/computer/n1", 500, 1);
    let delete = || {
        curl(&[
            "-u",
            "bot:tok-sim-1234",
            "-X",
            "POST",
            "-H",
            &header,
            &url("computer/n1/doDelete"),
        ])
        .0
    };
    assert_eq!(delete(), 500);
    assert_eq!(delete(), 302);
    assert_eq!(delete(), 404);
    assert!(sim.nodes().is_empty());
}
