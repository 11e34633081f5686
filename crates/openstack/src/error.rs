//! The crate's one error type.

use std::time::Duration;

/// What can go wrong talking to an OpenStack cloud. Messages name the cloud, region, call
/// and status; they never carry a password, token or application-credential secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The cloud's configuration (`clouds.yaml`, `OS_*`) is missing or wrong.
    #[error("OpenStack configuration: {0}")]
    Config(String),
    /// Keystone refused the credentials.
    #[error("OpenStack authentication failed for {cloud}: {message}")]
    Auth {
        /// The cloud (a `clouds.yaml` entry or `OS_* environment`).
        cloud: String,
        /// Keystone's reason.
        message: String,
    },
    /// An API call failed (after retries where the failure was transient).
    #[error("{region}: {method} {service} {path}: {}{message}", status.map(|s| format!("HTTP {s}: ")).unwrap_or_default())]
    Api {
        /// The region asked.
        region: String,
        /// The HTTP method.
        method: String,
        /// The service type (`compute`, `orchestration`, …).
        service: String,
        /// The path called.
        path: String,
        /// The HTTP status, when one came back.
        status: Option<u16>,
        /// The API's fault message, or the connection error.
        message: String,
    },
    /// A quota is exhausted: not retried, the next region may have room.
    #[error("{region}: quota exceeded: {message}")]
    Quota {
        /// The region.
        region: String,
        /// Nova's message (which quota, used and limit).
        message: String,
    },
    /// A server went to ERROR while building.
    #[error("{region}: server `{name}` ({id}) went to ERROR: {fault}")]
    BuildFailed {
        /// The region.
        region: String,
        /// The server's name.
        name: String,
        /// The server's id.
        id: String,
        /// Nova's fault message.
        fault: String,
    },
    /// Something did not reach a state in time.
    #[error("{region}: {what} not done after {}s", after.as_secs())]
    Timeout {
        /// The region.
        region: String,
        /// What was waited for.
        what: String,
        /// How long was waited.
        after: Duration,
    },
    /// A delete refused because what exists cannot be told to be the run's: a keypair
    /// (untaggable) whose name does not carry the run id, when only the intent was written.
    #[error("{region}: {what} left alone: {reason}")]
    Ambiguous {
        /// The region.
        region: String,
        /// What was not deleted (`keypair `x``).
        what: String,
        /// Why, and what to do.
        reason: String,
    },
    /// The caller gave up (interrupt).
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    /// The HTTP status of an API failure.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => *status,
            _ => None,
        }
    }

    /// Whether an API call answered 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Converts into gate-core's error, with `backend` named.
    pub fn into_core(self, backend: &str) -> gate_core::Error {
        match self {
            Error::Cancelled => gate_core::Error::Cancelled,
            other => gate_core::Error::backend(backend, other.to_string()),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
