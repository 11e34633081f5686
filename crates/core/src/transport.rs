//! How gate reaches a host: the [`Transport`] and [`Connector`] traits, and the host log
//! every command's output streams into.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWrite;
use tokio_util::sync::CancellationToken;

use crate::command::Command;
use crate::error::{Error, Result};
use crate::events::{Event, EventSink};
use crate::model::Host;
use crate::secret::redact;

/// How many lines of output an error shows.
pub const TAIL_LINES: usize = 20;
/// How much stdout an [`ExecOutput`] keeps (the log keeps everything).
pub const STDOUT_LIMIT: usize = 1 << 20;

/// Runs commands on one host and moves files to and from it.
///
/// Paths on the host are strings: absolute, or relative to the host's home. Implementations
/// stream every output line to the [`HostLog`] in [`ExecIo`] as it arrives, honour the
/// command's timeout and the cancellation token (killing what they started), and never block
/// the async runtime.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// The host this transport reaches.
    fn host(&self) -> &Host;

    /// Runs `cmd` to completion. A non-zero exit is not an error here (see
    /// [`TransportExt::run`]); failing to start it, a timeout or cancellation is.
    async fn exec(&self, cmd: &Command, io: &ExecIo<'_>) -> Result<ExecOutput>;

    /// Copies the local file or directory `local` to `remote` (parents are created).
    async fn upload(&self, local: &Path, remote: &str) -> Result<()>;

    /// Copies the file or directory `remote` to `local` (parents are created). Symbolic
    /// links are copied as links, never followed.
    async fn download(&self, remote: &str, local: &Path) -> Result<()>;

    /// Writes the directory tree `remote` as one tar stream into `sink`, entries named
    /// relative to `remote`'s parent.
    async fn download_tree(
        &self,
        remote: &str,
        sink: &mut (dyn AsyncWrite + Send + Unpin),
        io: &ExecIo<'_>,
    ) -> Result<()>;

    /// Runs `cmd` to completion with its standard output written, raw and unbuffered by
    /// lines, into `sink` (standard error goes to the log and the tail as usual): a tar
    /// stream of several paths, compressed on the host. A non-zero exit is not an error
    /// here; failing to write to `sink` is (the command is killed). Transports that cannot
    /// stream say so.
    async fn exec_to(
        &self,
        cmd: &Command,
        sink: &mut (dyn AsyncWrite + Send + Unpin),
        io: &ExecIo<'_>,
    ) -> Result<ExecOutput> {
        let _ = (cmd, sink, io);
        Err(Error::Host {
            host: self.host().name.clone(),
            message: "this transport cannot stream a command's output".into(),
        })
    }
}

/// Conveniences for every [`Transport`].
#[async_trait]
pub trait TransportExt: Transport {
    /// Runs `cmd` and fails with [`Error::Command`] (host, command, status, output tail)
    /// unless it exits 0.
    async fn run(&self, cmd: &Command, io: &ExecIo<'_>) -> Result<ExecOutput> {
        let out = self.exec(cmd, io).await?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(Error::Command {
                host: self.host().name.clone(),
                command: cmd.to_string(),
                status: out.status.to_string(),
                tail: out.tail,
            })
        }
    }
}

impl<T: Transport + ?Sized> TransportExt for T {}

/// Opens a [`Transport`] to a host. gate-core has the `local` one; gate-ssh adds `ssh`.
#[async_trait]
pub trait Connector: Send + Sync + fmt::Debug + 'static {
    /// Connects to `host`, waiting for it as long as the connector's policy says, and gives
    /// up with [`Error::Cancelled`] when `cancel` fires.
    async fn connect(&self, host: &Host, cancel: &CancellationToken) -> Result<Arc<dyn Transport>>;
}

/// Connectors by transport name; connects each host with the one its `transport` names.
#[derive(Debug, Clone, Default)]
pub struct Connectors {
    by_name: BTreeMap<String, Arc<dyn Connector>>,
}

impl Connectors {
    /// Adds (or replaces) the connector for transport `name`.
    pub fn insert(&mut self, name: impl Into<String>, connector: Arc<dyn Connector>) {
        self.by_name.insert(name.into(), connector);
    }

    /// The registered transport names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

#[async_trait]
impl Connector for Connectors {
    async fn connect(&self, host: &Host, cancel: &CancellationToken) -> Result<Arc<dyn Transport>> {
        let connector = self
            .by_name
            .get(&host.transport)
            .ok_or_else(|| Error::Host {
                host: host.name.clone(),
                message: format!(
                    "no transport `{}` is registered (known: {})",
                    host.transport,
                    self.names().collect::<Vec<_>>().join(", ")
                ),
            })?;
        connector.connect(host, cancel).await
    }
}

/// Where a command's output goes while it runs, and how to stop it.
#[derive(Debug, Clone, Copy)]
pub struct ExecIo<'a> {
    /// The host's log for the current stage.
    pub log: &'a HostLog,
    /// Fires when the run is interrupted; the transport kills the command.
    pub cancel: &'a CancellationToken,
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// The log of one host for one stage: every line redacted, then appended to
/// `logs/<stage>/<host>.log` and passed on as an output event.
#[derive(Clone)]
pub struct HostLog {
    host: String,
    file: Option<Arc<Mutex<File>>>,
    events: Option<Arc<dyn EventSink>>,
}

impl fmt::Debug for HostLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostLog")
            .field("host", &self.host)
            .field("to_file", &self.file.is_some())
            .finish()
    }
}

impl HostLog {
    /// A log appending to `path` (parents created).
    pub fn open(path: &Path, host: &str, events: Option<Arc<dyn EventSink>>) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io("opening", path, e))?;
        Ok(Self {
            host: host.to_owned(),
            file: Some(Arc::new(Mutex::new(file))),
            events,
        })
    }

    /// A log that only passes lines on as events (or drops them).
    pub fn detached(host: &str, events: Option<Arc<dyn EventSink>>) -> Self {
        Self {
            host: host.to_owned(),
            file: None,
            events,
        }
    }

    /// The host this log belongs to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Records one line of output.
    pub fn line(&self, stream: Stream, line: &str) {
        let line = redact(line);
        self.write(&line);
        if let Some(events) = &self.events {
            events.emit(&Event::Output {
                host: self.host.clone(),
                stream,
                line: line.into_owned(),
            });
        }
    }

    /// Records a note of gate's own, e.g. the command about to run.
    pub fn note(&self, text: &str) {
        self.write(&format!("# {}", redact(text)));
    }

    fn write(&self, line: &str) {
        if let Some(file) = &self.file
            && let Ok(mut file) = file.lock()
        {
            // A log that cannot be written must not fail the command it records.
            let _ = writeln!(file, "{line}");
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl ExitStatus {
    /// Whether it exited 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exited with status {code}"),
            ExitStatus::Signal(sig) => write!(f, "was killed by signal {sig}"),
        }
    }
}

/// What a finished command left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output (redacted; at most [`STDOUT_LIMIT`] bytes).
    pub stdout: String,
    /// The last [`TAIL_LINES`] lines of stdout and stderr together (redacted).
    pub tail: Vec<String>,
    /// How long it ran.
    pub duration: Duration,
}

/// Gathers a running command's lines: to the host log, into the stdout buffer and the tail.
/// Transports feed it; [`OutputCollector::finish`] turns it into an [`ExecOutput`].
#[derive(Debug)]
pub struct OutputCollector<'a> {
    log: &'a HostLog,
    stdout: String,
    tail: VecDeque<String>,
}

impl<'a> OutputCollector<'a> {
    /// A collector writing to `log`.
    pub fn new(log: &'a HostLog) -> Self {
        Self {
            log,
            stdout: String::new(),
            tail: VecDeque::with_capacity(TAIL_LINES),
        }
    }

    /// Takes one line (without its newline).
    pub fn push(&mut self, stream: Stream, line: &str) {
        let line = redact(line);
        self.log.line(stream, &line);
        if stream == Stream::Stdout && self.stdout.len() + line.len() < STDOUT_LIMIT {
            self.stdout.push_str(&line);
            self.stdout.push('\n');
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.into_owned());
    }

    /// The last lines seen so far.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    /// The output of a command that ended with `status` after `duration`.
    pub fn finish(self, status: ExitStatus, duration: Duration) -> ExecOutput {
        ExecOutput {
            status,
            stdout: self.stdout,
            tail: self.tail.into_iter().collect(),
            duration,
        }
    }
}
