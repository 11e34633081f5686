//! Connecting: retry with backoff until the host answers or the deadline passes, then pin
//! the host key and authenticate. Refused host keys and failed authentication end the
//! attempts at once: waiting would not change them.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gate_core::{Connector, Error, Host, Result, Transport};
use ssh2::{MethodType, Session};
use tokio_util::sync::CancellationToken;

use crate::auth::authenticate;
use crate::config::SshConfig;
use crate::known_hosts;
use crate::transport::SshTransport;

/// How long one TCP connect or SSH handshake may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// The first pause between attempts; it doubles up to `poll_secs`.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// The ciphers offered, fastest first. libssh2 puts chacha20-poly1305 first; AES-GCM runs
/// on the CPU's AES instructions and moves bulk data (archives, uploads) faster. Methods
/// this libssh2 build lacks are dropped from the list by libssh2 itself.
const CIPHERS: &str = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,\
                       chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr";

/// Opens [`SshTransport`]s.
#[derive(Debug, Clone)]
pub struct SshConnector {
    config: SshConfig,
}

/// Why one attempt failed.
enum Attempt {
    /// Not answering yet (refused, timed out, no banner): try again.
    Retry(String),
    /// Will not get better by waiting (host key refused, authentication failed).
    Fatal(Error),
}

impl SshConnector {
    /// A connector with `config`.
    pub fn new(config: SshConfig) -> Self {
        Self { config }
    }

    /// The settings.
    pub fn config(&self) -> &SshConfig {
        &self.config
    }

    /// Connects to `host` as [`Connector::connect`] does, keeping the concrete type (for
    /// [`SshTransport::cipher`] and other SSH-only details).
    pub async fn connect_ssh(
        &self,
        host: &Host,
        cancel: &CancellationToken,
    ) -> Result<SshTransport> {
        let deadline = Instant::now() + self.config.connect_timeout();
        let mut pause = FIRST_PAUSE;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let (h, config) = (host.clone(), self.config.clone());
            let outcome = tokio::task::spawn_blocking(move || attempt(&h, &config))
                .await
                .map_err(|e| Error::Host {
                    host: host.name.clone(),
                    message: format!("connect task failed: {e}"),
                })?;
            let why = match outcome {
                Ok((session, poll_handle)) => {
                    let transport = SshTransport::new(host.clone(), session, poll_handle);
                    tracing::debug!(
                        host = %host.name,
                        attempts,
                        cipher = transport.cipher(),
                        "connected over SSH"
                    );
                    return Ok(transport);
                }
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(why)) => why,
            };
            if Instant::now() + pause > deadline {
                return Err(Error::Unreachable {
                    host: host.name.clone(),
                    message: format!(
                        "no SSH answer from {}@{}:{} within {}s ({attempts} attempts); last: {why}",
                        host.user,
                        host.address,
                        port_of(host),
                        self.config.connect_timeout_secs
                    ),
                });
            }
            tracing::debug!(host = %host.name, "not answering yet: {why}; retrying in {pause:?}");
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = cancel.cancelled() => return Err(Error::Cancelled),
            }
            pause = (pause * 2).min(self.config.poll().max(FIRST_PAUSE));
        }
    }
}

fn port_of(host: &Host) -> u16 {
    if host.port == 0 { 22 } else { host.port }
}

/// One attempt: TCP, handshake (the banner check), host key, authentication.
fn attempt(host: &Host, config: &SshConfig) -> std::result::Result<(Session, TcpStream), Attempt> {
    let port = port_of(host);
    let addr = (host.address.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| Attempt::Retry(format!("resolving {}: {e}", host.address)))?
        .next()
        .ok_or_else(|| Attempt::Retry(format!("{} resolves to no address", host.address)))?;
    let tcp = TcpStream::connect_timeout(&addr, ATTEMPT_TIMEOUT)
        .map_err(|e| Attempt::Retry(format!("connecting to {addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let poll_handle = tcp
        .try_clone()
        .map_err(|e| Attempt::Retry(format!("socket: {e}")))?;
    let mut session = Session::new().map_err(|e| Attempt::Retry(format!("ssh session: {e}")))?;
    for way in [MethodType::CryptCs, MethodType::CryptSc] {
        session.method_pref(way, CIPHERS).map_err(|e| {
            Attempt::Fatal(Error::Host {
                host: host.name.clone(),
                message: format!("SSH cipher preference: {e}"),
            })
        })?;
    }
    session.set_tcp_stream(tcp);
    session.set_timeout(ATTEMPT_TIMEOUT.as_millis() as u32);
    session
        .handshake()
        .map_err(|e| Attempt::Retry(format!("SSH handshake with {addr}: {e}")))?;
    if let Some(path) = &config.known_hosts {
        known_hosts::verify(&session, host, port, path, config.strict).map_err(Attempt::Fatal)?;
    }
    authenticate(&session, host, config).map_err(Attempt::Fatal)?;
    session.set_timeout(0);
    if config.keepalive_secs > 0 {
        session.set_keepalive(true, config.keepalive_secs);
    }
    Ok((session, poll_handle))
}

#[async_trait]
impl Connector for SshConnector {
    async fn connect(&self, host: &Host, cancel: &CancellationToken) -> Result<Arc<dyn Transport>> {
        Ok(Arc::new(self.connect_ssh(host, cancel).await?))
    }
}
