//! The stages of a pipeline, in order.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One stage of a gating pipeline. The order of the variants is the order they run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Create hosts with a provider, writing every resource to the ledger.
    Allocate,
    /// Register the primary host as a CI agent.
    Connect,
    /// Check every host is reachable and clean.
    Validate,
    /// Ordered preparer steps on every host.
    PrepareHosts,
    /// Put deployment code and config on the primary.
    PrepareDeployment,
    /// Deploy the environment.
    Deploy,
    /// Run tests and produce JUnit XML.
    Test,
    /// Move the deployment to a target version.
    Upgrade,
    /// Push reusable artifacts.
    Publish,
    /// Gather logs and results into the artifacts dir. Always runs.
    Archive,
    /// Delete everything in the ledger. Always runs.
    Cleanup,
}

/// What a stage's failure says about the run, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureClass {
    /// The product under test failed (exit 1).
    Product,
    /// The infrastructure failed (exit 3).
    Infrastructure,
}

impl Stage {
    /// Every stage, in run order.
    pub const ALL: [Stage; 11] = [
        Stage::Allocate,
        Stage::Connect,
        Stage::Validate,
        Stage::PrepareHosts,
        Stage::PrepareDeployment,
        Stage::Deploy,
        Stage::Test,
        Stage::Upgrade,
        Stage::Publish,
        Stage::Archive,
        Stage::Cleanup,
    ];

    /// The kebab-case name, e.g. `prepare-hosts`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Allocate => "allocate",
            Stage::Connect => "connect",
            Stage::Validate => "validate",
            Stage::PrepareHosts => "prepare-hosts",
            Stage::PrepareDeployment => "prepare-deployment",
            Stage::Deploy => "deploy",
            Stage::Test => "test",
            Stage::Upgrade => "upgrade",
            Stage::Publish => "publish",
            Stage::Archive => "archive",
            Stage::Cleanup => "cleanup",
        }
    }

    /// Whether the stage runs after a failure or an interrupt too.
    pub fn always_runs(self) -> bool {
        matches!(self, Stage::Archive | Stage::Cleanup)
    }

    /// What a failure of this stage means for the exit code.
    pub fn failure_class(self) -> FailureClass {
        match self {
            Stage::PrepareDeployment | Stage::Deploy | Stage::Test | Stage::Upgrade => {
                FailureClass::Product
            }
            _ => FailureClass::Infrastructure,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A stage name that is not one of [`Stage::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown stage `{name}`; stages are: {all}", name = .0, all = Stage::ALL.map(Stage::name).join(", "))]
pub struct UnknownStage(pub String);

impl FromStr for Stage {
    type Err = UnknownStage;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.name() == s)
            .ok_or_else(|| UnknownStage(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_from_str_and_serde() {
        for stage in Stage::ALL {
            assert_eq!(stage.name().parse::<Stage>(), Ok(stage));
            let json = serde_json::to_string(&stage).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", stage.name()));
        }
        assert!("deploy-all".parse::<Stage>().is_err());
    }

    #[test]
    fn all_is_in_run_order() {
        let mut sorted = Stage::ALL;
        sorted.sort();
        assert_eq!(sorted, Stage::ALL);
    }
}
