//! What the SSH tests share: the fleet's hosts as gate hosts, a connector with the fleet's
//! key, a host log and cancel token per test, and waiting for a process to end.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gate_core::{Connector, ExecIo, Host, HostLog, Transport};
use gate_ssh::{SshConfig, SshConnector};
use gate_test_harness::{FleetHost, SshFleet};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// `fleet_host` as a gate host reached over SSH.
pub fn host(fleet_host: &FleetHost) -> Host {
    Host {
        name: fleet_host.name().to_owned(),
        address: fleet_host.address(),
        port: fleet_host.port(),
        user: fleet_host.user().to_owned(),
        labels: vec![],
        transport: gate_ssh::SSH.into(),
        home: None,
    }
}

/// A connector that trusts on first use into `known_hosts` and uses the fleet's key.
pub fn connector(fleet: &SshFleet, known_hosts: &Path) -> SshConnector {
    SshConnector::new(SshConfig {
        identities: vec![fleet.client_key().to_owned()],
        agent: false,
        known_hosts: Some(known_hosts.to_owned()),
        connect_timeout_secs: 10,
        poll_secs: 1,
        ..SshConfig::default()
    })
}

/// A transport to host `n` (0-based) of `fleet`, its host key pinned under `scratch`.
pub async fn connect(fleet: &SshFleet, n: usize, scratch: &Path) -> Arc<dyn Transport> {
    connector(fleet, &scratch.join("known_hosts"))
        .connect(&host(&fleet.hosts()[n]), &CancellationToken::new())
        .await
        .unwrap()
}

/// A host log (`host.log` in a directory) and a cancel token, for `ExecIo`.
pub struct Io {
    pub log: HostLog,
    pub cancel: CancellationToken,
}

impl Io {
    pub fn new(dir: &Path) -> Self {
        Self {
            log: HostLog::open(&dir.join("host.log"), "h", None).unwrap(),
            cancel: CancellationToken::new(),
        }
    }

    pub fn io(&self) -> ExecIo<'_> {
        ExecIo {
            log: &self.log,
            cancel: &self.cancel,
        }
    }
}

/// One fleet host, a transport to it and a log: what most tests start from.
pub struct Rig {
    pub t: Arc<dyn Transport>,
    pub io: Io,
    pub scratch: TempDir,
    pub fleet: SshFleet,
}

impl Rig {
    pub async fn start() -> Self {
        let fleet = SshFleet::start(1).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let t = connect(&fleet, 0, scratch.path()).await;
        let io = Io::new(scratch.path());
        Self {
            t,
            io,
            scratch,
            fleet,
        }
    }

    /// The host.
    pub fn remote(&self) -> &FleetHost {
        &self.fleet.hosts()[0]
    }
}

/// Whether `pid` is gone on `remote` within 10 s.
pub fn gone(remote: &FleetHost, pid: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while remote.exec(&format!("kill -0 {pid}")).status.success() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}
