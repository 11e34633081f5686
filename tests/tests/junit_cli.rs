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

/// The lines of `summary`'s "slowest:" block.
fn slowest_block(summary: &str) -> Vec<&str> {
    summary
        .split_once("\nslowest:\n")
        .map(|(_, rest)| rest.lines().take_while(|l| !l.is_empty()).collect())
        .unwrap_or_default()
}

#[test]
fn summary_lists_the_slowest_tests_slowest_first_with_their_times() {
    let ws = Workspace::new();
    // Tests of known durations, from the timestamps python-subunit writes into the stream.
    let script = r#"
import sys, datetime
from subunit.v2 import StreamResultToBytes
def ts(s, us=0):
    return datetime.datetime.fromtimestamp(s, datetime.timezone.utc).replace(microsecond=us)
out = StreamResultToBytes(sys.stdout.buffer)
for name, start, end, status in [
    ("test_a", (100, 0), (100, 500000), "success"),    # 0.5 s
    ("test_b", (200, 0), (203, 250000), "fail"),       # 3.25 s
    ("test_c", (300, 900000), (301, 900000), "success"),  # 1 s
    ("test_d", (400, 0), (400, 125000), "skip"),       # 0.125 s
]:
    out.status(test_id="m.C." + name, test_status="inprogress", timestamp=ts(*start))
    extra = {}
    if status == "fail":
        extra = dict(file_name="traceback", file_bytes=b"AssertionError: slow and wrong",
                     mime_type="text/plain", eof=True)
    out.status(test_id="m.C." + name, test_status=status, timestamp=ts(*end), **extra)
"#;
    let made = std::process::Command::new(venv().join("bin/python"))
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    std::fs::write(ws.path().join("timed.subunit"), &made.stdout).unwrap();
    let out = ws.run(&["junit", "convert", "timed.subunit", "timed.xml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A second file, so the order holds across files too.
    std::fs::write(
        ws.path().join("other.xml"),
        "<testsuite name=\"o\" tests=\"2\"><testcase classname=\"o.D\" name=\"test_two\" time=\"2.0\"/><testcase classname=\"o.D\" name=\"test_none\"/></testsuite>",
    )
    .unwrap();

    let out = ws.run(&["junit", "summary", "timed.xml", "other.xml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.starts_with("6 tests: 4 passed, 1 failed, 0 errors, 1 skipped\n"),
        "{summary}"
    );
    assert_eq!(
        slowest_block(&summary),
        [
            "      3.250s  m.C.test_b",
            "      2.000s  o.D.test_two",
            "      1.000s  m.C.test_c",
            "      0.500s  m.C.test_a",
            "      0.125s  m.C.test_d",
            "      0.000s  o.D.test_none",
        ],
        "{summary}"
    );
    assert!(
        summary.contains("\nfailures:\n  failed m.C.test_b: AssertionError: slow and wrong"),
        "{summary}"
    );

    let out = ws.run(&[
        "junit",
        "summary",
        "--slowest",
        "2",
        "timed.xml",
        "other.xml",
    ]);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        slowest_block(&summary),
        ["      3.250s  m.C.test_b", "      2.000s  o.D.test_two"],
        "{summary}"
    );

    let out = ws.run(&["junit", "summary", "--slowest", "0", "timed.xml"]);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!summary.contains("slowest"), "{summary}");
}
