//! The pipeline engine: runs the selected stages in order, records each in `run.json`,
//! and always runs `archive` and `cleanup` (when selected) after a failure or an interrupt.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::cleanup::{CleanerLookup, cleanup_ledger};
use crate::context::{AllocateContext, CleanContext, StageContext};
use crate::error::{Error, Result};
use crate::events::{Event, EventSink};
use crate::interrupt::Interrupt;
use crate::keys::{KeysFile, RunKey, RunKeys};
use crate::ledger::Ledger;
use crate::model::{Inventory, RunId};
use crate::stage::Stage;
use crate::state::{
    Cause, CauseKind, RunState, StageRecord, StageStatus, StateDir, exit_code, write_json,
};
use crate::traits::{
    AgentConnector, Archiver, ArtifactPublisher, Deployer, HostPreparer, HostValidator,
    ResourceAllocator, StageOutcome, TestReport, Tester,
};
use crate::transport::{Connector, Transport};

/// A backend with the registry name it was built from.
pub struct Backend<T: ?Sized> {
    /// The registry name.
    pub name: String,
    /// The backend.
    pub imp: Arc<T>,
}

impl<T: ?Sized> Clone for Backend<T> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            imp: self.imp.clone(),
        }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Backend<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}", self.name, self.imp)
    }
}

impl<T: ?Sized> Backend<T> {
    /// `imp` registered as `name`.
    pub fn new(name: impl Into<String>, imp: Arc<T>) -> Self {
        Self {
            name: name.into(),
            imp,
        }
    }
}

/// The backends of a pipeline; a stage without one is recorded as not configured.
#[derive(Clone)]
pub struct Backends {
    /// `allocate`.
    pub allocator: Option<Backend<dyn ResourceAllocator>>,
    /// `connect`.
    pub agent: Option<Backend<dyn AgentConnector>>,
    /// `validate`.
    pub validator: Option<Backend<dyn HostValidator>>,
    /// `prepare-hosts`.
    pub preparer: Option<Backend<dyn HostPreparer>>,
    /// `prepare-deployment`, `deploy`, `upgrade`.
    pub deployer: Option<Backend<dyn Deployer>>,
    /// `test`.
    pub tester: Option<Backend<dyn Tester>>,
    /// `publish`.
    pub publisher: Option<Backend<dyn ArtifactPublisher>>,
    /// `archive`.
    pub archiver: Option<Backend<dyn Archiver>>,
    /// `cleanup`: the cleaner for each backend name found in the ledger.
    pub cleaners: CleanerLookup,
    /// Opens a transport to each host.
    pub connector: Arc<dyn Connector>,
}

impl fmt::Debug for Backends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backends")
            .field("allocator", &self.allocator)
            .field("agent", &self.agent)
            .field("validator", &self.validator)
            .field("preparer", &self.preparer)
            .field("deployer", &self.deployer)
            .field("tester", &self.tester)
            .field("publisher", &self.publisher)
            .field("archiver", &self.archiver)
            .field("connector", &self.connector)
            .finish_non_exhaustive()
    }
}

impl Backends {
    /// The registry name of the backend that runs `stage` (`core` for cleanup).
    pub fn name_for(&self, stage: Stage) -> Option<&str> {
        match stage {
            Stage::Allocate => self.allocator.as_ref().map(|b| b.name.as_str()),
            Stage::Connect => self.agent.as_ref().map(|b| b.name.as_str()),
            Stage::Validate => self.validator.as_ref().map(|b| b.name.as_str()),
            Stage::PrepareHosts => self.preparer.as_ref().map(|b| b.name.as_str()),
            Stage::PrepareDeployment | Stage::Deploy | Stage::Upgrade => {
                self.deployer.as_ref().map(|b| b.name.as_str())
            }
            Stage::Test => self.tester.as_ref().map(|b| b.name.as_str()),
            Stage::Publish => self.publisher.as_ref().map(|b| b.name.as_str()),
            Stage::Archive => self.archiver.as_ref().map(|b| b.name.as_str()),
            Stage::Cleanup => Some("ledger"),
        }
    }
}

/// How a pipeline runs.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Skip cleanup and keep the hosts (`--keep`).
    pub keep: bool,
    /// How many hosts to work on at once.
    pub concurrency: usize,
    /// The CI job name, if any.
    pub job: Option<String>,
    /// The checked keys file for a new run (fetched by the caller); later stages read the
    /// copy saved in the state dir.
    pub keys_file: Option<KeysFile>,
    /// SHA-256 of the resolved config without secrets (recorded in run.json).
    pub config_digest: String,
    /// The resolved config with secrets masked (recorded in run.json).
    pub config: serde_json::Value,
}

/// What one invocation of [`Pipeline::run`] did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// `run.json` as it was left.
    pub run: RunState,
    /// The exit code for this invocation's stages.
    pub exit_code: i32,
}

/// Runs stages against a state directory.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The backends.
    pub backends: Backends,
    /// The state directory.
    pub state: StateDir,
    /// The local artifacts directory.
    pub artifacts_dir: PathBuf,
    /// Where progress goes.
    pub events: Arc<dyn EventSink>,
    /// Options.
    pub options: PipelineOptions,
}

/// The marker that says a directory is gate's artifacts dir (and may be emptied by gate).
const ARTIFACTS_MARKER: &str = ".gate-artifacts";

/// Hosts and transports, loaded and connected once per process.
#[derive(Default)]
struct Session {
    inventory: Option<Inventory>,
    transports: Option<Vec<Arc<dyn Transport>>>,
    keys: RunKeys,
}

enum Done {
    Ok(Option<String>),
    Skipped(String),
    TestsFailed(TestReport),
}

impl Pipeline {
    /// Runs `stages` (in run order, whatever order they are given in).
    ///
    /// A selection that includes `allocate` starts a new run (refusing over a ledger with
    /// live resources); any other continues the run recorded in the state dir. After a
    /// failure or an interrupt the remaining stages are skipped, except `archive` and
    /// `cleanup`, which run when selected (cleanup not with `keep`). `Err` is returned only
    /// when no stage could start.
    pub async fn run(&self, stages: &[Stage], interrupt: &Interrupt) -> Result<RunSummary> {
        let mut stages = stages.to_vec();
        stages.sort();
        stages.dedup();
        let mut run = if stages.contains(&Stage::Allocate) {
            self.state.reset_for_new_run()?;
            prepare_artifacts_dir(&self.artifacts_dir)?;
            let run = RunState::new(
                RunId::generate(),
                self.options.config_digest.clone(),
                self.options.config.clone(),
            );
            if let Some(keys_file) = &self.options.keys_file {
                keys_file.save(&self.state.keys())?;
            }
            RunKey::generate(&self.state.keys(), run.run_id.as_str())?;
            run
        } else {
            self.state.load_run()?.ok_or_else(|| Error::State {
                path: self.state.root().to_owned(),
                message:
                    "no run is recorded here; start one with `gate run` (or `gate stage allocate`)"
                        .into(),
            })?
        };
        std::fs::create_dir_all(&self.artifacts_dir)
            .map_err(|e| Error::io("creating", &self.artifacts_dir, e))?;
        self.state.save_run(&run)?;
        tracing::info!(run_id = %run.run_id, "run started");
        let ledger =
            Ledger::open(self.state.ledger(), run.run_id.clone())?.with_events(self.events.clone());
        let mut session = Session {
            inventory: self.state.load_inventory()?,
            transports: None,
            keys: RunKeys::load(&self.state.keys())?,
        };

        let mut causes = Vec::new();
        let mut stopped: Option<String> = None;
        for &stage in stages.iter().filter(|s| !s.always_runs()) {
            if interrupt.is_triggered() && stopped.is_none() {
                stopped = Some("the run was interrupted".into());
            }
            if let Some(reason) = &stopped {
                self.record_skipped(&mut run, stage, reason);
                continue;
            }
            let cancel = interrupt.token().clone();
            let status = self
                .run_stage(stage, &mut run, &ledger, &mut session, cancel, &mut causes)
                .await;
            match status {
                StageStatus::Failed => stopped = Some(format!("{stage} failed")),
                StageStatus::Cancelled => stopped = Some("the run was interrupted".into()),
                _ => {}
            }
        }
        for &stage in stages.iter().filter(|s| s.always_runs()) {
            if stage == Stage::Cleanup && self.options.keep {
                run.kept = true;
                self.record_skipped(
                    &mut run,
                    stage,
                    "--keep: resources kept on purpose; free them with `gate cleanup`",
                );
                continue;
            }
            // Archive and cleanup must finish even after an interrupt: a fresh token.
            self.run_stage(
                stage,
                &mut run,
                &ledger,
                &mut session,
                CancellationToken::new(),
                &mut causes,
            )
            .await;
        }
        if let Some(signal) = interrupt.signal() {
            causes.insert(
                0,
                Cause {
                    kind: CauseKind::Interrupted,
                    stage: None,
                    signal: Some(signal),
                    message: format!("interrupted by signal {signal}"),
                },
            );
        }
        run.causes.extend(causes.iter().cloned());
        run.exit_code = exit_code(&run.causes);
        run.finished_at = Some(crate::time::now_rfc3339());
        self.state.save_run(&run)?;
        if let Err(e) = self.write_summary(&run) {
            tracing::error!("writing the run summary: {e}");
        }
        Ok(RunSummary {
            exit_code: exit_code(&causes),
            run,
        })
    }

    fn record_skipped(&self, run: &mut RunState, stage: Stage, reason: &str) {
        run.record(StageRecord {
            stage,
            status: StageStatus::Skipped,
            backend: self.backends.name_for(stage).map(str::to_owned),
            started_at: None,
            duration_ms: None,
            message: Some(reason.to_owned()),
        });
    }

    async fn run_stage(
        &self,
        stage: Stage,
        run: &mut RunState,
        ledger: &Ledger,
        session: &mut Session,
        cancel: CancellationToken,
        causes: &mut Vec<Cause>,
    ) -> StageStatus {
        run.causes.retain(|c| c.stage != Some(stage));
        let backend = self.backends.name_for(stage).map(str::to_owned);
        if backend.is_none() {
            run.record(StageRecord {
                stage,
                status: StageStatus::NotConfigured,
                backend: None,
                started_at: None,
                duration_ms: None,
                message: None,
            });
            return StageStatus::NotConfigured;
        }
        let started_at = crate::time::now_rfc3339();
        let started = Instant::now();
        run.record(StageRecord {
            stage,
            status: StageStatus::Running,
            backend: backend.clone(),
            started_at: Some(started_at.clone()),
            duration_ms: None,
            message: None,
        });
        if let Err(e) = self.state.save_run(run) {
            tracing::warn!("recording the start of {stage}: {e}");
        }
        self.events.emit(&Event::StageStarted { stage });
        let span = tracing::info_span!("stage", %stage);
        let result = tracing::Instrument::instrument(
            self.execute(stage, &run.run_id, ledger, session, &cancel),
            span,
        )
        .await;

        let (status, message, cause) = match result {
            Ok(Done::Ok(note)) => (StageStatus::Passed, note, None),
            Ok(Done::Skipped(reason)) => (StageStatus::Skipped, Some(reason), None),
            Ok(Done::TestsFailed(report)) => {
                let message = format!(
                    "{} of {} tests failed, {} errored",
                    report.failures, report.tests, report.errors
                );
                (StageStatus::Failed, Some(message), Some(CauseKind::Product))
            }
            Err(e) if e.is_cancelled() || cancel.is_cancelled() => (
                StageStatus::Cancelled,
                Some(format!("interrupted: {e}")),
                None,
            ),
            Err(e) => {
                let kind = if e.is_infrastructure() {
                    CauseKind::Infrastructure
                } else {
                    stage.failure_class().into()
                };
                (StageStatus::Failed, Some(e.to_string()), Some(kind))
            }
        };
        let message = message.map(|m| crate::secret::redact(&m).into_owned());
        let duration_ms = started.elapsed().as_millis() as u64;
        if status == StageStatus::Failed {
            tracing::error!("{stage} failed: {}", message.as_deref().unwrap_or_default());
        }
        if let Some(kind) = cause {
            causes.push(Cause {
                kind,
                stage: Some(stage),
                signal: None,
                message: message.clone().unwrap_or_default(),
            });
        }
        self.events.emit(&Event::StageFinished {
            stage,
            status,
            duration_ms,
            error: if status == StageStatus::Failed {
                message.clone()
            } else {
                None
            },
        });
        run.record(StageRecord {
            stage,
            status,
            backend,
            started_at: Some(started_at),
            duration_ms: Some(duration_ms),
            message,
        });
        if let Err(e) = self.state.save_run(run) {
            tracing::warn!("recording the end of {stage}: {e}");
        }
        status
    }

    async fn execute(
        &self,
        stage: Stage,
        run_id: &RunId,
        ledger: &Ledger,
        session: &mut Session,
        cancel: &CancellationToken,
    ) -> Result<Done> {
        let b = &self.backends;
        match stage {
            Stage::Allocate => {
                let Some(allocator) = &b.allocator else {
                    return Ok(Done::Skipped("no provider".into()));
                };
                let cx = AllocateContext {
                    run_id: run_id.clone(),
                    job: self.options.job.clone(),
                    ledger: ledger.clone(),
                    connector: b.connector.clone(),
                    keys: session.keys.clone(),
                    cancel: cancel.clone(),
                    events: self.events.clone(),
                    logs_dir: self.state.logs().join(stage.name()),
                    concurrency: self.options.concurrency,
                };
                let inventory = allocator.imp.allocate(&cx).await?;
                self.state.save_inventory(&inventory)?;
                let note = format!(
                    "{} host(s): {}",
                    inventory.len(),
                    inventory
                        .hosts()
                        .iter()
                        .map(|h| h.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                session.inventory = Some(inventory);
                session.transports = None;
                Ok(Done::Ok(Some(note)))
            }
            Stage::Cleanup => {
                let cx = CleanContext::new(b.connector.clone());
                let report = cleanup_ledger(ledger, &b.cleaners, &cx).await?;
                Ok(Done::Ok(Some(format!(
                    "{} deleted, {} released",
                    report.deleted, report.released
                ))))
            }
            Stage::Archive if session.inventory.is_none() => {
                Ok(Done::Skipped("no hosts were allocated".into()))
            }
            _ => {
                let cx = self
                    .stage_context(stage, run_id, ledger, session, cancel)
                    .await?;
                let outcome = |o: StageOutcome| match o {
                    StageOutcome::Done => Done::Ok(None),
                    StageOutcome::Skipped(reason) => Done::Skipped(reason),
                };
                let done = |()| Done::Ok(None);
                match stage {
                    Stage::Connect => need(&b.agent, stage)?.connect(&cx).await.map(done),
                    Stage::Validate => need(&b.validator, stage)?.validate(&cx).await.map(done),
                    Stage::PrepareHosts => need(&b.preparer, stage)?.prepare(&cx).await.map(done),
                    Stage::PrepareDeployment => {
                        let deployer = need(&b.deployer, stage)?;
                        deployer.prepare_deployment(&cx).await.map(outcome)
                    }
                    Stage::Deploy => need(&b.deployer, stage)?.deploy(&cx).await.map(outcome),
                    Stage::Upgrade => need(&b.deployer, stage)?.upgrade(&cx).await.map(outcome),
                    Stage::Publish => need(&b.publisher, stage)?.publish(&cx).await.map(done),
                    Stage::Test => {
                        let report = need(&b.tester, stage)?.test(&cx).await?;
                        self.events.emit(&Event::TestCounts {
                            tests: report.tests,
                            failures: report.failures,
                            errors: report.errors,
                            skipped: report.skipped,
                        });
                        if report.passed() {
                            Ok(Done::Ok(Some(format!(
                                "{} tests passed, {} skipped",
                                report.tests - report.skipped,
                                report.skipped
                            ))))
                        } else {
                            Ok(Done::TestsFailed(report))
                        }
                    }
                    Stage::Archive => {
                        let report = need(&b.archiver, stage)?.archive(&cx).await?;
                        let mut note = format!("{} files, {} bytes", report.files, report.bytes);
                        if !report.missing.is_empty() {
                            note.push_str(&format!("; missing: {}", report.missing.join(", ")));
                        }
                        Ok(Done::Ok(Some(note)))
                    }
                    Stage::Allocate | Stage::Cleanup => Err(Error::Stage {
                        stage,
                        message: "runs on the controller side".into(),
                    }),
                }
            }
        }
    }

    async fn stage_context(
        &self,
        stage: Stage,
        run_id: &RunId,
        ledger: &Ledger,
        session: &mut Session,
        cancel: &CancellationToken,
    ) -> Result<StageContext> {
        let inventory = session.inventory.clone().ok_or_else(|| Error::Stage {
            stage,
            message: format!(
                "no inventory in {}: run the allocate stage first",
                self.state.root().display()
            ),
        })?;
        let transports = match &session.transports {
            Some(transports) => transports.clone(),
            None => {
                let connector = &self.backends.connector;
                let connects = inventory.hosts().iter().map(|host| async move {
                    connector.connect(host, cancel).await.map_err(|e| match e {
                        Error::Cancelled | Error::Unreachable { .. } => e,
                        other => Error::Unreachable {
                            host: host.name.clone(),
                            message: other.to_string(),
                        },
                    })
                });
                let results = futures_util::future::join_all(connects).await;
                let mut transports = Vec::with_capacity(results.len());
                let mut failures = Vec::new();
                for result in results {
                    match result {
                        Ok(t) => transports.push(t),
                        Err(e) => failures.push(e),
                    }
                }
                if !failures.is_empty() {
                    return Err(if failures.len() == 1 {
                        failures.remove(0)
                    } else {
                        Error::Hosts {
                            total: inventory.len(),
                            failures,
                        }
                    });
                }
                session.transports = Some(transports.clone());
                transports
            }
        };
        Ok(StageContext {
            stage,
            run_id: run_id.clone(),
            inventory,
            transports,
            ledger: ledger.clone(),
            keys: session.keys.clone(),
            state_dir: self.state.root().to_owned(),
            artifacts_dir: self.artifacts_dir.clone(),
            cancel: cancel.clone(),
            events: self.events.clone(),
            concurrency: self.options.concurrency,
        })
    }

    /// The final step, after cleanup: `artifacts/run.json`, the inventory and gate's own
    /// logs in the artifacts dir, secrets masked, then the report (`artifacts/report.html`,
    /// see [`crate::report`]), so it shows cleanup's outcome too.
    fn write_summary(&self, run: &RunState) -> Result<()> {
        write_json(&self.artifacts_dir.join("run.json"), run)?;
        if let Ok(Some(inventory)) = self.state.load_inventory() {
            write_json(&self.artifacts_dir.join("inventory.json"), &inventory)?;
        }
        let logs = self.state.logs();
        if logs.is_dir() {
            let target = self.artifacts_dir.join("logs");
            crate::local::copy_tree(&logs, &target)?;
            crate::archive::redact_tree(&target)?;
        }
        crate::report::write_report(&self.state, &self.artifacts_dir, run)?;
        Ok(())
    }
}

/// The backend configured for `stage`.
fn need<T: ?Sized>(backend: &Option<Backend<T>>, stage: Stage) -> Result<&T> {
    backend
        .as_ref()
        .map(|b| b.imp.as_ref())
        .ok_or(Error::Stage {
            stage,
            message: "no backend is configured".into(),
        })
}

/// Empties a gate-made artifacts dir for a new run, or creates one; refuses to empty a
/// directory gate did not make.
fn prepare_artifacts_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        let mut entries = std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?;
        let empty = entries.next().is_none();
        if !empty && !dir.join(ARTIFACTS_MARKER).exists() {
            return Err(Error::State {
                path: dir.to_owned(),
                message: "the artifacts dir is not empty and was not made by gate; empty it or choose another".into(),
            });
        }
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))? {
            let path = entry.map_err(|e| Error::io("listing", dir, e))?.path();
            let removed = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| Error::io("removing", &path, e))?;
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    let marker = dir.join(ARTIFACTS_MARKER);
    std::fs::write(&marker, "made by gate; emptied at the start of each run\n")
        .map_err(|e| Error::io("writing", &marker, e))
}
