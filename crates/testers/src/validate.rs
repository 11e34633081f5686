//! Every JUnit file a tester publishes is checked first ([`publish_junit`]): a file that
//! Jenkins' `junit` step would choke on is never silently dropped nor published as is. It is
//! kept as `<name>-broken.xml` beside the original path, and the original path gets a valid
//! JUnit report with one error case that names the file and says what is wrong with it.
//!
//! The check reads the file as a stream (memory does not grow with it) and accepts what
//! Jenkins accepts: well-formed XML whose one root is `<testsuites>` or `<testsuite>`,
//! suites inside suites only, `<testcase name="…">` inside a suite only, and
//! `<failure>`, `<error>`, `<skipped>` inside a test case only.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gate_core::junit::{CaseOutcome, CaseResult, write_suite};
use gate_core::{Error, Result, TestReport};
use quick_xml::events::{BytesStart, Event};

/// The suite (and class) name of the error report that replaces a broken file.
pub const BROKEN_SUITE: &str = "gate.junit";

/// Checks the JUnit file at `path`; returns its counts, or why it is not valid JUnit
/// (with the byte offset where that was found).
pub fn check_junit(path: &Path) -> Result<TestReport, String> {
    let file = File::open(path).map_err(|e| format!("cannot be read: {e}"))?;
    let mut reader = quick_xml::Reader::from_reader(BufReader::with_capacity(64 * 1024, file));
    reader.config_mut().check_end_names = true;
    let mut report = TestReport {
        junit_files: vec![path.to_owned()],
        ..TestReport::default()
    };
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut roots = 0usize;
    let mut buf = Vec::new();
    loop {
        let at = reader.buffer_position();
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("at byte {}: {e}", reader.error_position()))?;
        match &event {
            Event::Start(e) | Event::Empty(e) => {
                let name = e.name().as_ref().to_vec();
                if stack.is_empty() {
                    roots += 1;
                    if roots > 1 {
                        return Err(format!("at byte {at}: a second root element"));
                    }
                }
                check_element(e, &name, stack.last().map(Vec::as_slice))
                    .map_err(|m| format!("at byte {at}: {m}"))?;
                match name.as_slice() {
                    b"testcase" => report.tests += 1,
                    b"failure" => report.failures += 1,
                    b"error" => report.errors += 1,
                    b"skipped" => report.skipped += 1,
                    _ => {}
                }
                if matches!(event, Event::Start(_)) {
                    stack.push(name);
                }
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Text(t) => {
                let text = t
                    .unescape()
                    .map_err(|e| format!("at byte {at}: bad text: {e}"))?;
                if stack.is_empty() && !text.trim().is_empty() {
                    return Err(format!("at byte {at}: text outside the root element"));
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if roots == 0 {
        return Err("no <testsuites> or <testsuite> element (empty or not XML)".into());
    }
    if let Some(open) = stack.last() {
        return Err(format!(
            "the file ends inside <{}> (truncated?)",
            String::from_utf8_lossy(open)
        ));
    }
    Ok(report)
}

/// Where `name` may appear, and what it must carry.
fn check_element(e: &BytesStart<'_>, name: &[u8], parent: Option<&[u8]>) -> Result<(), String> {
    let mut has_name = false;
    for attr in e.attributes() {
        let attr = attr.map_err(|err| format!("a bad attribute: {err}"))?;
        attr.unescape_value()
            .map_err(|err| format!("a bad attribute value: {err}"))?;
        has_name |= attr.key.as_ref() == b"name";
    }
    let shown = String::from_utf8_lossy(name);
    let allowed = match name {
        b"testsuites" => parent.is_none(),
        b"testsuite" => matches!(parent, None | Some(b"testsuites") | Some(b"testsuite")),
        b"testcase" => parent == Some(b"testsuite"),
        b"failure" | b"error" | b"skipped" => parent == Some(b"testcase"),
        _ => parent.is_some(),
    };
    if !allowed {
        return Err(match parent {
            None => format!("the root element is <{shown}>, not <testsuites> or <testsuite>"),
            Some(p) => format!("<{shown}> inside <{}>", String::from_utf8_lossy(p)),
        });
    }
    if name == b"testcase" && !has_name {
        return Err("a <testcase> without a name".into());
    }
    Ok(())
}

/// Checks the JUnit file at `path` before it is published. A valid file is returned with
/// its counts. A broken one is renamed to `<stem>-broken.xml` (`-broken-2.xml`, … if taken)
/// and `path` becomes a valid report with one error case naming the file and the problem;
/// that report's counts are returned.
pub fn publish_junit(path: &Path) -> Result<TestReport> {
    let problem = match check_junit(path) {
        Ok(report) => return Ok(report),
        Err(problem) => problem,
    };
    let kept = broken_path(path);
    std::fs::rename(path, &kept).map_err(|e| Error::io("keeping a broken JUnit file", path, e))?;
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kept_name = kept
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tracing::warn!("{file} is not valid JUnit XML ({problem}); kept as {kept_name}");
    write_suite(
        path,
        BROKEN_SUITE,
        &[CaseResult {
            classname: BROKEN_SUITE.into(),
            name: file.clone(),
            duration: Duration::ZERO,
            outcome: CaseOutcome::Error {
                message: format!("{file} is not valid JUnit XML: {problem}"),
            },
            output: Some(format!(
                "The file as it was is kept beside this report as {kept_name}."
            )),
        }],
    )
}

/// Writes the suite `suite` holding `cases` to `path` (as
/// [`write_suite`](gate_core::junit::write_suite)) and checks it like any other published
/// file.
pub fn write_checked(path: &Path, suite: &str, cases: &[CaseResult]) -> Result<TestReport> {
    write_suite(path, suite, cases)?;
    publish_junit(path)
}

/// `dir/<stem>-broken.xml`, or `-broken-N.xml` for the first N not taken.
fn broken_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut candidate = dir.join(format!("{stem}-broken.xml"));
    let mut n = 2;
    while candidate.exists() {
        candidate = dir.join(format!("{stem}-broken-{n}.xml"));
        n += 1;
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"<?xml version="1.0"?>
<testsuites><testsuite name="s" tests="3">
<testcase classname="a" name="ok"/>
<testcase classname="a" name="bad"><failure message="x &amp; y">trace</failure></testcase>
<testcase classname="a" name="later"><skipped/></testcase>
</testsuite></testsuites>"#;

    #[test]
    fn valid_files_pass_with_their_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("good.xml");
        std::fs::write(&path, GOOD).unwrap();
        let report = publish_junit(&path).unwrap();
        assert_eq!(
            (report.tests, report.failures, report.errors, report.skipped),
            (3, 1, 0, 1)
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            GOOD,
            "left as it was"
        );
        assert!(!dir.path().join("good-broken.xml").exists());
    }

    #[test]
    fn what_jenkins_would_refuse_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.xml");
        for (text, says) in [
            ("", "no <testsuites>"),
            ("<html><body>502</body></html>", "root element is <html>"),
            ("<testsuite><testcase name='a'></testsuite>", "at byte"),
            ("<testsuite><testcase name='a'>", "ends inside <testcase>"),
            ("<testsuite/><testsuite/>", "second root"),
            (
                "<testsuite><failure/></testsuite>",
                "<failure> inside <testsuite>",
            ),
            ("<testsuite><testcase/></testsuite>", "without a name"),
            ("<testcase name='a'/>", "root element is <testcase>"),
            ("<testsuite name='a &bogus;'/>", "bad attribute value"),
            ("<testsuite>&nope;</testsuite>", "bad text"),
            ("<testsuite/> trailing", "text outside"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = check_junit(&path).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_broken_file_is_kept_beside_a_valid_error_report() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unit.xml");
        std::fs::write(dir.path().join("unit-broken.xml"), "an older one").unwrap();
        std::fs::write(&path, "<testsuite><testcase name='a'>").unwrap();
        let report = publish_junit(&path).unwrap();
        assert_eq!((report.tests, report.errors), (1, 1));
        assert_eq!(report.junit_files, vec![path.clone()]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("unit-broken-2.xml")).unwrap(),
            "<testsuite><testcase name='a'>",
            "the broken bytes are kept as they were"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("unit-broken.xml")).unwrap(),
            "an older one"
        );
        let counts = check_junit(&path).expect("the report itself is valid");
        assert_eq!((counts.tests, counts.errors), (1, 1));
        let xml = std::fs::read_to_string(&path).unwrap();
        assert!(xml.contains("unit.xml is not valid JUnit XML"), "{xml}");
        assert!(xml.contains("ends inside &lt;testcase&gt;"), "{xml}");
        assert!(xml.contains("unit-broken-2.xml"), "{xml}");
    }
}
