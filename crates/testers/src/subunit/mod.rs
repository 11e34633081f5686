//! subunit v2 → JUnit XML, streaming.
//!
//! [`convert`] reads a subunit v2 byte stream packet by packet (CRC-checked) and writes
//! JUnit XML that Jenkins' `junit` step accepts: one `<testcase>` per test id, `classname`
//! and `name` split as `subunit2junitxml` splits them, the time from the timestamps, and
//! `<failure>`/`<skipped>` elements carrying the attachments (tracebacks) as text. Finished
//! test cases go straight to the output file, so memory holds only the tests in flight; the
//! suite header's counts are written last, over room kept for them. Corrupt packets are
//! reported (offset, reason), skipped, and listed as an error case; a truncated stream still
//! gives valid XML for what was read.
//!
//! ```
//! let stream: &[u8] = &[]; // a subunit v2 stream, e.g. from `stestr last --subunit`
//! let dir = tempfile::tempdir()?;
//! let out = dir.path().join("results.xml");
//! let report = gate_testers::subunit::convert(stream, &out, "tempest")?;
//! assert_eq!(report.tests, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod escape;
mod packet;
mod xml;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufReader, Read};
use std::path::Path;

use gate_core::{Error, Result};

pub use packet::{Item, Packet, Problem, Reader, Status};

/// What a conversion found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvertReport {
    /// Test cases written (the error case for stream problems included).
    pub tests: u64,
    /// Failures (fail, unexpected success, unfinished tests).
    pub failures: u64,
    /// Errors (stream problems).
    pub errors: u64,
    /// Skipped tests.
    pub skipped: u64,
    /// Tests that started but never finished (the stream ended while they ran); each is
    /// also counted as a failure.
    pub unfinished: u64,
    /// Corrupt or truncated packets, with offsets.
    pub problems: Vec<Problem>,
}

/// An error case of the run itself, added after the converted tests (e.g. "the test
/// runner crashed"): how the run broke, in the same suite as what ran.
#[derive(Debug, Clone, Copy)]
pub struct RunError<'a> {
    /// The case's class name.
    pub classname: &'a str,
    /// The case's name.
    pub name: &'a str,
    /// One line saying what broke.
    pub message: &'a str,
    /// More text (the last lines of output).
    pub text: &'a str,
}

/// A test in flight: what has been seen of it so far.
#[derive(Debug, Default)]
struct InFlight {
    /// An `inprogress` status was seen (with or without a timestamp).
    running: bool,
    started: Option<(u32, u32)>,
    attachments: Vec<(String, Option<String>, Vec<u8>)>,
}

/// A fast hash for test ids (FxHash's multiply-rotate): the tests in flight are keyed by
/// id, and SipHash showed in the converter's profile. Ids come from the test run, not from
/// an adversary, so flooding resistance is not needed here.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Converts the subunit v2 stream `input` into JUnit XML at `output` (suite `suite`).
pub fn convert<R: Read>(input: R, output: &Path, suite: &str) -> Result<ConvertReport> {
    convert_with_errors(input, output, suite, &[])
}

/// [`convert`], with `errors` written as error cases after the stream's tests.
pub fn convert_with_errors<R: Read>(
    input: R,
    output: &Path,
    suite: &str,
    errors: &[RunError<'_>],
) -> Result<ConvertReport> {
    let mut writer = xml::SuiteWriter::create(output, suite)?;
    let mut reader = Reader::new(BufReader::with_capacity(64 * 1024, input));
    let mut in_flight: HashMap<String, InFlight, BuildHasherDefault<IdHasher>> = HashMap::default();
    let mut problems = Vec::new();
    loop {
        let item = reader
            .next_item()
            .map_err(|e| Error::io("reading the subunit stream for", output, e))?;
        match item {
            None => break,
            Some(Item::Corrupt(problem)) => {
                tracing::warn!(
                    "subunit: skipped a corrupt packet at byte {}: {}",
                    problem.offset,
                    problem.reason
                );
                problems.push(problem);
            }
            Some(Item::Truncated(problem)) => {
                tracing::warn!("subunit: {} (at byte {})", problem.reason, problem.offset);
                problems.push(problem);
                break;
            }
            Some(Item::Packet(mut packet)) => {
                let Some(id) = packet.test_id.take() else {
                    continue;
                };
                let status = packet.status.unwrap_or(Status::Undefined);
                // The common end of a test: no attachment on its last packet, so nothing to
                // add to what is in flight (no copy of the id either).
                if status.is_final() && packet.file.is_none() {
                    let done = in_flight.remove(&id).unwrap_or_default();
                    writer.case(&xml::Case {
                        id: &id,
                        status,
                        seconds: duration(done.started, packet.timestamp),
                        attachments: &done.attachments,
                    })?;
                    continue;
                }
                let test = in_flight.entry(id.clone()).or_default();
                if status == Status::InProgress {
                    test.running = true;
                    if test.started.is_none() {
                        test.started = packet.timestamp;
                    }
                }
                if let Some((name, bytes)) = packet.file {
                    match test.attachments.iter_mut().find(|(n, _, _)| *n == name) {
                        Some((_, _, existing)) => existing.extend_from_slice(&bytes),
                        None => test.attachments.push((name, packet.mime_type, bytes)),
                    }
                }
                if status.is_final() {
                    let done = in_flight.remove(&id).unwrap_or_default();
                    writer.case(&xml::Case {
                        id: &id,
                        status,
                        seconds: duration(done.started, packet.timestamp),
                        attachments: &done.attachments,
                    })?;
                }
            }
        }
    }
    // Tests that started but never finished: the run broke while they ran. A test only
    // listed (`exists`) is enumeration, not a result, and is left out as subunit2junitxml
    // leaves it out; a started one counts whether or not its packets carry timestamps.
    let mut unfinished: Vec<_> = in_flight
        .into_iter()
        .filter(|(_, t)| t.running || !t.attachments.is_empty())
        .collect();
    unfinished.sort_by(|a, b| a.0.cmp(&b.0));
    let unfinished_count = unfinished.len() as u64;
    for (id, test) in unfinished {
        let mut attachments = test.attachments;
        attachments.push((
            "gate".into(),
            Some("text/plain".into()),
            b"the test did not finish: the stream ended while it ran".to_vec(),
        ));
        writer.case(&xml::Case {
            id: &id,
            status: Status::InProgress,
            seconds: 0.0,
            attachments: &attachments,
        })?;
    }
    if !problems.is_empty() {
        writer.stream_error(&problems)?;
    }
    for error in errors {
        writer.error_case(error)?;
    }
    let counts = writer.finish()?;
    Ok(ConvertReport {
        tests: counts.tests,
        failures: counts.failures,
        errors: counts.errors,
        skipped: counts.skipped,
        unfinished: unfinished_count,
        problems,
    })
}

fn duration(start: Option<(u32, u32)>, end: Option<(u32, u32)>) -> f64 {
    match (start, end) {
        (Some((s1, n1)), Some((s2, n2))) => {
            let start = f64::from(s1) + f64::from(n1) / 1e9;
            let end = f64::from(s2) + f64::from(n2) / 1e9;
            (end - start).max(0.0)
        }
        _ => 0.0,
    }
}

/// `classname` and `name` of a test id, split as `subunit2junitxml` (python-junitxml)
/// does: at the last `.` before the first `(` (or before the last character when there is
/// no `(`).
pub fn split_id(id: &str) -> (&str, &str) {
    let limit = match id.find('(') {
        Some(paren) => paren,
        None => id.len().saturating_sub(1),
    };
    match id[..limit].rfind('.') {
        Some(dot) => (&id[..dot], &id[dot + 1..]),
        None => ("", id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_split_like_subunit2junitxml() {
        assert_eq!(split_id("a.b.C.test_x"), ("a.b.C", "test_x"));
        assert_eq!(
            split_id("a.C.test_x[id-1,smoke]"),
            ("a.C", "test_x[id-1,smoke]")
        );
        assert_eq!(split_id("setUpClass (a.b.C)"), ("", "setUpClass (a.b.C)"));
        assert_eq!(split_id("a.b.test(x.y)"), ("a.b", "test(x.y)"));
        assert_eq!(split_id("plain"), ("", "plain"));
        assert_eq!(split_id("trailing."), ("", "trailing."));
    }
}
