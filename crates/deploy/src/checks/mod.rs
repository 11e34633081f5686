//! The deployer-agnostic upgrade checks: continuous probes from the primary while the
//! upgrade runs, every outage window recorded to `artifacts/upgrade-checks/` and to the
//! JUnit suite `artifacts/results/upgrade-checks.xml`; and test resources in the deployed
//! cloud ([`CloudResources`], made in OpenStack by [`openstack::OpenStackResources`]):
//! created before the upgrade, pinged and probed during it, verified after it (a JUnit case
//! each, `artifacts/upgrade-checks/resources.json`).

pub mod cloud;
pub mod config;
pub mod openstack;
pub mod probe;
pub mod timeline;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gate_core::junit::{CaseOutcome, CaseResult};
use gate_core::{BackendConfig, Error, Result, StageContext, StageOutcome};

use crate::host::HostSteps;
use cloud::{CloudResources, ResourceCheck, TestResource};
use config::{Probe, ResourcesConfig, Target, UpgradeChecksConfig};

/// Where the probe loop keeps its files on the primary (relative to its home).
const REMOTE_DIR: &str = "gate-upgrade-checks";
/// The artifacts subdirectory of the upgrade checks.
pub const ARTIFACTS: &str = "upgrade-checks";

/// The checks around one deployer's upgrade.
#[derive(Debug, Clone, Default)]
pub struct UpgradeChecks {
    probes: Vec<Probe>,
    interval: Duration,
    timeout: Duration,
    resources: ResourcesConfig,
    cloud: Option<Arc<dyn CloudResources>>,
}

impl UpgradeChecks {
    /// The checks of a deployer `backend` whose `upgrade_checks` table is `config`: with the
    /// OpenStack test resources it asks for, recorded in the ledger under `backend` (whose
    /// cleaner [`crate::register_cleaner`] registers).
    pub fn for_deployer(
        section: &BackendConfig,
        config: &UpgradeChecksConfig,
        backend: &str,
    ) -> Result<Self> {
        let cloud = crate::openstack_resources(section, "upgrade_checks", config, backend)?;
        Self::from_config(section, "upgrade_checks", config, cloud)
    }

    /// The checks `config` (the table under `key` of `section`) asks for. Test resources
    /// need `cloud`; asking for them without one is a config error.
    pub fn from_config(
        section: &BackendConfig,
        key: &str,
        config: &UpgradeChecksConfig,
        cloud: Option<Arc<dyn CloudResources>>,
    ) -> Result<Self> {
        let probes = config.probes(section, key)?;
        if config.resources.any() && cloud.is_none() {
            return Err(section.error(
                format!("{key}.resources"),
                "this deployer cannot make test servers, volumes or networks in the deployed \
                 cloud; set the counts to 0 and use probes",
            ));
        }
        Ok(Self {
            probes,
            interval: Duration::from_millis(config.interval_ms),
            timeout: Duration::from_secs(config.timeout_secs),
            resources: config.resources.clone(),
            cloud,
        })
    }

    /// Whether there is nothing to check.
    pub fn is_empty(&self) -> bool {
        self.probes.is_empty() && !self.resources.any()
    }

    /// Runs `upgrade` inside the checks: test resources made before it, probes running
    /// through it, resources verified after it, the results written. `lifetime` bounds the
    /// probe loop should gate die before stopping it. The upgrade's own error wins; else a
    /// broken tolerance or a damaged resource fails the stage.
    pub async fn around<F>(
        &self,
        cx: &StageContext,
        lifetime: Duration,
        upgrade: F,
    ) -> Result<StageOutcome>
    where
        F: Future<Output = Result<StageOutcome>>,
    {
        if self.is_empty() {
            return upgrade.await;
        }
        let primary = HostSteps::primary(cx)?;
        let made = match (&self.cloud, self.resources.any()) {
            (Some(cloud), true) => cloud.create(cx, &self.resources).await?,
            _ => Vec::new(),
        };
        let probes = self.with_server_probes(&made);
        let running = if probes.is_empty() {
            None
        } else {
            Some(
                probe::start(
                    &primary,
                    REMOTE_DIR,
                    &probes,
                    self.interval,
                    self.timeout,
                    lifetime,
                )
                .await?,
            )
        };
        let outcome = upgrade.await;

        let dir = cx.artifacts_subdir(ARTIFACTS)?;
        let mut problems = Vec::new();
        let mut timelines = Vec::new();
        if let Some(running) = &running {
            let fetched = async {
                running.stop(&primary).await?;
                running.fetch(&primary, &dir.join("probes.log")).await
            }
            .await;
            match fetched {
                Ok(()) => {
                    let path = dir.join("probes.log");
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| Error::io("reading", &path, e))?;
                    timelines = timeline::timelines(&probes, &timeline::parse(&text));
                }
                Err(e) => problems.push(format!("the probe timeline was lost: {e}")),
            }
        }
        let checks = match (&self.cloud, made.is_empty()) {
            (Some(cloud), false) => cloud.verify(cx, &made).await?,
            _ => Vec::new(),
        };
        if !made.is_empty() {
            write_resources(&dir, &checks, &made)?;
        }
        let mut extra = resource_cases(&checks);
        for problem in &problems {
            extra.push(CaseResult {
                classname: format!("{}.probes", timeline::SUITE),
                name: "probe timeline".into(),
                duration: Duration::ZERO,
                outcome: CaseOutcome::Error {
                    message: problem.clone(),
                },
                output: None,
            });
        }
        timeline::write(&dir, &cx.results_dir(), &timelines, &extra)?;
        for t in &timelines {
            let shown: Vec<String> = t
                .outages
                .iter()
                .map(|o| format!("{}..{} ({} ms)", o.start, o.end, o.duration_ms))
                .collect();
            primary.note(&format!(
                "probe `{}`: {} rounds, {} outage(s) {}",
                t.name,
                t.rounds,
                t.outages.len(),
                shown.join(", ")
            ));
        }

        let outcome = outcome?;
        problems.extend(
            timelines
                .iter()
                .filter(|t| t.violated)
                .map(timeline::violation),
        );
        problems.extend(checks.iter().filter_map(|c| {
            c.problem
                .as_ref()
                .map(|p| format!("{} {}: {p}", c.resource.kind, c.resource.name))
        }));
        if problems.is_empty() {
            Ok(outcome)
        } else {
            Err(Error::backend(
                "upgrade-checks",
                format!(
                    "the upgrade finished but its checks failed: {}",
                    problems.join("; ")
                ),
            ))
        }
    }

    /// The configured probes plus pings and TCP probes of every test server.
    fn with_server_probes(&self, made: &[TestResource]) -> Vec<Probe> {
        let mut probes = self.probes.clone();
        for server in made.iter().filter(|r| r.kind == "server") {
            for address in &server.addresses {
                if self.resources.ping_servers {
                    probes.push(Probe {
                        name: format!("ping {} {address}", server.name),
                        target: Target::Ping(address.clone()),
                        max_outage_secs: None,
                    });
                }
                for port in &self.resources.tcp_ports {
                    probes.push(Probe {
                        name: format!("tcp {} {address}:{port}", server.name),
                        target: Target::Tcp {
                            host: address.clone(),
                            port: *port,
                        },
                        max_outage_secs: None,
                    });
                }
            }
        }
        probes
    }
}

/// `resources.json` in `dir`: every test resource made, and how it came through.
fn write_resources(
    dir: &std::path::Path,
    checks: &[ResourceCheck],
    made: &[TestResource],
) -> Result<()> {
    let list: Vec<serde_json::Value> = made
        .iter()
        .map(|r| {
            let check = checks.iter().find(|c| c.resource == *r);
            serde_json::json!({
                "kind": r.kind,
                "name": r.name,
                "id": r.id,
                "addresses": r.addresses,
                "survived": check.is_some_and(|c| c.problem.is_none()),
                "problem": check.and_then(|c| c.problem.clone()),
                "evidence": check.map(|c| c.output.clone()),
            })
        })
        .collect();
    let path = dir.join("resources.json");
    let text = serde_json::to_string_pretty(&serde_json::json!({ "resources": list }))
        .map_err(|e| Error::backend("upgrade-checks", format!("resources.json: {e}")))?;
    std::fs::write(&path, text).map_err(|e| Error::io("writing", &path, e))
}

/// A JUnit case per verified test resource.
fn resource_cases(checks: &[ResourceCheck]) -> Vec<CaseResult> {
    checks
        .iter()
        .map(|c| CaseResult {
            classname: format!("{}.{}", timeline::SUITE, c.resource.kind),
            name: format!("{} survived the upgrade", c.resource.name),
            duration: Duration::ZERO,
            outcome: match &c.problem {
                None => CaseOutcome::Passed,
                Some(problem) => CaseOutcome::Failed {
                    message: problem.clone(),
                },
            },
            output: Some(c.output.clone()),
        })
        .collect()
}
