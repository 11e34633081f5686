//! The run report: `artifacts/report.html`, one self-contained page written by the final
//! step of every run (after cleanup, also after a failure or an interrupt).
//!
//! The page shows the run id, config digest and versions; a timeline of the stages with a
//! bar per host for fan-out steps; the inventory; the ledger; the test results (counts,
//! failures with their messages, the slowest tests) with links to the JUnit files and the
//! per-host logs; and, when the run failed, the tail of the failing step's output at the
//! top. It needs no network and no JavaScript: CSS and SVG are inline, every value is
//! HTML-escaped and known secret values are masked.
//!
//! Per-host bars need the host steps' timing: wrap the pipeline's [`EventSink`] in a
//! [`StepRecorder`] (the `gate` CLI does), which appends each host step to
//! `logs/steps.jsonl` in the state dir.
//!
//! ```no_run
//! use std::sync::Arc;
//! use gate_core::{EventSink, StateDir, TracingEvents};
//! use gate_core::report::StepRecorder;
//!
//! let state = StateDir::new(".gate");
//! let events: Arc<dyn EventSink> = Arc::new(StepRecorder::new(&state, Arc::new(TracingEvents)));
//! # let _ = events;
//! ```

mod cases;
mod html;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use cases::{Case, CaseStatus, read_cases};
pub use html::render;

use crate::error::{Error, Result};
use crate::events::{Event, EventSink};
use crate::ledger::Replay;
use crate::model::Inventory;
use crate::stage::Stage;
use crate::state::{RunState, StageStatus, StateDir};

/// The report's file name in the artifacts dir.
pub const REPORT_FILE: &str = "report.html";

/// The host-step timing file's name in the state dir's `logs/`.
pub const STEPS_FILE: &str = "steps.jsonl";

/// How many lines of the failing step's output the page shows at the top.
const TAIL_LINES: usize = 40;

/// One line of `logs/steps.jsonl`: a host step began or ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The stage it ran in (the last stage started in this process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// The host.
    pub host: String,
    /// The step.
    pub step: String,
    /// `started`, `ok` or `failed`.
    pub status: String,
    /// When (RFC 3339).
    pub at: String,
}

/// An [`EventSink`] that passes every event on to `inner` and appends each host step, with
/// its stage and time, to `logs/steps.jsonl` in the state dir (for the report's per-host
/// bars). A write that fails is logged and otherwise ignored: timing is not worth a run.
#[derive(Debug)]
pub struct StepRecorder {
    inner: Arc<dyn EventSink>,
    path: PathBuf,
    stage: Mutex<Option<Stage>>,
}

impl StepRecorder {
    /// Records into `state`'s `logs/steps.jsonl`, passing events on to `inner`.
    pub fn new(state: &StateDir, inner: Arc<dyn EventSink>) -> Self {
        Self {
            inner,
            path: state.logs().join(STEPS_FILE),
            stage: Mutex::new(None),
        }
    }

    fn append(&self, record: &StepRecord) -> std::io::Result<()> {
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut line = serde_json::to_string(record).map_err(std::io::Error::other)?;
        line.push('\n');
        let line = crate::secret::redact(&line);
        // Opened per line: a new run removes logs/ while this sink lives on.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?
            .write_all(line.as_bytes())
    }
}

impl EventSink for StepRecorder {
    fn emit(&self, event: &Event) {
        match event {
            Event::StageStarted { stage } => {
                if let Ok(mut current) = self.stage.lock() {
                    *current = Some(*stage);
                }
            }
            Event::HostStep { host, step, status } => {
                let stage = self.stage.lock().ok().and_then(|s| *s);
                let record = StepRecord {
                    stage,
                    host: host.clone(),
                    step: step.clone(),
                    status: status.clone(),
                    at: crate::time::now_rfc3339(),
                };
                if let Err(e) = self.append(&record) {
                    tracing::debug!("recording a host step in {}: {e}", self.path.display());
                }
            }
            _ => {}
        }
        self.inner.emit(event);
    }
}

/// Reads `logs/steps.jsonl`; a missing file or an unreadable line is skipped.
pub fn read_steps(path: &Path) -> Vec<StepRecord> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// A host step from its start to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSpan {
    /// The stage.
    pub stage: Option<Stage>,
    /// The host.
    pub host: String,
    /// The step.
    pub step: String,
    /// When it started.
    pub started: OffsetDateTime,
    /// When it ended; `None` when it never did (interrupted, or a crash).
    pub ended: Option<OffsetDateTime>,
    /// `ok`, `failed`, or `unfinished`.
    pub status: String,
}

/// Pairs each `started` record with the next end of the same stage, host and step.
pub fn step_spans(records: &[StepRecord]) -> Vec<StepSpan> {
    let mut spans: Vec<StepSpan> = Vec::new();
    for record in records {
        let Some(at) = parse_time(&record.at) else {
            continue;
        };
        if record.status == "started" {
            spans.push(StepSpan {
                stage: record.stage,
                host: record.host.clone(),
                step: record.step.clone(),
                started: at,
                ended: None,
                status: "unfinished".into(),
            });
        } else if let Some(span) = spans.iter_mut().find(|s| {
            s.ended.is_none()
                && s.stage == record.stage
                && s.host == record.host
                && s.step == record.step
        }) {
            span.ended = Some(at);
            span.status = record.status.clone();
        }
    }
    spans
}

/// Parses an RFC 3339 timestamp.
pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// A JUnit file under `artifacts/results/` and what it holds.
#[derive(Debug, Clone)]
pub struct ResultFile {
    /// Its path relative to the artifacts dir, with `/`.
    pub link: String,
    /// Its cases, or why it could not be read.
    pub cases: std::result::Result<Vec<Case>, String>,
}

/// A per-host log under `artifacts/logs/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    /// The stage (the log's directory).
    pub stage: String,
    /// The host (the file's stem).
    pub host: String,
    /// Its path relative to the artifacts dir, with `/`.
    pub link: String,
    /// Its size.
    pub bytes: u64,
}

/// The output tail of one host in the failing stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// The host.
    pub host: String,
    /// The whole log, relative to the artifacts dir.
    pub link: String,
    /// Its last lines.
    pub text: String,
}

/// What the top of the page says about a failed or interrupted run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The stage that failed (or was interrupted).
    pub stage: Stage,
    /// Its status.
    pub status: StageStatus,
    /// Its message (redacted).
    pub message: String,
    /// The tail of each failing host's log.
    pub tails: Vec<Tail>,
}

/// Everything the report shows, gathered from the state and artifacts dirs.
#[derive(Debug, Clone)]
pub struct ReportData {
    /// `run.json`.
    pub run: RunState,
    /// The hosts, if allocation got that far.
    pub inventory: Option<Inventory>,
    /// The ledger.
    pub ledger: Replay,
    /// Host steps with their times.
    pub steps: Vec<StepSpan>,
    /// JUnit files.
    pub results: Vec<ResultFile>,
    /// Per-host logs.
    pub logs: Vec<LogFile>,
    /// Hosts whose files were archived into `artifacts/<host>/`.
    pub archived: Vec<String>,
    /// Set when the run failed or was interrupted.
    pub failure: Option<Failure>,
}

impl ReportData {
    /// Reads what the report needs: `run` as given, the inventory, the ledger and the
    /// host-step timings from `state`, and the JUnit files and logs from `artifacts_dir`
    /// (where the final step has copied `logs/`).
    pub fn gather(state: &StateDir, artifacts_dir: &Path, run: &RunState) -> Result<Self> {
        let inventory = state.load_inventory().ok().flatten();
        let ledger = Replay::read(&state.ledger())?;
        let steps = step_spans(&read_steps(&state.logs().join(STEPS_FILE)));
        let results = result_files(artifacts_dir);
        let logs = log_files(artifacts_dir);
        let archived = inventory
            .iter()
            .flat_map(|inv| inv.hosts())
            .filter(|h| artifacts_dir.join(&h.name).is_dir())
            .map(|h| h.name.clone())
            .collect();
        let mut data = Self {
            run: run.clone(),
            inventory,
            ledger,
            steps,
            results,
            logs,
            archived,
            failure: None,
        };
        data.failure = data.find_failure(artifacts_dir);
        Ok(data)
    }

    fn find_failure(&self, artifacts_dir: &Path) -> Option<Failure> {
        let record = self
            .run
            .stages
            .iter()
            .find(|r| r.status == StageStatus::Failed)
            .or_else(|| {
                self.run
                    .stages
                    .iter()
                    .find(|r| r.status == StageStatus::Cancelled)
            })?;
        let stage = record.stage;
        let failing: Vec<&str> = self
            .steps
            .iter()
            .filter(|s| s.stage == Some(stage) && s.status != "ok")
            .map(|s| s.host.as_str())
            .collect();
        let tails = self
            .logs
            .iter()
            .filter(|l| l.stage == stage.name())
            .filter(|l| failing.is_empty() || failing.contains(&l.host.as_str()))
            .map(|l| Tail {
                host: l.host.clone(),
                link: l.link.clone(),
                text: tail(&artifacts_dir.join(&l.link), TAIL_LINES),
            })
            .collect();
        Some(Failure {
            stage,
            status: record.status,
            message: record.message.clone().unwrap_or_default(),
            tails,
        })
    }

    /// Every test case of every readable JUnit file.
    pub fn cases(&self) -> impl Iterator<Item = &Case> {
        self.results
            .iter()
            .filter_map(|f| f.cases.as_ref().ok())
            .flatten()
    }
}

/// The last `n` lines of the file at `path` (empty when it cannot be read).
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The sorted entries of `dir` (none when it cannot be read).
fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The `*.xml` files in `artifacts/results/`, each read case by case.
fn result_files(artifacts_dir: &Path) -> Vec<ResultFile> {
    sorted_entries(&artifacts_dir.join("results"))
        .into_iter()
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "xml"))
        .map(|path| ResultFile {
            link: format!("results/{}", file_name(&path)),
            cases: read_cases(&path).map_err(|e| e.to_string()),
        })
        .collect()
}

/// The `logs/<stage>/<host>.log` files in the artifacts dir, in run order.
fn log_files(artifacts_dir: &Path) -> Vec<LogFile> {
    let mut logs = Vec::new();
    for stage in Stage::ALL {
        for path in sorted_entries(&artifacts_dir.join("logs").join(stage.name())) {
            let name = file_name(&path);
            let Some(host) = name.strip_suffix(".log") else {
                continue;
            };
            logs.push(LogFile {
                stage: stage.name().to_owned(),
                host: host.to_owned(),
                link: format!("logs/{}/{name}", stage.name()),
                bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
            });
        }
    }
    logs
}

/// Renders the report of `run` and writes it to `artifacts/report.html` (through a
/// temporary file and a rename); returns its path.
pub fn write_report(state: &StateDir, artifacts_dir: &Path, run: &RunState) -> Result<PathBuf> {
    let data = ReportData::gather(state, artifacts_dir, run)?;
    let page = render(&data);
    let page = crate::secret::redact(&page);
    let path = artifacts_dir.join(REPORT_FILE);
    let tmp = artifacts_dir.join(format!(".{REPORT_FILE}.tmp"));
    std::fs::write(&tmp, page.as_bytes()).map_err(|e| Error::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("renaming", &tmp, e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(host: &str, step: &str, status: &str, at: &str) -> StepRecord {
        StepRecord {
            stage: Some(Stage::Deploy),
            host: host.into(),
            step: step.into(),
            status: status.into(),
            at: at.into(),
        }
    }

    #[test]
    fn step_spans_pair_starts_with_ends_per_host_and_keep_unfinished_ones() {
        let spans = step_spans(&[
            record("h1", "a", "started", "2026-01-01T00:00:00.000Z"),
            record("h2", "a", "started", "2026-01-01T00:00:00.100Z"),
            record("h2", "a", "failed", "2026-01-01T00:00:01.000Z"),
            record("h1", "a", "ok", "2026-01-01T00:00:02.000Z"),
            record("h1", "a", "started", "2026-01-01T00:00:03.000Z"),
        ]);
        let summary: Vec<_> = spans
            .iter()
            .map(|s| (s.host.as_str(), s.status.as_str(), s.ended.is_some()))
            .collect();
        assert_eq!(
            summary,
            [
                ("h1", "ok", true),
                ("h2", "failed", true),
                ("h1", "unfinished", false)
            ]
        );
    }

    #[derive(Debug)]
    struct Nothing;
    impl EventSink for Nothing {
        fn emit(&self, _: &Event) {}
    }

    #[test]
    fn the_recorder_writes_host_steps_with_their_stage() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let recorder = StepRecorder::new(&state, Arc::new(Nothing));
        recorder.emit(&Event::StageStarted { stage: Stage::Test });
        recorder.emit(&Event::HostStep {
            host: "h1".into(),
            step: "t".into(),
            status: "started".into(),
        });
        let steps = read_steps(&state.logs().join(STEPS_FILE));
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].stage, Some(Stage::Test));
        assert!(parse_time(&steps[0].at).is_some());
    }
}
