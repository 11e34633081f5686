//! Test helpers over the tests/harness fleet of real sshd hosts (feature `testkit`): a
//! connector that uses the fleet's key, the fleet's hosts as gate [`Host`]s, and a
//! [`StageContext`](gate_core::StageContext) whose transports are SSH sessions to them.

use std::path::Path;

use gate_core::testkit::LocalStage;
use gate_core::{Connector, Host, Inventory, Stage};
use gate_test_harness::{FleetHost, SshFleet};

use crate::{SSH, SshConfig, SshConnector};

/// A connector for `fleet`: its client key, no agent, host keys pinned in `known_hosts`,
/// short waits.
pub fn fleet_connector(fleet: &SshFleet, known_hosts: &Path) -> SshConnector {
    SshConnector::new(SshConfig {
        identities: vec![fleet.client_key().to_owned()],
        agent: false,
        known_hosts: Some(known_hosts.to_owned()),
        connect_timeout_secs: 30,
        poll_secs: 1,
        ..SshConfig::default()
    })
}

/// `host` of the fleet as a gate host reached over SSH, with `labels`.
pub fn fleet_host(host: &FleetHost, labels: &[&str]) -> Host {
    Host {
        name: host.name().to_owned(),
        address: host.address(),
        port: host.port(),
        user: host.user().to_owned(),
        labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        transport: SSH.into(),
        home: None,
    }
}

/// A stage context whose hosts are a fleet, connected over SSH. Fields drop in order: the
/// transports (in the stage) before the fleet.
#[derive(Debug)]
pub struct FleetStage {
    /// The context (its state and artifacts dirs are temporary).
    pub stage: LocalStage,
    /// The hosts.
    pub fleet: SshFleet,
}

impl FleetStage {
    /// Connects to every host of `fleet` for `stage`; host `i` gets `labels[i]` (none when
    /// `labels` is shorter).
    pub async fn connect(fleet: SshFleet, stage: Stage, labels: &[&[&str]]) -> Self {
        let mut local = LocalStage::new(1, stage).await;
        let connector = fleet_connector(&fleet, &local.dir.path().join("known_hosts"));
        let hosts: Vec<Host> = fleet
            .hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| fleet_host(h, labels.get(i).copied().unwrap_or_default()))
            .collect();
        let mut transports = Vec::new();
        for host in &hosts {
            let transport = connector
                .connect(host, &local.cx.cancel)
                .await
                .unwrap_or_else(|e| panic!("connecting to {}: {e}", host.name));
            transports.push(transport);
        }
        local.cx.inventory =
            Inventory::new(hosts).unwrap_or_else(|e| panic!("a fleet inventory: {e}"));
        local.cx.transports = transports;
        Self {
            stage: local,
            fleet,
        }
    }

    /// Starts a fleet of `hosts` and connects to it for `stage`.
    pub async fn start(hosts: usize, stage: Stage) -> Self {
        let fleet = SshFleet::start(hosts).unwrap_or_else(|e| panic!("starting the fleet: {e}"));
        Self::connect(fleet, stage, &[]).await
    }

    /// Host `n` (1-based).
    pub fn host(&self, n: usize) -> &FleetHost {
        &self.fleet.hosts()[n - 1]
    }

    /// The context for `stage` (each stage logs to its own directory).
    pub fn cx(&self, stage: Stage) -> gate_core::StageContext {
        let mut cx = self.stage.cx.clone();
        cx.stage = stage;
        cx
    }
}
