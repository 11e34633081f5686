//! The stage traits backends implement. Each is object-safe and shareable
//! (`Send + Sync + Debug + 'static`), held as `Arc<dyn Trait>`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::context::{AllocateContext, CleanContext, StageContext};
use crate::error::Result;
use crate::ledger::LiveResource;
use crate::model::{Inventory, RunId};

/// Creates the hosts of a run (the `allocate` stage).
///
/// Contract: every resource is written to the ledger *as it is created* — an `intent` line
/// before the create request (with the exact name it will have), a `created` line with the
/// backend's id once it exists. On cancellation stop creating promptly and return
/// [`crate::Error::Cancelled`]; whatever exists by then must already be in the ledger. Tag
/// everything with the run id where the backend allows.
#[async_trait]
pub trait ResourceAllocator: Send + Sync + fmt::Debug + 'static {
    /// Creates the hosts and returns them, the primary first.
    async fn allocate(&self, cx: &AllocateContext) -> Result<Inventory>;
}

/// How a live resource was disposed of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cleaned {
    /// Deleted, or found already gone.
    Deleted,
    /// Given back rather than deleted.
    Released,
}

/// One resource that really exists, as the backend sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// Its kind, as in the ledger.
    pub kind: String,
    /// Where it is, as in the ledger's `scope` (a region, a lock dir, a Jenkins URL).
    pub scope: String,
    /// Its name.
    pub name: String,
    /// The backend's id for it.
    pub id: String,
    /// The run it is tagged with, if it carries a tag.
    pub run_id: Option<RunId>,
}

/// What `gate sweep` looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepFilter {
    /// Only resources older than this.
    pub older_than: Duration,
    /// Only this run's resources, when set.
    pub run_id: Option<RunId>,
    /// Delete what is found (else only list it).
    pub delete: bool,
}

/// Deletes ledger entries of one backend (the `cleanup` stage), and shows what exists.
///
/// Contract: [`Cleaner::clean`] is idempotent — a resource that is already gone counts as
/// deleted. An entry with no id (only the intent was written) is found by its exact name
/// *and* the run id, never by name alone.
#[async_trait]
pub trait Cleaner: Send + Sync + fmt::Debug + 'static {
    /// Deletes or releases `resource`.
    async fn clean(&self, resource: &LiveResource, cx: &CleanContext) -> Result<Cleaned>;

    /// What really exists for `run_id` (servers by tag, directories, nodes), so conformance
    /// checks compare the truth with the ledger.
    async fn observe(&self, run_id: &RunId, cx: &CleanContext) -> Result<Vec<Observed>>;

    /// Finds (and with [`SweepFilter::delete`], deletes) leaked resources without a ledger:
    /// by run-id tag and age, or by the `gate-` name prefix where nothing can be tagged.
    async fn sweep(&self, filter: &SweepFilter, cx: &CleanContext) -> Result<Vec<Observed>> {
        let _ = (filter, cx);
        Err(crate::Error::backend(
            format!("{self:?}"),
            "this backend offers no sweep",
        ))
    }
}

/// Registers the primary host as a CI agent (the `connect` stage). Nodes it creates go in
/// the ledger as children of the primary's server.
#[async_trait]
pub trait AgentConnector: Send + Sync + fmt::Debug + 'static {
    /// Registers and prepares the agent.
    async fn connect(&self, cx: &StageContext) -> Result<()>;
}

/// Checks every host is fit for a deploy (the `validate` stage).
#[async_trait]
pub trait HostValidator: Send + Sync + fmt::Debug + 'static {
    /// Fails naming each host and check that did not hold.
    async fn validate(&self, cx: &StageContext) -> Result<()>;
}

/// Prepares every host (the `prepare-hosts` stage).
#[async_trait]
pub trait HostPreparer: Send + Sync + fmt::Debug + 'static {
    /// Runs the preparer steps in order.
    async fn prepare(&self, cx: &StageContext) -> Result<()>;
}

/// Whether a stage did its work or had nothing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageOutcome {
    /// The work was done.
    Done,
    /// Nothing was configured for this stage; the reason is recorded.
    Skipped(String),
}

/// Deploys the product (`prepare-deployment`, `deploy` and `upgrade`).
#[async_trait]
pub trait Deployer: Send + Sync + fmt::Debug + 'static {
    /// Puts the deployment code and config in place.
    async fn prepare_deployment(&self, cx: &StageContext) -> Result<StageOutcome>;
    /// Deploys.
    async fn deploy(&self, cx: &StageContext) -> Result<StageOutcome>;
    /// Moves the deployment to the configured target version and checks it again.
    async fn upgrade(&self, cx: &StageContext) -> Result<StageOutcome>;
}

/// Counts of a test run and the JUnit files that hold the details.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestReport {
    /// Test cases run.
    pub tests: u64,
    /// Cases that failed.
    pub failures: u64,
    /// Cases that errored.
    pub errors: u64,
    /// Cases skipped.
    pub skipped: u64,
    /// The JUnit files written under `artifacts/results/`.
    pub junit_files: Vec<PathBuf>,
}

impl TestReport {
    /// Whether nothing failed or errored.
    pub fn passed(&self) -> bool {
        self.failures == 0 && self.errors == 0
    }

    /// Adds `other`'s counts and files to this one.
    pub fn absorb(&mut self, other: TestReport) {
        self.tests += other.tests;
        self.failures += other.failures;
        self.errors += other.errors;
        self.skipped += other.skipped;
        self.junit_files.extend(other.junit_files);
    }
}

/// Runs tests (the `test` stage) and writes JUnit XML under `artifacts/results/`, also when
/// the tests crash part way.
#[async_trait]
pub trait Tester: Send + Sync + fmt::Debug + 'static {
    /// Runs the selection. Failing tests are a report with failures, not an `Err`; `Err` is
    /// for when the tests could not run at all.
    async fn test(&self, cx: &StageContext) -> Result<TestReport>;
}

/// Pushes reusable artifacts to a store (the `publish` stage).
#[async_trait]
pub trait ArtifactPublisher: Send + Sync + fmt::Debug + 'static {
    /// Publishes.
    async fn publish(&self, cx: &StageContext) -> Result<()>;
}

/// What an archiver gathered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveReport {
    /// Files copied.
    pub files: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// `host:path` entries that did not exist (listed, not fatal).
    pub missing: Vec<String>,
}

/// Gathers logs, configs and results from every host into the artifacts dir (the `archive`
/// stage; always runs).
#[async_trait]
pub trait Archiver: Send + Sync + fmt::Debug + 'static {
    /// Archives.
    async fn archive(&self, cx: &StageContext) -> Result<ArchiveReport>;
}
