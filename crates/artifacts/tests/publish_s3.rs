//! The `s3` publisher against a real S3 server (`s3s-fs` from tests/harness, SigV4 auth):
//! multipart uploads, checksums, the replace rule, wrong credentials, an interrupted
//! publish and its rerun.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::wait_until;
use gate_artifacts::manifest::hash_file;
use gate_artifacts::{Manifest, S3Config, S3Publisher};
use gate_core::testkit::LocalStage;
use gate_core::{ArtifactPublisher, Secret, Stage};
use gate_test_harness::S3Server;
use tokio_util::sync::CancellationToken;

const KEY: &str = "AKIDGATETEST";
const SECRET: &str = "gate-test-secret-key-7f3a";

fn config(s3: &S3Server, source: &Path, prefix: &str) -> S3Config {
    let toml = format!(
        r#"
source = "{}"
on = "local"
bucket = "artifacts"
prefix = "{prefix}"
endpoint = "{}"
access_key = {{ secret = "{}" }}
secret_key = {{ secret = "{}" }}
multipart_threshold_mb = 5
part_size_mb = 5
backoff_ms = 10
"#,
        source.display(),
        s3.endpoint(),
        s3.access_key(),
        s3.secret_key()
    );
    gate_core::BackendConfig::from_toml("publisher", "s3", &toml)
        .unwrap()
        .parse()
        .unwrap()
}

/// A source tree: `small` files of 10 KB and one 12 MB file (three parts).
fn source(dir: &Path, small: usize) {
    std::fs::create_dir_all(dir.join("logs/deep")).unwrap();
    for n in 0..small {
        std::fs::write(
            dir.join(format!("logs/f{n:03}.log")),
            format!("{n}\n").repeat(2500),
        )
        .unwrap();
    }
    let big: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("logs/deep/big.bin"), big).unwrap();
}

/// Every object under `prefix` equals its source file (none is partial).
fn assert_objects_whole(s3: &S3Server, source: &Path, prefix: &str) -> usize {
    let keys = s3.keys("artifacts");
    let mut seen = 0;
    for key in keys.iter().filter(|k| k.starts_with(prefix)) {
        let relative = &key[prefix.len()..];
        if relative == "gate-manifest.json" {
            continue;
        }
        let stored = hash_file(&s3.object_path("artifacts", key)).unwrap();
        assert_eq!(
            stored,
            hash_file(&source.join(relative)).unwrap(),
            "{key} is partial"
        );
        seen += 1;
    }
    seen
}

#[tokio::test]
async fn s3_publish_uploads_in_parts_verifies_and_reports_urls() {
    let s3 = S3Server::start(KEY, SECRET).unwrap();
    s3.create_bucket("artifacts").unwrap();
    let stage = LocalStage::new(1, Stage::Publish).await;
    let src = stage.dir.path().join("src");
    source(&src, 20);
    let mut cfg = config(&s3, &src, "series-a");
    cfg.expiry_days = Some(7);
    S3Publisher::new(cfg.clone())
        .publish(&stage.cx)
        .await
        .unwrap();

    assert_eq!(assert_objects_whole(&s3, &src, "series-a/"), 21);
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(s3.object_path("artifacts", "series-a/gate-manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest.files.len(), 21);
    // The manifest's checksums (taken from the bytes as they were sent) are the objects'.
    for entry in &manifest.files {
        let stored = hash_file(&s3.object_path("artifacts", &format!("series-a/{}", entry.path)));
        assert_eq!(
            stored.unwrap(),
            (entry.size, entry.sha256.clone()),
            "{}",
            entry.path
        );
    }
    let big = manifest
        .files
        .iter()
        .find(|f| f.path == "logs/deep/big.bin")
        .unwrap();
    assert_eq!(big.size, 12 * 1024 * 1024);
    let published: serde_json::Value = serde_json::from_slice(
        &std::fs::read(stage.cx.artifacts_dir.join("published-s3.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(published["uploaded"], 21);
    let urls = published["urls"].to_string();
    assert!(
        urls.contains(&format!(
            "{}/artifacts/series-a/logs/deep/big.bin",
            s3.endpoint()
        )),
        "{urls}"
    );
    assert!(published["expiry"].as_str().unwrap().contains("7 days"));

    // Again with the same content: nothing to upload, nothing refused.
    S3Publisher::new(cfg).publish(&stage.cx).await.unwrap();
    let again: serde_json::Value = serde_json::from_slice(
        &std::fs::read(stage.cx.artifacts_dir.join("published-s3.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (again["uploaded"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(21))
    );
}

#[tokio::test]
async fn s3_replace_false_refuses_to_overwrite_changed_objects() {
    let s3 = S3Server::start(KEY, SECRET).unwrap();
    s3.create_bucket("artifacts").unwrap();
    let stage = LocalStage::new(1, Stage::Publish).await;
    let src = stage.dir.path().join("src");
    source(&src, 3);
    let cfg = config(&s3, &src, "rel");
    S3Publisher::new(cfg.clone())
        .publish(&stage.cx)
        .await
        .unwrap();
    std::fs::write(src.join("logs/f001.log"), "changed\n").unwrap();
    let error = S3Publisher::new(cfg.clone())
        .publish(&stage.cx)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("replace") && error.contains("rel/logs/f001.log"),
        "{error}"
    );
    let stored = std::fs::read_to_string(s3.object_path("artifacts", "rel/logs/f001.log")).unwrap();
    assert_ne!(stored, "changed\n", "the existing object is untouched");
    let mut replacing = cfg;
    replacing.replace = true;
    S3Publisher::new(replacing)
        .publish(&stage.cx)
        .await
        .unwrap();
    let stored = std::fs::read_to_string(s3.object_path("artifacts", "rel/logs/f001.log")).unwrap();
    assert_eq!(stored, "changed\n");
}

#[tokio::test]
async fn s3_wrong_credentials_fail_clearly_without_showing_the_secret() {
    let s3 = S3Server::start(KEY, SECRET).unwrap();
    s3.create_bucket("artifacts").unwrap();
    let stage = LocalStage::new(1, Stage::Publish).await;
    let src = stage.dir.path().join("src");
    source(&src, 1);
    let mut cfg = config(&s3, &src, "x");
    let wrong = "wrong-secret-value-c0ffee";
    cfg.secret_key = Some(Secret::new(wrong));
    let started = std::time::Instant::now();
    let error = S3Publisher::new(cfg.clone())
        .publish(&stage.cx)
        .await
        .unwrap_err();
    let shown = format!("{error} {error:?} {cfg:?}");
    assert!(shown.contains("refused the credentials (403"), "{shown}");
    assert!(!shown.contains(wrong) && !shown.contains(SECRET), "{shown}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a refusal is not retried"
    );
    assert!(s3.keys("artifacts").is_empty());
}

#[tokio::test]
async fn s3_publish_interrupted_half_way_shows_no_partial_object_and_a_rerun_completes() {
    let s3 = S3Server::start(KEY, SECRET).unwrap();
    s3.create_bucket("artifacts").unwrap();
    let mut stage = LocalStage::new(1, Stage::Publish).await;
    let src = stage.dir.path().join("src");
    source(&src, 300);
    let mut cfg = config(&s3, &src, "int");
    cfg.parallel = 2;
    let cancel = CancellationToken::new();
    stage.cx.cancel = cancel.clone();
    let cx = stage.cx.clone();
    let publisher = S3Publisher::new(cfg.clone());
    let publishing = tokio::spawn(async move { publisher.publish(&cx).await });
    wait_until(Duration::from_secs(30), "the first objects", || {
        s3.keys("artifacts").len() >= 20
    })
    .await;
    cancel.cancel();
    let result = publishing.await.unwrap();
    assert!(result.unwrap_err().is_cancelled());
    let first = assert_objects_whole(&s3, &src, "int/");
    assert!(first < 301, "interrupted half way ({first} objects)");
    assert!(
        !s3.keys("artifacts")
            .contains(&"int/gate-manifest.json".to_owned())
    );

    stage.cx.cancel = CancellationToken::new();
    S3Publisher::new(cfg).publish(&stage.cx).await.unwrap();
    assert_eq!(assert_objects_whole(&s3, &src, "int/"), 301);
    assert!(
        s3.keys("artifacts")
            .contains(&"int/gate-manifest.json".to_owned())
    );
}
