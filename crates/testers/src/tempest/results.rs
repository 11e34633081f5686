//! The results of the run that counts: its subunit stream converted into the JUnit file,
//! with an error case when the run broke; streams and logs kept without secrets.

use std::path::{Path, PathBuf};

use gate_core::{Error, ExecOutput, Result, TestReport};

use super::SUITE;
use super::remote::Place;
use crate::subunit::{RunError, convert_with_errors};
use crate::validate::publish_junit;

/// The run that counts: how it ended and where its stream is (locally), if it left one.
#[derive(Debug)]
pub struct FinalRun {
    /// How it ended.
    pub ran: Result<ExecOutput>,
    /// Its stream, fetched (in the artifacts), if it left one.
    pub stream: Option<PathBuf>,
    /// Which attempt it was (from 1).
    pub attempt: u32,
}

/// Converts the final run's stream into the results file (with an error case when the
/// run broke) and checks it.
pub fn publish(
    place: &Place<'_>,
    last: &FinalRun,
    classname: &str,
    path: &Path,
    artifacts: &Path,
) -> Result<TestReport> {
    let kept = artifacts.join("tempest.subunit");
    let stream = match &last.stream {
        Some(s) => {
            std::fs::rename(s, &kept).map_err(|e| Error::io("renaming", s, e))?;
            Some(kept.clone())
        }
        None => None,
    };
    let convert = |errors: &[RunError<'_>]| match &stream {
        Some(s) => {
            let file = std::fs::File::open(s).map_err(|e| Error::io("reading", s, e))?;
            convert_with_errors(file, path, SUITE, errors)
        }
        None => convert_with_errors(&[][..], path, SUITE, errors),
    };
    let first = convert(&[])?;
    let attempt_note = if last.attempt > 1 {
        format!(" (attempt {})", last.attempt)
    } else {
        String::new()
    };
    let broke = match &last.ran {
        Err(e) => Some((
            format!("tempest run{attempt_note} did not finish: {e}"),
            String::new(),
        )),
        Ok(out) => {
            let explained = first.failures > first.unfinished && first.problems.is_empty();
            let ran = first.tests - first.errors.min(first.tests);
            if stream.is_none() {
                Some((
                    format!(
                        "tempest run{attempt_note} {} and left no subunit stream",
                        out.status
                    ),
                    out.tail.join("\n"),
                ))
            } else if !out.status.success() && (!explained || first.unfinished > 0) {
                let unfinished = if first.unfinished > 0 {
                    format!(", {} of them unfinished", first.unfinished)
                } else {
                    String::new()
                };
                Some((
                    format!(
                        "tempest run{attempt_note} {} after {ran} test(s){unfinished}: it broke part way",
                        out.status
                    ),
                    out.tail.join("\n"),
                ))
            } else {
                None
            }
        }
    };
    if let Some((message, text)) = &broke {
        convert(&[RunError {
            classname,
            name: "tempest run",
            message,
            text,
        }])?;
    }
    let report = publish_junit(path)?;
    let streams = std::fs::read_dir(artifacts)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|p| p.extension().is_some_and(|x| x == "subunit"));
    for file in streams {
        drop_if_secret(place, &file);
    }
    Ok(report)
}

/// Masks known secret values in the text file at `path`.
pub fn mask_file(path: &Path) {
    if let Ok(bytes) = std::fs::read(path)
        && let Some(masked) = gate_core::secret::redact_bytes(&bytes)
    {
        let _ = std::fs::write(path, masked);
    }
}

/// Removes the stream at `path` when it holds a known secret (it cannot be masked without
/// breaking its packets).
fn drop_if_secret(place: &Place<'_>, path: &Path) {
    if holds_secret(path) {
        let _ = std::fs::remove_file(path);
        place.io.log.note(&format!(
            "{} holds a secret value: not kept",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
    }
}

/// Whether the file at `path` holds a known secret value: read in blocks that overlap by
/// more than any secret is long, so memory stays flat however long the stream is.
fn holds_secret(path: &Path) -> bool {
    const BLOCK: usize = 4 << 20;
    const OVERLAP: usize = 64 << 10;
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut window: Vec<u8> = Vec::with_capacity(BLOCK + OVERLAP);
    let mut block = vec![0u8; BLOCK];
    loop {
        let n = match std::io::Read::read(&mut file, &mut block) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        window.extend_from_slice(&block[..n]);
        if gate_core::secret::redact_bytes(&window).is_some() {
            return true;
        }
        let keep = window.len().min(OVERLAP);
        window.drain(..window.len() - keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_found_across_blocks() {
        let _secret = gate_core::Secret::new("results-holds-secret-sentinel");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.subunit");
        let mut bytes = vec![b'x'; (4 << 20) - 10];
        bytes.extend_from_slice(b"results-holds-secret-sentinel");
        std::fs::write(&path, &bytes).unwrap();
        assert!(holds_secret(&path));
        std::fs::write(&path, b"nothing secret").unwrap();
        assert!(!holds_secret(&path));
    }
}
