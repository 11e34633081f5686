//! A stage context whose hosts are a real sshd fleet (tests/harness), reached over SSH.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use gate_core::testkit::LocalStage;
use gate_core::{Connector, Host, Inventory, Stage};
use gate_ssh::{SshConfig, SshConnector};
use gate_test_harness::{FleetHost, SshFleet};

/// Fields drop in order: the transports (in the stage) before the fleet.
pub struct FleetStage {
    pub stage: LocalStage,
    pub fleet: SshFleet,
}

impl FleetStage {
    pub async fn start(hosts: usize, stage: Stage) -> Self {
        let fleet = SshFleet::start(hosts).unwrap_or_else(|e| panic!("starting the fleet: {e}"));
        let mut local = LocalStage::new(1, stage).await;
        let connector = SshConnector::new(SshConfig {
            identities: vec![fleet.client_key().to_owned()],
            agent: false,
            known_hosts: Some(local.dir.path().join("known_hosts")),
            connect_timeout_secs: 30,
            poll_secs: 1,
            ..SshConfig::default()
        });
        let hosts: Vec<Host> = fleet
            .hosts()
            .iter()
            .map(|h| Host {
                name: h.name().to_owned(),
                address: h.address(),
                port: h.port(),
                user: h.user().to_owned(),
                labels: Vec::new(),
                transport: gate_ssh::SSH.into(),
                home: None,
            })
            .collect();
        let mut transports = Vec::new();
        for host in &hosts {
            transports.push(connector.connect(host, &local.cx.cancel).await.unwrap());
        }
        local.cx.inventory = Inventory::new(hosts).unwrap();
        local.cx.transports = transports;
        Self {
            stage: local,
            fleet,
        }
    }

    pub fn host(&self, n: usize) -> &FleetHost {
        &self.fleet.hosts()[n - 1]
    }

    pub fn artifacts(&self) -> &Path {
        &self.stage.cx.artifacts_dir
    }
}

/// Polls `check` every 20 ms until it holds or `within` passes.
pub async fn wait_until(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
