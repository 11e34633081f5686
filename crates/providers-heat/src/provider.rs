//! The provider: create and wait, hosts from the output, delete and wait, observe, sweep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gate_core::ledger::Resource;
use gate_core::{
    AllocateContext, BackendConfig, CleanContext, Cleaned, Cleaner, Error, Host, HostOutcome,
    Inventory, LiveResource, Observed, ResourceAllocator, Result, RunId, SweepFilter, all_ok,
    bounded,
};
use gate_openstack::{Api, LazyCloud, SharedConfig, naming, seconds, userdata};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

use crate::config::HeatConfig;
use crate::stack::{self, NewStack, Stack};
use crate::{NAME, STACK};

/// The tag every stack of a run carries: `gate_run_id=<run id>`.
pub(crate) const RUN_TAG_PREFIX: &str = "gate_run_id=";

/// How long after `CREATE_COMPLETE` the hosts output may still lack an address.
const ADDRESS_GRACE: Duration = Duration::from_secs(300);

/// The `heat` provider: allocator and cleaner.
#[derive(Debug)]
pub struct HeatProvider {
    config: HeatConfig,
    shared: SharedConfig,
    cloud: LazyCloud,
}

fn error(message: impl Into<String>) -> Error {
    Error::backend(NAME, message)
}

impl HeatProvider {
    /// A provider from its config section; bad values are named by key.
    pub fn from_config(section: &BackendConfig) -> Result<Self> {
        let config: HeatConfig = section.parse()?;
        let shared = config.shared();
        if let Err((key, message)) = shared.check() {
            return Err(section.error(key, message));
        }
        let create = config.create_timeout_secs;
        if !create.is_finite() || create <= 0.0 {
            return Err(section.error(
                "create_timeout_secs",
                format!("must be a positive number of seconds, not {create}"),
            ));
        }
        if config.hosts_output.is_empty() {
            return Err(section.error("hosts_output", "is empty"));
        }
        if let Some(parameter) = &config.user_data_parameter
            && config.parameters.contains_key(parameter)
        {
            return Err(section.error(
                format!("parameters.{parameter}"),
                "is also the user_data_parameter: gate fills it",
            ));
        }
        Ok(Self {
            cloud: LazyCloud::new(shared.cloud()),
            config,
            shared,
        })
    }

    async fn api(&self, cancel: &CancellationToken) -> Result<Api> {
        self.cloud
            .region(self.config.region.as_deref(), cancel)
            .await
            .map_err(|e| e.into_core(NAME))
    }

    fn scope(&self) -> String {
        self.config.region.clone().unwrap_or_else(|| "-".into())
    }

    fn parameters(&self, cx: &AllocateContext) -> Result<serde_json::Map<String, Value>> {
        let mut parameters: serde_json::Map<String, Value> = self
            .config
            .parameters
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(parameter) = &self.config.user_data_parameter {
            let keys: Vec<String> = cx.keys.authorized().iter().map(|k| k.line()).collect();
            let user_data = userdata::with_root_keys(&keys, None).map_err(error)?;
            parameters.insert(parameter.clone(), Value::String(user_data));
        }
        Ok(parameters)
    }

    /// Polls until `CREATE_COMPLETE` with every host's address in the output.
    async fn wait_hosts(&self, api: &Api, name: &str, id: &str) -> Result<Vec<Host>> {
        let timeout = seconds(self.config.create_timeout_secs);
        let poll = self.shared.poll();
        let started = Instant::now();
        let to_core = |e: gate_openstack::Error| e.into_core(NAME);
        let mut complete_since: Option<Instant> = None;
        loop {
            let stack = stack::get(api, name, id)
                .await
                .map_err(to_core)?
                .ok_or_else(|| {
                    error(format!(
                        "{}: stack `{name}` ({id}) disappeared",
                        api.region()
                    ))
                })?;
            match stack.status.as_str() {
                "CREATE_COMPLETE" => {
                    if let Some(hosts) = self.hosts(api, &stack).await? {
                        return Ok(hosts);
                    }
                    // Heat keeps the attribute values it read when each resource completed,
                    // so an address still empty some minutes later will stay empty.
                    let since = *complete_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= ADDRESS_GRACE.min(timeout) {
                        return Err(error(format!(
                            "{}: stack `{name}` is CREATE_COMPLETE but output `{}` still has a host without an address after {}s: the template must give each host an address its servers have when they turn ACTIVE",
                            api.region(),
                            self.config.hosts_output,
                            ADDRESS_GRACE.min(timeout).as_secs()
                        )));
                    }
                }
                "CREATE_IN_PROGRESS" => {}
                status => {
                    let failed = stack::failed_resources(api, name, id)
                        .await
                        .unwrap_or_default();
                    let detail = if failed.is_empty() {
                        stack.reason.clone()
                    } else {
                        failed.join("; ")
                    };
                    return Err(error(format!(
                        "{}: stack `{name}` is {status}: {detail}",
                        api.region()
                    )));
                }
            }
            if started.elapsed() >= timeout {
                return Err(error(format!(
                    "{}: stack `{name}` is still {} (or its hosts have no address) after {}s",
                    api.region(),
                    stack.status,
                    timeout.as_secs()
                )));
            }
            api.sleep(poll).await.map_err(to_core)?;
        }
    }

    /// The hosts of the output; `None` while an address is still empty. An entry may name
    /// its Nova server (`server`, e.g. `{get_resource: controller}`) instead of, or besides,
    /// an `address`: the address is then read from Nova now, not from the attribute values
    /// Heat kept when the server turned ACTIVE.
    async fn hosts(&self, api: &Api, stack: &Stack) -> Result<Option<Vec<Host>>> {
        let key = &self.config.hosts_output;
        let value = stack.output(key).ok_or_else(|| {
            error(format!(
                "stack `{}` has no output `{key}` (hosts_output)",
                stack.name
            ))
        })?;
        let entries = value.as_array().ok_or_else(|| {
            error(format!(
                "output `{key}` of stack `{}` is not a list of {{name, address}}: {value}",
                stack.name
            ))
        })?;
        if entries.is_empty() {
            return Err(error(format!(
                "output `{key}` of stack `{}` is empty",
                stack.name
            )));
        }
        let mut hosts = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let name = entry["name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    error(format!(
                        "output `{key}`[{i}] of stack `{}` has no name: {entry}",
                        stack.name
                    ))
                })?;
            let mut address = entry["address"]
                .as_str()
                .filter(|a| !a.is_empty())
                .map(str::to_owned);
            if address.is_none()
                && let Some(server) = entry["server"].as_str().filter(|s| !s.is_empty())
            {
                address = gate_openstack::servers::get(api, server)
                    .await
                    .map_err(|e| e.into_core(NAME))?
                    .and_then(|s| s.address(None));
            }
            let Some(address) = address else {
                return Ok(None);
            };
            hosts.push(self.shared.host(name, address.to_owned()));
        }
        Ok(Some(hosts))
    }

    /// Deletes the stack and waits for it to go, deleting again after `DELETE_FAILED`.
    async fn delete_and_wait(&self, api: &Api, name: &str, id: &str) -> Result<()> {
        let timeout = self.shared.delete_timeout();
        let poll = self.shared.poll().min(Duration::from_secs(2));
        let started = Instant::now();
        let to_core = |e: gate_openstack::Error| e.into_core(NAME);
        if !stack::delete(api, name, id).await.map_err(to_core)? {
            return Ok(());
        }
        let mut failures = 0;
        loop {
            match stack::get(api, name, id).await.map_err(to_core)? {
                None => return Ok(()),
                Some(s) if s.status == "DELETE_COMPLETE" => return Ok(()),
                Some(s) if s.status == "DELETE_FAILED" => {
                    failures += 1;
                    tracing::warn!(
                        "{NAME}: stack `{name}` DELETE_FAILED ({}); deleting again",
                        s.reason
                    );
                    stack::delete(api, name, id).await.map_err(to_core)?;
                }
                Some(_) => {}
            }
            if started.elapsed() >= timeout {
                return Err(error(format!(
                    "{}: stack `{name}` not deleted after {}s ({failures} DELETE_FAILED)",
                    api.region(),
                    timeout.as_secs()
                )));
            }
            api.sleep(poll).await.map_err(to_core)?;
        }
    }
}

#[async_trait]
impl ResourceAllocator for HeatProvider {
    async fn allocate(&self, cx: &AllocateContext) -> Result<Inventory> {
        let template = std::fs::read_to_string(&self.config.template)
            .map_err(|e| Error::io("reading the Heat template", &self.config.template, e))?;
        let name = self
            .config
            .name
            .clone()
            .unwrap_or_else(|| cx.run_id.to_string());
        let parameters = self.parameters(cx)?;
        let api = self.api(&cx.cancel).await?;
        let spec = Resource::new(NAME, STACK, self.scope(), &name);
        let tags = vec!["gate".to_owned(), format!("{RUN_TAG_PREFIX}{}", cx.run_id)];
        cx.ledger.intent(&spec).await?;
        tracing::info!("{NAME}: {}: creating stack `{name}`", api.region());
        let new = NewStack {
            name: &name,
            template: &template,
            parameters: &parameters,
            tags: &tags,
            timeout_mins: self.config.timeout_mins,
        };
        let id = stack::create(&api, &new)
            .await
            .map_err(|e| e.into_core(NAME))?;
        cx.ledger.created(&spec, &id).await?;
        let hosts = self.wait_hosts(&api, &name, &id).await?;
        let outcomes = bounded(hosts, cx.concurrency, |host| async move {
            let result = cx
                .connector
                .connect(&host, &cx.cancel)
                .await
                .map(|_| host.clone());
            HostOutcome {
                host: host.name.clone(),
                result,
            }
        })
        .await;
        if cx.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        Inventory::new(all_ok(outcomes)?).map_err(|e| error(e.to_string()))
    }
}

fn observed(scope: String, stack: &Stack) -> Observed {
    Observed {
        kind: STACK.into(),
        scope,
        name: stack.name.clone(),
        id: stack.id.clone(),
        run_id: stack
            .run_id()
            .and_then(|r| RunId::try_from(r.to_owned()).ok()),
    }
}

#[async_trait]
impl Cleaner for HeatProvider {
    async fn clean(&self, resource: &LiveResource, cx: &CleanContext) -> Result<Cleaned> {
        let api = self.api(&cx.cancel).await?;
        let name = &resource.spec.name;
        let id = match &resource.id {
            Some(id) => id.clone(),
            None => match stack::find(&api, name)
                .await
                .map_err(|e| e.into_core(NAME))?
            {
                Some(found) if found.run_id() == Some(resource.run_id.as_str()) => found.id,
                _ => return Ok(Cleaned::Deleted),
            },
        };
        self.delete_and_wait(&api, name, &id).await?;
        Ok(Cleaned::Deleted)
    }

    async fn observe(&self, run_id: &RunId, cx: &CleanContext) -> Result<Vec<Observed>> {
        let api = self.api(&cx.cancel).await?;
        let tag = format!("{RUN_TAG_PREFIX}{run_id}");
        let stacks = stack::list(&api, Some(&tag))
            .await
            .map_err(|e| e.into_core(NAME))?;
        Ok(stacks
            .iter()
            .filter(|s| s.status != "DELETE_COMPLETE")
            .map(|s| observed(self.scope(), s))
            .collect())
    }

    async fn sweep(&self, filter: &SweepFilter, cx: &CleanContext) -> Result<Vec<Observed>> {
        let api = self.api(&cx.cancel).await?;
        let stacks = stack::list(&api, None)
            .await
            .map_err(|e| e.into_core(NAME))?;
        let now = OffsetDateTime::now_utc();
        let mut found = Vec::new();
        for stack in stacks.iter().filter(|s| s.status != "DELETE_COMPLETE") {
            let ours = stack.run_id().is_some() || stack.name.starts_with(naming::NAME_PREFIX);
            let protected = self
                .config
                .protected
                .iter()
                .any(|p| naming::glob_matches(p, &stack.name));
            let run_ok = filter
                .run_id
                .as_ref()
                .is_none_or(|r| stack.run_id() == Some(r.as_str()));
            let age = stack
                .created
                .as_deref()
                .and_then(|c| {
                    OffsetDateTime::parse(c, &Rfc3339)
                        .ok()
                        .or_else(|| parse_heat_time(c))
                })
                .and_then(|at| Duration::try_from(now - at).ok());
            let due =
                stack.status.ends_with("FAILED") || age.is_some_and(|a| a >= filter.older_than);
            if ours && !protected && run_ok && due {
                if filter.delete {
                    tracing::info!("{NAME}: sweeping stack `{}` ({})", stack.name, stack.id);
                    self.delete_and_wait(&api, &stack.name, &stack.id).await?;
                }
                found.push(observed(self.scope(), stack));
            }
        }
        Ok(found)
    }
}

/// Heat's `creation_time` without a zone (`2026-11-25T02:40:00`), as UTC.
fn parse_heat_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(&format!("{text}Z"), &Rfc3339).ok()
}

/// Shared so one value is both allocator and cleaner in the registry.
pub(crate) fn shared(section: &BackendConfig) -> Result<Arc<HeatProvider>> {
    HeatProvider::from_config(section).map(Arc::new)
}
