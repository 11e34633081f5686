//! The subunit v2 → JUnit converter against real python-subunit: streams made by
//! `python -m subunit.run` over a small real test suite (passes, failures, errors, skips,
//! expected failures, unexpected successes, attachments), compared case by case with what
//! `subunit2junitxml` makes of the same stream; corrupt and truncated streams.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use gate_core::junit::read_counts;
use gate_testers::subunit::convert;
use quick_xml::events::Event;

const SUITE: &str = r#"
import unittest
import testtools
from testtools import content


class Plain(unittest.TestCase):
    def test_pass(self):
        pass

    def test_fail(self):
        self.assertEqual(1, 2, "one is not two")

    def test_error(self):
        raise RuntimeError("boom <&> \"quoted\" ]]>")

    @unittest.skip("not <today>")
    def test_skip(self):
        pass

    @unittest.expectedFailure
    def test_xfail(self):
        self.fail("expected")

    @unittest.expectedFailure
    def test_uxsuccess(self):
        pass


class Detailed(testtools.TestCase):
    def test_with_log(self):
        self.addDetail("log", content.text_content("line one\nline two"))
        self.addDetail("short", content.text_content("one line"))
        self.fail("with details")

    def test_binary_detail(self):
        self.addDetail("blob", content.Content(content.ContentType("application", "octet-stream"), lambda: [b"\x00\x01"]))
        self.fail("binary")
"#;

/// The virtualenv with python-subunit and junitxml that scripts/test builds.
fn venv() -> PathBuf {
    let venv = std::env::var_os("GATE_SUBUNIT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/subunit-venv"));
    assert!(
        venv.join("bin/subunit2junitxml").exists(),
        "python-subunit is missing at {}: run scripts/test (it installs it) or set GATE_SUBUNIT_VENV",
        venv.display()
    );
    venv
}

/// A real subunit v2 stream of SUITE.
fn real_stream(dir: &Path) -> Vec<u8> {
    std::fs::write(dir.join("sample_tests.py"), SUITE).unwrap();
    let out = Command::new(venv().join("bin/python"))
        .args(["-m", "subunit.run", "sample_tests"])
        .current_dir(dir)
        .env("PYTHONPATH", dir)
        .output()
        .unwrap();
    assert!(
        !out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// (classname, name) → (outcome, text) for every testcase of a JUnit file.
fn cases(xml: &str) -> BTreeMap<(String, String), (String, String)> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut cases = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let mut outcome = String::new();
    let mut text = String::new();
    let attr = |e: &quick_xml::events::BytesStart<'_>, name: &str| {
        e.attributes()
            .flatten()
            .find(|a| a.key.as_ref() == name.as_bytes())
            .map(|a| a.unescape_value().unwrap().into_owned())
            .unwrap_or_default()
    };
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"testcase" => {
                let key = (attr(&e, "classname"), attr(&e, "name"));
                outcome = "pass".into();
                text.clear();
                current = Some(key.clone());
                cases.insert(key, ("pass".into(), String::new()));
            }
            Event::Start(e) | Event::Empty(e)
                if matches!(e.name().as_ref(), b"failure" | b"error" | b"skipped") =>
            {
                outcome = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if let Some(key) = &current {
                    cases.insert(key.clone(), (outcome.clone(), String::new()));
                }
            }
            Event::Text(t) => text.push_str(&t.unescape().unwrap()),
            Event::End(e) if matches!(e.name().as_ref(), b"failure" | b"error" | b"skipped") => {
                if let Some(key) = &current {
                    let body = text
                        .trim()
                        .trim_start_matches("testtools.testresult.real._StringException: ")
                        .trim()
                        .to_owned();
                    cases.insert(key.clone(), (outcome.clone(), body));
                }
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    cases
}

#[test]
fn junit_agrees_with_subunit2junitxml_on_every_test_outcome_and_message() {
    let dir = tempfile::tempdir().unwrap();
    let stream = real_stream(dir.path());
    let theirs = Command::new(venv().join("bin/subunit2junitxml"))
        .stdin(
            std::fs::File::open({
                let p = dir.path().join("stream.bin");
                std::fs::write(&p, &stream).unwrap();
                p
            })
            .unwrap(),
        )
        .output()
        .unwrap();
    let theirs = String::from_utf8(theirs.stdout).unwrap();

    let ours_path = dir.path().join("ours.xml");
    let report = convert(stream.as_slice(), &ours_path, "sample").unwrap();
    let ours = std::fs::read_to_string(&ours_path).unwrap();

    let (theirs, ours_cases) = (cases(&theirs), cases(&ours));
    assert_eq!(theirs.len(), 8, "{theirs:#?}");
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ours_cases.keys().collect::<Vec<_>>(),
        "the same test ids, split the same way"
    );
    for (key, (outcome, text)) in &theirs {
        let (our_outcome, our_text) = &ours_cases[key];
        assert_eq!(our_outcome, outcome, "{key:?}");
        assert_eq!(our_text, text, "{key:?}: the message differs");
    }
    assert_eq!(report.tests, 8);
    assert_eq!(
        report.failures, 5,
        "fail, error, uxsuccess and two detailed failures"
    );
    assert_eq!(report.skipped, 1);
    assert!(report.problems.is_empty());
    let counts = read_counts(&ours_path).unwrap();
    assert_eq!((counts.tests, counts.failures, counts.skipped), (8, 5, 1));
    assert!(
        ours.contains("RuntimeError: boom &lt;&amp;&gt; \"quoted\" ]]&gt;"),
        "{ours}"
    );
    assert!(ours.contains("time=\""), "{ours}");
}

#[test]
fn corrupt_packets_are_reported_and_skipped_and_the_rest_converts() {
    let dir = tempfile::tempdir().unwrap();
    let mut stream = real_stream(dir.path());
    // Flip a byte inside the third packet's body: its CRC no longer matches.
    let third = stream
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == 0xB3)
        .map(|(i, _)| i)
        .nth(2)
        .unwrap();
    stream[third + 8] ^= 0xFF;
    // And some non-subunit noise between packets.
    stream.splice(0..0, b"stray output\n".iter().copied());
    let out = dir.path().join("corrupt.xml");
    let report = convert(stream.as_slice(), &out, "sample").unwrap();
    assert!(!report.problems.is_empty());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.reason.contains("checksum")),
        "{:?}",
        report.problems
    );
    let counts = read_counts(&out).unwrap();
    assert!(
        counts.tests >= 8,
        "the other tests still convert: {counts:?}"
    );
    assert_eq!(counts.errors, 1, "the problems are one error case");
    let xml = std::fs::read_to_string(&out).unwrap();
    assert!(
        xml.contains(&format!("byte {}", third + "stray output\n".len())),
        "{xml}"
    );
}

#[test]
fn a_truncated_stream_still_gives_valid_xml_for_what_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let stream = real_stream(dir.path());
    let mut last_tests = 0;
    for cut in (1..stream.len()).step_by(37) {
        let out = dir.path().join("cut.xml");
        let report = convert(&stream[..cut], &out, "sample").unwrap();
        let counts = read_counts(&out).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(counts.tests, report.tests);
        assert!(
            counts.tests + 1 >= last_tests,
            "cut at {cut}: fewer tests than a shorter cut"
        );
        last_tests = counts.tests;
    }
    // Garbage that merely starts with the signature byte.
    let out = dir.path().join("garbage.xml");
    let report = convert(&[0xB3, 0xFF, 0xFF, 0xFF, 0x01, 0x02][..], &out, "x").unwrap();
    assert_eq!(report.problems.len(), 1);
    assert!(read_counts(&out).is_ok());
}
