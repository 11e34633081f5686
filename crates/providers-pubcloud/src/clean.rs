//! Cleanup (by id, or by exact name and run id), observation and sweeps.

use async_trait::async_trait;
use gate_core::ledger::Resource;
use gate_core::{
    CleanContext, Cleaned, Cleaner, LiveResource, Observed, Result, RunId, SweepFilter,
};
use gate_openstack::servers::{self, Server};
use gate_openstack::{Api, naming};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::provider::{PubcloudProvider, region_of, scope_of};
use crate::{NAME, SERVER};

/// Deletes the server of `spec`: by `id`, or — when only the intent was written — every
/// server with exactly that name *and* this run's tag; waits until Nova says 404.
pub(crate) async fn delete_server(
    provider: &PubcloudProvider,
    api: &Api,
    spec: &Resource,
    id: Option<&str>,
    run_id: &RunId,
) -> gate_openstack::Result<()> {
    let ids: Vec<String> = match id {
        Some(id) => vec![id.to_owned()],
        None => servers::find_by_name(api, &spec.name)
            .await?
            .into_iter()
            .filter(|s| s.run_id() == Some(run_id.as_str()))
            .map(|s| s.id)
            .collect(),
    };
    let timeout = PubcloudProvider::seconds(provider.config.delete_timeout_secs);
    let poll = PubcloudProvider::seconds(provider.config.poll_secs.min(2.0));
    for id in &ids {
        servers::delete(api, id).await?;
    }
    for id in &ids {
        servers::wait_gone(api, id, timeout, poll).await?;
    }
    Ok(())
}

fn observed(api: &Api, server: &Server) -> Observed {
    Observed {
        kind: SERVER.into(),
        scope: scope_of(Some(api.region())),
        name: server.name.clone(),
        id: server.id.clone(),
        run_id: server
            .run_id()
            .and_then(|r| RunId::try_from(r.to_owned()).ok()),
    }
}

/// How old a server is: from gate's `gate_created_at` tag, else Nova's `created`.
fn age(server: &Server, now: OffsetDateTime) -> Option<std::time::Duration> {
    let stamp = server
        .metadata
        .get(naming::CREATED_AT_KEY)
        .or(server.created.as_ref())?;
    let at = OffsetDateTime::parse(stamp, &Rfc3339).ok()?;
    (now - at).try_into().ok()
}

impl PubcloudProvider {
    /// Whether a sweep may take `server`: gate's (tagged, or a `gate-` name), not protected,
    /// of the filter's run if it names one, and older than the filter's age or in ERROR.
    fn sweepable(&self, server: &Server, filter: &SweepFilter, now: OffsetDateTime) -> bool {
        let ours = server.run_id().is_some() || server.name.starts_with(naming::NAME_PREFIX);
        let protected = self
            .config
            .protected
            .iter()
            .any(|pattern| naming::glob_matches(pattern, &server.name));
        let run_ok = filter
            .run_id
            .as_ref()
            .is_none_or(|run| server.run_id() == Some(run.as_str()));
        let due = server.status == "ERROR"
            || age(server, now).is_some_and(|age| age >= filter.older_than);
        ours && !protected && run_ok && due
    }
}

#[async_trait]
impl Cleaner for PubcloudProvider {
    async fn clean(&self, resource: &LiveResource, cx: &CleanContext) -> Result<Cleaned> {
        let api = self
            .api(region_of(&resource.spec.scope), &cx.cancel)
            .await?;
        delete_server(
            self,
            &api,
            &resource.spec,
            resource.id.as_deref(),
            &resource.run_id,
        )
        .await
        .map_err(|e| e.into_core(NAME))?;
        Ok(Cleaned::Deleted)
    }

    async fn observe(&self, run_id: &RunId, cx: &CleanContext) -> Result<Vec<Observed>> {
        let mut found = Vec::new();
        for region in self.config.all_regions() {
            let api = self.api(region.as_deref(), &cx.cancel).await?;
            let all = servers::list(&api).await.map_err(|e| e.into_core(NAME))?;
            found.extend(
                all.iter()
                    .filter(|s| s.run_id() == Some(run_id.as_str()))
                    .map(|s| observed(&api, s)),
            );
        }
        Ok(found)
    }

    async fn sweep(&self, filter: &SweepFilter, cx: &CleanContext) -> Result<Vec<Observed>> {
        let now = OffsetDateTime::now_utc();
        let mut found = Vec::new();
        for region in self.config.all_regions() {
            let api = self.api(region.as_deref(), &cx.cancel).await?;
            let all = servers::list(&api).await.map_err(|e| e.into_core(NAME))?;
            let due: Vec<&Server> = all
                .iter()
                .filter(|s| self.sweepable(s, filter, now))
                .collect();
            if filter.delete {
                for server in &due {
                    tracing::info!(
                        "{NAME}: {}: sweeping server `{}` ({})",
                        api.region(),
                        server.name,
                        server.id
                    );
                    servers::delete(&api, &server.id)
                        .await
                        .map_err(|e| e.into_core(NAME))?;
                }
            }
            found.extend(due.into_iter().map(|s| observed(&api, s)));
        }
        Ok(found)
    }
}
