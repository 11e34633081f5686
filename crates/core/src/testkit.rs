//! Conformance checks every provider runs (feature `testkit`).
//!
//! Plain async functions over `&dyn ResourceAllocator` and `&dyn Cleaner`: they compare
//! the ledger with what the backend's [`Cleaner::observe`] says really exists, and panic
//! with a message naming the broken rule. An out-of-tree provider calls them from its own
//! tests exactly as the built-in ones do:
//!
//! ```text
//! #[tokio::test]
//! async fn conformance() {
//!     let provider = Arc::new(MyProvider::new(config));
//!     let subject = Subject::new(provider.clone(), provider, Arc::new(MyConnector));
//!     gate_core::testkit::run_all(&subject).await;
//! }
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::cleanup::{CleanerLookup, cleanup_ledger};
use crate::context::{AllocateContext, CleanContext};
use crate::error::Error;
use crate::events::TracingEvents;
use crate::ledger::{Ledger, Op, Replay};
use crate::model::{Inventory, RunId};
use crate::traits::{Cleaner, Observed, ResourceAllocator};
use crate::transport::{Connector, ExecIo, HostLog, TransportExt};

/// The backend under test.
#[derive(Debug, Clone)]
pub struct Subject {
    /// Its allocator.
    pub allocator: Arc<dyn ResourceAllocator>,
    /// Its cleaner (the one registered under the backend name its ledger entries carry).
    pub cleaner: Arc<dyn Cleaner>,
    /// Opens transports to the hosts it creates.
    pub connector: Arc<dyn Connector>,
    /// How long a cancelled allocation may take to return.
    pub cancel_deadline: Duration,
}

impl Subject {
    /// A subject with a 30 s cancellation deadline.
    pub fn new(
        allocator: Arc<dyn ResourceAllocator>,
        cleaner: Arc<dyn Cleaner>,
        connector: Arc<dyn Connector>,
    ) -> Self {
        Self {
            allocator,
            cleaner,
            connector,
            cancel_deadline: Duration::from_secs(30),
        }
    }

    fn clean_context(&self) -> CleanContext {
        CleanContext::new(self.connector.clone())
    }

    /// Cleans `ledger` with this subject's cleaner, as the cleanup stage would.
    async fn cleanup(&self, ledger: &Ledger) -> crate::Result<crate::CleanupReport> {
        let cleaner = self.cleaner.clone();
        let lookup: CleanerLookup = Arc::new(move |_backend: &str| Ok(cleaner.clone()));
        cleanup_ledger(ledger, &lookup, &self.clean_context()).await
    }
}

/// A scratch state dir with a ledger for one run.
struct Scratch {
    _dir: tempfile::TempDir,
    run_id: RunId,
    ledger: Ledger,
    logs: std::path::PathBuf,
}

fn scratch() -> Scratch {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("creating a scratch dir: {e}"));
    let run_id = RunId::generate();
    let ledger = Ledger::open(dir.path().join("resources.jsonl"), run_id.clone())
        .unwrap_or_else(|e| panic!("opening the ledger: {e}"));
    let logs = dir.path().join("logs");
    Scratch {
        _dir: dir,
        run_id,
        ledger,
        logs,
    }
}

fn context(subject: &Subject, scratch: &Scratch, cancel: CancellationToken) -> AllocateContext {
    AllocateContext {
        run_id: scratch.run_id.clone(),
        job: Some("conformance".into()),
        ledger: scratch.ledger.clone(),
        connector: subject.connector.clone(),
        keys: crate::keys::RunKeys::default(),
        cancel,
        events: Arc::new(TracingEvents),
        logs_dir: scratch.logs.clone(),
        concurrency: 4,
    }
}

async fn observe(subject: &Subject, run_id: &RunId) -> Vec<Observed> {
    subject
        .cleaner
        .observe(run_id, &subject.clean_context())
        .await
        .unwrap_or_else(|e| panic!("observe failed: {e}"))
}

/// Every observed thing must be a live ledger entry with a `created` line carrying its id;
/// with `intent_is_enough` (after a cancel, when a create call may have been in flight) an
/// `intent` under its exact name is enough.
fn assert_all_recorded(observed: &[Observed], ledger: &Ledger, intent_is_enough: bool) {
    let live = ledger
        .live()
        .unwrap_or_else(|e| panic!("reading the ledger: {e}"));
    for thing in observed {
        let recorded = live.iter().any(|r| {
            r.spec.kind == thing.kind
                && r.spec.name == thing.name
                && match r.id.as_deref() {
                    Some(id) => id == thing.id,
                    None => intent_is_enough,
                }
        });
        assert!(
            recorded,
            "{} `{}` (id {}) exists but the ledger does not record it",
            thing.kind, thing.name, thing.id
        );
    }
}

/// Allocates, checks the inventory (non-empty, primary first, every host answers a
/// command), checks every real thing is in the ledger, cleans up and checks nothing real
/// is left, then cleans up again and checks that is harmless.
pub async fn allocate_then_cleanup_leaves_nothing(subject: &Subject) -> Inventory {
    let scratch = scratch();
    let cx = context(subject, &scratch, CancellationToken::new());
    let inventory = subject
        .allocator
        .allocate(&cx)
        .await
        .unwrap_or_else(|e| panic!("allocate failed: {e}"));

    assert!(!inventory.hosts().is_empty(), "the inventory is empty");
    assert_eq!(
        inventory.primary(),
        &inventory.hosts()[0],
        "the primary is not first"
    );
    let names: BTreeSet<_> = inventory.hosts().iter().map(|h| &h.name).collect();
    assert_eq!(names.len(), inventory.len(), "host names are not unique");
    let cancel = CancellationToken::new();
    for host in inventory.hosts() {
        let transport = subject
            .connector
            .connect(host, &cancel)
            .await
            .unwrap_or_else(|e| panic!("host {} is not reachable: {e}", host.name));
        let log = HostLog::detached(&host.name, None);
        let io = ExecIo {
            log: &log,
            cancel: &cancel,
        };
        transport
            .run(&crate::Command::new("true"), &io)
            .await
            .unwrap_or_else(|e| panic!("host {} does not run commands: {e}", host.name));
    }

    let observed = observe(subject, &scratch.run_id).await;
    assert!(
        !observed.is_empty(),
        "observe() finds nothing right after allocate"
    );
    assert_all_recorded(&observed, &scratch.ledger, false);

    subject
        .cleanup(&scratch.ledger)
        .await
        .unwrap_or_else(|e| panic!("cleanup failed: {e}"));
    let left = observe(subject, &scratch.run_id).await;
    assert!(left.is_empty(), "cleanup left resources behind: {left:?}");
    assert!(
        scratch.ledger.live().map(|l| l.is_empty()).unwrap_or(false),
        "cleanup left live ledger entries"
    );

    let lines = scratch
        .ledger
        .replay()
        .map(|r| r.entries.len())
        .unwrap_or(0);
    subject
        .cleanup(&scratch.ledger)
        .await
        .unwrap_or_else(|e| panic!("a second cleanup failed: {e}"));
    let lines_after = scratch
        .ledger
        .replay()
        .map(|r| r.entries.len())
        .unwrap_or(0);
    assert_eq!(lines, lines_after, "a second cleanup wrote to the ledger");
    inventory
}

/// Allocates, then replays a ledger holding only the `intent` lines (as after a crash
/// between each create and its `created` line) plus an intent for a name never created:
/// cleanup must find the real resources by exact name and run id, and accept the missing one.
pub async fn cleanup_of_intent_only_entries_is_fine(subject: &Subject) {
    let scratch = scratch();
    let cx = context(subject, &scratch, CancellationToken::new());
    subject
        .allocator
        .allocate(&cx)
        .await
        .unwrap_or_else(|e| panic!("allocate failed: {e}"));
    let replay = scratch
        .ledger
        .replay()
        .unwrap_or_else(|e| panic!("reading the ledger: {e}"));
    let intents: Vec<_> = replay
        .entries
        .iter()
        .filter(|e| e.op == Op::Intent)
        .cloned()
        .collect();
    assert!(!intents.is_empty(), "allocate wrote no intent lines");

    let crashed = scratch.ledger.path().with_file_name("crashed.jsonl");
    let ledger = Ledger::open(&crashed, scratch.run_id.clone())
        .unwrap_or_else(|e| panic!("opening a ledger: {e}"));
    for entry in &intents {
        ledger
            .intent(&entry.spec)
            .await
            .unwrap_or_else(|e| panic!("writing a ledger: {e}"));
    }
    let mut never = intents[intents.len() - 1].spec.clone();
    never.name.push_str("-never-created");
    ledger
        .intent(&never)
        .await
        .unwrap_or_else(|e| panic!("writing a ledger: {e}"));

    subject
        .cleanup(&ledger)
        .await
        .unwrap_or_else(|e| panic!("cleanup of intent-only entries failed: {e}"));
    let left = observe(subject, &scratch.run_id).await;
    assert!(
        left.is_empty(),
        "cleanup by name and run id left resources behind: {left:?}"
    );
    assert!(
        Replay::read(&crashed)
            .map(|r| r.live().is_empty())
            .unwrap_or(false),
        "intent-only entries are still live after cleanup"
    );
    // The real ledger's entries are gone too now; cleaning it must be harmless.
    subject
        .cleanup(&scratch.ledger)
        .await
        .unwrap_or_else(|e| panic!("cleanup of already-freed resources failed: {e}"));
}

/// Starts an allocation and cancels it after `after`: it must return within the subject's
/// deadline, everything that exists by then must be in the ledger, and cleanup must leave
/// nothing.
pub async fn cancelled_allocation_stops_and_is_recorded(subject: &Subject, after: Duration) {
    let scratch = scratch();
    let cancel = CancellationToken::new();
    let cx = context(subject, &scratch, cancel.clone());
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let result = tokio::time::timeout(
        after + subject.cancel_deadline,
        subject.allocator.allocate(&cx),
    )
    .await;
    let result = result.unwrap_or_else(|_| {
        panic!(
            "a cancelled allocation was still running {:?} after the cancel",
            subject.cancel_deadline
        )
    });
    match result {
        Err(Error::Cancelled) => {}
        Err(other) => panic!("a cancelled allocation must return Error::Cancelled, got: {other}"),
        Ok(_) => panic!(
            "the allocation finished in {:?} before the cancel at {after:?}; use a slower allocation",
            started.elapsed()
        ),
    }
    let observed = observe(subject, &scratch.run_id).await;
    assert_all_recorded(&observed, &scratch.ledger, true);
    subject
        .cleanup(&scratch.ledger)
        .await
        .unwrap_or_else(|e| panic!("cleanup after a cancelled allocation failed: {e}"));
    let left = observe(subject, &scratch.run_id).await;
    assert!(
        left.is_empty(),
        "cleanup after a cancelled allocation left: {left:?}"
    );
}

/// Runs every check; `cancel_after` is how long into an allocation to cancel it.
pub async fn run_all(subject: &Subject, cancel_after: Duration) {
    allocate_then_cleanup_leaves_nothing(subject).await;
    cleanup_of_intent_only_entries_is_fine(subject).await;
    cancelled_allocation_stops_and_is_recorded(subject, cancel_after).await;
}

/// A [`crate::StageContext`] over `hosts` local hosts in a temporary directory, for testing
/// stage backends (deployers, testers, archivers) without a provider. The directory goes
/// when this is dropped.
#[derive(Debug)]
pub struct LocalStage {
    /// The context.
    pub cx: crate::StageContext,
    /// The temporary directory holding the hosts, the state dir and the artifacts dir.
    pub dir: tempfile::TempDir,
}

impl LocalStage {
    /// `hosts` local hosts (`host-1`, …) and a context for `stage`.
    pub async fn new(hosts: usize, stage: crate::Stage) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("creating a scratch dir: {e}"));
        let run_id = RunId::generate();
        let connector = crate::local::LocalConnector;
        let cancel = CancellationToken::new();
        let mut all = Vec::new();
        let mut transports = Vec::new();
        for i in 1..=hosts.max(1) {
            let home = dir.path().join("hosts").join(format!("host-{i}"));
            std::fs::create_dir_all(&home).unwrap_or_else(|e| panic!("creating a host: {e}"));
            let host = crate::Host {
                name: format!("host-{i}"),
                address: "localhost".into(),
                port: 0,
                user: "gate".into(),
                labels: Vec::new(),
                transport: crate::local::LOCAL.into(),
                home: Some(home.display().to_string()),
            };
            transports.push(
                connector
                    .connect(&host, &cancel)
                    .await
                    .unwrap_or_else(|e| panic!("connecting: {e}")),
            );
            all.push(host);
        }
        let state_dir = dir.path().join("state");
        std::fs::create_dir_all(&state_dir).unwrap_or_else(|e| panic!("creating state: {e}"));
        let ledger = Ledger::open(state_dir.join("resources.jsonl"), run_id.clone())
            .unwrap_or_else(|e| panic!("opening the ledger: {e}"));
        let cx = crate::StageContext {
            stage,
            run_id,
            inventory: Inventory::new(all).unwrap_or_else(|e| panic!("inventory: {e}")),
            transports,
            ledger,
            keys: crate::keys::RunKeys::default(),
            state_dir,
            artifacts_dir: dir.path().join("artifacts"),
            cancel,
            events: Arc::new(TracingEvents),
            concurrency: 4,
        };
        Self { cx, dir }
    }

    /// The home directory of host `n` (1-based).
    pub fn home(&self, n: usize) -> std::path::PathBuf {
        self.dir.path().join("hosts").join(format!("host-{n}"))
    }
}
