//! Archive and publish in whole pipelines through the real `gate` binary over SSH: lab
//! hosts from the tests/harness fleet, the streamed archiver, the `s3` publisher and the
//! archiver's `publish_logs` to a real S3 server (`s3s-fs`), and a failed deploy whose
//! cause archive does not hide.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gate_test_harness::{S3Server, SshFleet};
use gate_tests::{Workspace, text};

const KEY: &str = "AKIDPIPELINE";
const SECRET: &str = "pipeline-s3-secret-0b7e";

fn config(fleet: &SshFleet, s3: &S3Server, deploy: &str) -> String {
    let lab = gate_tests::static_lab_config(fleet);
    format!(
        r#"
{lab}

[deployer]
backend = "script"
hosts = "all"
[[deployer.deploy]]
script = '{deploy}'

[publisher]
backend = "s3"
source = "/root/out"
bucket = "repo"
prefix = "series-1"
endpoint = "{endpoint}"
access_key = {{ secret = "{ak}" }}
secret_key = {{ secret = "{sk}" }}

[archiver]
backend = "streamed"
paths = ["/var/log/gate-demo", "/etc/gate-demo"]
[archiver.publish_logs]
bucket = "logs"
endpoint = "{endpoint}"
access_key = {{ secret = "{ak}" }}
secret_key = {{ secret = "{sk}" }}
"#,
        endpoint = s3.endpoint(),
        ak = s3.access_key(),
        sk = s3.secret_key(),
    )
}

const DEPLOY: &str = "mkdir -p /var/log/gate-demo /etc/gate-demo /root/out && hostname > /var/log/gate-demo/deployed && echo admin_password: x > /etc/gate-demo/user_secrets.yml && echo built > /root/out/release.txt";

#[test]
fn a_pipeline_over_ssh_archives_every_host_and_publishes_to_s3() {
    let fleet = SshFleet::start(2).unwrap();
    let s3 = S3Server::start(KEY, SECRET).unwrap();
    s3.create_bucket("repo").unwrap();
    s3.create_bucket("logs").unwrap();
    let ws = Workspace::new();
    ws.config(&config(&fleet, &s3, DEPLOY));
    let out = ws.run(&["run", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains(SECRET));
    for stage in ["publish", "archive"] {
        assert_eq!(ws.stage_status(stage), "passed", "{stage}");
    }
    // Published from the primary, with its manifest.
    assert_eq!(
        s3.keys("repo"),
        ["series-1/gate-manifest.json", "series-1/release.txt"]
    );
    // Archived from both hosts, the secrets file left out, indexed.
    for host in fleet.hosts() {
        let deployed = ws
            .artifacts()
            .join(host.name())
            .join("var/log/gate-demo/deployed");
        assert_eq!(
            std::fs::read_to_string(deployed).unwrap().trim(),
            host.name()
        );
        assert!(
            !ws.artifacts()
                .join(host.name())
                .join("etc/gate-demo/user_secrets.yml")
                .exists()
        );
    }
    let index = std::fs::read_to_string(ws.artifacts().join("index.html")).unwrap();
    assert!(
        index.contains("fleet-2/var/log/gate-demo/deployed"),
        "{index}"
    );
    assert!(ws.artifacts().join("manifest.json").exists());
    // The run's logs went to the logs bucket under the run id, index page included.
    let run_id = ws.run_id().to_string();
    let logs = s3.keys("logs");
    assert!(logs.contains(&format!("{run_id}/index.html")), "{logs:?}");
    assert!(
        logs.contains(&format!("{run_id}/fleet-1/var/log/gate-demo/deployed")),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|k| k.starts_with(&format!("{run_id}/logs/"))),
        "{logs:?}"
    );
}

#[test]
fn a_failed_deploy_is_still_archived_and_its_cause_stays_first() {
    let fleet = SshFleet::start(2).unwrap();
    let s3 = S3Server::start(KEY, SECRET).unwrap();
    s3.create_bucket("repo").unwrap();
    s3.create_bucket("logs").unwrap();
    let ws = Workspace::new();
    let failing = format!("{DEPLOY} && echo deploy broke >&2 && exit 7");
    ws.config(&config(&fleet, &s3, &failing));
    // Host 2 cannot archive (no tar there): archive fails too, after the deploy did.
    fleet.hosts()[1]
        .exec_ok("mv /usr/bin/tar /usr/bin/tar.gone")
        .unwrap();
    let out = ws.run(&["run", "-c", "gate.toml"]);
    // Infrastructure (archive) outranks product (deploy) in the exit code, by design;
    // run.json keeps both causes, the deploy's first.
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(ws.stage_status("deploy"), "failed");
    assert_eq!(ws.stage_status("archive"), "failed");
    let run = ws.run_json();
    let causes = run["causes"].as_array().unwrap();
    assert_eq!(causes[0]["stage"], "deploy", "{causes:?}");
    assert!(causes.iter().any(|c| c["stage"] == "archive"), "{causes:?}");
    // What host 1 had is archived all the same.
    assert!(
        ws.artifacts()
            .join("fleet-1/var/log/gate-demo/deployed")
            .exists()
    );
    let archive = std::fs::read_to_string(ws.artifacts().join("archive.json")).unwrap();
    assert!(archive.contains("fleet-2"), "{archive}");
    assert_eq!(ws.stage_status("cleanup"), "passed");
}
