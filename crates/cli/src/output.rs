//! What a person sees: progress lines on stderr, logs through `tracing`, secrets masked.

use std::io::Write;
use std::sync::Mutex;

use gate_core::state::StageStatus;
use gate_core::{Event, EventSink, RunState};

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
        match gate_core::secret::redact_bytes(buf) {
            Some(masked) => self.0.write_all(&masked)?,
            None => self.0.write_all(buf)?,
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
            Event::Output { host, line, .. } if self.verbose => format!("    [{host}] {line}"),
            _ => return,
        };
        let line = gate_core::secret::redact(&line);
        let _guard = self.lock.lock();
        let _ = writeln!(std::io::stderr(), "{line}");
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

/// The stages of `run` as an aligned table.
pub fn stage_table(run: &RunState) -> String {
    let mut out = String::new();
    for record in &run.stages {
        let duration = record.duration_ms.map(duration).unwrap_or_default();
        let mut line = format!(
            "  {:<20} {:<15} {:>8}  {}",
            record.stage.name(),
            status_word(record.status),
            duration,
            record.backend.as_deref().unwrap_or("-")
        );
        if let Some(message) = &record.message
            && record.status != StageStatus::Failed
        {
            line.push_str(&format!("  ({})", first_line(message)));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
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
