//! A `repo-server` publish killed half way (the server's sshd SIGKILLed with every session
//! under it), then run again: no file is ever visible under its final name unless it is
//! whole, the rerun removes what the dead publish left under temporary names, takes over
//! the dead publish's lock and completes. By SFTP and by rsync, on a real sshd host
//! (tests/harness `SshFleet`). Needs root, sshd and rsync.
//!
//! The interruption is placed, not timed: by SFTP the temporary name of the third file is
//! a FIFO on the server, so the upload blocks opening it (after the first two files) until
//! the kill; by rsync a wrapper on the server passes the first bytes of the stream to the
//! real `rsync`, then holds the rest, so the transfer stops inside the second file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::wait_until;
use gate_artifacts::manifest::hash_file;
use gate_artifacts::{RepoServerConfig, RepoServerPublisher};
use gate_core::testkit::LocalStage;
use gate_core::{ArtifactPublisher, Stage};
use gate_test_harness::{FleetHost, SshFleet};

const SERIES: &str = "/srv/repo/master";

/// The files, in the order the publisher sends them (sorted by path), with their sizes.
const FILES: &[(&str, usize)] = &[
    ("wheels/a.whl", 200_000),
    ("wheels/b.whl", 3_000_000),
    ("wheels/c.whl", 200_000),
    ("wheels/d.whl", 200_000),
    ("wheels/sub/e.whl", 200_000),
];

fn source(dir: &Path) {
    for (n, (path, size)) in FILES.iter().enumerate() {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let data: Vec<u8> = (0..*size).map(|i| ((i * 7 + n) % 251) as u8).collect();
        std::fs::write(file, data).unwrap();
    }
}

fn config(server: &FleetHost, fleet: &SshFleet, dir: &Path, method: &str) -> RepoServerConfig {
    let known_hosts = dir.join("repo_known_hosts");
    std::fs::write(&known_hosts, format!("{}\n", server.known_hosts_line())).unwrap();
    let toml = format!(
        r#"
source = "{}"
on = "local"
host = "{}"
port = {}
key = "{}"
known_hosts = "{}"
dir = "/srv/repo"
series = "master"
method = "{method}"
tries = 2
backoff_ms = 10
connect_timeout_secs = 2
"#,
        dir.join("src").display(),
        server.address(),
        server.port(),
        fleet.client_key().display(),
        known_hosts.display()
    );
    gate_core::BackendConfig::from_toml("publisher", "repo-server", &toml)
        .unwrap()
        .parse()
        .unwrap()
}

/// Every regular file in the series on the server (relative path), temporary names apart.
fn final_files(server: &FleetHost) -> Vec<String> {
    let listed = server.exec_ok(&format!(
        "cd {SERIES} 2>/dev/null || exit 0; find . -name '.gate-tmp-*' -prune -o -type f -print | sort"
    ));
    listed
        .unwrap()
        .lines()
        .map(|l| l.trim_start_matches("./").to_owned())
        .collect()
}

/// Every file under its final name is whole: the same bytes as its source.
fn assert_whole(server: &FleetHost, src: &Path, files: &[String]) {
    for file in files {
        if file == "gate-manifest.json" {
            continue;
        }
        assert_eq!(
            hash_file(&server.host_path(format!("{SERIES}/{file}"))).unwrap(),
            hash_file(&src.join(file)).unwrap(),
            "{file} is visible but not whole"
        );
    }
}

/// Runs the publish until `at_the_cut` says it is stopped half way, kills the server's
/// sshd, and checks what a reader sees; then `before_rerun`, sshd back, and the rerun.
async fn interrupted_then_rerun(
    method: &str,
    prepare: impl Fn(&FleetHost, &str),
    at_the_cut: impl Fn(&FleetHost) -> bool,
    before_rerun: impl Fn(&FleetHost),
) {
    let fleet = SshFleet::start(1).unwrap();
    let server = &fleet.hosts()[0];
    let stage = LocalStage::new(1, Stage::Publish).await;
    let src = stage.dir.path().join("src");
    source(&src);
    let cfg = config(server, &fleet, stage.dir.path(), method);
    prepare(server, &stage.cx.run_id.to_string());

    let cx = stage.cx.clone();
    let publisher = RepoServerPublisher::new(cfg.clone());
    let publishing = tokio::spawn(async move { publisher.publish(&cx).await });
    wait_until(
        Duration::from_secs(60),
        "the publish to stop half way",
        || publishing.is_finished() || at_the_cut(server),
    )
    .await;
    if publishing.is_finished() {
        let early = publishing.await.unwrap();
        panic!("the publish ended before it was stopped half way: {early:?}");
    }
    server.kill_sshd().unwrap();
    let failed = tokio::time::timeout(Duration::from_secs(60), publishing)
        .await
        .expect("the publish ends once the server is gone")
        .unwrap();
    let error = failed.unwrap_err().to_string();

    // A reader sees no file that is not whole, and no manifest.
    let visible = final_files(server);
    assert!(
        !visible.contains(&"gate-manifest.json".to_owned()),
        "{visible:?}"
    );
    assert!(
        visible.len() < FILES.len(),
        "half way: {visible:?} ({error})"
    );
    assert_whole(server, &src, &visible);

    before_rerun(server);
    server.restart_sshd().unwrap();
    RepoServerPublisher::new(cfg)
        .publish(&stage.cx)
        .await
        .unwrap();
    let mut expected: Vec<String> = FILES.iter().map(|(p, _)| (*p).to_owned()).collect();
    expected.push("gate-manifest.json".into());
    expected.sort();
    assert_eq!(final_files(server), expected);
    assert_whole(server, &src, &expected);
    let leftovers = server
        .exec_ok(&format!("find {SERIES} -name '.gate-tmp-*'"))
        .unwrap();
    assert_eq!(leftovers, "", "the dead publish's temporary files are gone");
    assert!(
        !server
            .exec("test -e /srv/repo/.gate-locks/master")
            .status
            .success(),
        "the lock is released"
    );
}

#[tokio::test]
async fn sftp_publish_killed_half_way_shows_no_partial_file_and_a_rerun_completes() {
    interrupted_then_rerun(
        "sftp",
        |server, run_id| {
            server
                .exec_ok(&format!(
                    "mkdir -p {SERIES}/wheels && mkfifo {SERIES}/wheels/.gate-tmp-{run_id}-c.whl"
                ))
                .unwrap();
        },
        // a and b are up under their temporary names; c's upload waits on the FIFO.
        |server| {
            let sizes = server.exec(&format!(
                "stat -c %s {SERIES}/wheels/.gate-tmp-*-a.whl {SERIES}/wheels/.gate-tmp-*-b.whl"
            ));
            String::from_utf8_lossy(&sizes.stdout)
                .split_whitespace()
                .eq(["200000", "3000000"])
        },
        // The FIFO is the test's doing, not the publisher's: it goes before the rerun.
        |server| {
            server
                .exec_ok(&format!("rm {SERIES}/wheels/.gate-tmp-*-c.whl"))
                .unwrap();
        },
    )
    .await;
}

#[tokio::test]
async fn rsync_publish_killed_inside_a_file_shows_no_partial_file_and_a_rerun_completes() {
    // rsync on the server reads its first MB (a, and part of b), then nothing more.
    const WRAPPER: &str = r#"#!/bin/sh
{ dd bs=64k count=1000000 iflag=count_bytes status=none; : > /run/gate-rsync-cut; exec sleep 600; } |
    /usr/bin/rsync "$@"
"#;
    interrupted_then_rerun(
        "rsync",
        |server, _| {
            std::fs::write(server.host_path("/usr/local/bin/rsync"), WRAPPER).unwrap();
            server.exec_ok("chmod +x /usr/local/bin/rsync").unwrap();
        },
        // The cut is reached, and rsync has begun b (its temporary copy exists, wherever
        // rsync keeps it, with what rsync has flushed of b's first bytes, maybe none).
        |server| {
            server
                .exec(&format!(
                    "test -e /run/gate-rsync-cut && find {SERIES} -type f -name '*b.whl.*' | grep -q ."
                ))
                .status
                .success()
        },
        |server| {
            server.exec_ok("rm /usr/local/bin/rsync").unwrap();
        },
    )
    .await;
}
