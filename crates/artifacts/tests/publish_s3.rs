//! The `s3` publisher against a real S3 server (`s3s-fs` from tests/harness, SigV4 auth):
//! multipart uploads, checksums, an object changed under the publisher, the expiry as the
//! server keeps it, the replace rule, wrong credentials, an interrupted publish and its
//! rerun. (Credentials from the environment: `publish_s3_env.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::s3_setup::{KEY, SECRET, assert_objects_whole, client, config, source};
use common::wait_until;
use gate_artifacts::manifest::hash_file;
use gate_artifacts::{Manifest, S3Publisher};
use gate_core::testkit::LocalStage;
use gate_core::{ArtifactPublisher, Secret, Stage};
use gate_test_harness::S3Server;
use tokio_util::sync::CancellationToken;

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

#[tokio::test]
async fn s3_an_object_changed_before_the_final_check_fails_the_publish_naming_it() {
    let s3 = S3Server::start(KEY, SECRET).unwrap();
    s3.create_bucket("artifacts").unwrap();
    let stage = LocalStage::new(1, Stage::Publish).await;
    let src = stage.dir.path().join("src");
    source(&src, 300);
    let mut cfg = config(&s3, &src, "chk");
    cfg.parallel = 1;
    let cx = stage.cx.clone();
    let publisher = S3Publisher::new(cfg);
    let publishing = tokio::spawn(async move { publisher.publish(&cx).await });
    // One at a time, 301 objects: the first ones are in long before the check at the end.
    let changed = s3.object_path("artifacts", "chk/logs/f000.log");
    wait_until(Duration::from_secs(30), "the first objects", || {
        s3.keys("artifacts").len() >= 20
    })
    .await;
    let mut stored = std::fs::read(&changed).unwrap();
    stored.extend_from_slice(b"not what gate sent\n");
    std::fs::write(&changed, stored).unwrap();

    let error = publishing.await.unwrap().unwrap_err().to_string();
    assert!(
        error.contains("the upload does not match the manifest")
            && error.contains("chk/logs/f000.log (5019 bytes")
            && error.contains("expected 5000 bytes"),
        "{error}"
    );
    assert!(
        !error.contains("f001.log"),
        "only the changed object: {error}"
    );
    assert!(
        !s3.keys("artifacts")
            .contains(&"chk/gate-manifest.json".to_owned()),
        "no manifest goes up"
    );
    assert!(
        !stage.cx.artifacts_dir.join("published-s3.json").exists(),
        "nothing is recorded as published"
    );
}

#[tokio::test]
async fn s3_expiry_is_on_every_object_as_the_server_keeps_it() {
    let s3 = S3Server::start(KEY, SECRET).unwrap();
    s3.create_bucket("artifacts").unwrap();
    let stage = LocalStage::new(1, Stage::Publish).await;
    let src = stage.dir.path().join("src");
    source(&src, 2);
    let mut cfg = config(&s3, &src, "exp");
    cfg.expiry_days = Some(7);
    let before = time::OffsetDateTime::now_utc();
    S3Publisher::new(cfg).publish(&stage.cx).await.unwrap();
    let after = time::OffsetDateTime::now_utc();

    let published: serde_json::Value = serde_json::from_slice(
        &std::fs::read(stage.cx.artifacts_dir.join("published-s3.json")).unwrap(),
    )
    .unwrap();
    // s3s-fs keeps no lifecycle rules, so gate says it set an `Expires` on each object.
    assert_eq!(
        published["expiry"], "Expires set 7 days ahead on each object",
        "{published}"
    );
    let reader = client(&s3);
    assert!(reader.get_bucket_lifecycle().await.is_err());
    let keys = s3.keys("artifacts");
    assert_eq!(
        keys,
        [
            "exp/gate-manifest.json",
            "exp/logs/deep/big.bin",
            "exp/logs/f000.log",
            "exp/logs/f001.log"
        ]
    );
    // Every object, the one sent in parts and the manifest too, carries it on the server.
    for key in &keys {
        let (head, status) = reader.head_object(key).await.unwrap();
        assert_eq!(status, 200, "{key}");
        let expires = head
            .expires
            .unwrap_or_else(|| panic!("{key} has no Expires"));
        let at = time::OffsetDateTime::parse(
            &expires.replace(" GMT", " +0000"),
            &time::format_description::well_known::Rfc2822,
        )
        .unwrap_or_else(|e| panic!("{key}: Expires `{expires}`: {e}"));
        let (earliest, latest) = (
            before + time::Duration::days(7) - time::Duration::seconds(1),
            after + time::Duration::days(7) + time::Duration::seconds(1),
        );
        assert!(
            earliest <= at && at <= latest,
            "{key}: Expires {at}, not 7 days ahead"
        );
    }
}
