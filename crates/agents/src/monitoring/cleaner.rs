//! Cleanup, observation and the sweep of `monitoring` ledger entries.

use std::future::Future;

use async_trait::async_trait;
use gate_core::{
    BackendConfig, CleanContext, Cleaned, Cleaner, Error, LiveResource, Observed, Result, RunId,
    SweepFilter,
};
use reqwest::Method;
use time::OffsetDateTime;

use super::api::{ApiError, MonitoringApi, status_error};
use super::config::MonitoringConfig;
use super::list::{Item, list};
use super::plan::{KindPlan, Plan};
use super::template::{Var, Vars};
use super::{NAME, parent_id_in, scope};

/// Deletes what the `monitoring` connector recorded; observes and sweeps kinds with `list`.
#[derive(Debug, Clone)]
pub struct MonitoringCleaner {
    plan: Plan,
    api: MonitoringApi,
}

/// A listed thing with where it is.
struct Found {
    kind: usize,
    item: Item,
    parent_id: Option<String>,
}

impl MonitoringCleaner {
    /// A cleaner from the `[agent]` section (it needs the API, the token and the kinds).
    pub fn from_config(section: &BackendConfig) -> Result<Self> {
        let plan = MonitoringConfig::plan(section)?;
        let api = MonitoringApi::new(&plan)?;
        Ok(Self { plan, api })
    }

    /// Deletes `id`; `false` when it was gone already.
    async fn delete<C, F>(
        &self,
        kind: &KindPlan,
        id: &str,
        parent_id: Option<&str>,
        run_id: &str,
        label: &str,
        cancelled: &C,
    ) -> Result<bool, ApiError>
    where
        C: Fn() -> F,
        F: Future<Output = ()>,
    {
        let vars = Vars {
            id: Some(id),
            parent_id,
            run_id: Some(run_id),
            label: Some(label),
            ..Vars::default()
        };
        let path = kind
            .delete
            .render_url(&vars)
            .map_err(|m| ApiError::Failed {
                what: format!("deleting {} `{label}`", kind.kind),
                message: m.to_string(),
            })?;
        let url = self.api.url(&path);
        let what = format!("deleting {} `{label}` (DELETE {url})", kind.kind);
        let note = |text: &str| tracing::warn!("{what}: {text}");
        let answer = self
            .api
            .call(&what, Method::DELETE, &url, None, cancelled, &note)
            .await?;
        match answer.status {
            404 | 410 => Ok(false),
            _ if answer.ok() => Ok(true),
            status => Err(status_error(&what, status, &answer.body, 1)),
        }
    }

    /// Every listed thing of the kinds with `list`; children are listed under each
    /// listed parent that `under` accepts.
    async fn list_all<C, F>(
        &self,
        run_id: Option<&str>,
        under: impl Fn(&KindPlan, &Item) -> bool,
        cancelled: &C,
    ) -> Result<Vec<Found>, ApiError>
    where
        C: Fn() -> F,
        F: Future<Output = ()>,
    {
        let mut found: Vec<Found> = Vec::new();
        for (i, kind) in self.plan.kinds.iter().enumerate() {
            let Some(plan) = &kind.list else { continue };
            if run_id.is_none() && plan.url.uses(Var::RunId) {
                tracing::warn!("not listing {}: its list URL needs a run id", kind.kind);
                continue;
            }
            let parents: Vec<Option<String>> = match (kind.parent, self.plan.parent_of(kind)) {
                (Some(p), Some(parent_kind)) => found
                    .iter()
                    .filter(|f| f.kind == p && under(parent_kind, &f.item))
                    .map(|f| Some(f.item.id.clone()))
                    .collect(),
                _ => vec![None],
            };
            for parent_id in parents {
                let items = list(
                    &self.api,
                    kind,
                    plan,
                    run_id,
                    parent_id.as_deref(),
                    cancelled,
                )
                .await?;
                found.extend(items.into_iter().map(|item| Found {
                    kind: i,
                    item,
                    parent_id: parent_id.clone(),
                }));
            }
        }
        Ok(found)
    }

    fn observed(&self, found: &Found, run_id: Option<RunId>) -> Observed {
        let kind = &self.plan.kinds[found.kind];
        Observed {
            kind: kind.kind.clone(),
            scope: scope(
                self.api.base(),
                self.plan.parent_of(kind),
                found.parent_id.as_deref(),
            ),
            name: found.item.name.clone(),
            id: found.item.id.clone(),
            run_id,
        }
    }
}

fn intent_only(kind: &KindPlan, resource: &LiveResource) -> Error {
    Error::backend(
        NAME,
        format!(
            "{} `{}` has only an intent line (gate stopped between its create request and the answer), \
             and its kind has no `list` to find it by name: look for it at {} and delete it by hand, \
             or add `list` to its [[agent.resources]], then run `gate cleanup` again",
            kind.kind, resource.spec.name, resource.spec.scope
        ),
    )
}

#[async_trait]
impl Cleaner for MonitoringCleaner {
    async fn clean(&self, resource: &LiveResource, cx: &CleanContext) -> Result<Cleaned> {
        let name = &resource.spec.name;
        let kind = self.plan.kind(&resource.spec.kind).ok_or_else(|| {
            Error::backend(
                NAME,
                format!(
                    "{} `{name}`: this config has no [[agent.resources]] of kind `{}`; clean up with the config that made it",
                    resource.spec.kind, resource.spec.kind
                ),
            )
        })?;
        let parent_id = parent_id_in(
            &resource.spec.scope,
            self.api.base(),
            self.plan.parent_of(kind),
        )
        .map_err(|m| Error::backend(NAME, format!("{} `{name}`: {m}", kind.kind)))?;
        let cancelled = || cx.cancel.cancelled();
        let run = resource.run_id.as_str();
        if let Some(id) = &resource.id {
            self.delete(kind, id, parent_id.as_deref(), run, name, &cancelled)
                .await?;
            return Ok(Cleaned::Deleted);
        }
        let Some(plan) = &kind.list else {
            return Err(intent_only(kind, resource));
        };
        let items = list(
            &self.api,
            kind,
            plan,
            Some(run),
            parent_id.as_deref(),
            &cancelled,
        )
        .await?;
        for item in items
            .iter()
            .filter(|i| &i.name == name && kind.owned_by(&i.name, i.run_id.as_deref(), run))
        {
            tracing::info!(
                "{} `{name}` (only its intent was recorded) is {}: deleting it",
                kind.kind,
                item.id
            );
            self.delete(kind, &item.id, parent_id.as_deref(), run, name, &cancelled)
                .await?;
        }
        Ok(Cleaned::Deleted)
    }

    /// This run's things of the kinds with `list` (children under this run's parents).
    async fn observe(&self, run_id: &RunId, cx: &CleanContext) -> Result<Vec<Observed>> {
        let run = run_id.as_str();
        let cancelled = || cx.cancel.cancelled();
        let found = self
            .list_all(
                Some(run),
                |kind, item| kind.owned_by(&item.name, item.run_id.as_deref(), run),
                &cancelled,
            )
            .await?;
        Ok(found
            .iter()
            .filter(|f| {
                let kind = &self.plan.kinds[f.kind];
                kind.owned_by(&f.item.name, f.item.run_id.as_deref(), run)
            })
            .map(|f| self.observed(f, Some(run_id.clone())))
            .collect())
    }

    /// Things named `gate-…` of the kinds with `list` whose creation time the list gives
    /// and is older than the filter's age (of the filter's run, when set); children are
    /// looked for under `gate-…` parents and deleted first. Without a creation time nothing
    /// is swept: gate cannot tell a leak from a run that is just starting.
    async fn sweep(&self, filter: &SweepFilter, cx: &CleanContext) -> Result<Vec<Observed>> {
        let now = OffsetDateTime::now_utc();
        let run = filter.run_id.as_ref().map(RunId::as_str);
        let cancelled = || cx.cancel.cancelled();
        let gate_named = |_: &KindPlan, item: &Item| item.name.starts_with("gate-");
        let found = self.list_all(run, gate_named, &cancelled).await?;
        let mut swept: Vec<&Found> = found
            .iter()
            .filter(|f| {
                let kind = &self.plan.kinds[f.kind];
                let item = &f.item;
                item.name.starts_with("gate-")
                    && run.is_none_or(|r| kind.owned_by(&item.name, item.run_id.as_deref(), r))
                    && item
                        .created_at
                        .is_some_and(|at| now - at >= filter.older_than)
            })
            .collect();
        // Children (later kinds) before their parents.
        swept.sort_by_key(|f| std::cmp::Reverse(f.kind));
        let mut out = Vec::new();
        for f in swept {
            let kind = &self.plan.kinds[f.kind];
            let item_run = f
                .item
                .run_id
                .clone()
                .and_then(|r| RunId::try_from(r).ok())
                .or_else(|| filter.run_id.clone());
            if filter.delete {
                let run_text = item_run.as_ref().map_or("", RunId::as_str);
                self.delete(
                    kind,
                    &f.item.id,
                    f.parent_id.as_deref(),
                    run_text,
                    &f.item.name,
                    &cancelled,
                )
                .await?;
            }
            out.push(self.observed(f, item_run));
        }
        Ok(out)
    }
}
