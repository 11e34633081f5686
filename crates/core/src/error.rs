//! The error type of gate-core, shared by every backend through `From`.

use std::path::PathBuf;
use std::time::Duration;

use crate::stage::Stage;

/// Result with gate-core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, with enough structure to say which host, stage, backend or file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A backend's configuration section does not parse.
    #[error("{source_name}: [{section}] {key}: {message}")]
    Config {
        /// The config file (or other source) the value came from.
        source_name: String,
        /// The section, e.g. `provider`.
        section: String,
        /// The dotted key inside the section; empty for the section itself.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// No backend of this name is registered for the role.
    #[error("{source_name}: [{section}] backend: unknown {role} `{name}`; known: {}", known.join(", "))]
    UnknownBackend {
        /// The config file.
        source_name: String,
        /// The section that named it.
        section: String,
        /// The role, e.g. `provider`.
        role: &'static str,
        /// The name asked for.
        name: String,
        /// Every registered name for that role.
        known: Vec<String>,
    },
    /// A file-system operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What gate was doing, e.g. `writing`.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A command on a host exited unsuccessfully.
    #[error("host {host}: `{command}` {status}{}", format_tail(tail))]
    Command {
        /// The host it ran on.
        host: String,
        /// The command line, secrets masked.
        command: String,
        /// How it ended, e.g. `exited with status 2`.
        status: String,
        /// The last lines of its output, secrets masked.
        tail: Vec<String>,
    },
    /// A command on a host ran past its deadline and was killed.
    #[error("host {host}: `{command}` timed out after {}s{}", after.as_secs(), format_tail(tail))]
    Timeout {
        /// The host it ran on.
        host: String,
        /// The command line, secrets masked.
        command: String,
        /// The deadline.
        after: Duration,
        /// The last lines of its output.
        tail: Vec<String>,
    },
    /// A host could not be reached over its transport.
    #[error("host {host}: unreachable: {message}")]
    Unreachable {
        /// The host.
        host: String,
        /// Why.
        message: String,
    },
    /// Work on a host failed for another reason.
    #[error("host {host}: {message}")]
    Host {
        /// The host.
        host: String,
        /// What failed.
        message: String,
    },
    /// Several hosts failed in one fan-out; each failure is kept.
    #[error("{} of {total} hosts failed:\n{}", failures.len(), failures.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Hosts {
        /// How many hosts took part.
        total: usize,
        /// One error per failed host.
        failures: Vec<Error>,
    },
    /// A backend failed.
    #[error("{backend}: {message}")]
    Backend {
        /// The registry name of the backend.
        backend: String,
        /// What failed.
        message: String,
    },
    /// The ledger could not be read or written.
    #[error("ledger {}: {message}", path.display())]
    Ledger {
        /// The ledger file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The state directory is not in a state this operation accepts.
    #[error("state dir {}: {message}", path.display())]
    State {
        /// The state directory.
        path: PathBuf,
        /// What is wrong and what to do about it.
        message: String,
    },
    /// A stage needs something the run does not have.
    #[error("stage {stage}: {message}")]
    Stage {
        /// The stage.
        stage: Stage,
        /// What is missing or wrong.
        message: String,
    },
    /// The work was cancelled (interrupt or deadline of the caller).
    #[error("cancelled")]
    Cancelled,
}

fn format_tail(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; last output:\n    {}", tail.join("\n    "))
    }
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// A [`Error::Backend`] error.
    pub fn backend(backend: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Backend {
            backend: backend.into(),
            message: message.into(),
        }
    }

    /// Whether this failure lies in the infrastructure (an unreachable host, the state dir)
    /// rather than in what the stage was doing.
    pub fn is_infrastructure(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Ledger { .. } | Self::State { .. } => true,
            Self::Hosts { failures, .. } => failures.iter().all(Self::is_infrastructure),
            _ => false,
        }
    }

    /// Whether this is a cancellation.
    pub fn is_cancelled(&self) -> bool {
        match self {
            Self::Cancelled => true,
            Self::Hosts { failures, .. } => failures.iter().any(Self::is_cancelled),
            _ => false,
        }
    }
}
