//! Allocation: region by region until one provides every server.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gate_core::ledger::Resource;
use gate_core::{
    AllocateContext, Error, Host, HostLog, HostOutcome, Inventory, ResourceAllocator, Result,
    all_ok, bounded,
};
use gate_openstack::servers::{self, Networks, NewServer, Server};
use gate_openstack::{Api, naming, userdata};

use crate::provider::{PubcloudProvider, error, scope_of};
use crate::{NAME, SERVER};

/// Why a region did not work out.
enum Attempt {
    /// Stop: no other region can help (cancelled, a dirty node, bad user data, bad login).
    Fatal(Error),
    /// Try the next region.
    Region(String),
}

/// What one region attempt shares between its servers.
struct Plan<'a> {
    cx: &'a AllocateContext,
    api: Api,
    region: Option<&'a str>,
    flavor_id: String,
    image_id: String,
    networks: Networks,
    user_data: String,
    adopted: BTreeMap<String, Server>,
    /// Every server this attempt put in the ledger, with its id once known.
    made: Mutex<Vec<(Resource, Option<String>)>>,
}

#[async_trait]
impl ResourceAllocator for PubcloudProvider {
    async fn allocate(&self, cx: &AllocateContext) -> Result<Inventory> {
        let names = naming::host_names(self.config.name.as_deref(), &cx.run_id, self.config.hosts);
        let mut failures = Vec::new();
        for region in self.region_order() {
            if cx.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let label = region
                .clone()
                .unwrap_or_else(|| "the default region".into());
            tracing::info!("{NAME}: creating {} server(s) in {label}", names.len());
            match self.allocate_in(cx, region.as_deref(), &names).await {
                Ok(hosts) => {
                    return Inventory::new(hosts).map_err(|e| error(e.to_string()));
                }
                Err(Attempt::Fatal(error)) => return Err(error),
                Err(Attempt::Region(why)) => {
                    tracing::warn!("{NAME}: {label} failed, its servers are deleted: {why}");
                    failures.push(format!("{label}: {why}"));
                }
            }
        }
        Err(error(format!(
            "no region could provide {} server(s):\n  {}",
            names.len(),
            failures.join("\n  ")
        )))
    }
}

impl PubcloudProvider {
    /// The primary regions shuffled, then the fallback regions shuffled; `[None]` (the
    /// credentials' region) when none is configured.
    fn region_order(&self) -> Vec<Option<String>> {
        let mut primary = self.config.regions.clone();
        let mut fallback = self.config.fallback_regions.clone();
        naming::shuffle(&mut primary);
        naming::shuffle(&mut fallback);
        let order: Vec<_> = primary.into_iter().chain(fallback).map(Some).collect();
        if order.is_empty() { vec![None] } else { order }
    }

    async fn allocate_in(
        &self,
        cx: &AllocateContext,
        region: Option<&str>,
        names: &[String],
    ) -> std::result::Result<Vec<Host>, Attempt> {
        let api = self.api(region, &cx.cancel).await.map_err(Attempt::Fatal)?;
        let plan = self.plan(cx, api, region, names).await?;
        let limit = self.config.concurrency.unwrap_or(cx.concurrency);
        let outcomes = bounded(names, limit, |name| {
            let plan = &plan;
            async move {
                HostOutcome {
                    host: name.clone(),
                    result: self.create_one(plan, name).await,
                }
            }
        })
        .await;
        if cx.cancel.is_cancelled() {
            return Err(Attempt::Fatal(Error::Cancelled));
        }
        match all_ok(outcomes) {
            Ok(hosts) => Ok(hosts),
            Err(failure) => {
                self.undo(&plan).await;
                Err(Attempt::Region(failure.to_string()))
            }
        }
    }

    /// Looks up ids, checks for dirty nodes and builds the user data.
    async fn plan<'a>(
        &self,
        cx: &'a AllocateContext,
        api: Api,
        region: Option<&'a str>,
        names: &[String],
    ) -> std::result::Result<Plan<'a>, Attempt> {
        let in_region = |e: gate_openstack::Error| match e {
            gate_openstack::Error::Cancelled => Attempt::Fatal(Error::Cancelled),
            gate_openstack::Error::Auth { .. } => Attempt::Fatal(e.into_core(NAME)),
            other => Attempt::Region(other.to_string()),
        };
        let flavor_id = servers::flavor_id(&api, &self.config.flavor)
            .await
            .map_err(in_region)?;
        let image_id = servers::image_id(&api, &self.config.image)
            .await
            .map_err(in_region)?;
        let networks = match self.config.networks.as_slice() {
            [] => Networks::Auto,
            [only] if only == "auto" => Networks::Auto,
            [only] if only == "none" => Networks::None,
            list => {
                let mut ids = Vec::new();
                for network in list {
                    ids.push(
                        servers::network_id(&api, network)
                            .await
                            .map_err(in_region)?,
                    );
                }
                Networks::Ids(ids)
            }
        };
        let mut adopted = BTreeMap::new();
        // One listing for every name (exact names compared here), not a call per host.
        let existing = servers::list(&api).await.map_err(in_region)?;
        for name in names {
            match existing.iter().find(|s| &s.name == name).cloned() {
                None => {}
                Some(server) if self.config.adopt => {
                    adopted.insert(name.clone(), server);
                }
                Some(server) => {
                    return Err(Attempt::Fatal(error(format!(
                        "{}: a server named `{name}` already exists (id {}, status {}, run {}): a dirty node from an earlier run? Delete it, or set adopt = true to take it over",
                        api.region(),
                        server.id,
                        server.status,
                        server.run_id().unwrap_or("unknown"),
                    ))));
                }
            }
        }
        let keys: Vec<String> = cx.keys.authorized().iter().map(|k| k.line()).collect();
        let user_data = userdata::with_root_keys(&keys, self.config.user_data.as_deref())
            .map_err(|e| Attempt::Fatal(error(e)))?;
        Ok(Plan {
            cx,
            api,
            region,
            flavor_id,
            image_id,
            networks,
            user_data,
            adopted,
            made: Mutex::new(Vec::new()),
        })
    }

    /// One server: ledger intent, create (or adopt), ledger created, ACTIVE, address, SSH.
    async fn create_one(&self, plan: &Plan<'_>, name: &str) -> Result<Host> {
        let cx = plan.cx;
        if cx.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let api = &plan.api;
        let log = cx.host_log(name)?;
        let spec = Resource::new(NAME, SERVER, scope_of(plan.region), name);
        let tags = naming::tags(&cx.run_id, cx.job.as_deref());
        cx.ledger.intent(&spec).await?;
        remember(plan, &spec, None);
        let id = match plan.adopted.get(name) {
            Some(server) => {
                log.note(&format!(
                    "{}: adopting server {} ({})",
                    api.region(),
                    server.id,
                    server.status
                ));
                servers::set_metadata(api, &server.id, &tags)
                    .await
                    .map_err(|e| e.into_core(NAME))?;
                server.id.clone()
            }
            None => {
                log.note(&format!("{}: creating server {name}", api.region()));
                let new = NewServer {
                    name: name.to_owned(),
                    flavor_id: plan.flavor_id.clone(),
                    image_id: plan.image_id.clone(),
                    networks: plan.networks.clone(),
                    security_groups: self.config.security_groups.clone(),
                    config_drive: self.config.config_drive,
                    user_data: Some(plan.user_data.clone()),
                    metadata: tags,
                    key_name: self.config.key_name.clone(),
                    availability_zone: self.config.availability_zone.clone(),
                };
                servers::create(api, &new)
                    .await
                    .map_err(|e| e.into_core(NAME))?
            }
        };
        cx.ledger.created(&spec, &id).await?;
        remember(plan, &spec, Some(&id));
        let host = self.boot_wait(api, &id, name, &log).await?;
        cx.connector.connect(&host, &cx.cancel).await?;
        log.note(&format!(
            "{}: {name} answers on {}:{}",
            api.region(),
            host.address,
            host.port
        ));
        Ok(host)
    }

    /// Waits for ACTIVE and an address, within the boot timeout.
    async fn boot_wait(&self, api: &Api, id: &str, name: &str, log: &HostLog) -> Result<Host> {
        let timeout = Self::seconds(self.config.boot_timeout_secs);
        let poll = Self::seconds(self.config.poll_secs);
        let started = Instant::now();
        let to_core = |e: gate_openstack::Error| e.into_core(NAME);
        let mut server = servers::wait_active(api, id, timeout, poll)
            .await
            .map_err(to_core)?;
        log.note(&format!(
            "{}: {name} ({id}) is ACTIVE after {:.0}s",
            api.region(),
            started.elapsed().as_secs_f64()
        ));
        let network = self.config.address_network.as_deref();
        loop {
            if let Some(address) = server.address(network) {
                return Ok(Host {
                    name: name.to_owned(),
                    address,
                    port: self.config.port,
                    user: self.config.user.clone(),
                    labels: self.config.labels.clone(),
                    transport: "ssh".into(),
                    home: None,
                });
            }
            if started.elapsed() >= timeout {
                return Err(error(format!(
                    "{}: {name} ({id}) is ACTIVE but has no address after {}s",
                    api.region(),
                    timeout.as_secs()
                )));
            }
            tokio::select! {
                () = tokio::time::sleep(poll.min(Duration::from_secs(1))) => {}
                () = api.cancel().cancelled() => return Err(Error::Cancelled),
            }
            server = servers::get(api, id)
                .await
                .map_err(to_core)?
                .ok_or_else(|| error(format!("{}: {name} ({id}) disappeared", api.region())))?;
        }
    }

    /// Deletes every server of a failed region attempt and marks it deleted in the ledger;
    /// what cannot be deleted now stays live in the ledger for cleanup.
    async fn undo(&self, plan: &Plan<'_>) {
        let made = plan.made.lock().map(|m| m.clone()).unwrap_or_default();
        let api = plan.api.clone();
        let api = api.with_cancel(&tokio_util::sync::CancellationToken::new());
        for (spec, id) in made {
            match crate::clean::delete_server(self, &api, &spec, id.as_deref(), &plan.cx.run_id)
                .await
            {
                Ok(()) => {
                    if let Err(e) = plan.cx.ledger.deleted(&spec).await {
                        tracing::warn!("{NAME}: {e}");
                    }
                }
                Err(e) => tracing::warn!("{NAME}: server `{}` stays for cleanup: {e}", spec.name),
            }
        }
    }
}

fn remember(plan: &Plan<'_>, spec: &Resource, id: Option<&str>) {
    if let Ok(mut made) = plan.made.lock() {
        match made.iter_mut().find(|(s, _)| s == spec) {
            Some(entry) => entry.1 = id.map(str::to_owned),
            None => made.push((spec.clone(), id.map(str::to_owned))),
        }
    }
}
