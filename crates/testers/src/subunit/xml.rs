//! Writing a JUnit suite whose header comes last: cases stream to a temporary file, then
//! the header with the counts, the cases and the footer go to the output.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use gate_core::{Error, Result};

use super::packet::{Problem, Status};
use super::split_id;

/// One finished test.
pub struct Case<'a> {
    pub id: &'a str,
    pub status: Status,
    pub seconds: f64,
    pub attachments: &'a [(String, Option<String>, Vec<u8>)],
}

/// Counts of the suite.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub tests: u64,
    pub failures: u64,
    pub errors: u64,
    pub skipped: u64,
    seconds: f64,
}

/// Streams cases to a temporary file beside the output.
pub struct SuiteWriter {
    output: PathBuf,
    suite: String,
    cases: BufWriter<File>,
    counts: Counts,
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::io("writing", path, e)
}

impl SuiteWriter {
    pub fn create(output: &Path, suite: &str) -> Result<Self> {
        let dir = output
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        let cases = tempfile::tempfile_in(dir).map_err(|e| io_error(output, e))?;
        Ok(Self {
            output: output.to_owned(),
            suite: suite.to_owned(),
            cases: BufWriter::new(cases),
            counts: Counts::default(),
        })
    }

    pub fn case(&mut self, case: &Case<'_>) -> Result<()> {
        let (classname, name) = split_id(case.id);
        let mut xml = format!(
            "<testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            attr(classname),
            attr(name),
            case.seconds
        );
        self.counts.tests += 1;
        self.counts.seconds += case.seconds;
        match case.status {
            Status::Success | Status::XFail => xml.push_str("/>\n"),
            Status::Skip => {
                self.counts.skipped += 1;
                let reason = attachment_text(case.attachments, "reason");
                xml.push_str(&format!(
                    ">\n<skipped>{}</skipped>\n</testcase>\n",
                    attr(&reason)
                ));
            }
            Status::UxSuccess => {
                self.counts.failures += 1;
                xml.push_str(
                    ">\n<failure type=\"unittest.case._UnexpectedSuccess\"/>\n</testcase>\n",
                );
            }
            _ => {
                self.counts.failures += 1;
                let text = details_text(case.attachments);
                let message = text
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim();
                xml.push_str(&format!(
                    ">\n<failure type=\"testtools.testresult.real._StringException\" message=\"{}\">{}</failure>\n</testcase>\n",
                    attr(message),
                    content(&text)
                ));
            }
        }
        self.cases
            .write_all(xml.as_bytes())
            .map_err(|e| io_error(&self.output, e))
    }

    /// An error case listing the stream's problems.
    pub fn stream_error(&mut self, problems: &[Problem]) -> Result<()> {
        let text: String = problems
            .iter()
            .map(|p| format!("byte {}: {}\n", p.offset, p.reason))
            .collect();
        self.counts.tests += 1;
        self.counts.errors += 1;
        let xml = format!(
            "<testcase classname=\"subunit\" name=\"parser\" time=\"0.000\">\n<error type=\"subunit.ParseError\" message=\"{} problem(s) in the subunit stream\">{}</error>\n</testcase>\n",
            problems.len(),
            content(&text)
        );
        self.cases
            .write_all(xml.as_bytes())
            .map_err(|e| io_error(&self.output, e))
    }

    /// Writes the output: header with counts, the cases, the footer. Returns the counts.
    pub fn finish(self) -> Result<Counts> {
        let mut cases = self
            .cases
            .into_inner()
            .map_err(|e| io_error(&self.output, e.into_error()))?;
        cases
            .seek(SeekFrom::Start(0))
            .map_err(|e| io_error(&self.output, e))?;
        let tmp = self.output.with_extension("xml.partial");
        let mut out = BufWriter::new(File::create(&tmp).map_err(|e| io_error(&tmp, e))?);
        let c = self.counts;
        write!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">\n",
            attr(&self.suite),
            c.tests,
            c.failures,
            c.errors,
            c.skipped,
            c.seconds
        )
        .map_err(|e| io_error(&tmp, e))?;
        std::io::copy(&mut cases, &mut out).map_err(|e| io_error(&tmp, e))?;
        out.write_all(b"</testsuite>\n")
            .map_err(|e| io_error(&tmp, e))?;
        out.into_inner()
            .map_err(|e| io_error(&tmp, e.into_error()))?
            .sync_all()
            .map_err(|e| io_error(&tmp, e))?;
        std::fs::rename(&tmp, &self.output).map_err(|e| io_error(&self.output, e))?;
        Ok(c)
    }
}

/// The text of attachment `name`, if it is there.
fn attachment_text(attachments: &[(String, Option<String>, Vec<u8>)], name: &str) -> String {
    attachments
        .iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, _, bytes)| String::from_utf8_lossy(bytes).into_owned())
        .unwrap_or_default()
}

fn is_text(mime: &Option<String>) -> bool {
    mime.as_deref().is_none_or(|m| m.starts_with("text/"))
}

/// The attachments rendered as testtools renders details: text ones as `name: {{{…}}}`
/// (sorted by name), the traceback last, binary and empty ones listed.
fn details_text(attachments: &[(String, Option<String>, Vec<u8>)]) -> String {
    let mut sorted: Vec<_> = attachments.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut binary, mut empty, mut texts, mut special) = (vec![], vec![], vec![], None);
    for (name, mime, bytes) in sorted {
        if !is_text(mime) {
            binary.push(format!("  {name} ({})\n", mime.as_deref().unwrap_or("")));
            continue;
        }
        let text = String::from_utf8_lossy(bytes).trim().to_owned();
        if text.is_empty() {
            empty.push(format!("  {name}\n"));
        } else if name == "traceback" {
            special = Some(format!("{text}\n"));
        } else if text.contains('\n') {
            texts.push(format!("{name}: {{{{{{\n{text}\n}}}}}}\n"));
        } else {
            texts.push(format!("{name}: {{{{{{{text}}}}}}}"));
        }
    }
    let mut out = String::new();
    if !binary.is_empty() {
        out.push_str("Binary content:\n");
        out.extend(binary);
    }
    if !empty.is_empty() {
        out.push_str("Empty attachments:\n");
        out.extend(empty);
    }
    if texts.last().is_some_and(|t| !t.ends_with('\n')) {
        texts.push(String::new());
    }
    if let Some(special) = special {
        texts.push(special);
    }
    if !out.is_empty() && !texts.is_empty() {
        out.push('\n');
    }
    out.push_str(&texts.join("\n"));
    out
}

/// `s` without characters XML 1.0 forbids.
fn strip_invalid(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().filter(|&c| {
        matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && !matches!(c, '\u{FFFE}' | '\u{FFFF}'))
    })
}

fn content(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in strip_invalid(s) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    gate_core::secret::redact(&out).into_owned()
}

fn attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in strip_invalid(s) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    gate_core::secret::redact(&out).into_owned()
}
