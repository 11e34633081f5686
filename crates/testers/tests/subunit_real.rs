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

/// The subunit v2 stream a python script writes with python-subunit's
/// `StreamResultToBytes` (bound to `out`; `ts(seconds, microseconds)` makes a UTC time).
fn scripted_stream(dir: &Path, body: &str) -> Vec<u8> {
    let script = format!(
        "import sys, datetime\nfrom subunit.v2 import StreamResultToBytes\n\
         def ts(s, us=0):\n    return datetime.datetime.fromtimestamp(s, datetime.timezone.utc).replace(microsecond=us)\n\
         out = StreamResultToBytes(sys.stdout.buffer)\n{body}"
    );
    let path = dir.join("write_stream.py");
    std::fs::write(&path, script).unwrap();
    let out = Command::new(venv().join("bin/python"))
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// What `subunit2junitxml` makes of `stream`.
fn subunit2junitxml(stream: &[u8]) -> String {
    use std::io::Write;
    let theirs = Command::new(venv().join("bin/subunit2junitxml"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(stream)?;
            child.wait_with_output()
        })
        .unwrap();
    // It exits 1 when a test failed, so only its output says whether it worked.
    let xml = String::from_utf8(theirs.stdout).unwrap();
    assert!(
        xml.contains("<testsuite"),
        "{}",
        String::from_utf8_lossy(&theirs.stderr)
    );
    xml
}

/// (classname, name) → the `time` attribute of every testcase, as written.
fn times(xml: &str) -> BTreeMap<(String, String), String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut times = BTreeMap::new();
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"testcase" => {
                let attr = |name: &str| {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == name.as_bytes())
                        .map(|a| a.unescape_value().unwrap().into_owned())
                        .unwrap()
                };
                times.insert((attr("classname"), attr("name")), attr("time"));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    times
}

fn key(classname: &str, name: &str) -> (String, String) {
    (classname.to_owned(), name.to_owned())
}

#[test]
fn a_test_time_is_the_difference_of_its_start_and_end_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let stream = scripted_stream(
        dir.path(),
        r#"
for name, start, end in [
    ("test_whole", (1000, 0), (1002, 500000)),         # 2.5 s
    ("test_carry", (1010, 900000), (1012, 100000)),    # 1.2 s across a second
    ("test_short", (1020, 250000), (1020, 251000)),    # 1 ms
    ("test_long", (1700000000, 0), (1700003725, 125000)),  # 1 h 2 min 5.125 s
]:
    out.status(test_id="m.C." + name, test_status="inprogress", timestamp=ts(*start))
    out.status(test_id="m.C." + name, test_status="success", timestamp=ts(*end))
# Ended with a traceback on its last packet (the converter's other path).
out.status(test_id="m.C.test_failed", test_status="inprogress", timestamp=ts(2000, 100000))
out.status(test_id="m.C.test_failed", test_status="fail", file_name="traceback",
           file_bytes=b"boom", mime_type="text/plain", eof=True, timestamp=ts(2003, 350000))
# No timestamps at all: no time to tell.
out.status(test_id="m.C.test_untimed", test_status="inprogress")
out.status(test_id="m.C.test_untimed", test_status="success")
"#,
    );
    let out = dir.path().join("times.xml");
    let report = convert(stream.as_slice(), &out, "timed").unwrap();
    assert_eq!((report.tests, report.failures), (6, 1));
    let xml = std::fs::read_to_string(&out).unwrap();
    let expected = [
        ("test_whole", "2.500"),
        ("test_carry", "1.200"),
        ("test_short", "0.001"),
        ("test_long", "3725.125"),
        ("test_failed", "3.250"),
        ("test_untimed", "0.000"),
    ];
    let times = times(&xml);
    assert_eq!(times.len(), expected.len(), "{xml}");
    for (name, time) in expected {
        assert_eq!(times[&key("m.C", name)], time, "{name}: {xml}");
    }
    // The suite's time is their sum, and the cases read back with the same times.
    assert!(xml.contains(" time=\"3732.076\""), "{xml}");
    let cases = gate_core::report::read_cases(&out).unwrap();
    let long = cases.iter().find(|c| c.name == "test_long").unwrap();
    assert!((long.seconds - 3725.125).abs() < 1e-9, "{long:?}");
}

#[test]
fn a_test_only_listed_as_existing_is_not_a_case_and_one_that_then_runs_is_one() {
    let dir = tempfile::tempdir().unwrap();
    let stream = scripted_stream(
        dir.path(),
        r#"
out.status(test_id="m.C.test_listed", test_status="exists", timestamp=ts(100))
out.status(test_id="m.C.test_ran", test_status="exists", timestamp=ts(100))
out.status(test_id="m.C.test_ran", test_status="inprogress", timestamp=ts(101))
out.status(test_id="m.C.test_ran", test_status="success", timestamp=ts(103, 500000))
"#,
    );
    let ours_path = dir.path().join("ours.xml");
    let report = convert(stream.as_slice(), &ours_path, "listed").unwrap();
    let ours = std::fs::read_to_string(&ours_path).unwrap();
    // subunit2junitxml agrees: enumeration is not a result.
    let theirs = subunit2junitxml(&stream);
    assert_eq!(
        cases(&ours).keys().collect::<Vec<_>>(),
        cases(&theirs).keys().collect::<Vec<_>>(),
        "ours: {ours}\ntheirs: {theirs}"
    );
    assert_eq!(
        (report.tests, report.failures, report.unfinished),
        (1, 0, 0),
        "{ours}"
    );
    // Its time runs from `inprogress`, not from when it was listed.
    assert_eq!(
        times(&ours),
        BTreeMap::from([(key("m.C", "test_ran"), "2.500".to_owned())])
    );
}

#[test]
fn a_test_that_started_and_never_ended_is_a_failure_saying_it_did_not_finish() {
    let dir = tempfile::tempdir().unwrap();
    // A run that crashed half way: one test done, two in flight when the stream stops (one
    // with timestamps, one without: python-subunit writes none unless asked to).
    let stream = scripted_stream(
        dir.path(),
        r#"
out.status(test_id="m.C.test_done", test_status="inprogress", timestamp=ts(10))
out.status(test_id="m.C.test_done", test_status="success", timestamp=ts(11))
out.status(test_id="m.C.test_hung", test_status="inprogress", timestamp=ts(12))
out.status(test_id="m.C.test_hung", file_name="stdout", file_bytes=b"half a line",
           mime_type="text/plain")
out.status(test_id="m.C.test_untimed", test_status="inprogress")
"#,
    );
    let ours_path = dir.path().join("ours.xml");
    let report = convert(stream.as_slice(), &ours_path, "crash").unwrap();
    let ours = std::fs::read_to_string(&ours_path).unwrap();
    assert_eq!(
        (
            report.tests,
            report.failures,
            report.errors,
            report.unfinished
        ),
        (3, 2, 0, 2),
        "{ours}"
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let ours_cases = cases(&ours);
    for name in ["test_hung", "test_untimed"] {
        let (outcome, text) = &ours_cases[&key("m.C", name)];
        assert_eq!(outcome, "failure", "{name}: {ours}");
        assert!(
            text.contains("the test did not finish: the stream ended while it ran"),
            "{name}: {text}"
        );
    }
    assert!(
        ours_cases[&key("m.C", "test_hung")]
            .1
            .contains("stdout: {{{half a line}}}"),
        "what it wrote before the crash is kept: {ours}"
    );
    assert_eq!(ours_cases[&key("m.C", "test_done")].0, "pass");
    let counts = read_counts(&ours_path).unwrap();
    assert_eq!((counts.tests, counts.failures), (3, 2));
    // subunit2junitxml also reports both unfinished tests as failures.
    let theirs = subunit2junitxml(&stream);
    let theirs = cases(&theirs);
    let outcomes = |cases: &BTreeMap<(String, String), (String, String)>| {
        cases
            .iter()
            .map(|(k, (outcome, _))| (k.clone(), outcome.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(outcomes(&ours_cases), outcomes(&theirs));
}

#[test]
fn an_attachment_of_more_than_16_kib_takes_a_3_byte_length_and_converts_whole() {
    let dir = tempfile::tempdir().unwrap();
    // A packet of 16 KiB or more has a 3-byte length (the reader once had room for 2 and
    // panicked on it): a long traceback or log, as Tempest writes.
    let stream = scripted_stream(
        dir.path(),
        r#"
log = b"".join(b"log line %05d\n" % i for i in range(5000)) + b"the end"
out.status(test_id="m.C.test_big", test_status="inprogress", timestamp=ts(1))
out.status(test_id="m.C.test_big", test_status="fail", file_name="traceback",
           file_bytes=log, mime_type="text/plain", eof=True, timestamp=ts(2))
"#,
    );
    assert!(stream.len() > 70_000);
    let out = dir.path().join("big.xml");
    let report = convert(stream.as_slice(), &out, "big").unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!((report.tests, report.failures), (1, 1));
    let xml = std::fs::read_to_string(&out).unwrap();
    let (outcome, text) = &cases(&xml)[&key("m.C", "test_big")];
    assert_eq!(outcome, "failure");
    assert!(text.starts_with("log line 00000\n"), "{}", &text[..40]);
    assert!(text.contains("log line 04999\nthe end"));
    assert_eq!(text.lines().count(), 5001);
}
