//! Fan-out: one step on many hosts at once, with a bound and a result per host.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::error::{Error, Result};
use crate::transport::Transport;

/// The result of a step on one host.
#[derive(Debug)]
pub struct HostOutcome<T> {
    /// The host's name.
    pub host: String,
    /// What the step returned there.
    pub result: Result<T>,
}

/// Runs `step` on every transport, at most `limit` at a time (at least one), and returns
/// one outcome per host in the order given. Generic over the transport type, so it works
/// for `Arc<dyn Transport>` and concrete transports alike.
pub async fn fan_out<Tr, T, F, Fut>(
    transports: &[Arc<Tr>],
    limit: usize,
    step: F,
) -> Vec<HostOutcome<T>>
where
    Tr: Transport + ?Sized,
    F: Fn(Arc<Tr>) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    bounded(transports.iter().cloned(), limit, |transport| {
        let host = transport.host().name.clone();
        let run = step(transport);
        async move {
            HostOutcome {
                host,
                result: run.await,
            }
        }
    })
    .await
}

/// Runs `step` on every item, at most `limit` at a time (at least one), on the current
/// task; results come back in the order of the items.
pub async fn bounded<I, T, F, Fut>(items: I, limit: usize, step: F) -> Vec<T>
where
    I: IntoIterator,
    F: Fn(I::Item) -> Fut,
    Fut: Future<Output = T>,
{
    let permits = Semaphore::new(limit.max(1));
    let runs = items.into_iter().map(|item| {
        let run = step(item);
        let permits = &permits;
        async move {
            // The semaphore is never closed, so acquiring only waits.
            let _permit = permits.acquire().await;
            run.await
        }
    });
    futures_util::future::join_all(runs).await
}

/// The values of `outcomes`, or an [`Error::Hosts`] holding every host's failure (a single
/// failure is returned as it is).
pub fn all_ok<T>(outcomes: Vec<HostOutcome<T>>) -> Result<Vec<T>> {
    let total = outcomes.len();
    let mut values = Vec::with_capacity(total);
    let mut failures = Vec::new();
    for outcome in outcomes {
        match outcome.result {
            Ok(value) => values.push(value),
            Err(e) => failures.push(e),
        }
    }
    match failures.len() {
        0 => Ok(values),
        1 if total == 1 => Err(failures.remove(0)),
        _ => Err(Error::Hosts { total, failures }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::local::{LOCAL, LocalTransport};
    use crate::model::Host;
    use crate::transport::{ExecIo, HostLog, TransportExt};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio_util::sync::CancellationToken;

    fn transports(dir: &std::path::Path, n: usize) -> Vec<Arc<LocalTransport>> {
        (0..n)
            .map(|i| {
                let home = dir.join(format!("h{i}"));
                std::fs::create_dir_all(&home).unwrap();
                Arc::new(
                    LocalTransport::new(Host {
                        name: format!("h{i}"),
                        address: "localhost".into(),
                        port: 0,
                        user: "me".into(),
                        labels: vec![],
                        transport: LOCAL.into(),
                        home: Some(home.display().to_string()),
                    })
                    .unwrap(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn respects_the_bound_and_keeps_per_host_results() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = transports(dir.path(), 6);
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let outcomes = fan_out(&hosts, 2, |t| {
            let (running, peak) = (&running, &peak);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let log = HostLog::detached(&t.host().name, None);
                let cancel = CancellationToken::new();
                let io = ExecIo {
                    log: &log,
                    cancel: &cancel,
                };
                let code = if t.host().name == "h3" {
                    "exit 4"
                } else {
                    "sleep 0.1"
                };
                let result = t.run(&Command::script(code), &io).await;
                running.fetch_sub(1, Ordering::SeqCst);
                result.map(|out| out.status)
            }
        })
        .await;
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        let names: Vec<_> = outcomes.iter().map(|o| o.host.as_str()).collect();
        assert_eq!(names, ["h0", "h1", "h2", "h3", "h4", "h5"]);
        let err = all_ok(outcomes).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("1 of 6 hosts failed") && text.contains("host h3"),
            "{text}"
        );
    }
}
