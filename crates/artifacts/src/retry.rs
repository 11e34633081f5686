//! Retries of transient failures, with a doubling pause.

use std::future::Future;
use std::time::Duration;

use gate_core::{Error, Result};
use tokio_util::sync::CancellationToken;

/// Why one try failed.
#[derive(Debug)]
pub enum Failure {
    /// Worth another try (a dropped connection, a 5xx, a held lock).
    Transient(Error),
    /// Another try would fail the same way (refused credentials, a conflict).
    Fatal(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        if e.is_cancelled() {
            Failure::Fatal(e)
        } else {
            Failure::Transient(e)
        }
    }
}

/// How often and how patiently to try.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Tries in all (at least one).
    pub tries: u32,
    /// The first pause; doubled after each try, at most 30 s.
    pub backoff: Duration,
}

/// Runs `attempt` until it succeeds, fails fatally, or `policy.tries` are used up; the
/// last error is returned. Stops with [`Error::Cancelled`] when `cancel` fires.
pub async fn retry<T, F, Fut>(
    policy: Policy,
    cancel: &CancellationToken,
    what: &str,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, Failure>>,
{
    let mut pause = policy.backoff;
    let tries = policy.tries.max(1);
    for n in 1..=tries {
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Transient(e)) if n == tries => return Err(e),
            Err(Failure::Transient(e)) => {
                tracing::warn!("{what}: try {n} of {tries} failed, again in {pause:?}: {e}");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = cancel.cancelled() => return Err(Error::Cancelled),
                }
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
    }
    Err(Error::Cancelled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn transient_failures_are_retried_and_fatal_ones_are_not() {
        let policy = Policy {
            tries: 5,
            backoff: Duration::from_millis(1),
        };
        let cancel = CancellationToken::new();
        let mut calls = 0;
        let value = retry(policy, &cancel, "t", || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(Failure::Transient(Error::backend("t", "flaky")))
                } else {
                    Ok(n)
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(value, 3);
        let mut calls = 0;
        let failed: Result<()> = retry(policy, &cancel, "t", || {
            calls += 1;
            async { Err(Failure::Fatal(Error::backend("t", "denied"))) }
        })
        .await;
        assert!(failed.is_err());
        assert_eq!(calls, 1);
        let mut calls = 0;
        let failed: Result<()> = retry(policy, &cancel, "t", || {
            calls += 1;
            async { Err(Failure::Transient(Error::backend("t", "down"))) }
        })
        .await;
        assert!(failed.is_err());
        assert_eq!(calls, 5);
    }
}
