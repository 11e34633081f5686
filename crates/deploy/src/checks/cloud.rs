//! The hook for test resources in the deployed cloud: created before the upgrade through
//! the cloud's own API, probed during it, verified after it.
//!
//! [`crate::OpenStackResources`] is gate's implementation (OpenStack servers and networks);
//! a deployer plugs one in through [`crate::UpgradeChecks::from_config`]. Without one, a
//! config asking for test resources is refused.

use std::fmt;

use async_trait::async_trait;
use gate_core::{Result, StageContext};

use crate::checks::config::ResourcesConfig;

/// One test resource made in the deployed cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResource {
    /// `server`, `volume` or `network`.
    pub kind: String,
    /// Its name (carrying the run id).
    pub name: String,
    /// The cloud's id for it.
    pub id: String,
    /// For servers: the addresses the primary can reach it on, to ping and probe.
    pub addresses: Vec<String>,
}

/// How a test resource looked after the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceCheck {
    /// The resource.
    pub resource: TestResource,
    /// `None` when it survived intact; else what is wrong (gone, in error, detached, …).
    pub problem: Option<String>,
    /// Evidence for the artifacts, e.g. the server's console output.
    pub output: String,
}

/// Creates and verifies test resources in the cloud a deployer deployed.
///
/// Contract: every resource goes to `cx.ledger` *as it is created* (an `intent` line before
/// the create call, `created` with its id) under the implementation's registry name, so
/// cleanup deletes it like anything else; everything is tagged with the run id.
#[async_trait]
pub trait CloudResources: Send + Sync + fmt::Debug + 'static {
    /// Creates what `want` asks for and waits until it is usable.
    async fn create(&self, cx: &StageContext, want: &ResourcesConfig) -> Result<Vec<TestResource>>;

    /// Checks each of `made` after the upgrade.
    async fn verify(&self, cx: &StageContext, made: &[TestResource]) -> Result<Vec<ResourceCheck>>;
}
