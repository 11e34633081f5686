//! Events of a run, for progress views and `--json` consumers.

use std::fmt;

use serde::Serialize;

use crate::stage::Stage;
use crate::state::StageStatus;
use crate::transport::Stream;

/// Something that happened during a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Event {
    /// A stage began.
    StageStarted {
        /// The stage.
        stage: Stage,
    },
    /// A stage ended.
    StageFinished {
        /// The stage.
        stage: Stage,
        /// How it ended.
        status: StageStatus,
        /// How long it took.
        duration_ms: u64,
        /// Why it failed, if it did.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A step on one host began or ended.
    HostStep {
        /// The host.
        host: String,
        /// What the step is.
        step: String,
        /// `started`, `ok` or `failed`.
        status: String,
    },
    /// A resource was recorded as created.
    ResourceCreated {
        /// The backend.
        backend: String,
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
    },
    /// A resource was recorded as deleted or released.
    ResourceDeleted {
        /// The backend.
        backend: String,
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
    },
    /// A tester finished.
    TestCounts {
        /// Test cases run.
        tests: u64,
        /// Failed.
        failures: u64,
        /// Errored.
        errors: u64,
        /// Skipped.
        skipped: u64,
    },
    /// A line of command output (redacted).
    Output {
        /// The host.
        host: String,
        /// stdout or stderr.
        stream: Stream,
        /// The line.
        line: String,
    },
}

/// Receives events. Implementations must be cheap: they are called inline.
pub trait EventSink: Send + Sync + fmt::Debug + 'static {
    /// Handles one event.
    fn emit(&self, event: &Event);
}

/// Sends events to `tracing` (output lines at debug level).
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingEvents;

impl EventSink for TracingEvents {
    fn emit(&self, event: &Event) {
        match event {
            Event::Output { host, line, .. } => tracing::debug!(%host, "{line}"),
            other => tracing::info!(
                "{}",
                serde_json::to_string(other).unwrap_or_else(|_| format!("{other:?}"))
            ),
        }
    }
}
