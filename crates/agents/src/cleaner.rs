//! Cleanup, observation and the sweep of `jenkins` ledger entries: nodes (deleted through
//! the API; one already gone counts as deleted) and inbound agent processes (stopped on
//! the host; one already gone counts as stopped).

use std::time::Duration;

use async_trait::async_trait;
use gate_core::{
    BackendConfig, CleanContext, Cleaned, Cleaner, Error, HostIo, HostLog, LiveResource, Observed,
    Result, RunId, SweepFilter,
};

use crate::api::JenkinsApi;
use crate::config::JenkinsConfig;
use crate::{AGENT_PROCESS, NAME, NODE};

/// Deletes what the `jenkins` connector recorded.
#[derive(Debug, Clone)]
pub struct JenkinsCleaner {
    config: JenkinsConfig,
    api: JenkinsApi,
}

impl JenkinsCleaner {
    /// A cleaner from the `[agent]` section (it needs the controller and credentials).
    pub fn from_config(section: &BackendConfig) -> Result<Self> {
        let config = JenkinsConfig::from_section(section)?;
        let api = JenkinsApi::new(&config)?;
        Ok(Self { config, api })
    }

    async fn clean_node(&self, resource: &LiveResource) -> Result<Cleaned> {
        let name = &resource.spec.name;
        if resource.spec.scope != self.api.base() {
            return Err(Error::backend(
                NAME,
                format!(
                    "node {name} lives on {}, but [agent] url is {}; clean up with that controller's config",
                    resource.spec.scope,
                    self.api.base()
                ),
            ));
        }
        let Some(existing) = self.api.computer(name).await? else {
            return Ok(Cleaned::Deleted);
        };
        // Only this run's node: an intent-only entry must never take another run's node.
        let owner = existing
            .description
            .as_deref()
            .and_then(crate::description_run_id);
        if owner.is_some_and(|o| o != resource.run_id.as_str())
            || (owner.is_none() && resource.id.is_none())
        {
            tracing::warn!(
                "node {name} exists but is not run {}'s; leaving it alone",
                resource.run_id
            );
            return Ok(Cleaned::Deleted);
        }
        self.api.delete_node(name).await?;
        Ok(Cleaned::Deleted)
    }

    async fn clean_process(&self, resource: &LiveResource, cx: &CleanContext) -> Result<Cleaned> {
        let host =
            crate::host_from_scope(&resource.spec.scope, &resource.spec.name).ok_or_else(|| {
                Error::backend(
                    NAME,
                    format!(
                        "unreadable host `{}` of agent {}",
                        resource.spec.scope, resource.spec.name
                    ),
                )
            })?;
        let transport = cx.connector.connect(&host, &cx.cancel).await?;
        let pidfile = resource
            .id
            .clone()
            .unwrap_or_else(|| crate::host::pidfile(&self.config.remote_root));
        let hio = HostIo {
            log: HostLog::detached(&host.name, None),
            cancel: cx.cancel.clone(),
            events: std::sync::Arc::new(gate_core::TracingEvents),
        };
        crate::host::stop_inbound(
            transport.as_ref(),
            &hio,
            &pidfile,
            Duration::from_secs(self.config.host_timeout_secs),
        )
        .await?;
        Ok(Cleaned::Deleted)
    }
}

#[async_trait]
impl Cleaner for JenkinsCleaner {
    async fn clean(&self, resource: &LiveResource, cx: &CleanContext) -> Result<Cleaned> {
        match resource.spec.kind.as_str() {
            NODE => self.clean_node(resource).await,
            AGENT_PROCESS => self.clean_process(resource, cx).await,
            other => Err(Error::backend(
                NAME,
                format!("unknown ledger kind `{other}` for {}", resource.spec.name),
            )),
        }
    }

    async fn observe(&self, run_id: &RunId, _cx: &CleanContext) -> Result<Vec<Observed>> {
        let nodes = self.api.computers().await?;
        Ok(nodes
            .into_iter()
            .filter(|c| {
                c.description.as_deref().and_then(crate::description_run_id)
                    == Some(run_id.as_str())
            })
            .map(|c| Observed {
                kind: NODE.into(),
                scope: self.api.base().to_owned(),
                name: c.display_name.clone(),
                id: c.display_name,
                run_id: Some(run_id.clone()),
            })
            .collect())
    }

    /// Offline nodes named `gate-…`: of the filter's run (by the id in their description)
    /// and older than its age (by the creation time there; a node without one counts as
    /// old). Online nodes are never swept: a build may be running on them.
    async fn sweep(&self, filter: &SweepFilter, _cx: &CleanContext) -> Result<Vec<Observed>> {
        let now = time::OffsetDateTime::now_utc();
        let mut found = Vec::new();
        for node in self.api.computers().await? {
            if !node.display_name.starts_with("gate-") || !node.offline {
                continue;
            }
            let description = node.description.clone().unwrap_or_default();
            let run = crate::description_run_id(&description)
                .and_then(|r| RunId::try_from(r.to_owned()).ok());
            if filter.run_id.is_some() && filter.run_id != run {
                continue;
            }
            let old_enough = crate::description_created_at(&description)
                .is_none_or(|at| now - at >= filter.older_than);
            if !old_enough {
                continue;
            }
            if filter.delete {
                self.api.delete_node(&node.display_name).await?;
            }
            found.push(Observed {
                kind: NODE.into(),
                scope: self.api.base().to_owned(),
                name: node.display_name.clone(),
                id: node.display_name,
                run_id: run,
            });
        }
        Ok(found)
    }
}
