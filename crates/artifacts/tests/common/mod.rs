//! What the tests share: a stage context whose hosts are a real sshd fleet (tests/harness),
//! reached over SSH; polling with a deadline; the setup of the `s3` publisher's tests
//! ([`s3_setup`]).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod s3_setup;

use std::path::Path;
use std::time::{Duration, Instant};

pub use gate_ssh::testkit::FleetStage;

/// The artifacts dir of `stage`.
pub fn artifacts(stage: &FleetStage) -> &Path {
    &stage.stage.cx.artifacts_dir
}

/// Polls `check` every 20 ms until it holds or `within` passes.
pub async fn wait_until(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
