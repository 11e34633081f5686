//! What a person sees: a live view on a terminal, plain lines on stderr otherwise, JSON
//! events on stdout with `--json`; logs through `tracing`; secrets masked everywhere.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use gate_core::report::StepRecorder;
use gate_core::state::StageStatus;
use gate_core::{Event, EventSink, RunState, StateDir};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// The live view's bars, once one is shown: log lines are written around them.
static LIVE: OnceLock<MultiProgress> = OnceLock::new();

/// The event sink for a pipeline command: JSON lines on stdout with `json`, else a live
/// view when stderr is a terminal, else plain lines on stderr. Host steps are also
/// recorded in the state dir (`logs/steps.jsonl`) for the run report's per-host bars.
pub fn event_sink(state: &StateDir, verbose: u8, json: bool) -> Arc<dyn EventSink> {
    let verbose = verbose > 0;
    let inner: Arc<dyn EventSink> = if json {
        Arc::new(JsonEvents::new(verbose))
    } else if std::io::stderr().is_terminal() {
        Arc::new(LiveView::new(verbose))
    } else {
        Arc::new(PlainEvents::new(verbose))
    };
    Arc::new(StepRecorder::new(state, inner))
}

/// Sets up `tracing` on stderr: warnings by default, more with `-v`, `RUST_LOG` wins;
/// every line passes through the secret redactor.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 | 1 => "warn",
        2 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .with_writer(|| RedactingWriter(std::io::stderr()))
        .try_init();
}

/// A writer that masks known secret values in each write (tracing writes whole events).
struct RedactingWriter<W: Write>(W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let masked = gate_core::secret::redact_bytes(buf);
        let bytes = masked.as_deref().unwrap_or(buf);
        match LIVE.get() {
            Some(live) => live.suspend(|| self.0.write_all(bytes))?,
            None => self.0.write_all(bytes)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Progress as plain lines on stderr (no control codes).
#[derive(Debug)]
pub struct PlainEvents {
    verbose: bool,
    lock: Mutex<()>,
}

impl PlainEvents {
    /// A printer; `verbose` also prints every line of command output.
    pub fn new(verbose: bool) -> Self {
        Self {
            verbose,
            lock: Mutex::new(()),
        }
    }
}

impl EventSink for PlainEvents {
    fn emit(&self, event: &Event) {
        let Some(line) = plain_line(event, self.verbose) else {
            return;
        };
        let line = gate_core::secret::redact(&line);
        let _guard = self.lock.lock();
        let _ = writeln!(std::io::stderr(), "{line}");
    }
}

/// `event` as a plain line (no control codes), or `None` for events not shown.
fn plain_line(event: &Event, verbose: bool) -> Option<String> {
    let line = match event {
        Event::StageStarted { stage } => format!("==> {stage}"),
        Event::StageFinished {
            stage,
            status,
            duration_ms,
            error,
        } => {
            let mut line = format!(
                "<== {stage}: {} in {}",
                status_word(*status),
                duration(*duration_ms)
            );
            if let Some(error) = error {
                line.push_str(&format!("\n    {}", error.replace('\n', "\n    ")));
            }
            line
        }
        Event::HostStep { host, step, status } if status != "started" => {
            format!("    [{host}] {step}: {status}")
        }
        Event::ResourceCreated {
            backend,
            kind,
            name,
        } => format!("    + {backend} {kind} {name}"),
        Event::ResourceDeleted {
            backend,
            kind,
            name,
        } => format!("    - {backend} {kind} {name}"),
        Event::TestCounts {
            tests,
            failures,
            errors,
            skipped,
        } => format!(
            "    tests: {tests} run, {failures} failed, {errors} errored, {skipped} skipped"
        ),
        Event::Output { host, line, .. } if verbose => format!("    [{host}] {line}"),
        _ => return None,
    };
    Some(line)
}

/// Progress as JSON on stdout, one event a line (`{"event":"stage-started",…}`); command
/// output lines only when verbose.
#[derive(Debug)]
pub struct JsonEvents {
    verbose: bool,
    lock: Mutex<()>,
}

impl JsonEvents {
    /// A printer; `verbose` also prints `output` events.
    pub fn new(verbose: bool) -> Self {
        Self {
            verbose,
            lock: Mutex::new(()),
        }
    }
}

impl EventSink for JsonEvents {
    fn emit(&self, event: &Event) {
        if matches!(event, Event::Output { .. }) && !self.verbose {
            return;
        }
        if let Ok(line) = serde_json::to_string(event) {
            json_line(&line, &self.lock);
        }
    }
}

/// Writes one JSON line to stdout (secrets masked) and flushes it.
fn json_line(line: &str, lock: &Mutex<()>) {
    let line = gate_core::secret::redact(line);
    let _guard = lock.lock();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The last `--json` line: `{"event":"run-finished", run_id, exit_code, stages, report}`.
pub fn print_run_finished(run: &RunState, exit_code: i32, report: &std::path::Path) {
    let value = serde_json::json!({
        "event": "run-finished",
        "run_id": run.run_id,
        "exit_code": exit_code,
        "stages": run.stages.iter().map(|r| serde_json::json!({
            "stage": r.stage, "status": r.status, "duration_ms": r.duration_ms,
        })).collect::<Vec<_>>(),
        "report": report,
    });
    json_line(&value.to_string(), &Mutex::new(()));
}

/// The live terminal view: a line per stage (spinner, elapsed, then its outcome) and, under
/// the running stage, a line per host (its current step, state and elapsed). Other events
/// print as plain lines above the bars.
#[derive(Debug)]
pub struct LiveView {
    multi: MultiProgress,
    verbose: bool,
    bars: Mutex<LiveBars>,
}

#[derive(Debug, Default)]
struct LiveBars {
    stage: Option<ProgressBar>,
    hosts: Vec<(String, ProgressBar, bool)>,
}

const TICK: Duration = Duration::from_millis(120);

impl LiveView {
    /// A view drawing on stderr.
    pub fn new(verbose: bool) -> Self {
        let multi = LIVE.get_or_init(MultiProgress::new).clone();
        Self {
            multi,
            verbose,
            bars: Mutex::new(LiveBars::default()),
        }
    }

    fn style(template: &str) -> ProgressStyle {
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .tick_strings(&["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏", "·"])
    }

    fn println(&self, line: &str) {
        let _ = self.multi.println(gate_core::secret::redact(line));
    }

    fn host_step(&self, bars: &mut LiveBars, host: &str, step: &str, status: &str) {
        let index = match bars.hosts.iter().position(|(h, _, _)| h == host) {
            Some(i) => i,
            None => {
                let bar = ProgressBar::new_spinner().with_style(Self::style(
                    "    {spinner:.cyan} {prefix:<32} {wide_msg} {elapsed:>4}",
                ));
                bar.set_prefix(host.to_owned());
                let bar = match &bars.stage {
                    Some(stage) => match bars.hosts.last() {
                        Some((_, last, _)) => self.multi.insert_after(last, bar),
                        None => self.multi.insert_after(stage, bar),
                    },
                    None => self.multi.add(bar),
                };
                bar.enable_steady_tick(TICK);
                bars.hosts.push((host.to_owned(), bar, false));
                bars.hosts.len() - 1
            }
        };
        let (_, bar, failed) = &mut bars.hosts[index];
        let step = gate_core::secret::redact(step);
        match status {
            "started" => bar.set_message(format!("{step}: running")),
            "ok" if !*failed => bar.set_message(format!("{step}: ok")),
            "ok" => {}
            _ => {
                *failed = true;
                bar.set_message(format!("{step}: FAILED"));
            }
        }
    }
}

impl EventSink for LiveView {
    fn emit(&self, event: &Event) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        match event {
            Event::StageStarted { stage } => {
                let bar = self
                    .multi
                    .add(ProgressBar::new_spinner().with_style(Self::style(
                        "{spinner:.cyan} {prefix:<20} {msg} {elapsed:>4}",
                    )));
                bar.set_prefix(stage.name());
                bar.set_message("running");
                bar.enable_steady_tick(TICK);
                bars.stage = Some(bar);
            }
            Event::StageFinished {
                stage,
                status,
                duration_ms,
                error,
            } => {
                for (_, bar, failed) in bars.hosts.drain(..) {
                    if failed {
                        bar.set_style(Self::style("    ✗ {prefix:<32} {wide_msg}"));
                        bar.finish();
                    } else {
                        bar.finish_and_clear();
                    }
                }
                let mark = match status {
                    StageStatus::Passed => "✓",
                    StageStatus::Failed => "✗",
                    StageStatus::Cancelled => "!",
                    _ => "·",
                };
                let bar = bars.stage.take().unwrap_or_else(|| {
                    let bar = self.multi.add(ProgressBar::new_spinner());
                    bar.set_prefix(stage.name());
                    bar
                });
                bar.set_style(Self::style(&format!("{mark} {{prefix:<20}} {{msg}}")));
                bar.finish_with_message(format!(
                    "{} in {}",
                    status_word(*status),
                    duration(*duration_ms)
                ));
                if let Some(error) = error {
                    self.println(&format!("    {}", error.replace('\n', "\n    ")));
                }
            }
            Event::HostStep { host, step, status } => {
                self.host_step(&mut bars, host, step, status);
            }
            other => {
                if let Some(line) = plain_line(other, self.verbose) {
                    self.println(&line);
                }
            }
        }
    }
}

/// A status as one word.
pub fn status_word(status: StageStatus) -> &'static str {
    match status {
        StageStatus::Running => "running",
        StageStatus::Passed => "passed",
        StageStatus::Failed => "FAILED",
        StageStatus::Skipped => "skipped",
        StageStatus::Cancelled => "cancelled",
        StageStatus::NotConfigured => "not configured",
    }
}

/// The stages of `run` as an aligned table with a header.
pub fn stage_table(run: &RunState) -> String {
    let rows: Vec<Vec<String>> = run
        .stages
        .iter()
        .map(|record| {
            let note = match &record.message {
                Some(message) if record.status != StageStatus::Failed => first_line(message),
                _ => "",
            };
            vec![
                record.stage.name().to_owned(),
                status_word(record.status).to_owned(),
                record.duration_ms.map(duration).unwrap_or_default(),
                record.backend.clone().unwrap_or_else(|| "-".into()),
                note.to_owned(),
            ]
        })
        .collect();
    table(&["STAGE", "STATUS", "TOOK", "BACKEND", "NOTE"], &rows)
}

/// `rows` under `headers` in aligned columns, each line indented by two spaces; known
/// secret values masked.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::from(" ");
        for (i, cell) in row.iter().enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            line.push(' ');
            line.push_str(cell);
            line.push_str(&" ".repeat(width.saturating_sub(cell.chars().count()) + 1));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    gate_core::secret::redact(&out).into_owned()
}

/// A duration for people: `850ms`, `12.3s`, `4m05s`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
    }
}

/// The first line of `text`.
pub fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}
