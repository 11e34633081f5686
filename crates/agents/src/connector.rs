//! The `connect` stage: prepare the primary, register it as a Jenkins node (recorded in
//! the ledger first, as a child of the primary's own resource), start the inbound agent
//! if asked, and wait until Jenkins reports the node online.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use gate_core::ledger::Resource;
use gate_core::{
    AgentConnector, BackendConfig, Error, Event, HostIo, Result, StageContext, Transport,
};

use crate::api::{ApiError, JenkinsApi, NodeSpec};
use crate::config::{JenkinsConfig, Launcher};
use crate::host::{HostSetup, Inbound};
use crate::{AGENT_PROCESS, NAME, NODE, NODE_FILE};

/// The `jenkins` agent connector.
#[derive(Debug, Clone)]
pub struct JenkinsConnector {
    config: JenkinsConfig,
    api: JenkinsApi,
}

impl JenkinsConnector {
    /// A connector from its config section.
    pub fn from_config(section: &BackendConfig) -> Result<Self> {
        let config = JenkinsConfig::from_section(section)?;
        let api = JenkinsApi::new(&config)?;
        Ok(Self { config, api })
    }

    /// The ledger spec of node `name`: scope is the controller, parent the primary's own
    /// resource.
    fn node_spec(&self, name: &str, parent: &str) -> Resource {
        Resource::new(NAME, NODE, self.api.base(), name).with_parent(parent)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.host_timeout_secs)
    }

    /// Creates the node, retrying; a node of that name that carries this run's id is one
    /// an earlier attempt made (its answer was lost), so it counts as created.
    async fn register(&self, cx: &StageContext, hio: &HostIo, spec: &NodeSpec) -> Result<()> {
        let attempts = self.config.register_attempts;
        let delay = Duration::from_secs(self.config.register_delay_secs);
        let mut n = 1;
        loop {
            let outcome = match self.api.create_node(spec).await {
                Ok(true) => Ok(()),
                Ok(false) => self.adopt_existing(cx, &spec.name).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => return Ok(()),
                Err(e) if e.is_permanent() || n >= attempts => {
                    return Err(Error::backend(
                        NAME,
                        gate_core::secret::redact(&format!(
                            "registering node {} at {} failed after {n} attempt(s): {e}",
                            spec.name,
                            self.api.base()
                        ))
                        .into_owned(),
                    ));
                }
                Err(e) => {
                    hio.log.note(&format!(
                        "register node {}: attempt {n} of {attempts} failed, again in {}s: {e}",
                        spec.name,
                        delay.as_secs()
                    ));
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = cx.cancel.cancelled() => return Err(Error::Cancelled),
                    }
                    n += 1;
                }
            }
        }
    }

    async fn adopt_existing(&self, cx: &StageContext, name: &str) -> Result<(), ApiError> {
        let existing = self.api.computer(name).await?;
        let ours = existing
            .as_ref()
            .and_then(|c| c.description.as_deref())
            .is_some_and(|d| crate::description_run_id(d) == Some(cx.run_id.as_str()));
        if ours {
            Ok(())
        } else {
            Err(ApiError::Status {
                what: format!("creating node {name}"),
                status: 409,
                body: format!("a node named {name} exists already and is not this run's"),
            })
        }
    }

    /// Polls the node until it is online, the deadline passes or the run is interrupted.
    async fn wait_online(&self, cx: &StageContext, hio: &HostIo, name: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(self.config.online_timeout_secs);
        let poll = Duration::from_secs(self.config.poll_secs);
        let mut last: String;
        loop {
            match self.api.computer(name).await {
                Ok(Some(c)) if !c.offline => {
                    hio.log.note(&format!("node {name} is online"));
                    return Ok(());
                }
                Ok(Some(c)) => {
                    last = match c.offline_cause_reason.as_deref().map(str::trim) {
                        Some(reason) if !reason.is_empty() => format!("offline: {reason}"),
                        _ => "offline (Jenkins gives no cause)".into(),
                    };
                }
                Ok(None) => last = "the node does not exist (deleted from Jenkins?)".into(),
                Err(e) if e.is_permanent() => return Err(e.into()),
                Err(e) => last = format!("cannot read its state: {e}"),
            }
            if Instant::now() >= deadline {
                return Err(Error::backend(
                    NAME,
                    gate_core::secret::redact(&format!(
                        "node {name} did not come online within {}s at {}; last state: {last}",
                        self.config.online_timeout_secs,
                        self.api.base()
                    ))
                    .into_owned(),
                ));
            }
            tokio::select! {
                () = tokio::time::sleep(poll.min(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(50)))) => {}
                () = cx.cancel.cancelled() => return Err(Error::Cancelled),
            }
        }
    }

    async fn connect_primary(
        &self,
        cx: &StageContext,
        transport: &dyn Transport,
        hio: &HostIo,
    ) -> Result<()> {
        let host = transport.host();
        let name = self
            .config
            .name
            .clone()
            .unwrap_or_else(|| cx.run_id.as_str().to_owned());
        if self.config.prepare_host {
            step(cx, hio, host, "prepare the agent host", async {
                let setup = HostSetup {
                    user: &self.config.agent_user,
                    remote_root: &self.config.remote_root,
                    java: &self.config.java,
                    java_packages: &self.config.java_packages,
                    sshd_config: &self.config.sshd_config,
                    keys: cx.keys.authorized().iter().map(|k| k.line()).collect(),
                    timeout: self.timeout(),
                };
                crate::host::prepare(transport, hio, &setup).await
            })
            .await?;
        }

        let parent = primary_resource(cx)?;
        let ledger_spec = self.node_spec(&name, &parent);
        let mut labels = self.config.labels.clone();
        if !labels.contains(&name) {
            labels.push(name.clone());
        }
        let node = NodeSpec {
            name: name.clone(),
            description: crate::description(cx.run_id.as_str(), &host.name),
            remote_root: self.config.remote_root.clone(),
            labels,
            executors: self.config.executors,
            launcher: self.config.launcher,
            ssh: self.config.credentials_id.as_ref().map(|id| {
                (
                    host.address.clone(),
                    self.config.ssh_port.unwrap_or(host.port),
                    id.clone(),
                )
            }),
        };
        step(cx, hio, host, "register the Jenkins node", async {
            cx.ledger.intent(&ledger_spec).await?;
            self.register(cx, hio, &node).await?;
            cx.ledger.created(&ledger_spec, &name).await
        })
        .await?;

        if self.config.launcher == Launcher::Inbound {
            step(cx, hio, host, "start the inbound agent", async {
                let secret = self.api.agent_secret(&name).await?;
                let jar = self.api.agent_jar().await?;
                let pidfile = crate::host::pidfile(&self.config.remote_root);
                let process = Resource::new(NAME, AGENT_PROCESS, crate::host_scope(host), &name)
                    .with_parent(&name);
                cx.ledger.intent(&process).await?;
                crate::host::start_inbound(
                    transport,
                    hio,
                    &Inbound {
                        user: &self.config.agent_user,
                        remote_root: &self.config.remote_root,
                        java: &self.config.java,
                        controller: self.api.base(),
                        node: &name,
                        jar: &jar,
                        secret: &secret,
                        timeout: self.timeout(),
                    },
                )
                .await?;
                cx.ledger.created(&process, &pidfile).await
            })
            .await?;
        }

        step(cx, hio, host, "wait for the node to come online", async {
            self.wait_online(cx, hio, &name).await
        })
        .await?;
        let file = cx.state_dir.join(NODE_FILE);
        std::fs::write(&file, format!("{name}\n")).map_err(|e| Error::io("writing", &file, e))
    }
}

/// Runs `work` as a host step with progress events.
async fn step<T>(
    cx: &StageContext,
    hio: &HostIo,
    host: &gate_core::Host,
    what: &str,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let event = |status: &str| Event::HostStep {
        host: host.name.clone(),
        step: what.to_owned(),
        status: status.to_owned(),
    };
    cx.events.emit(&event("started"));
    hio.log.note(what);
    let result = work.await;
    cx.events
        .emit(&event(if result.is_ok() { "ok" } else { "failed" }));
    result
}

/// The ledger name of the primary's own resource (its server, reservation or directory):
/// the live entry named after the primary, else the primary's name (so the node is still
/// ordered before whatever is created under that name).
fn primary_resource(cx: &StageContext) -> Result<String> {
    let primary = &cx.inventory.primary().name;
    let live = cx.ledger.live()?;
    let found = live
        .iter()
        .find(|r| r.spec.backend != NAME && &r.spec.name == primary)
        .map(|r| r.spec.name.clone());
    Ok(found.unwrap_or_else(|| primary.clone()))
}

#[async_trait]
impl AgentConnector for JenkinsConnector {
    async fn connect(&self, cx: &StageContext) -> Result<()> {
        let primary = cx.primary().clone();
        let outcomes = cx
            .on_hosts(std::slice::from_ref(&primary), |transport, hio| async move {
                self.connect_primary(cx, transport.as_ref(), &hio).await
            })
            .await;
        for outcome in outcomes {
            outcome.result?;
        }
        Ok(())
    }
}
