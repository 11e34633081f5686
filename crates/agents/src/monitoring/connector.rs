//! The `connect` stage: per host, each configured thing created in order, each written to
//! the ledger first (`intent`, then `created` with the id).

use std::collections::BTreeMap;

use async_trait::async_trait;
use gate_core::ledger::Resource;
use gate_core::{
    AgentConnector, BackendConfig, Error, Event, Host, HostLog, HostOutcome, Result, StageContext,
};
use reqwest::header::LOCATION;

use super::api::{Answer, ApiError, MonitoringApi, status_error, with_tries};
use super::config::{MonitoredHosts, MonitoringConfig};
use super::list::list;
use super::plan::{IdFrom, KindPlan, Plan};
use super::template::{Vars, decode_segment};
use super::{NAME, scope};

/// The `monitoring` agent connector.
#[derive(Debug, Clone)]
pub struct MonitoringConnector {
    plan: Plan,
    api: MonitoringApi,
}

impl MonitoringConnector {
    /// A connector from its config section.
    pub fn from_config(section: &BackendConfig) -> Result<Self> {
        let plan = MonitoringConfig::plan(section)?;
        let api = MonitoringApi::new(&plan)?;
        Ok(Self { plan, api })
    }

    async fn register_host(&self, cx: &StageContext, host: &Host) -> Result<()> {
        let log = cx
            .host_log(&host.name)
            .unwrap_or_else(|_| HostLog::detached(&host.name, Some(cx.events.clone())));
        let event = |status: &str| Event::HostStep {
            host: host.name.clone(),
            step: "register with monitoring".into(),
            status: status.to_owned(),
        };
        cx.events.emit(&event("started"));
        let result = self.create_all(cx, host, &log).await;
        cx.events
            .emit(&event(if result.is_ok() { "ok" } else { "failed" }));
        result
    }

    async fn create_all(&self, cx: &StageContext, host: &Host, log: &HostLog) -> Result<()> {
        let created_at = gate_core::time::now_rfc3339();
        // Per kind: the thing's id and label, for its children.
        let mut made: BTreeMap<usize, (String, String)> = BTreeMap::new();
        for (i, kind) in self.plan.kinds.iter().enumerate() {
            let parent = kind.parent.and_then(|p| made.get(&p).cloned());
            if kind.parent.is_some() && parent.is_none() {
                return Err(Error::backend(
                    NAME,
                    format!("{}: no parent was made", kind.kind),
                ));
            }
            let base = Vars {
                name: Some(&host.name),
                address: Some(&host.address),
                run_id: Some(cx.run_id.as_str()),
                ..Vars::default()
            };
            let label = kind
                .label
                .render_plain(&base)
                .map_err(|m| missing(kind, m))?;
            let vars = Vars {
                label: Some(&label),
                created_at: Some(&created_at),
                parent_id: parent.as_ref().map(|(id, _)| id.as_str()),
                ..base
            };
            let spec = Resource::new(
                NAME,
                &kind.kind,
                scope(self.api.base(), self.plan.parent_of(kind), vars.parent_id),
                &label,
            )
            .with_parent(
                parent
                    .as_ref()
                    .map_or(host.name.as_str(), |(_, l)| l.as_str()),
            );
            log.note(&format!("create monitoring {} `{label}`", kind.kind));
            cx.ledger.intent(&spec).await?;
            let id = match self.create(cx, kind, &vars, log).await {
                Ok(id) => id,
                Err(CreateFailed::Refused(error)) => {
                    // The API answered no: nothing was made, nothing is left to free.
                    cx.ledger.deleted(&spec).await?;
                    return Err(error);
                }
                Err(CreateFailed::Unknown(error)) => return Err(error),
            };
            cx.ledger.created(&spec, &id).await?;
            log.note(&format!("monitoring {} `{label}` is {id}", kind.kind));
            made.insert(i, (id, label));
        }
        Ok(())
    }

    /// Sends the create request, retrying transient failures. Before a retry (and on
    /// 409), a thing of this run with this exact label that the list shows is adopted:
    /// the earlier try made it and its answer was lost.
    async fn create(
        &self,
        cx: &StageContext,
        kind: &KindPlan,
        vars: &Vars<'_>,
        log: &HostLog,
    ) -> Result<String, CreateFailed> {
        let label = vars.label.unwrap_or_default();
        let path = kind.create.render_url(vars).map_err(|m| missing(kind, m))?;
        let url = self.api.url(&path);
        let body = kind
            .body
            .as_ref()
            .map(|b| b.render(vars))
            .transpose()
            .map_err(|m| missing(kind, m))?;
        let what = format!("creating {} `{label}` ({} {url})", kind.kind, kind.method);
        let cancelled = || cx.cancel.cancelled();
        let tries = self.api.retry().tries.max(1);
        let mut attempt = 0;
        loop {
            let failure = match self
                .api
                .attempt(&what, kind.method.clone(), &url, body.as_deref())
                .await
            {
                Ok(answer) if answer.ok() => return Ok(new_id(kind, &answer, &what)?),
                Ok(answer) if answer.status == 409 => {
                    if let Some(id) = self.adopt(cx, kind, vars).await? {
                        return Ok(id);
                    }
                    return Err(status_error(&what, 409, &answer.body, attempt + 1).into());
                }
                Ok(answer) => {
                    let error = status_error(&what, answer.status, &answer.body, attempt + 1);
                    // A 4xx on the first try refuses the request itself. After a lost
                    // answer, an earlier try may have made the thing: only the list knows.
                    return Err(if (400..500).contains(&answer.status) && attempt == 0 {
                        CreateFailed::Refused(error.into())
                    } else {
                        CreateFailed::Unknown(error.into())
                    });
                }
                Err(failure) if !failure.transient || attempt + 1 >= tries => {
                    return Err(with_tries(failure.error, attempt + 1).into());
                }
                Err(failure) => failure,
            };
            log.note(&format!(
                "try {} of {tries} failed, trying again: {}",
                attempt + 1,
                failure.error
            ));
            if !self
                .api
                .pause(attempt, failure.retry_after, &cancelled)
                .await
            {
                return Err(Error::Cancelled.into());
            }
            attempt += 1;
            if let Some(id) = self.adopt(cx, kind, vars).await? {
                log.note(&format!(
                    "an earlier try made {} `{label}`: {id}",
                    kind.kind
                ));
                return Ok(id);
            }
        }
    }

    /// The id of a thing of this run named `vars.label`, when the kind can be listed.
    async fn adopt(
        &self,
        cx: &StageContext,
        kind: &KindPlan,
        vars: &Vars<'_>,
    ) -> Result<Option<String>> {
        let Some(plan) = &kind.list else {
            return Ok(None);
        };
        let cancelled = || cx.cancel.cancelled();
        let items = list(
            &self.api,
            kind,
            plan,
            vars.run_id,
            vars.parent_id,
            &cancelled,
        )
        .await?;
        Ok(items
            .into_iter()
            .find(|i| {
                Some(i.name.as_str()) == vars.label
                    && kind.owned_by(&i.name, i.run_id.as_deref(), cx.run_id.as_str())
            })
            .map(|i| i.id))
    }
}

impl MonitoringConnector {
    /// Refuses, before anything is created, labels that two hosts would share: the ledger
    /// tells things apart by kind and name.
    fn check_labels(&self, cx: &StageContext, hosts: &[Host]) -> Result<()> {
        for kind in &self.plan.kinds {
            let mut seen: BTreeMap<String, &str> = BTreeMap::new();
            for host in hosts {
                let vars = Vars {
                    name: Some(&host.name),
                    address: Some(&host.address),
                    run_id: Some(cx.run_id.as_str()),
                    ..Vars::default()
                };
                let label = kind
                    .label
                    .render_plain(&vars)
                    .map_err(|m| missing(kind, m))?;
                if let Some(other) = seen.insert(label.clone(), &host.name) {
                    return Err(Error::backend(
                        NAME,
                        format!(
                            "hosts {other} and {} would both get the {} label `{label}`; use {{name}} in its `label`",
                            host.name, kind.kind
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Why a create request did not give an id.
enum CreateFailed {
    /// The API refused it (a 4xx on the first try): nothing was made.
    Refused(Error),
    /// It may exist: the answer was lost, unusable, or came after an unanswered try.
    Unknown(Error),
}

impl<E: Into<Error>> From<E> for CreateFailed {
    fn from(error: E) -> Self {
        CreateFailed::Unknown(error.into())
    }
}

/// The new thing's id from the create answer.
fn new_id(kind: &KindPlan, answer: &Answer, what: &str) -> Result<String, ApiError> {
    let failed = |message: String| ApiError::Failed {
        what: what.to_owned(),
        message: format!(
            "{message}; it may exist now: its intent is in the ledger, so cleanup looks for it by name{}",
            if kind.list.is_some() {
                ""
            } else {
                " (configure `list` so it can)"
            }
        ),
    };
    let header = |name: &reqwest::header::HeaderName| {
        answer
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let id = match &kind.id_from {
        IdFrom::Location => header(&LOCATION).and_then(|location| {
            let path = location.split(['?', '#']).next().unwrap_or_default();
            let last = path.trim_end_matches('/').rsplit('/').next()?;
            decode_segment(last).filter(|s| !s.is_empty())
        }),
        IdFrom::Header(name) => header(name),
        IdFrom::Pointer(pointer) => {
            let body = answer.json(what)?;
            match body.pointer(pointer) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                _ => None,
            }
        }
    };
    id.ok_or_else(|| {
        failed(match &kind.id_from {
            IdFrom::Location => "the answer has no usable Location header".to_owned(),
            IdFrom::Header(name) => format!("the answer has no {name} header"),
            IdFrom::Pointer(p) => format!("the answer has no id at `{p}`"),
        })
    })
}

fn missing(kind: &KindPlan, m: super::template::Missing) -> Error {
    Error::backend(NAME, format!("{}: {m}", kind.kind))
}

#[async_trait]
impl AgentConnector for MonitoringConnector {
    async fn connect(&self, cx: &StageContext) -> Result<()> {
        let hosts: Vec<Host> = match self.plan.config.hosts {
            MonitoredHosts::All => cx.inventory.hosts().to_vec(),
            MonitoredHosts::Primary => vec![cx.inventory.primary().clone()],
        };
        self.check_labels(cx, &hosts)?;
        let outcomes = gate_core::bounded(hosts, cx.concurrency, |host| async move {
            let result = self.register_host(cx, &host).await.map_err(|e| match e {
                Error::Cancelled => Error::Cancelled,
                other => Error::Host {
                    host: host.name.clone(),
                    message: other.to_string(),
                },
            });
            HostOutcome {
                result,
                host: host.name,
            }
        })
        .await;
        gate_core::all_ok(outcomes).map(drop)
    }
}
