//! gate-agents: CI agents for the `connect` stage.
//!
//! The `jenkins` connector makes the primary host a Jenkins node for the later stages:
//!
//! 1. it prepares the host over its transport — a Java runtime (installed when missing), the
//!    agent user (default `jenkins`) with the keys file in its `authorized_keys` and
//!    passwordless sudo, the remote root (default `/var/lib/jenkins`), and sshd without
//!    password logins;
//! 2. it registers the node through Jenkins' REST API (`POST computer/doCreateItem`, with a
//!    crumb and the user's API token, retried: 5 tries 10 s apart by default), after
//!    writing it to the ledger as a child of the primary's own resource, so cleanup deletes
//!    the node before its server;
//! 3. with the `inbound` launcher it downloads `agent.jar` from the controller and starts it
//!    on the host with the node's secret, detached from the SSH session (`setsid nohup`,
//!    a pidfile), also recorded in the ledger;
//! 4. it waits until Jenkins reports the node online, failing with the node's offline cause
//!    at the deadline, then writes the node's name to `<state dir>/jenkins-node` for the
//!    Jenkinsfile's later stages.
//!
//! Its [`JenkinsCleaner`] deletes the node (one already gone counts as deleted), stops the
//! agent process, and sweeps offline `gate-…` nodes.
//!
//! ```toml
//! [agent]
//! backend = "jenkins"
//! url = "https://jenkins.example/"
//! user = "gate-bot"
//! token = { env = "JENKINS_TOKEN" }     # a secret: never logged
//! launcher = "inbound"                  # or "ssh" with credentials_id = "…"
//! labels = ["single_use_slave"]
//! ```
//!
//! ```
//! let mut registry = gate_core::Registry::new();
//! gate_agents::register(&mut registry);
//! assert!(registry.has_cleaner(gate_agents::NAME));
//! ```
//!
//! The [`monitoring`] connector registers every host with a monitoring service (entities
//! and checks over a generic REST API, e.g. Rackspace Cloud Monitoring), all in the ledger.
//!
//! One run can have both: `[[agent]]` tables are connected in order by an [`AgentChain`].
#![deny(missing_docs)]

mod api;
mod chain;
mod cleaner;
mod config;
mod connector;
mod host;
pub mod monitoring;

pub use chain::AgentChain;
pub use cleaner::JenkinsCleaner;
pub use config::{JenkinsConfig, Launcher};
pub use connector::JenkinsConnector;
pub use monitoring::{MonitoringCleaner, MonitoringConfig, MonitoringConnector};

use std::sync::Arc;

use gate_core::{Host, Registry};

/// The registry name of the connector and its cleaner.
pub const NAME: &str = "jenkins";
/// The ledger kind of a Jenkins node.
pub const NODE: &str = "node";
/// The ledger kind of an inbound agent process on a host.
pub const AGENT_PROCESS: &str = "agent-process";
/// The file in the state dir that holds the node's name once it is online.
pub const NODE_FILE: &str = "jenkins-node";

/// Registers the `jenkins` connector and its cleaner, and the [`monitoring`] ones.
pub fn register(registry: &mut Registry) {
    monitoring::register(registry);
    registry
        .add_agent(NAME, |config| {
            Ok(Arc::new(JenkinsConnector::from_config(config)?))
        })
        .add_cleaner(NAME, |config| {
            Ok(Arc::new(JenkinsCleaner::from_config(config)?))
        });
}

/// The node description gate writes: the host, the run id and the creation time, so
/// cleanup and sweeps can tell gate's nodes (and whose) from others.
pub(crate) fn description(run_id: &str, host: &str) -> String {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    format!("gate agent on {host} (gate_run_id={run_id}; gate_created_at={now})")
}

fn description_field<'a>(description: &'a str, key: &str) -> Option<&'a str> {
    let start = description.find(&format!("{key}="))? + key.len() + 1;
    let rest = &description[start..];
    let end = rest.find([';', ')', ' ']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|v| !v.is_empty())
}

/// The run id in a node description gate wrote.
pub(crate) fn description_run_id(description: &str) -> Option<&str> {
    description_field(description, "gate_run_id")
}

/// The creation time in a node description gate wrote.
pub(crate) fn description_created_at(description: &str) -> Option<time::OffsetDateTime> {
    let at = description_field(description, "gate_created_at")?;
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()
}

/// How the ledger names the host an agent process runs on: `transport://user@address:port`.
pub(crate) fn host_scope(host: &Host) -> String {
    format!(
        "{}://{}@{}:{}",
        host.transport, host.user, host.address, host.port
    )
}

/// The host of a [`host_scope`], called `name`.
pub(crate) fn host_from_scope(scope: &str, name: &str) -> Option<Host> {
    let (transport, rest) = scope.split_once("://")?;
    let (user, rest) = rest.split_once('@')?;
    let (address, port) = rest.rsplit_once(':')?;
    Some(Host {
        name: name.to_owned(),
        address: address.to_owned(),
        port: port.parse().ok()?,
        user: user.to_owned(),
        labels: Vec::new(),
        transport: transport.to_owned(),
        home: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_carry_run_id_and_time() {
        let text = description("gate-1a2b3c4d", "fleet-1");
        assert_eq!(description_run_id(&text), Some("gate-1a2b3c4d"));
        assert!(description_created_at(&text).is_some());
        assert_eq!(description_run_id("someone's node"), None);
    }

    #[test]
    fn host_scopes_round_trip() {
        let host = host_from_scope("ssh://root@127.0.0.11:22", "n").unwrap();
        assert_eq!((host.address.as_str(), host.port), ("127.0.0.11", 22));
        assert_eq!(host_scope(&host), "ssh://root@127.0.0.11:22");
        assert!(host_from_scope("nonsense", "n").is_none());
    }
}
