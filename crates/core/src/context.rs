//! What a stage gets to work with.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::events::EventSink;
use crate::fanout::{HostOutcome, fan_out};
use crate::keys::RunKeys;
use crate::ledger::Ledger;
use crate::model::{Inventory, RunId};
use crate::stage::Stage;
use crate::transport::{Connector, ExecIo, HostLog, Transport};

/// The context of `allocate`: no inventory yet.
#[derive(Debug, Clone)]
pub struct AllocateContext {
    /// The run.
    pub run_id: RunId,
    /// The CI job name, if any (tagged on resources).
    pub job: Option<String>,
    /// The ledger to record every resource in, as it is created.
    pub ledger: Ledger,
    /// Opens transports, so the allocator can wait for hosts to answer.
    pub connector: Arc<dyn Connector>,
    /// The keys file and the run's own key pair; providers install
    /// [`RunKeys::authorized`] for the login user at boot.
    pub keys: RunKeys,
    /// Fires on interrupt: stop creating, return [`crate::Error::Cancelled`].
    pub cancel: CancellationToken,
    /// Progress events.
    pub events: Arc<dyn EventSink>,
    /// Where per-host logs of this stage go.
    pub logs_dir: PathBuf,
    /// How many hosts to work on at once.
    pub concurrency: usize,
}

impl AllocateContext {
    /// The log of `host` for this stage.
    pub fn host_log(&self, host: &str) -> Result<HostLog> {
        HostLog::open(
            &self.logs_dir.join(format!("{host}.log")),
            host,
            Some(self.events.clone()),
        )
    }
}

/// The context of cleanup, observation and sweeps: how to reach hosts (a lab host's
/// reservation lives on the host itself) and when to give up.
#[derive(Debug, Clone)]
pub struct CleanContext {
    /// Opens transports to hosts.
    pub connector: Arc<dyn Connector>,
    /// Fires when the caller gives up. Cleanup itself runs with a token that never fires.
    pub cancel: CancellationToken,
}

impl CleanContext {
    /// A context using `connector` that is never cancelled.
    pub fn new(connector: Arc<dyn Connector>) -> Self {
        Self {
            connector,
            cancel: CancellationToken::new(),
        }
    }
}

/// The context of every stage after `allocate`.
#[derive(Debug, Clone)]
pub struct StageContext {
    /// The stage running.
    pub stage: Stage,
    /// The run.
    pub run_id: RunId,
    /// The hosts, primary first.
    pub inventory: Inventory,
    /// One transport per host, in inventory order.
    pub transports: Vec<Arc<dyn Transport>>,
    /// The run's ledger.
    pub ledger: Ledger,
    /// The keys file and the run's own key pair.
    pub keys: RunKeys,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The local artifacts directory.
    pub artifacts_dir: PathBuf,
    /// Fires on interrupt.
    pub cancel: CancellationToken,
    /// Progress events.
    pub events: Arc<dyn EventSink>,
    /// How many hosts to work on at once.
    pub concurrency: usize,
}

impl StageContext {
    /// The primary host's transport.
    pub fn primary(&self) -> &Arc<dyn Transport> {
        &self.transports[0]
    }

    /// Where JUnit results go: `artifacts/results/`.
    pub fn results_dir(&self) -> PathBuf {
        self.artifacts_dir.join("results")
    }

    /// This stage's log directory: `logs/<stage>/` in the state dir.
    pub fn logs_dir(&self) -> PathBuf {
        self.state_dir.join("logs").join(self.stage.name())
    }

    /// The log of `host` for this stage.
    pub fn host_log(&self, host: &str) -> Result<HostLog> {
        HostLog::open(
            &self.logs_dir().join(format!("{host}.log")),
            host,
            Some(self.events.clone()),
        )
    }

    /// Runs `step` on `transports` (every host, or a subset) with the configured bound,
    /// each with its own [`HostIo`]; one result per host, in the given order.
    pub async fn on_hosts<T, F, Fut>(
        &self,
        transports: &[Arc<dyn Transport>],
        step: F,
    ) -> Vec<HostOutcome<T>>
    where
        F: Fn(Arc<dyn Transport>, HostIo) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        fan_out(transports, self.concurrency, |transport| {
            let io = self.host_log(&transport.host().name).map(|log| HostIo {
                log,
                cancel: self.cancel.clone(),
                events: self.events.clone(),
            });
            let step = &step;
            async move { step(transport, io?).await }
        })
        .await
    }

    /// The directory `relative` under the artifacts dir, created.
    pub fn artifacts_subdir(&self, relative: impl AsRef<Path>) -> Result<PathBuf> {
        let dir = self.artifacts_dir.join(relative);
        std::fs::create_dir_all(&dir).map_err(|e| crate::Error::io("creating", &dir, e))?;
        Ok(dir)
    }
}

/// The log and cancellation of one host's step, owned so the step's future can hold it.
#[derive(Debug, Clone)]
pub struct HostIo {
    /// The host's log for this stage.
    pub log: HostLog,
    /// Fires on interrupt.
    pub cancel: CancellationToken,
    /// Progress events.
    pub events: Arc<dyn EventSink>,
}

impl HostIo {
    /// Where progress events go.
    pub fn events(&self) -> &dyn EventSink {
        self.events.as_ref()
    }

    /// Borrowed form for [`crate::Transport::exec`].
    pub fn io(&self) -> ExecIo<'_> {
        ExecIo {
            log: &self.log,
            cancel: &self.cancel,
        }
    }
}
