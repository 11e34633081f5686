//! The state directory (`.gate/`): `run.json`, `inventory.json`, the ledger, the lock,
//! keys and logs — everything a stage needs to run in a fresh process.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ledger::Replay;
use crate::model::{Inventory, RunId};
use crate::stage::{FailureClass, Stage};

/// Paths inside a state directory, and the operations on its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

/// The lock on a state directory; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateDir {
    /// The state directory at `root` (not created until locked).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `run.json`.
    pub fn run_json(&self) -> PathBuf {
        self.root.join("run.json")
    }

    /// `inventory.json`.
    pub fn inventory_json(&self) -> PathBuf {
        self.root.join("inventory.json")
    }

    /// `resources.jsonl`, the ledger.
    pub fn ledger(&self) -> PathBuf {
        self.root.join("resources.jsonl")
    }

    /// `logs/`.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// `keys/`.
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }

    /// Creates the directory and takes its lock, failing at once (naming the holder's pid)
    /// if another gate process holds it.
    pub fn lock(&self) -> Result<StateLock> {
        std::fs::create_dir_all(&self.root).map_err(|e| Error::io("creating", &self.root, e))?;
        let path = self.root.join("lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("opening", &path, e))?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.set_len(0);
                let _ = writeln!(file, "{}", std::process::id());
                Ok(StateLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                Err(Error::State {
                    path: self.root.clone(),
                    message: format!(
                        "in use by another gate process (pid {}); wait for it or use another state dir",
                        holder.trim()
                    ),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io("locking", &path, e)),
        }
    }

    /// The recorded run, if there is one.
    pub fn load_run(&self) -> Result<Option<RunState>> {
        read_json(&self.run_json())
    }

    /// Writes `run.json` atomically.
    pub fn save_run(&self, run: &RunState) -> Result<()> {
        write_json(&self.run_json(), run)
    }

    /// The recorded inventory, if allocation got that far.
    pub fn load_inventory(&self) -> Result<Option<Inventory>> {
        read_json(&self.inventory_json())
    }

    /// Writes `inventory.json` atomically.
    pub fn save_inventory(&self, inventory: &Inventory) -> Result<()> {
        write_json(&self.inventory_json(), inventory)
    }

    /// Clears the files of an earlier run so a new one can start; refuses while the ledger
    /// holds live resources.
    pub fn reset_for_new_run(&self) -> Result<()> {
        let live = Replay::read(&self.ledger())?.live();
        if let Some(first) = live.first() {
            return Err(Error::State {
                path: self.root.clone(),
                message: format!(
                    "the ledger still holds {} live resource(s) of run {} (e.g. {} `{}`); run `gate cleanup` first, or use another state dir",
                    live.len(),
                    first.run_id,
                    first.spec.kind,
                    first.spec.name
                ),
            });
        }
        for file in [self.run_json(), self.inventory_json(), self.ledger()] {
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("removing", &file, e)),
            }
        }
        for dir in [self.logs(), self.keys()] {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("removing", &dir, e)),
            }
        }
        Ok(())
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::State {
                path: path.to_owned(),
                message: format!("unreadable: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", path, e)),
    }
}

/// Writes `value` as pretty JSON to `path` through a temporary file and a rename, so a
/// reader never sees half a file. Known secret values are masked.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_string_pretty(value).map_err(|e| Error::State {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let json = crate::secret::redact(&json);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, format!("{json}\n")).map_err(|e| Error::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("renaming", &tmp, e))
}

/// How a stage ended (or that it is running).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageStatus {
    /// Started and not finished (a crash leaves this behind).
    Running,
    /// Done without error.
    Passed,
    /// Failed.
    Failed,
    /// Not run: an earlier stage failed, the run was interrupted, or `--keep`.
    Skipped,
    /// Interrupted while running.
    Cancelled,
    /// No backend is configured for it.
    NotConfigured,
}

/// One stage's record in `run.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRecord {
    /// The stage.
    pub stage: Stage,
    /// How it ended.
    pub status: StageStatus,
    /// The backend that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// When it started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// How long it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Why a run did not end green, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CauseKind {
    /// SIGINT or SIGTERM (exit 130 or 143).
    Interrupted,
    /// Bad usage or config (exit 2).
    Usage,
    /// Infrastructure failed, or cleanup left something behind (exit 3).
    Infrastructure,
    /// The product failed (exit 1).
    Product,
}

impl From<FailureClass> for CauseKind {
    fn from(class: FailureClass) -> Self {
        match class {
            FailureClass::Product => CauseKind::Product,
            FailureClass::Infrastructure => CauseKind::Infrastructure,
        }
    }
}

/// One reason the run is not green.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// Its kind.
    pub kind: CauseKind,
    /// The stage it arose in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// The signal, for an interrupt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// What happened.
    pub message: String,
}

/// The exit code for `causes`: the first of interrupted (128 + signal), usage (2),
/// infrastructure (3), product (1) that is present; 0 when there is none.
pub fn exit_code(causes: &[Cause]) -> i32 {
    match causes.iter().min_by_key(|c| c.kind) {
        None => 0,
        Some(c) => match c.kind {
            CauseKind::Interrupted => 128 + c.signal.unwrap_or(2),
            CauseKind::Usage => 2,
            CauseKind::Infrastructure => 3,
            CauseKind::Product => 1,
        },
    }
}

/// `run.json`: the run's id, config, and every stage's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// The run id.
    pub run_id: RunId,
    /// The gate version that started it.
    pub gate_version: String,
    /// SHA-256 of the resolved config without secret values.
    pub config_digest: String,
    /// The resolved config with secrets masked.
    pub config: serde_json::Value,
    /// When it started.
    pub started_at: String,
    /// When the last invocation on it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// One record per stage that was reached, in run order.
    #[serde(default)]
    pub stages: Vec<StageRecord>,
    /// Every reason the run is not green.
    #[serde(default)]
    pub causes: Vec<Cause>,
    /// Resources were kept on purpose (`--keep`).
    #[serde(default)]
    pub kept: bool,
    /// The exit code the causes give.
    #[serde(default)]
    pub exit_code: i32,
}

impl RunState {
    /// A new run.
    pub fn new(run_id: RunId, config_digest: String, config: serde_json::Value) -> Self {
        Self {
            run_id,
            gate_version: env!("CARGO_PKG_VERSION").to_owned(),
            config_digest,
            config,
            started_at: crate::time::now_rfc3339(),
            finished_at: None,
            stages: Vec::new(),
            causes: Vec::new(),
            kept: false,
            exit_code: 0,
        }
    }

    /// Records `record`, replacing an earlier record of the same stage, keeping run order.
    pub fn record(&mut self, record: StageRecord) {
        self.stages.retain(|r| r.stage != record.stage);
        let at = self.stages.partition_point(|r| r.stage < record.stage);
        self.stages.insert(at, record);
    }

    /// The record of `stage`.
    pub fn stage(&self, stage: Stage) -> Option<&StageRecord> {
        self.stages.iter().find(|r| r.stage == stage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(kind: CauseKind, signal: Option<i32>) -> Cause {
        Cause {
            kind,
            stage: None,
            signal,
            message: String::new(),
        }
    }

    #[test]
    fn exit_code_precedence_is_interrupted_usage_infrastructure_product() {
        use CauseKind::*;
        assert_eq!(exit_code(&[]), 0);
        assert_eq!(exit_code(&[cause(Product, None)]), 1);
        assert_eq!(
            exit_code(&[cause(Product, None), cause(Infrastructure, None)]),
            3
        );
        assert_eq!(
            exit_code(&[cause(Infrastructure, None), cause(Usage, None)]),
            2
        );
        assert_eq!(
            exit_code(&[
                cause(Product, None),
                cause(Interrupted, Some(15)),
                cause(Usage, None)
            ]),
            143
        );
        assert_eq!(exit_code(&[cause(Interrupted, Some(2))]), 130);
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join(".gate"));
        let lock = state.lock().unwrap();
        let err = state.lock().unwrap_err().to_string();
        assert!(err.contains("in use by another gate process"), "{err}");
        drop(lock);
        assert!(state.lock().is_ok());
    }

    #[test]
    fn records_keep_run_order_and_replace_reruns() {
        let mut run = RunState::new(
            RunId::generate_from(None, None),
            "d".into(),
            serde_json::Value::Null,
        );
        for (stage, status) in [
            (Stage::Deploy, StageStatus::Failed),
            (Stage::Allocate, StageStatus::Passed),
            (Stage::Deploy, StageStatus::Passed),
        ] {
            run.record(StageRecord {
                stage,
                status,
                backend: None,
                started_at: None,
                duration_ms: None,
                message: None,
            });
        }
        let order: Vec<_> = run.stages.iter().map(|r| (r.stage, r.status)).collect();
        assert_eq!(
            order,
            [
                (Stage::Allocate, StageStatus::Passed),
                (Stage::Deploy, StageStatus::Passed)
            ]
        );
    }
}
