//! JUnit XML read case by case, for the report: names, times, outcomes and messages.

use std::path::Path;

use quick_xml::events::{BytesStart, Event as XmlEvent};

use crate::error::{Error, Result};

/// How one test case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseStatus {
    /// It passed.
    Passed,
    /// An assertion failed.
    Failed,
    /// It could not run properly.
    Error,
    /// It was skipped.
    Skipped,
}

impl CaseStatus {
    /// One lower-case word.
    pub fn word(self) -> &'static str {
        match self {
            CaseStatus::Passed => "passed",
            CaseStatus::Failed => "failed",
            CaseStatus::Error => "error",
            CaseStatus::Skipped => "skipped",
        }
    }
}

/// One test case read back from JUnit XML.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// The suite it belongs to.
    pub suite: String,
    /// Its class name (`suite.host` for gate's testers).
    pub classname: String,
    /// Its name.
    pub name: String,
    /// How long it ran, in seconds (0 when the file does not say).
    pub seconds: f64,
    /// How it ended.
    pub status: CaseStatus,
    /// The failure or error message (the `message` attribute, else the element's text).
    pub message: String,
    /// The failure or error element's text, and the case's `system-out`/`system-err`.
    pub output: String,
}

/// Reads every test case of the JUnit XML file at `path`. Fails on XML that is not
/// well-formed, naming the file.
pub fn read_cases(path: &Path) -> Result<Vec<Case>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    parse_cases(&bytes).map_err(|message| Error::State {
        path: path.to_owned(),
        message: format!("not valid JUnit XML: {message}"),
    })
}

/// Which element's text is being collected.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TextOf {
    Nothing,
    Outcome,
    Output,
}

/// The cases in `xml`.
fn parse_cases(xml: &[u8]) -> std::result::Result<Vec<Case>, String> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut cases = Vec::new();
    let mut suites: Vec<String> = Vec::new();
    let mut current: Option<Case> = None;
    let mut text_of = TextOf::Nothing;
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?;
        match event {
            XmlEvent::Start(e) => {
                text_of = open(&e, &mut suites, &mut current, &mut cases);
            }
            XmlEvent::Empty(e) => {
                open(&e, &mut suites, &mut current, &mut cases);
                close(e.name().as_ref(), &mut suites, &mut current, &mut cases);
                text_of = TextOf::Nothing;
            }
            XmlEvent::End(e) => {
                close(e.name().as_ref(), &mut suites, &mut current, &mut cases);
                text_of = TextOf::Nothing;
            }
            XmlEvent::Text(t) => {
                let text = t.unescape().map_err(|e| e.to_string())?;
                add_text(&mut current, text_of, &text);
            }
            XmlEvent::CData(t) => {
                let text = String::from_utf8_lossy(&t.into_inner()).into_owned();
                add_text(&mut current, text_of, &text);
            }
            XmlEvent::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if let Some(case) = current.take() {
        cases.push(case);
    }
    Ok(cases)
}

fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.try_get_attribute(name)
        .ok()
        .flatten()
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

fn open(
    e: &BytesStart<'_>,
    suites: &mut Vec<String>,
    current: &mut Option<Case>,
    cases: &mut Vec<Case>,
) -> TextOf {
    match e.name().as_ref() {
        b"testsuite" => {
            suites.push(attr(e, "name").unwrap_or_default());
            TextOf::Nothing
        }
        b"testcase" => {
            if let Some(case) = current.take() {
                cases.push(case);
            }
            *current = Some(Case {
                suite: suites.last().cloned().unwrap_or_default(),
                classname: attr(e, "classname").unwrap_or_default(),
                name: attr(e, "name").unwrap_or_default(),
                seconds: attr(e, "time")
                    .and_then(|t| t.trim().parse().ok())
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                    .unwrap_or(0.0),
                status: CaseStatus::Passed,
                message: String::new(),
                output: String::new(),
            });
            TextOf::Nothing
        }
        name @ (b"failure" | b"error" | b"skipped") => {
            if let Some(case) = current {
                case.status = match name {
                    b"failure" => CaseStatus::Failed,
                    b"error" => CaseStatus::Error,
                    _ => CaseStatus::Skipped,
                };
                case.message = attr(e, "message").unwrap_or_default();
            }
            TextOf::Outcome
        }
        b"system-out" | b"system-err" => TextOf::Output,
        _ => TextOf::Nothing,
    }
}

fn close(name: &[u8], suites: &mut Vec<String>, current: &mut Option<Case>, cases: &mut Vec<Case>) {
    match name {
        b"testsuite" => {
            suites.pop();
        }
        b"testcase" => {
            if let Some(case) = current.take() {
                cases.push(case);
            }
        }
        _ => {}
    }
}

fn add_text(current: &mut Option<Case>, text_of: TextOf, text: &str) {
    let Some(case) = current else { return };
    if text_of == TextOf::Nothing || text.trim().is_empty() {
        return;
    }
    if text_of == TextOf::Outcome && case.message.is_empty() {
        case.message = text.lines().next().unwrap_or_default().to_owned();
    }
    if !case.output.is_empty() && !case.output.ends_with('\n') {
        case.output.push('\n');
    }
    case.output.push_str(text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::junit::{CaseOutcome, CaseResult, write_suite};
    use std::time::Duration;

    #[test]
    fn written_suites_read_back_case_by_case() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.xml");
        let case = |name: &str, ms, outcome| CaseResult {
            classname: "s.h1".into(),
            name: name.into(),
            duration: Duration::from_millis(ms),
            outcome,
            output: Some("tail <1> & 2".into()),
        };
        write_suite(
            &path,
            "s",
            &[
                case("ok", 1500, CaseOutcome::Passed),
                case(
                    "bad",
                    20,
                    CaseOutcome::Failed {
                        message: "exit 1 <x>".into(),
                    },
                ),
                case("later", 0, CaseOutcome::Skipped),
            ],
        )
        .unwrap();
        let cases = read_cases(&path).unwrap();
        let summary: Vec<_> = cases
            .iter()
            .map(|c| (c.suite.as_str(), c.name.as_str(), c.status))
            .collect();
        assert_eq!(
            summary,
            [
                ("s", "ok", CaseStatus::Passed),
                ("s", "bad", CaseStatus::Failed),
                ("s", "later", CaseStatus::Skipped)
            ]
        );
        assert!((cases[0].seconds - 1.5).abs() < 1e-6);
        assert_eq!(cases[1].message, "exit 1 <x>");
        assert!(cases[1].output.contains("tail <1> & 2"), "{:?}", cases[1]);
    }

    #[test]
    fn foreign_junit_with_text_messages_and_nested_suites_reads() {
        let xml = br#"<testsuites><testsuite name="outer"><testsuite name="inner">
            <testcase classname="c" name="t1" time="0.25"><failure><![CDATA[boom
at line 3]]></failure></testcase>
            <testcase classname="c" name="t2"><error message="no db">trace</error></testcase>
            </testsuite></testsuite></testsuites>"#;
        let cases = parse_cases(xml).unwrap();
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].suite, "inner");
        assert_eq!(cases[0].message, "boom");
        assert_eq!(cases[0].output, "boom\nat line 3");
        assert_eq!(cases[1].status, CaseStatus::Error);
        assert_eq!(cases[1].message, "no db");
        assert!(parse_cases(b"<testsuite><testcase></testsuite>").is_err());
    }
}
