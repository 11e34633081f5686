//! The `repo-server` publisher to a real sshd host (tests/harness `SshFleet`), by SFTP and
//! by rsync: pinned host key, files renamed into place, the replace rule, the series lock,
//! the manifest checked on the server (and a file that no longer matches it refused). Needs
//! root, sshd and rsync.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::wait_until;

use gate_artifacts::{RepoServerConfig, RepoServerPublisher};
use gate_core::testkit::LocalStage;
use gate_core::{ArtifactPublisher, Stage};
use gate_test_harness::{FleetHost, SshFleet};

fn config(
    server: &FleetHost,
    fleet: &SshFleet,
    dir: &Path,
    src: &Path,
    extra: &str,
) -> RepoServerConfig {
    let known_hosts = dir.join("repo_known_hosts");
    std::fs::write(&known_hosts, format!("{}\n", server.known_hosts_line())).unwrap();
    let toml = format!(
        r#"
source = "{}"
on = "local"
host = "{}"
port = {}
user = "{}"
key = "{}"
known_hosts = "{}"
dir = "/srv/repo"
series = "master"
public_url = "https://repo.example/artifacts"
backoff_ms = 10
{extra}
"#,
        src.display(),
        server.address(),
        server.port(),
        server.user(),
        fleet.client_key().display(),
        known_hosts.display()
    );
    gate_core::BackendConfig::from_toml("publisher", "repo-server", &toml)
        .unwrap()
        .parse()
        .unwrap()
}

fn source(dir: &Path) {
    std::fs::create_dir_all(dir.join("wheels/sub")).unwrap();
    std::fs::write(dir.join("wheels/a.whl"), "wheel a\n").unwrap();
    std::fs::write(dir.join("wheels/sub/b.whl"), vec![9u8; 300_000]).unwrap();
}

async fn publish_then_replace_rule(method: &str) {
    let fleet = SshFleet::start(1).unwrap();
    let server = &fleet.hosts()[0];
    let stage = LocalStage::new(1, Stage::Publish).await;
    let src = stage.dir.path().join("src");
    source(&src);
    let cfg = config(
        server,
        &fleet,
        stage.dir.path(),
        &src,
        &format!("method = \"{method}\""),
    );
    RepoServerPublisher::new(cfg.clone())
        .publish(&stage.cx)
        .await
        .unwrap();

    let listed = server
        .exec_ok("cd /srv/repo/master && find . -type f | sort")
        .unwrap();
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        [
            "./gate-manifest.json",
            "./wheels/a.whl",
            "./wheels/sub/b.whl"
        ],
        "no temporary names are left"
    );
    assert_eq!(
        server.exec_ok("cat /srv/repo/master/wheels/a.whl").unwrap(),
        "wheel a\n"
    );
    let sums = server
        .exec_ok("cd /srv/repo/master && sha256sum wheels/sub/b.whl")
        .unwrap();
    let local = gate_artifacts::manifest::hash_file(&src.join("wheels/sub/b.whl"))
        .unwrap()
        .1;
    assert!(sums.starts_with(&local), "{sums} vs {local}");
    let published =
        std::fs::read_to_string(stage.cx.artifacts_dir.join("published-repo-server.json")).unwrap();
    assert!(
        published.contains("https://repo.example/artifacts/master/wheels/sub/b.whl"),
        "{published}"
    );
    assert!(
        server
            .exec("test -e /srv/repo/.gate-locks/master")
            .status
            .code()
            != Some(0),
        "the lock is released"
    );

    // Same content again: fine. Changed content: refused unless replace = true.
    RepoServerPublisher::new(cfg.clone())
        .publish(&stage.cx)
        .await
        .unwrap();
    std::fs::write(src.join("wheels/a.whl"), "wheel a, rebuilt\n").unwrap();
    let error = RepoServerPublisher::new(cfg.clone())
        .publish(&stage.cx)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("replace") && error.contains("wheels/a.whl"),
        "{error}"
    );
    assert_eq!(
        server.exec_ok("cat /srv/repo/master/wheels/a.whl").unwrap(),
        "wheel a\n"
    );
    let mut replacing = cfg;
    replacing.replace = true;
    RepoServerPublisher::new(replacing)
        .publish(&stage.cx)
        .await
        .unwrap();
    assert_eq!(
        server.exec_ok("cat /srv/repo/master/wheels/a.whl").unwrap(),
        "wheel a, rebuilt\n"
    );
}

#[tokio::test]
async fn sftp_publish_renames_into_place_verifies_and_keeps_the_replace_rule() {
    publish_then_replace_rule("sftp").await;
}

#[tokio::test]
async fn rsync_publish_renames_into_place_verifies_and_keeps_the_replace_rule() {
    publish_then_replace_rule("rsync").await;
}

#[tokio::test]
async fn a_held_series_lock_and_a_wrong_host_key_stop_the_publish() {
    let fleet = SshFleet::start(1).unwrap();
    let server = &fleet.hosts()[0];
    let stage = LocalStage::new(1, Stage::Publish).await;
    let src = stage.dir.path().join("src");
    source(&src);
    let cfg = config(server, &fleet, stage.dir.path(), &src, "tries = 2");
    server
        .exec_ok("mkdir -p /srv/repo/.gate-locks/master && echo 'gate-other-run' > /srv/repo/.gate-locks/master/owner")
        .unwrap();
    let error = RepoServerPublisher::new(cfg.clone())
        .publish(&stage.cx)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("being published by another run (gate-other-run)"),
        "{error}"
    );
    assert!(
        server
            .exec("test -e /srv/repo/master/wheels/a.whl")
            .status
            .code()
            != Some(0)
    );
    server
        .exec_ok("rm -rf /srv/repo/.gate-locks/master")
        .unwrap();

    server.regenerate_host_key().unwrap();
    let error = RepoServerPublisher::new(cfg)
        .publish(&stage.cx)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.to_lowercase().contains("host key"), "{error}");
    assert!(server.exec("test -e /srv/repo/master").status.code() != Some(0));
}

/// A source file changed after the publisher hashed it (while it waits for the series
/// lock): what reaches the server is not what the manifest says, and the check on the
/// server refuses it by name before the manifest goes up.
async fn a_file_unlike_the_manifest_fails_the_check(method: &str) {
    let fleet = SshFleet::start(1).unwrap();
    let server = &fleet.hosts()[0];
    let stage = LocalStage::new(1, Stage::Publish).await;
    let src = stage.dir.path().join("src");
    source(&src);
    let cfg = config(
        server,
        &fleet,
        stage.dir.path(),
        &src,
        &format!("method = \"{method}\"\ntries = 30"),
    );
    server
        .exec_ok("mkdir -p /srv/repo/.gate-locks/master && echo 'gate-other-run' > /srv/repo/.gate-locks/master/owner")
        .unwrap();
    let cx = stage.cx.clone();
    let publisher = RepoServerPublisher::new(cfg);
    let publishing = tokio::spawn(async move { publisher.publish(&cx).await });
    let log = stage.cx.logs_dir().join("repo-server.log");
    wait_until(Duration::from_secs(60), "a try of the held lock", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("gate-lock"))
    })
    .await;
    // The same size, other bytes: only the checksum tells them apart.
    std::fs::write(src.join("wheels/a.whl"), "wheel b\n").unwrap();
    server
        .exec_ok("rm -rf /srv/repo/.gate-locks/master")
        .unwrap();

    let error = publishing.await.unwrap().unwrap_err().to_string();
    assert!(
        error.contains("the upload does not match the manifest: wheels/a.whl"),
        "{error}"
    );
    assert!(!error.contains("b.whl"), "only the changed file: {error}");
    assert_eq!(
        server.exec_ok("cat /srv/repo/master/wheels/a.whl").unwrap(),
        "wheel b\n",
        "the server has the changed bytes"
    );
    assert!(
        server
            .exec("test -e /srv/repo/master/gate-manifest.json")
            .status
            .code()
            != Some(0),
        "no manifest goes up"
    );
    assert!(
        !stage
            .cx
            .artifacts_dir
            .join("published-repo-server.json")
            .exists(),
        "nothing is recorded as published"
    );
    assert!(
        server
            .exec("test -e /srv/repo/.gate-locks/master")
            .status
            .code()
            != Some(0),
        "the lock is released"
    );
}

#[tokio::test]
async fn sftp_publish_of_a_file_unlike_the_manifest_fails_naming_it() {
    a_file_unlike_the_manifest_fails_the_check("sftp").await;
}

#[tokio::test]
async fn rsync_publish_of_a_file_unlike_the_manifest_fails_naming_it() {
    a_file_unlike_the_manifest_fails_the_check("rsync").await;
}
