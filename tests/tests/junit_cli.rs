//! `gate junit convert | merge | summary` on a real subunit v2 stream made by
//! python-subunit (the virtualenv scripts/test builds).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use gate_core::junit::read_counts;
use gate_tests::{Workspace, repo_root, text};

fn venv() -> PathBuf {
    let venv = std::env::var_os("GATE_SUBUNIT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/subunit-venv"));
    assert!(
        venv.join("bin/python").exists(),
        "python-subunit is missing at {}: run scripts/test",
        venv.display()
    );
    venv
}

fn stream(dir: &Path) -> PathBuf {
    std::fs::write(
        dir.join("cli_tests.py"),
        "import unittest\nclass T(unittest.TestCase):\n    def test_ok(self): pass\n    def test_bad(self): self.fail('nope')\n    @unittest.skip('later')\n    def test_later(self): pass\n",
    )
    .unwrap();
    let out = std::process::Command::new(venv().join("bin/python"))
        .args(["-m", "subunit.run", "cli_tests"])
        .current_dir(dir)
        .env("PYTHONPATH", dir)
        .output()
        .unwrap();
    let path = dir.join("stream.subunit");
    std::fs::write(&path, out.stdout).unwrap();
    path
}

#[test]
fn convert_merge_and_summary_work_on_a_real_stream() {
    let ws = Workspace::new();
    let input = stream(ws.path());
    let out = ws.run(&[
        "junit",
        "convert",
        "--suite",
        "unit",
        input.to_str().unwrap(),
        "a.xml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let a = read_counts(&ws.path().join("a.xml")).unwrap();
    assert_eq!((a.tests, a.failures, a.skipped), (3, 1, 1));

    let piped = ws
        .gate()
        .args(["junit", "convert", "-", "b.xml"])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert_eq!(piped.status.code(), Some(0), "{}", text(&piped));

    let out = ws.run(&["junit", "merge", "-o", "all.xml", "a.xml", "b.xml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let all = read_counts(&ws.path().join("all.xml")).unwrap();
    assert_eq!((all.tests, all.failures, all.skipped), (6, 2, 2));

    let out = ws.run(&["junit", "summary", "all.xml"]);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.starts_with("6 tests: 2 passed, 2 failed, 0 errors, 2 skipped"),
        "{summary}"
    );
    assert!(
        summary.contains("failed cli_tests.T.test_bad: AssertionError: nope"),
        "{summary}"
    );

    std::fs::write(ws.path().join("broken.xml"), "<html>502</html>").unwrap();
    let out = ws.run(&["junit", "merge", "-o", "x.xml", "a.xml", "broken.xml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.xml"));
}
