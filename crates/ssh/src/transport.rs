//! The SSH [`Transport`]: one session per host, reused for everything. Commands go to the
//! host's command shell (see [`crate::shell`]) on one long-lived channel of that session;
//! streamed commands (`exec_to`, tar), and every command on a host whose shell cannot start,
//! get a channel of their own (see [`crate::exec`]).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use gate_core::{Command, Error, ExecIo, ExecOutput, Host, Result, Transport};
use ssh2::Session;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::exec::{Run, StdoutTo, wrap};
use crate::sftp;
use crate::shell::{Ctx, Job, Opened, Shell};

/// The host's command shell.
enum ShellState {
    /// Not started yet, or ended: the next command starts one.
    Closed,
    /// Running.
    Open(Shell),
    /// The host cannot run it: every command gets a channel of its own.
    Unavailable,
}

/// A connected session, a handle on its socket, and the command shell on it.
struct Connection {
    session: Session,
    socket: TcpStream,
    shell: ShellState,
}

/// One command for [`Connection::exec`].
struct Request {
    host: String,
    home: Option<String>,
    cmd: Command,
    shown: String,
    log: gate_core::HostLog,
    cancel: tokio_util::sync::CancellationToken,
    deadline: Option<Instant>,
    limit: Option<std::time::Duration>,
}

impl Connection {
    /// Runs `req` on the command shell (started when there is none; started again once when
    /// it turns out to have ended before it took the command), else on its own channel.
    fn exec(&mut self, req: &Request) -> Result<ExecOutput> {
        let Connection {
            session,
            socket,
            shell,
        } = self;
        let cx = Ctx {
            session,
            socket,
            host: &req.host,
            log: &req.log,
            cancel: &req.cancel,
        };
        let job = Job {
            cmd: &req.cmd,
            home: req.home.as_deref(),
            shown: &req.shown,
            deadline: req.deadline,
            limit: req.limit,
        };
        for _ in 0..2 {
            if let ShellState::Closed = shell {
                *shell = match Shell::open(&cx)? {
                    Opened::Ready(opened) => ShellState::Open(opened),
                    Opened::Unavailable(why) => {
                        tracing::debug!(host = %req.host, "no command shell: {why}");
                        req.log.note(&format!(
                            "no command shell on this host ({why}): one channel per command"
                        ));
                        ShellState::Unavailable
                    }
                };
            }
            let ShellState::Open(open) = shell else {
                break;
            };
            let result = open.run(&cx, &job);
            if open.is_dead() {
                *shell = ShellState::Closed;
            }
            if let Some(out) = result? {
                return Ok(out);
            }
        }
        Run {
            session,
            socket,
            host: &req.host,
            shown: req.shown.clone(),
            log: &req.log,
            cancel: &req.cancel,
            deadline: req.deadline,
            limit: req.limit,
        }
        .run(&wrap(&req.cmd, req.home.as_deref()), StdoutTo::Log)
    }
}

/// A [`Transport`] over one SSH session. Commands on one host run one at a time.
#[derive(Clone)]
pub struct SshTransport {
    host: Host,
    cipher: String,
    connection: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SshTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshTransport")
            .field("host", &self.host.name)
            .field("address", &self.host.address)
            .field("user", &self.host.user)
            .finish_non_exhaustive()
    }
}

impl SshTransport {
    /// A transport over an authenticated `session`; `socket` is a clone of its TCP stream.
    pub(crate) fn new(host: Host, session: Session, socket: TcpStream) -> Self {
        let cipher = session
            .methods(ssh2::MethodType::CryptCs)
            .unwrap_or_default()
            .to_owned();
        Self {
            host,
            cipher,
            connection: Arc::new(Mutex::new(Connection {
                session,
                socket,
                shell: ShellState::Closed,
            })),
        }
    }

    /// The cipher negotiated for data sent to the host (e.g. `aes128-gcm@openssh.com`).
    pub fn cipher(&self) -> &str {
        &self.cipher
    }

    /// `remote` resolved against the host's `home` when it is relative and a home is set.
    fn resolve(&self, remote: &str) -> PathBuf {
        match &self.host.home {
            Some(home) if !remote.starts_with('/') => Path::new(home).join(remote),
            _ => PathBuf::from(remote),
        }
    }

    /// Runs `work` with the session on the blocking pool.
    async fn with_session<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let connection = self.connection.clone();
        let host = self.host.name.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().map_err(|_| Error::Host {
                host,
                message: "an earlier SSH operation panicked".into(),
            })?;
            work(&mut connection)
        })
        .await
        .map_err(|e| Error::Host {
            host: self.host.name.clone(),
            message: format!("SSH task failed: {e}"),
        })?
    }

    /// Runs `cmd` (in `home` when given) with its stdout streamed raw into `sink`.
    async fn stream(
        &self,
        cmd: &Command,
        home: Option<&str>,
        sink: &mut (dyn AsyncWrite + Send + Unpin),
        io: &ExecIo<'_>,
    ) -> Result<ExecOutput> {
        let shown = cmd.to_string();
        io.log.note(&format!("$ {shown} (output streamed)"));
        let line = wrap(cmd, home);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
        let (host, log, cancel) = (self.host.name.clone(), io.log.clone(), io.cancel.clone());
        let streaming = self.with_session(move |c| {
            Run {
                session: &c.session,
                socket: &c.socket,
                host: &host,
                shown,
                log: &log,
                cancel: &cancel,
                deadline: None,
                limit: None,
            }
            .run(&line, StdoutTo::Bytes(tx))
        });
        // Owns `rx`, so a failed write drops it and the command is killed, not left
        // blocked on a full channel.
        let writing = async move {
            let failed = |e: std::io::Error| Error::Host {
                host: self.host.name.clone(),
                message: format!("writing the output of `{cmd}`: {e}"),
            };
            while let Some(chunk) = rx.recv().await {
                // On failure `rx` is dropped here, so the command is killed.
                sink.write_all(&chunk).await.map_err(failed)?;
            }
            sink.flush().await.map_err(failed)
        };
        let (streamed, written) = tokio::join!(streaming, writing);
        written?;
        streamed
    }

    fn sftp_error(&self, action: &str, failure: sftp::Failure) -> Error {
        Error::Host {
            host: self.host.name.clone(),
            message: format!("{action} {}: {}", failure.path.display(), failure.message),
        }
    }
}

#[async_trait]
impl Transport for SshTransport {
    fn host(&self) -> &Host {
        &self.host
    }

    async fn exec(&self, cmd: &Command, io: &ExecIo<'_>) -> Result<ExecOutput> {
        let shown = cmd.to_string();
        io.log.note(&format!("$ {shown}"));
        let limit = cmd.time_limit();
        let req = Request {
            host: self.host.name.clone(),
            home: self.host.home.clone(),
            cmd: cmd.clone(),
            shown,
            log: io.log.clone(),
            cancel: io.cancel.clone(),
            deadline: limit.map(|limit| Instant::now() + limit),
            limit,
        };
        self.with_session(move |c| c.exec(&req)).await
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<()> {
        let (local, remote) = (local.to_owned(), self.resolve(remote));
        let this = self.clone();
        self.with_session(move |c| {
            sftp::upload(&c.session, &local, &remote)
                .map_err(|f| this.sftp_error("uploading to", f))
        })
        .await
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<()> {
        let (local, remote) = (local.to_owned(), self.resolve(remote));
        let this = self.clone();
        self.with_session(move |c| {
            sftp::download(&c.session, &remote, &local)
                .map_err(|f| this.sftp_error("downloading", f))
        })
        .await
    }

    async fn download_tree(
        &self,
        remote: &str,
        sink: &mut (dyn AsyncWrite + Send + Unpin),
        io: &ExecIo<'_>,
    ) -> Result<()> {
        let path = self.resolve(remote);
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(Error::Host {
                host: self.host.name.clone(),
                message: format!("cannot archive `{remote}`: not a named path"),
            });
        };
        let tar = Command::new("tar")
            .arg("-C")
            .arg(parent.display().to_string())
            .args(["-cf", "-", "--"])
            .arg(name.to_string_lossy().into_owned());
        let out = self.stream(&tar, None, sink, io).await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Command {
                host: self.host.name.clone(),
                command: format!("tar of `{remote}`"),
                status: out.status.to_string(),
                tail: out.tail,
            })
        }
    }

    async fn exec_to(
        &self,
        cmd: &Command,
        sink: &mut (dyn AsyncWrite + Send + Unpin),
        io: &ExecIo<'_>,
    ) -> Result<ExecOutput> {
        self.stream(cmd, self.host.home.as_deref(), sink, io).await
    }
}
