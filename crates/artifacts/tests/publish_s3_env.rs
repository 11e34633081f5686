//! The `s3` publisher with no credentials in its config: it takes `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` from the environment, and never shows
//! the secret. The variables are process-wide and setting them is `unsafe` (forbidden
//! here), so each case runs this test binary again, with them set, for the one test
//! below that publishes; the real S3 server runs in the parent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Output;

use common::s3_setup::{KEY, SECRET, assert_objects_whole, config_at, source};
use gate_artifacts::S3Publisher;
use gate_core::testkit::LocalStage;
use gate_core::{ArtifactPublisher, Stage};
use gate_test_harness::S3Server;

/// The test the parent runs in a child process.
const CHILD: &str = "child_publishes_with_only_the_environment_credentials";
/// Where the child publishes to, and what.
const ENDPOINT_VAR: &str = "GATE_TEST_S3_ENDPOINT";
const SOURCE_VAR: &str = "GATE_TEST_S3_SOURCE";

const TOKEN: &str = "gate-test-session-token-5d1e";

/// Runs [`CHILD`] with `aws` as its only AWS variables; gives what it did, stdout and
/// stderr as one text.
fn publish_in_child(s3: &S3Server, src: &Path, aws: &[(&str, &str)]) -> (Output, String) {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args([
            CHILD,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENDPOINT_VAR, s3.endpoint())
        .env(SOURCE_VAR, src);
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
    ] {
        child.env_remove(var);
    }
    child.envs(aws.iter().copied());
    let out = child.output().unwrap();
    let shown = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, shown)
}

#[test]
#[ignore = "run by the other tests of this file, in a child process with the AWS variables set"]
fn child_publishes_with_only_the_environment_credentials() {
    let Ok(endpoint) = std::env::var(ENDPOINT_VAR) else {
        return;
    };
    let src = std::path::PathBuf::from(std::env::var(SOURCE_VAR).unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let stage = LocalStage::new(1, Stage::Publish).await;
        let cfg = config_at(&endpoint, &src, "env", None);
        assert!(cfg.access_key.is_none() && cfg.secret_key.is_none());
        let publisher = S3Publisher::new(cfg);
        println!("publisher: {publisher:?}");
        match publisher.publish(&stage.cx).await {
            Ok(()) => println!(
                "published: {}",
                std::fs::read_to_string(stage.cx.artifacts_dir.join("published-s3.json")).unwrap()
            ),
            Err(e) => panic!("publish failed: {e} ({e:?})"),
        }
    });
}

#[test]
fn s3_credentials_from_the_aws_environment_publish_without_showing_the_secret() {
    let s3 = S3Server::start(KEY, SECRET).unwrap();
    s3.create_bucket("artifacts").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    source(&src, 3);
    let (out, shown) = publish_in_child(
        &s3,
        &src,
        &[
            ("AWS_ACCESS_KEY_ID", KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_SESSION_TOKEN", TOKEN),
        ],
    );
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("\"uploaded\": 4"), "{shown}");
    assert_eq!(assert_objects_whole(&s3, &src, "env/"), 4);
    assert!(
        s3.keys("artifacts")
            .contains(&"env/gate-manifest.json".to_owned())
    );
    assert!(!shown.contains(SECRET) && !shown.contains(TOKEN), "{shown}");
}

#[test]
fn s3_a_wrong_secret_in_the_environment_is_refused_without_showing_it() {
    let s3 = S3Server::start(KEY, SECRET).unwrap();
    s3.create_bucket("artifacts").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    source(&src, 1);
    let wrong = "wrong-env-secret-9b4c";
    let (out, shown) = publish_in_child(
        &s3,
        &src,
        &[("AWS_ACCESS_KEY_ID", KEY), ("AWS_SECRET_ACCESS_KEY", wrong)],
    );
    assert!(!out.status.success(), "{shown}");
    assert!(shown.contains("refused the credentials (403"), "{shown}");
    assert!(!shown.contains(wrong) && !shown.contains(SECRET), "{shown}");
    assert!(s3.keys("artifacts").is_empty());
}

#[test]
fn s3_without_credentials_anywhere_says_where_to_put_them() {
    let s3 = S3Server::start(KEY, SECRET).unwrap();
    s3.create_bucket("artifacts").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    source(&src, 1);
    let (out, shown) = publish_in_child(&s3, &src, &[]);
    assert!(!out.status.success(), "{shown}");
    assert!(
        shown.contains("no credentials")
            && shown.contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        "{shown}"
    );
    assert!(s3.keys("artifacts").is_empty());
}
