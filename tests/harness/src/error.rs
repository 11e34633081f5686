//! The harness's one error type.

use std::path::PathBuf;

/// Why a piece of the harness could not start or do what a test asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// The fleet was started by a user other than root.
    #[error(
        "the SSH fleet needs root (mount namespaces and sshd on 127.0.0.x); run the tests as root"
    )]
    NotRoot,
    /// A program the harness runs is not installed.
    #[error("{program} is missing: install {package} (scripts/test installs it when run as root)")]
    MissingTool {
        /// The program looked for.
        program: String,
        /// The Debian package that has it.
        package: String,
    },
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A program the harness ran failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command, for the reader.
        command: String,
        /// Exit status and output.
        detail: String,
    },
    /// No loopback address was free for a fleet host.
    #[error("no free loopback address for fleet host {host}: {detail}")]
    NoAddress {
        /// The host's name.
        host: String,
        /// Why the candidates were refused.
        detail: String,
    },
    /// A host or server did not answer in time.
    #[error("{host} did not become ready within {seconds}s: {detail}")]
    NotReady {
        /// The host or server.
        host: String,
        /// The deadline, in seconds.
        seconds: u64,
        /// What was seen (logs).
        detail: String,
    },
    /// The mirror cache has not been filled yet.
    #[error("the mirror cache {} is not filled: run scripts/fetch-mirror first", dir.display())]
    MirrorNotFilled {
        /// The cache directory.
        dir: PathBuf,
    },
}

/// The harness's result type.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

/// Maps an I/O error to [`HarnessError::Io`] with what was being done.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}
