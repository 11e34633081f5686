//! Named steps on a host (usually the primary): each streams its output to the stage's host
//! log, emits step events, and fails with the host, the step and the last lines of its
//! output.

use std::sync::Arc;

use gate_core::transport::ExecIo;
use gate_core::{Command, Error, Event, ExecOutput, HostIo, Result, StageContext, Transport};

/// One host of a stage (usually the primary), with its log.
#[derive(Debug, Clone)]
pub struct HostSteps {
    transport: Arc<dyn Transport>,
    io: HostIo,
}

impl HostSteps {
    /// The host reached by `transport`, logging to `io`.
    pub fn new(transport: Arc<dyn Transport>, io: HostIo) -> Self {
        Self { transport, io }
    }

    /// The primary of `cx`, logging to the stage's log of that host.
    pub fn primary(cx: &StageContext) -> Result<Self> {
        let transport = cx.primary().clone();
        let log = cx.host_log(&transport.host().name)?;
        Ok(Self {
            transport,
            io: HostIo {
                log,
                cancel: cx.cancel.clone(),
                events: cx.events.clone(),
            },
        })
    }

    /// The host's transport.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// The host's name.
    pub fn name(&self) -> &str {
        &self.transport.host().name
    }

    /// Borrowed log and cancellation for [`Transport::exec`].
    pub fn io(&self) -> ExecIo<'_> {
        self.io.io()
    }

    /// Writes a note of gate's own into the host log.
    pub fn note(&self, text: &str) {
        self.io.log.note(text);
    }

    /// Runs `cmd` as the step `name` and fails unless it exits 0; the error names the host
    /// and the step and shows the tail of the output.
    pub async fn step(&self, name: &str, cmd: &Command) -> Result<ExecOutput> {
        let event = |status: &str| Event::HostStep {
            host: self.name().to_owned(),
            step: name.to_owned(),
            status: status.to_owned(),
        };
        tracing::info!("{}: {name}", self.name());
        self.io.events().emit(&event("started"));
        let result = self.transport.exec(cmd, &self.io()).await;
        let ok = matches!(&result, Ok(out) if out.status.success());
        self.io
            .events()
            .emit(&event(if ok { "ok" } else { "failed" }));
        let out = result?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(Error::Command {
                host: self.name().to_owned(),
                command: format!("step `{name}` ({cmd})"),
                status: out.status.to_string(),
                tail: out.tail,
            })
        }
    }

    /// Runs `cmd` quietly (no step event) and gives its output whatever its exit status.
    pub async fn probe(&self, cmd: &Command) -> Result<ExecOutput> {
        self.transport.exec(cmd, &self.io()).await
    }

    /// Runs `cmd` quietly (gate's own plumbing, no step event) and fails unless it exits 0,
    /// naming the host and showing the tail of its output.
    pub async fn quiet(&self, cmd: &Command) -> Result<ExecOutput> {
        let out = self.probe(cmd).await?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(Error::Command {
                host: self.name().to_owned(),
                command: cmd.to_string(),
                status: out.status.to_string(),
                tail: out.tail,
            })
        }
    }

    /// Whether `path` is a regular file on the host.
    pub async fn is_file(&self, path: &str) -> Result<bool> {
        let out = self
            .probe(&Command::new("test").arg("-f").arg(path))
            .await?;
        Ok(out.status.success())
    }

    /// Writes `content` to `remote` on the host (parents created) with `mode`, through a
    /// local temporary file that is removed afterwards.
    pub async fn write_file(&self, remote: &str, content: &str, mode: u32) -> Result<()> {
        let local = tempfile::NamedTempFile::new()
            .map_err(|e| Error::io("creating", std::env::temp_dir(), e))?;
        std::fs::write(local.path(), content).map_err(|e| Error::io("writing", local.path(), e))?;
        self.note(&format!("writing {remote}"));
        self.transport.upload(local.path(), remote).await?;
        self.quiet(
            &Command::new("chmod")
                .arg(format!("{mode:o}"))
                .arg("--")
                .arg(remote),
        )
        .await?;
        Ok(())
    }
}
