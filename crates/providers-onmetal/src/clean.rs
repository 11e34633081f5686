//! Cleanup (servers deleted, nodes released), observation and sweeps, for both modes.

use std::time::Duration;

use async_trait::async_trait;
use gate_core::{
    CleanContext, Cleaned, Cleaner, LiveResource, Observed, Result, RunId, SweepFilter, bounded,
};
use gate_openstack::naming;
use gate_openstack::servers::{self, Server};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::Mode;
use crate::ironic::{self, Node};
use crate::provider::{OnmetalProvider, error};
use crate::release::is_ours;
use crate::{NAME, NODE, SERVER};
use gate_openstack::allocator::{
    Wait, create_in_flight, delete_server, observed_server, region_of, scope_of, server_sweepable,
};

fn to_core(e: gate_openstack::Error) -> gate_core::Error {
    e.into_core(NAME)
}

/// How old something is, from an RFC 3339 stamp.
fn age(stamp: Option<&str>, now: OffsetDateTime) -> Option<Duration> {
    let at = OffsetDateTime::parse(stamp?, &Rfc3339).ok()?;
    (now - at).try_into().ok()
}

impl OnmetalProvider {
    fn protected(&self, name: &str) -> bool {
        self.shared
            .protected
            .iter()
            .any(|pattern| naming::glob_matches(pattern, name))
    }

    /// Whether a sweep may take `node`: marked by gate, not protected, of the filter's run,
    /// and marked longer ago than the filter's age or failed (`deploy failed`, `error`).
    fn node_due(&self, node: &Node, filter: &SweepFilter, now: OffsetDateTime) -> bool {
        let Some(run) = node.run_id() else {
            return false;
        };
        let run_ok = filter.run_id.as_ref().is_none_or(|r| r.as_str() == run);
        let stamp = node.field(&format!("extra/{}", naming::CREATED_AT_KEY));
        let due = matches!(node.provision_state.as_str(), "deploy failed" | "error")
            || age(stamp.as_deref(), now).is_some_and(|a| a >= filter.older_than);
        run_ok && due && !self.protected(node.label())
    }

    fn observed_node(&self, node: &Node) -> Observed {
        Observed {
            kind: NODE.into(),
            scope: self.node_scope(),
            name: node.label().to_owned(),
            id: node.uuid.clone(),
            run_id: node.run_id().and_then(|r| RunId::try_from(r).ok()),
        }
    }

    async fn observe_nodes(&self, run_id: &RunId, cx: &CleanContext) -> Result<Vec<Observed>> {
        let api = self.api(self.config.region.as_deref(), &cx.cancel).await?;
        let all = ironic::list(&api, &[]).await.map_err(to_core)?;
        Ok(all
            .iter()
            .filter(|node| is_ours(node, run_id, node.label()))
            .map(|node| self.observed_node(node))
            .collect())
    }

    async fn observe_servers(
        &self,
        cx: &CleanContext,
        keep: impl Fn(&Server) -> bool,
    ) -> Result<Vec<(String, gate_openstack::Api, Vec<Server>)>> {
        let mut found = Vec::new();
        for region in self.config.nova_regions() {
            let api = self.api(region.as_deref(), &cx.cancel).await?;
            let all = servers::list(&api).await.map_err(to_core)?;
            let kept: Vec<Server> = all.into_iter().filter(|s| keep(s)).collect();
            found.push((scope_of(region.as_deref()), api, kept));
        }
        Ok(found)
    }

    async fn sweep_nodes(&self, filter: &SweepFilter, cx: &CleanContext) -> Result<Vec<Observed>> {
        let now = OffsetDateTime::now_utc();
        let api = self.api(self.config.region.as_deref(), &cx.cancel).await?;
        let due: Vec<Node> = ironic::list(&api, &[])
            .await
            .map_err(to_core)?
            .into_iter()
            .filter(|node| self.node_due(node, filter, now))
            .collect();
        if filter.delete {
            let limit = self.nova.concurrency.unwrap_or(8);
            let results = bounded(&due, limit, |node| {
                let api = &api;
                async move {
                    tracing::info!("{NAME}: sweeping node `{}` ({})", node.label(), node.uuid);
                    let run = node.run_id().and_then(|r| RunId::try_from(r).ok());
                    match run {
                        Some(run) => self.release(api, &node.uuid, &run, node.label()).await,
                        None => Ok(()),
                    }
                }
            })
            .await;
            for result in results {
                result.map_err(to_core)?;
            }
        }
        Ok(due.iter().map(|node| self.observed_node(node)).collect())
    }
}

#[async_trait]
impl Cleaner for OnmetalProvider {
    async fn clean(&self, resource: &LiveResource, cx: &CleanContext) -> Result<Cleaned> {
        let spec = &resource.spec;
        match spec.kind.as_str() {
            NODE => {
                let api = self.api(self.node_region(&spec.scope), &cx.cancel).await?;
                let id = resource.id.as_deref().unwrap_or(&spec.name);
                self.release(&api, id, &resource.run_id, &spec.name)
                    .await
                    .map_err(to_core)?;
                Ok(Cleaned::Released)
            }
            SERVER => {
                let api = self.api(region_of(&spec.scope), &cx.cancel).await?;
                let wait = Wait {
                    timeout: self.shared.delete_timeout(),
                    poll: self.shared.poll().min(Duration::from_secs(2)),
                    settle: resource.create_may_land_within(create_in_flight(&api)),
                };
                let id = resource.id.as_deref();
                delete_server(&api, &spec.name, id, &resource.run_id, wait)
                    .await
                    .map_err(to_core)?;
                Ok(Cleaned::Deleted)
            }
            other => Err(error(format!(
                "ledger entry `{}` is of kind `{other}`, which this provider never makes",
                spec.name
            ))),
        }
    }

    async fn observe(&self, run_id: &RunId, cx: &CleanContext) -> Result<Vec<Observed>> {
        if self.config.mode == Mode::Ironic {
            return self.observe_nodes(run_id, cx).await;
        }
        let regions = self
            .observe_servers(cx, |s| s.run_id() == Some(run_id.as_str()))
            .await?;
        Ok(regions
            .iter()
            .flat_map(|(scope, _, found)| found.iter().map(|s| observed_server(scope, s)))
            .collect())
    }

    async fn sweep(&self, filter: &SweepFilter, cx: &CleanContext) -> Result<Vec<Observed>> {
        if self.config.mode == Mode::Ironic {
            return self.sweep_nodes(filter, cx).await;
        }
        let now = OffsetDateTime::now_utc();
        let regions = self
            .observe_servers(cx, |s| {
                server_sweepable(s, filter, &self.shared.protected, now)
            })
            .await?;
        let mut found = Vec::new();
        for (scope, api, due) in &regions {
            for server in due {
                if filter.delete {
                    tracing::info!(
                        "{NAME}: {}: sweeping server `{}` ({})",
                        api.region(),
                        server.name,
                        server.id
                    );
                    servers::delete(api, &server.id).await.map_err(to_core)?;
                }
                found.push(observed_server(scope, server));
            }
        }
        Ok(found)
    }
}
