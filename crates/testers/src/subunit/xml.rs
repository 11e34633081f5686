//! Writing a JUnit suite in one pass whose header comes last: the header is written first
//! with room for the counts, the cases stream after it, and at the end the header is
//! written again over the same bytes with the real counts (padded with spaces before its
//! `>`, which XML allows). The file is written as `<output>.partial`, synced and renamed.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use gate_core::{Error, Result};

use super::escape::{attr, content, escape_into};
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

/// Room for the counts' attributes in the header: four 20-digit numbers and a time of at
/// most 21 characters with their names take 151 bytes.
const COUNTS_ROOM: usize = 160;

/// Streams cases into `<output>.partial`.
pub struct SuiteWriter {
    output: PathBuf,
    partial: PathBuf,
    /// `<?xml …?>\n<testsuite name="…"` (escaped).
    opening: String,
    out: BufWriter<File>,
    counts: Counts,
    /// The case being rendered (reused).
    line: String,
    done: bool,
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
        let mut name = output.file_name().unwrap_or_default().to_owned();
        name.push(".partial");
        let partial = dir.join(name);
        let file = File::create(&partial).map_err(|e| io_error(&partial, e))?;
        let mut writer = Self {
            output: output.to_owned(),
            opening: format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"{}\"",
                attr(suite)
            ),
            partial,
            out: BufWriter::with_capacity(256 * 1024, file),
            counts: Counts::default(),
            line: String::with_capacity(4096),
            done: false,
        };
        let header = writer.header();
        writer.write(header.as_bytes())?;
        Ok(writer)
    }

    /// The header with the current counts, always of the same length.
    fn header(&self) -> String {
        let c = self.counts;
        let counts = format!(
            " tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\"",
            c.tests,
            c.failures,
            c.errors,
            c.skipped,
            seconds(c.seconds)
        );
        format!("{}{counts:<COUNTS_ROOM$}>\n", self.opening)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| io_error(&self.partial, e))
    }

    /// Writes `self.line` with known secret values masked.
    fn write_line(&mut self) -> Result<()> {
        let line = std::mem::take(&mut self.line);
        let result = match gate_core::secret::redact(&line) {
            Cow::Borrowed(_) => self.write(line.as_bytes()),
            Cow::Owned(masked) => self.write(masked.as_bytes()),
        };
        self.line = line;
        result
    }

    pub fn case(&mut self, case: &Case<'_>) -> Result<()> {
        let (classname, name) = split_id(case.id);
        self.counts.tests += 1;
        self.counts.seconds += case.seconds;
        let x = &mut self.line;
        x.clear();
        x.push_str("<testcase classname=\"");
        escape_into(x, classname, true);
        x.push_str("\" name=\"");
        escape_into(x, name, true);
        x.push_str("\" time=\"");
        x.push_str(&seconds(case.seconds));
        x.push('"');
        match case.status {
            Status::Success | Status::XFail => x.push_str("/>\n"),
            Status::Skip => {
                self.counts.skipped += 1;
                let reason = attachment_text(case.attachments, "reason");
                x.push_str(">\n<skipped>");
                escape_into(x, &reason, true);
                x.push_str("</skipped>\n</testcase>\n");
            }
            Status::UxSuccess => {
                self.counts.failures += 1;
                x.push_str(
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
                x.push_str(
                    ">\n<failure type=\"testtools.testresult.real._StringException\" message=\"",
                );
                escape_into(x, message, true);
                x.push_str("\">");
                escape_into(x, &text, false);
                x.push_str("</failure>\n</testcase>\n");
            }
        }
        self.write_line()
    }

    /// An error case of the run itself.
    pub fn error_case(&mut self, error: &super::RunError<'_>) -> Result<()> {
        self.counts.tests += 1;
        self.counts.errors += 1;
        let x = &mut self.line;
        x.clear();
        x.push_str("<testcase classname=\"");
        escape_into(x, error.classname, true);
        x.push_str("\" name=\"");
        escape_into(x, error.name, true);
        x.push_str("\" time=\"0.000\">\n<error type=\"gate.RunError\" message=\"");
        escape_into(x, error.message, true);
        x.push_str("\">");
        escape_into(x, error.text, false);
        x.push_str("</error>\n</testcase>\n");
        self.write_line()
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
        self.write(xml.as_bytes())
    }

    /// Ends the suite: the footer, the header again with the counts, synced, renamed to
    /// the output. Returns the counts.
    pub fn finish(mut self) -> Result<Counts> {
        self.write(b"</testsuite>\n")?;
        let header = self.header();
        let partial = self.partial.clone();
        self.out.flush().map_err(|e| io_error(&partial, e))?;
        let file = self.out.get_mut();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(header.as_bytes()))
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error(&partial, e))?;
        std::fs::rename(&partial, &self.output).map_err(|e| io_error(&self.output, e))?;
        self.done = true;
        Ok(self.counts)
    }
}

/// A conversion that failed part way leaves no `.partial` file behind.
impl Drop for SuiteWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// `secs` with three decimals (as `{:.3}`, without the float formatting machinery).
fn seconds(secs: f64) -> String {
    let millis = (secs.max(0.0) * 1000.0).round() as u64;
    format!("{}.{:03}", millis / 1000, millis % 1000)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_header_gets_the_counts_in_place_and_nothing_partial_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.xml");
        let mut w = SuiteWriter::create(&out, "s<&>").unwrap();
        let traceback = [(
            "traceback".to_owned(),
            Some("text/plain".to_owned()),
            b"boom".to_vec(),
        )];
        for (id, status, seconds, attachments) in [
            ("a.B.test_x", Status::Success, 1.5, &[][..]),
            ("a.B.test_y", Status::Fail, 0.25, &traceback[..]),
        ] {
            w.case(&Case {
                id,
                status,
                seconds,
                attachments,
            })
            .unwrap();
        }
        let counts = w.finish().unwrap();
        assert_eq!((counts.tests, counts.failures), (2, 1));
        let xml = std::fs::read_to_string(&out).unwrap();
        assert!(
            xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"s&lt;&amp;&gt;\" tests=\"2\" failures=\"1\" errors=\"0\" skipped=\"0\" time=\"1.750\"      "),
            "{xml}"
        );
        assert!(xml.ends_with("</testsuite>\n"), "{xml}");
        let checked = crate::validate::check_junit(&out).unwrap();
        assert_eq!((checked.tests, checked.failures), (2, 1));
        // A writer dropped part way (a failed conversion) leaves nothing either.
        drop(SuiteWriter::create(&dir.path().join("gone.xml"), "s").unwrap());
        assert_eq!(listing(dir.path()), ["r.xml"]);
    }
}
