//! Builds and runs the embedding example, as CI does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn the_embedded_pipeline_runs_green_and_leaves_no_host() {
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gate-embed-example"))
        .arg(work.path())
        .env_remove("JOB_NAME")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("exit 0"), "{stdout}");
    for stage in ["allocate", "deploy", "test", "cleanup"] {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(stage))
            .unwrap();
        assert!(line.contains("Passed"), "{line}");
    }
    // The tester's JUnit is there, with a case per host; the hosts are gone.
    let junit = std::fs::read_to_string(work.path().join("artifacts/results/embed.xml")).unwrap();
    assert_eq!(junit.matches("<testcase").count(), 2, "{junit}");
    let hosts: Vec<_> = std::fs::read_dir(work.path().join("hosts"))
        .unwrap()
        .collect();
    assert!(hosts.is_empty(), "left behind: {hosts:?}");
}
