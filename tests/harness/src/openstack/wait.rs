//! Polling with deadlines while the services come up; errors carry the services' logs.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::rest::request;
use super::services::{Supervisor, log_tail};
use super::start::START_DEADLINE;
use crate::error::{HarnessError, Result};

/// Polls `probe` until it gives something, failing early when one of `services` exited.
pub(crate) fn wait_until<T>(
    supervisor: &Supervisor,
    services: &[&str],
    deadline: Instant,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T> {
    loop {
        if let Some(found) = probe() {
            return Ok(found);
        }
        for service in services {
            supervisor.check_alive(service)?;
        }
        if Instant::now() > deadline {
            return Err(not_ready(
                &services.join(", "),
                "not ready before the deadline",
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `url` answers with a status below 500.
pub(crate) fn wait_http(
    supervisor: &Supervisor,
    name: &str,
    url: &str,
    deadline: Instant,
) -> Result<()> {
    wait_until(supervisor, &[name], deadline, || {
        request("GET", url, &[], None)
            .ok()
            .filter(|answer| answer.status < 500)
    })
    .map(drop)
    .map_err(|error| with_logs(error, supervisor, &[name]))
}

/// Waits until `port` on 127.0.0.1 accepts connections.
pub(crate) fn wait_tcp(
    supervisor: &Supervisor,
    name: &str,
    port: u16,
    deadline: Instant,
) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until(supervisor, &[name], deadline, || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()
    })
    .map(drop)
    .map_err(|error| with_logs(error, supervisor, &[name]))
}

pub(crate) fn not_ready(what: &str, detail: &str) -> HarnessError {
    HarnessError::NotReady {
        host: what.to_owned(),
        seconds: START_DEADLINE.as_secs(),
        detail: detail.to_owned(),
    }
}

/// Adds the tails of the services' logs to a "not ready" error.
pub(crate) fn with_logs(
    error: HarnessError,
    supervisor: &Supervisor,
    services: &[&str],
) -> HarnessError {
    match error {
        HarnessError::NotReady {
            host,
            seconds,
            detail,
        } => {
            let logs: Vec<String> = services
                .iter()
                .map(|service| log_tail(&supervisor.log_of(service), 25))
                .collect();
            HarnessError::NotReady {
                host,
                seconds,
                detail: format!("{detail}\n{}", logs.join("\n")),
            }
        }
        other => other,
    }
}
