//! The streamed archiver over SSH on real sshd hosts (tests/harness `SshFleet`): missing
//! paths, links to `/`, secrets left out, the size limit, a host dying mid-archive, the
//! manifest's checksums, and the stream's compression (zstd, else gzip). Needs root, sshd
//! and zstd.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{FleetStage, wait_until};
use gate_artifacts::{Manifest, StreamedArchiver, StreamedArchiverConfig};
use gate_core::{Archiver, Stage};

fn archiver(paths: &[&str], max_host_mb: u64) -> StreamedArchiver {
    StreamedArchiver::new(StreamedArchiverConfig {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        max_host_mb,
        ..StreamedArchiverConfig::default()
    })
}

fn archive_json(stage: &FleetStage) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(common::artifacts(stage).join("archive.json")).unwrap())
        .unwrap()
}

#[tokio::test]
async fn archive_lists_missing_paths_and_links_and_leaves_secrets_out() {
    let stage = FleetStage::start(2, Stage::Archive).await;
    let secret = gate_core::Secret::new("fleet-archive-password-5e1");
    stage
        .host(1)
        .exec_ok(&format!(
            "mkdir -p /var/log/gate-t /etc/gate-t/ssh /etc/gate-t/openstack_deploy /root/.ssh-t && \
             echo 'started ok' > /var/log/gate-t/app.log && \
             ln -s / /var/log/gate-t/root && \
             printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\\nhostkeydata\\n' > /etc/gate-t/ssh/ssh_host_ed25519_key && \
             echo 'ssh-ed25519 AAAA host' > /etc/gate-t/ssh/ssh_host_ed25519_key.pub && \
             echo 'keystone_auth_admin_password: topsecret' > /etc/gate-t/openstack_deploy/user_secrets.yml && \
             echo 'db_password={}' > /etc/gate-t/openstack_deploy/user_variables.yml && \
             printf -- '-----BEGIN RSA PRIVATE KEY-----\\nabc\\n' > /etc/gate-t/deploy-key",
            secret.expose()
        ))
        .unwrap();
    stage
        .host(2)
        .exec_ok("mkdir -p /var/log/gate-t && echo two > /var/log/gate-t/app.log")
        .unwrap();

    let report = archiver(&["/var/log/gate-t", "/etc/gate-t"], 200)
        .archive(&stage.stage.cx)
        .await
        .unwrap();

    let art = common::artifacts(&stage);
    let one = art.join("fleet-1");
    assert_eq!(
        std::fs::read_to_string(one.join("var/log/gate-t/app.log")).unwrap(),
        "started ok\n"
    );
    assert_eq!(
        std::fs::read_to_string(art.join("fleet-2/var/log/gate-t/app.log")).unwrap(),
        "two\n"
    );
    // The link to `/` is listed, never created nor followed.
    assert!(std::fs::symlink_metadata(one.join("var/log/gate-t/root")).is_err());
    let listing = archive_json(&stage);
    let links = listing[0]["links"].to_string();
    assert!(links.contains("var/log/gate-t/root -> /"), "{links}");
    // Secrets stay out: the host key, the secrets file, a private key by its content.
    assert!(!one.join("etc/gate-t/ssh/ssh_host_ed25519_key").exists());
    assert!(one.join("etc/gate-t/ssh/ssh_host_ed25519_key.pub").exists());
    assert!(
        !one.join("etc/gate-t/openstack_deploy/user_secrets.yml")
            .exists()
    );
    assert!(!one.join("etc/gate-t/deploy-key").exists());
    let variables =
        std::fs::read_to_string(one.join("etc/gate-t/openstack_deploy/user_variables.yml"))
            .unwrap();
    assert_eq!(variables, "db_password=***\n");
    let everything = Manifest::of_tree(art, &[], &Default::default()).unwrap();
    assert!(
        !everything.files.iter().any(|f| f.path.contains("secrets")),
        "{everything:?}"
    );
    // The missing path on host 2 is listed, not fatal.
    assert_eq!(report.missing, ["fleet-2:/etc/gate-t"]);
    // The manifest's checksums are those of the files.
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(art.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest.files.len() >= 4, "{manifest:?}");
    for entry in &manifest.files {
        let (size, sha) = gate_artifacts::manifest::hash_file(&art.join(&entry.path)).unwrap();
        assert_eq!(
            (size, sha.as_str()),
            (entry.size, entry.sha256.as_str()),
            "{}",
            entry.path
        );
    }
    let index = std::fs::read_to_string(art.join("index.html")).unwrap();
    assert!(
        index.contains("href=\"fleet-1/var/log/gate-t/app.log\""),
        "{index}"
    );
    assert!(index.contains("/etc/gate-t"), "the missing path is shown");
}

#[tokio::test]
async fn a_file_past_the_size_limit_stops_the_copy_and_keeps_what_fit() {
    let stage = FleetStage::start(1, Stage::Archive).await;
    let host = stage.host(1);
    host.exec_ok(
        "mkdir -p /var/log/small /var/log/grow && head -c 300000 /dev/urandom > /var/log/small/a.log && \
         head -c 500000 /dev/zero > /var/log/grow/big.log
         { while :; do head -c 200000 /dev/zero >> /var/log/grow/big.log; sleep 0.02; done; } \
             </dev/null >/dev/null 2>&1 &
         echo $! > /run/grower.pid",
    )
    .unwrap();
    wait_until(Duration::from_secs(20), "the file to pass 1 MB", || {
        host.exec("test $(stat -c %s /var/log/grow/big.log) -gt 1200000")
            .status
            .success()
    })
    .await;
    let report = archiver(&["/var/log/small", "/var/log/grow"], 1)
        .archive(&stage.stage.cx)
        .await;
    host.exec("kill $(cat /run/grower.pid)");
    let report = report.unwrap();
    let art = common::artifacts(&stage).join("fleet-1");
    assert_eq!(
        std::fs::metadata(art.join("var/log/small/a.log"))
            .unwrap()
            .len(),
        300_000
    );
    assert!(!art.join("var/log/grow/big.log").exists());
    assert_eq!(report.files, 1);
    let listing = archive_json(&stage);
    let limit = listing[0]["limit_hit"].as_str().unwrap();
    assert!(limit.contains("var/log/grow/big.log"), "{limit}");
    assert!(limit.contains("limit of 1000000 bytes"), "{limit}");
}

#[tokio::test]
async fn a_host_that_dies_mid_archive_is_reported_and_the_others_still_arrive() {
    let stage = FleetStage::start(3, Stage::Archive).await;
    for n in [1, 3] {
        stage
            .host(n)
            .exec_ok("mkdir -p /var/log/gate-t && echo fine > /var/log/gate-t/app.log")
            .unwrap();
    }
    // Host 2's tar stream stops after its first 2 MB (8 MB of random bytes cannot fit in
    // them, compressed or not) and hangs there, as a dying host's would: its sshd is then
    // killed with every session under it.
    let host2 = stage.host(2);
    host2
        .exec_ok(
            "mkdir -p /var/log/gate-t && head -c 8000000 /dev/urandom > /var/log/gate-t/huge.log",
        )
        .unwrap();
    std::fs::write(
        host2.host_path("/usr/local/bin/tar"),
        "#!/bin/sh
/usr/bin/tar \"$@\" | \
         { dd bs=64k count=2000000 iflag=count_bytes status=none; : > /run/gate-tar-cut; exec sleep 600; }\n",
    )
    .unwrap();
    host2.exec_ok("chmod +x /usr/local/bin/tar").unwrap();
    let cx = stage.stage.cx.clone();
    let archiving =
        tokio::spawn(async move { archiver(&["/var/log/gate-t"], 10_000).archive(&cx).await });
    let partial = common::artifacts(&stage).join("fleet-2/var/log/gate-t/huge.log");
    wait_until(
        Duration::from_secs(30),
        "host 2's stream to stop half way",
        || {
            host2.exec("test -e /run/gate-tar-cut").status.success()
                && std::fs::metadata(&partial).is_ok_and(|m| m.len() > 1_000_000)
        },
    )
    .await;
    assert!(!archiving.is_finished());
    host2.kill_sshd().unwrap();
    let result = tokio::time::timeout(Duration::from_secs(60), archiving)
        .await
        .expect("archive ends once the host is gone")
        .unwrap();
    let error = result.unwrap_err().to_string();
    assert!(error.contains("fleet-2"), "{error}");
    for n in [1, 3] {
        let file = common::artifacts(&stage).join(format!("fleet-{n}/var/log/gate-t/app.log"));
        assert_eq!(std::fs::read_to_string(file).unwrap(), "fine\n");
    }
    assert!(!partial.exists(), "the half file is not kept");
    let listing = archive_json(&stage);
    assert!(listing[1]["error"].as_str().unwrap().contains("fleet-2"));
    assert!(listing[0]["error"].is_null());
    let index = std::fs::read_to_string(common::artifacts(&stage).join("index.html")).unwrap();
    assert!(index.contains("Incomplete"), "{index}");
}

#[tokio::test]
async fn compression_is_zstd_where_the_host_has_it_else_gzip_and_none_when_asked() {
    let stage = FleetStage::start(2, Stage::Archive).await;
    let log: String = (0..20_000)
        .map(|n| format!("2024-05-01 12:00:{:02} INFO req-{n:08x} done\n", n % 60))
        .collect();
    for n in [1, 2] {
        let host = stage.host(n);
        host.exec_ok("mkdir -p /var/log/gate-t").unwrap();
        std::fs::write(host.host_path("/var/log/gate-t/app.log"), &log).unwrap();
    }
    // Host 2 has no zstd program.
    stage
        .host(2)
        .exec_ok("mv /usr/bin/zstd /usr/bin/zstd.gone")
        .unwrap();
    archiver(&["/var/log/gate-t"], 200)
        .archive(&stage.stage.cx)
        .await
        .unwrap();
    let listing = archive_json(&stage);
    assert_eq!(listing[0]["compression"], "zstd");
    assert_eq!(listing[1]["compression"], "gzip");
    for n in [1, 2] {
        let file = common::artifacts(&stage).join(format!("fleet-{n}/var/log/gate-t/app.log"));
        assert_eq!(std::fs::read_to_string(file).unwrap(), log, "fleet-{n}");
    }

    let plain = StreamedArchiver::new(StreamedArchiverConfig {
        paths: vec!["/var/log/gate-t".into()],
        compression: gate_artifacts::config::Compression::None,
        ..StreamedArchiverConfig::default()
    });
    plain.archive(&stage.stage.cx).await.unwrap();
    let listing = archive_json(&stage);
    assert_eq!(listing[0]["compression"], "none");
    let forced = StreamedArchiver::new(StreamedArchiverConfig {
        paths: vec!["/var/log/gate-t".into()],
        compression: gate_artifacts::config::Compression::Zstd,
        ..StreamedArchiverConfig::default()
    });
    let error = forced
        .archive(&stage.stage.cx)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("fleet-2") && error.contains("no `zstd` program"),
        "{error}"
    );
}
