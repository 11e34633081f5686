//! The ledger: `resources.jsonl`, the durable record of everything a run creates.
//!
//! One JSON object a line, appended and fsync'd line by line. A backend writes an
//! [`Op::Intent`] line *before* it asks for a resource and an [`Op::Created`] line (with the
//! id) once it exists; cleanup writes [`Op::Deleted`] or [`Op::Released`]. Replaying the file
//! gives the live set, in creation order. The file survives `kill -9` at any point: a torn
//! last line is skipped with a warning, and the next append starts on a fresh line.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::events::{Event, EventSink};
use crate::model::RunId;
use crate::time::now_rfc3339;

/// The environment variable that arms a test-only crash point (see [`CrashPoint`]).
pub const CRASH_POINT_ENV: &str = "GATE_CRASH_POINT";

/// What a resource is, enough for cleanup to find and delete it without any other state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resource {
    /// The registry name of the backend that can delete it, e.g. `local`.
    pub backend: String,
    /// What it is: `server`, `stack`, `keypair`, `node`, `directory`, …
    pub kind: String,
    /// Where it lives: cloud and region, an endpoint, a root directory.
    pub scope: String,
    /// Its exact name (unique per backend, kind and scope within a run).
    pub name: String,
    /// The name of the resource it belongs to, if any (deleted after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

impl Resource {
    /// A spec without a parent.
    pub fn new(
        backend: impl Into<String>,
        kind: impl Into<String>,
        scope: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            backend: backend.into(),
            kind: kind.into(),
            scope: scope.into(),
            name: name.into(),
            parent: None,
        }
    }

    /// This spec with `parent` set.
    pub fn with_parent(mut self, parent: impl Into<String>) -> Self {
        self.parent = Some(parent.into());
        self
    }

    fn same_resource(&self, other: &Resource) -> bool {
        self.backend == other.backend
            && self.kind == other.kind
            && self.scope == other.scope
            && self.name == other.name
    }
}

/// What a ledger line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// About to create it (written before the create call).
    Intent,
    /// It exists, with this id.
    Created,
    /// It was deleted (or was already gone).
    Deleted,
    /// It was given back rather than deleted (a lab host, a bare-metal node).
    Released,
}

/// One line of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// What happened.
    pub op: Op,
    /// The run that owns the resource.
    pub run_id: RunId,
    /// The resource.
    #[serde(flatten)]
    pub spec: Resource,
    /// The backend's id for it (set on `created`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// When the line was written (RFC 3339, UTC).
    pub at: String,
}

/// A resource the ledger says may still exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveResource {
    /// The resource.
    pub spec: Resource,
    /// The run that owns it.
    pub run_id: RunId,
    /// Its id, when a `created` line was written; `None` when only the intent exists.
    pub id: Option<String>,
    /// When its intent was written (RFC 3339, UTC); `None` for a resource that did not come
    /// from a ledger (one a sweep found).
    pub intent_at: Option<String>,
}

impl LiveResource {
    /// For an entry with only its intent: how much longer a create call sent just before a
    /// crash may still be at work in the backend, where `in_flight` is the longest a create
    /// request may take. A cleaner that finds nothing by name keeps looking that long, so a
    /// resource the backend makes *after* the crash is not missed. Zero for an entry with an
    /// id, once `in_flight` has passed since the intent, or when the intent's time is unknown.
    pub fn create_may_land_within(&self, in_flight: Duration) -> Duration {
        if self.id.is_some() {
            return Duration::ZERO;
        }
        let Some(at) = self.intent_at.as_deref() else {
            return Duration::ZERO;
        };
        let Ok(at) =
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        else {
            return Duration::ZERO;
        };
        let age = time::OffsetDateTime::now_utc() - at;
        let age = Duration::try_from(age).unwrap_or(Duration::ZERO);
        in_flight.saturating_sub(age)
    }
}

/// The ledger read back.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// Every readable entry, in file order.
    pub entries: Vec<LedgerEntry>,
    /// Lines that could not be read (a torn last line after a crash), with their line number.
    pub warnings: Vec<String>,
}

impl Replay {
    /// Reads the ledger at `path`; a missing file is an empty ledger.
    pub fn read(path: &Path) -> Result<Self> {
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::io("reading", path, e)),
        };
        let mut replay = Self::default();
        let text = String::from_utf8_lossy(&text);
        for (n, line) in text.split('\n').enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<LedgerEntry>(line) {
                Ok(entry) => replay.entries.push(entry),
                Err(e) => {
                    let warning = format!(
                        "{}:{}: skipped an unreadable line (torn by a crash?): {e}",
                        path.display(),
                        n + 1
                    );
                    tracing::warn!("{warning}");
                    replay.warnings.push(warning);
                }
            }
        }
        Ok(replay)
    }

    /// The resources that may still exist, in creation order (the order of their intents).
    pub fn live(&self) -> Vec<LiveResource> {
        let mut live: Vec<LiveResource> = Vec::new();
        for entry in &self.entries {
            let at = live.iter().position(|r| r.spec.same_resource(&entry.spec));
            match entry.op {
                Op::Intent => {
                    if let Some(at) = at {
                        live.remove(at);
                    }
                    live.push(LiveResource {
                        spec: entry.spec.clone(),
                        run_id: entry.run_id.clone(),
                        id: None,
                        intent_at: Some(entry.at.clone()),
                    });
                }
                Op::Created => match at {
                    Some(at) => live[at].id.clone_from(&entry.id),
                    None => live.push(LiveResource {
                        spec: entry.spec.clone(),
                        run_id: entry.run_id.clone(),
                        id: entry.id.clone(),
                        intent_at: None,
                    }),
                },
                Op::Deleted | Op::Released => {
                    if let Some(at) = at {
                        live.remove(at);
                    }
                }
            }
        }
        live
    }
}

/// A test-only crash point, armed by `GATE_CRASH_POINT`: the process kills itself with
/// SIGKILL at that point, so tests can prove cleanup copes with a crash anywhere.
///
/// - `line:K` — right after the ledger's K-th line is on disk;
/// - `before-created:K` — after the K-th resource was created but before its `created`
///   line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After line K is durable.
    AfterLine(u64),
    /// Instead of writing the K-th `created` line.
    BeforeCreated(u64),
}

impl CrashPoint {
    fn from_env() -> Option<Self> {
        let value = std::env::var(CRASH_POINT_ENV).ok()?;
        let (what, k) = value.split_once(':')?;
        let k = k.parse().ok()?;
        match what {
            "line" => Some(Self::AfterLine(k)),
            "before-created" => Some(Self::BeforeCreated(k)),
            _ => None,
        }
    }
}

fn crash_now() {
    tracing::error!("{CRASH_POINT_ENV} reached: killing this process");
    let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
    std::process::abort();
}

#[derive(Debug)]
struct Inner {
    file: File,
    lines: u64,
    created: u64,
}

/// The append side of the ledger. Cheap to clone; appends from many tasks are serialized.
#[derive(Debug, Clone)]
pub struct Ledger {
    path: PathBuf,
    run_id: RunId,
    inner: Arc<Mutex<Inner>>,
    crash: Option<CrashPoint>,
    events: Option<Arc<dyn EventSink>>,
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path` for appends by `run_id`. A torn last
    /// line is left where it is and closed with a newline, so new lines start clean.
    pub fn open(path: impl Into<PathBuf>, run_id: RunId) -> Result<Self> {
        let path = path.into();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| Error::io("opening", &path, e))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)
            .map_err(|e| Error::io("reading", &path, e))?;
        let mut lines = text.iter().filter(|&&b| b == b'\n').count() as u64;
        if text.last().is_some_and(|&b| b != b'\n') {
            tracing::warn!(
                "{}: the last line is torn (a crash mid-write?); it will be skipped",
                path.display()
            );
            file.seek(SeekFrom::End(0))
                .and_then(|_| file.write_all(b"\n"))
                .and_then(|()| file.sync_data())
                .map_err(|e| Error::io("repairing", &path, e))?;
            lines += 1;
        }
        Ok(Self {
            path,
            run_id,
            inner: Arc::new(Mutex::new(Inner {
                file,
                lines,
                created: 0,
            })),
            crash: CrashPoint::from_env(),
            events: None,
        })
    }

    /// This ledger, also announcing every `created`, `deleted` and `released` line to `events`.
    pub fn with_events(mut self, events: Arc<dyn EventSink>) -> Self {
        self.events = Some(events);
        self
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run this ledger appends for.
    pub fn run_id(&self) -> &RunId {
        &self.run_id
    }

    /// Records that `spec` is about to be created. Call before the create request.
    pub async fn intent(&self, spec: &Resource) -> Result<()> {
        self.append(Op::Intent, spec, None).await
    }

    /// Records that `spec` now exists with `id`.
    pub async fn created(&self, spec: &Resource, id: &str) -> Result<()> {
        self.append(Op::Created, spec, Some(id.to_owned())).await
    }

    /// Records that `spec` is gone.
    pub async fn deleted(&self, spec: &Resource) -> Result<()> {
        self.append(Op::Deleted, spec, None).await
    }

    /// Records that `spec` was given back.
    pub async fn released(&self, spec: &Resource) -> Result<()> {
        self.append(Op::Released, spec, None).await
    }

    /// Reads the whole ledger back.
    pub fn replay(&self) -> Result<Replay> {
        Replay::read(&self.path)
    }

    /// The resources that may still exist, in creation order.
    pub fn live(&self) -> Result<Vec<LiveResource>> {
        Ok(self.replay()?.live())
    }

    async fn append(&self, op: Op, spec: &Resource, id: Option<String>) -> Result<()> {
        let entry = LedgerEntry {
            op,
            run_id: self.run_id.clone(),
            spec: spec.clone(),
            id,
            at: now_rfc3339(),
        };
        let this = self.clone();
        let entry = tokio::task::spawn_blocking(move || this.append_blocking(entry))
            .await
            .map_err(|e| Error::Ledger {
                path: self.path.clone(),
                message: format!("append task failed: {e}"),
            })??;
        if let Some(events) = &self.events {
            let (backend, kind, name) = (
                entry.spec.backend.clone(),
                entry.spec.kind.clone(),
                entry.spec.name.clone(),
            );
            match op {
                Op::Intent => {}
                Op::Created => events.emit(&Event::ResourceCreated {
                    backend,
                    kind,
                    name,
                }),
                Op::Deleted | Op::Released => events.emit(&Event::ResourceDeleted {
                    backend,
                    kind,
                    name,
                }),
            }
        }
        Ok(())
    }

    fn append_blocking(&self, entry: LedgerEntry) -> Result<LedgerEntry> {
        let mut line = serde_json::to_vec(&entry).map_err(|e| Error::Ledger {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        line.push(b'\n');
        let mut inner = self.inner.lock().map_err(|_| Error::Ledger {
            path: self.path.clone(),
            message: "a writer panicked while holding the ledger".into(),
        })?;
        if entry.op == Op::Created {
            inner.created += 1;
            if self.crash == Some(CrashPoint::BeforeCreated(inner.created)) {
                crash_now();
            }
        }
        // One write of the whole line, then fsync: a crash leaves at most a torn last line.
        inner
            .file
            .write_all(&line)
            .and_then(|()| inner.file.sync_data())
            .map_err(|e| Error::io("appending to", &self.path, e))?;
        inner.lines += 1;
        if self.crash == Some(CrashPoint::AfterLine(inner.lines)) {
            crash_now();
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_id() -> RunId {
        RunId::try_from("gate-0000ledger".to_owned()).unwrap()
    }

    fn spec(name: &str) -> Resource {
        Resource::new("local", "directory", "/tmp", name)
    }

    #[tokio::test]
    async fn replay_gives_live_set_in_creation_order() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path().join("resources.jsonl"), run_id()).unwrap();
        ledger.intent(&spec("a")).await.unwrap();
        ledger.created(&spec("a"), "id-a").await.unwrap();
        ledger.intent(&spec("b")).await.unwrap();
        ledger.intent(&spec("c")).await.unwrap();
        ledger.created(&spec("c"), "id-c").await.unwrap();
        ledger.deleted(&spec("a")).await.unwrap();
        let live = ledger.live().unwrap();
        let names: Vec<_> = live.iter().map(|r| r.spec.name.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(live[0].id, None);
        assert_eq!(live[1].id.as_deref(), Some("id-c"));
    }

    #[tokio::test]
    async fn an_intent_only_entry_may_still_land_until_a_create_call_could_have_ended() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path().join("resources.jsonl"), run_id()).unwrap();
        ledger.intent(&spec("a")).await.unwrap();
        ledger.intent(&spec("b")).await.unwrap();
        ledger.created(&spec("b"), "id-b").await.unwrap();
        let live = ledger.live().unwrap();
        let hour = Duration::from_secs(3600);
        // Written just now: a create sent before a crash may land for nearly the whole hour.
        let wait = live[0].create_may_land_within(hour);
        assert!(wait > Duration::from_secs(3500) && wait <= hour, "{wait:?}");
        // With an id there is nothing to wait for, nor once the window has passed.
        assert_eq!(live[1].create_may_land_within(hour), Duration::ZERO);
        let mut old = live[0].clone();
        old.intent_at = Some("2020-01-01T00:00:00.000Z".into());
        assert_eq!(old.create_may_land_within(hour), Duration::ZERO);
        old.intent_at = Some("not a time".into());
        assert_eq!(old.create_may_land_within(hour), Duration::ZERO);
    }

    #[tokio::test]
    async fn torn_last_line_is_skipped_and_appends_continue_on_a_new_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resources.jsonl");
        {
            let ledger = Ledger::open(&path, run_id()).unwrap();
            ledger.intent(&spec("a")).await.unwrap();
            ledger.created(&spec("a"), "id-a").await.unwrap();
        }
        // Simulate a crash mid-write: cut the file inside its second line.
        let text = std::fs::read(&path).unwrap();
        let first_newline = text.iter().position(|&b| b == b'\n').unwrap();
        std::fs::write(&path, &text[..first_newline + 10]).unwrap();

        let replay = Replay::read(&path).unwrap();
        assert_eq!(replay.entries.len(), 1);
        assert_eq!(replay.warnings.len(), 1);
        assert_eq!(replay.live()[0].id, None);

        let ledger = Ledger::open(&path, run_id()).unwrap();
        ledger.deleted(&spec("a")).await.unwrap();
        let replay = ledger.replay().unwrap();
        assert_eq!(replay.entries.len(), 2);
        assert!(replay.live().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_never_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path().join("resources.jsonl"), run_id()).unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..32 {
            let ledger = ledger.clone();
            tasks.spawn(async move {
                let s = spec(&format!("host-{i}"));
                ledger.intent(&s).await?;
                ledger.created(&s, &format!("id-{i}")).await
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
        let replay = ledger.replay().unwrap();
        assert!(replay.warnings.is_empty());
        assert_eq!(replay.entries.len(), 64);
        assert_eq!(replay.live().len(), 32);
        assert!(replay.live().iter().all(|r| r.id.is_some()));
    }
}
