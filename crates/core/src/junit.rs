//! JUnit XML: writing suites (with `junit-report`) and reading the counts back.

use std::path::Path;
use std::time::Duration;

use quick_xml::events::Event as XmlEvent;

use crate::error::{Error, Result};
use crate::traits::TestReport;

/// How one test case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseOutcome {
    /// It passed.
    Passed,
    /// An assertion failed.
    Failed {
        /// One line saying why.
        message: String,
    },
    /// It could not run properly.
    Error {
        /// One line saying why.
        message: String,
    },
    /// It was skipped.
    Skipped,
}

/// One test case to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The class name (Jenkins groups by it), e.g. `command.host-1`.
    pub classname: String,
    /// The case name.
    pub name: String,
    /// How long it ran.
    pub duration: Duration,
    /// How it ended.
    pub outcome: CaseOutcome,
    /// Output to attach (the tail of a failing command).
    pub output: Option<String>,
}

/// Writes one suite named `suite` holding `cases` to `path` (parents created), with known
/// secret values masked, and returns its counts.
pub fn write_suite(path: &Path, suite: &str, cases: &[CaseResult]) -> Result<TestReport> {
    let mut builder = junit_report::TestSuiteBuilder::new(suite);
    for case in cases {
        let time = junit_report::Duration::try_from(case.duration).unwrap_or_default();
        let mut tc = match &case.outcome {
            CaseOutcome::Passed => junit_report::TestCase::success(&case.name, time),
            CaseOutcome::Failed { message } => {
                junit_report::TestCase::failure(&case.name, time, "failure", message)
            }
            CaseOutcome::Error { message } => {
                junit_report::TestCase::error(&case.name, time, "error", message)
            }
            CaseOutcome::Skipped => junit_report::TestCase::skipped(&case.name),
        };
        tc.set_classname(&case.classname);
        if let Some(output) = &case.output {
            tc.set_system_out(output);
        }
        builder.add_testcase(tc);
    }
    let mut report = junit_report::ReportBuilder::new();
    report.add_testsuite(builder.build());
    let mut xml = Vec::new();
    report
        .build()
        .write_xml(&mut xml)
        .map_err(|e| Error::io("rendering JUnit for", path, std::io::Error::other(e)))?;
    let xml = crate::secret::redact_bytes(&xml).unwrap_or(xml);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
    }
    std::fs::write(path, xml).map_err(|e| Error::io("writing", path, e))?;
    let count = |f: fn(&CaseOutcome) -> bool| cases.iter().filter(|c| f(&c.outcome)).count() as u64;
    Ok(TestReport {
        tests: cases.len() as u64,
        failures: count(|o| matches!(o, CaseOutcome::Failed { .. })),
        errors: count(|o| matches!(o, CaseOutcome::Error { .. })),
        skipped: count(|o| matches!(o, CaseOutcome::Skipped)),
        junit_files: vec![path.to_owned()],
    })
}

/// Reads a JUnit XML file and counts its test cases by outcome. Fails on XML that is not
/// well-formed or holds no `testsuite`/`testsuites` root, naming the file.
pub fn read_counts(path: &Path) -> Result<TestReport> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    let invalid = |message: String| Error::State {
        path: path.to_owned(),
        message: format!("not valid JUnit XML: {message}"),
    };
    let mut reader = quick_xml::Reader::from_reader(bytes.as_slice());
    let mut buf = Vec::new();
    let mut report = TestReport {
        junit_files: vec![path.to_owned()],
        ..TestReport::default()
    };
    let mut root_seen = false;
    let mut depth = 0usize;
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| invalid(format!("at byte {}: {e}", reader.buffer_position())))?;
        let (name, opens) = match &event {
            XmlEvent::Start(e) => (e.name().as_ref().to_vec(), true),
            XmlEvent::Empty(e) => (e.name().as_ref().to_vec(), false),
            XmlEvent::End(_) => {
                depth = depth.saturating_sub(1);
                buf.clear();
                continue;
            }
            XmlEvent::Eof => break,
            _ => {
                buf.clear();
                continue;
            }
        };
        if depth == 0 {
            if name != b"testsuites" && name != b"testsuite" {
                return Err(invalid(format!(
                    "the root element is <{}>, not <testsuites> or <testsuite>",
                    String::from_utf8_lossy(&name)
                )));
            }
            root_seen = true;
        }
        match name.as_slice() {
            b"testcase" => report.tests += 1,
            b"failure" => report.failures += 1,
            b"error" => report.errors += 1,
            b"skipped" => report.skipped += 1,
            _ => {}
        }
        if opens {
            depth += 1;
        }
        buf.clear();
    }
    if !root_seen || depth != 0 {
        return Err(invalid("no complete <testsuite> element".into()));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_suites_read_back_with_the_same_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results/suite.xml");
        let case = |name: &str, outcome| CaseResult {
            classname: "suite.h1".into(),
            name: name.into(),
            duration: Duration::from_millis(1500),
            outcome,
            output: Some("<tail> & \"quotes\"".into()),
        };
        let written = write_suite(
            &path,
            "suite",
            &[
                case("ok", CaseOutcome::Passed),
                case(
                    "bad",
                    CaseOutcome::Failed {
                        message: "exit 1 <x>".into(),
                    },
                ),
                case(
                    "broken",
                    CaseOutcome::Error {
                        message: "no host".into(),
                    },
                ),
                case("later", CaseOutcome::Skipped),
            ],
        )
        .unwrap();
        assert_eq!(
            (
                written.tests,
                written.failures,
                written.errors,
                written.skipped
            ),
            (4, 1, 1, 1)
        );
        let read = read_counts(&path).unwrap();
        assert_eq!(read, written);
    }

    #[test]
    fn garbage_and_non_junit_roots_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.xml");
        for text in [
            "<html><body>502</body></html>",
            "<testsuite><testcase></testsuite>",
            "not xml",
        ] {
            std::fs::write(&path, text).unwrap();
            assert!(read_counts(&path).is_err(), "{text}");
        }
    }
}
