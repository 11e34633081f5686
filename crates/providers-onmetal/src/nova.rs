//! Nova mode: servers with a bare-metal flavor, in `region`, then the fallback regions
//! (none by default); patient timeouts, for bare metal boots in minutes, not seconds.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use gate_core::ledger::Resource;
use gate_core::{
    AllocateContext, Error, Host, HostLog, HostOutcome, Inventory, Result, RunId, all_ok, bounded,
};
use gate_openstack::servers::{self, Networks, NewServer};
use gate_openstack::{Api, naming, userdata};

use crate::provider::{OnmetalProvider, error, scope_of};
use crate::{NAME, SERVER};

/// What one region attempt shares between its servers.
struct Plan<'a> {
    cx: &'a AllocateContext,
    api: Api,
    region: Option<&'a str>,
    flavor_id: String,
    image_id: String,
    networks: Networks,
    user_data: String,
    /// Every server this attempt put in the ledger, with its id once known.
    made: Mutex<Vec<(Resource, Option<String>)>>,
}

/// Why a region did not work out.
enum Attempt {
    /// No other region can help (cancelled, a dirty node, bad user data, bad login).
    Fatal(Error),
    /// Another region might.
    Region(String),
}

impl OnmetalProvider {
    /// Nova mode's allocation.
    pub(crate) async fn allocate_nova(&self, cx: &AllocateContext) -> Result<Inventory> {
        let names = naming::host_names(self.config.name.as_deref(), &cx.run_id, self.host_count());
        let regions = self.config.nova_regions();
        let mut failures = Vec::new();
        for (n, region) in regions.iter().enumerate() {
            let last = n + 1 == regions.len();
            if cx.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let label = region
                .clone()
                .unwrap_or_else(|| "the default region".into());
            tracing::info!("{NAME}: creating {} server(s) in {label}", names.len());
            match self.nova_in(cx, region.as_deref(), &names, last).await {
                Ok(hosts) => return Inventory::new(hosts).map_err(|e| error(e.to_string())),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Region(why)) if last && failures.is_empty() => return Err(error(why)),
                Err(Attempt::Region(why)) => {
                    if !last {
                        tracing::warn!("{NAME}: {label} failed, its servers are deleted: {why}");
                    }
                    failures.push(format!("{label}: {why}"));
                }
            }
        }
        Err(error(format!(
            "no region could provide {} bare-metal server(s):\n  {}",
            names.len(),
            failures.join("\n  ")
        )))
    }

    /// One region; `last`: no region after it, so its servers are left to cleanup.
    async fn nova_in(
        &self,
        cx: &AllocateContext,
        region: Option<&str>,
        names: &[String],
        last: bool,
    ) -> std::result::Result<Vec<Host>, Attempt> {
        let api = self.api(region, &cx.cancel).await.map_err(Attempt::Fatal)?;
        let plan = self.nova_plan(cx, api, region, names).await?;
        let limit = self.config.concurrency.unwrap_or(cx.concurrency);
        let outcomes = bounded(names, limit, |name| {
            let plan = &plan;
            async move {
                HostOutcome {
                    host: name.clone(),
                    result: self.create_server(plan, name).await,
                }
            }
        })
        .await;
        if cx.cancel.is_cancelled() {
            return Err(Attempt::Fatal(Error::Cancelled));
        }
        match all_ok(outcomes) {
            Ok(hosts) => Ok(hosts),
            Err(failure) if last => Err(Attempt::Region(failure.to_string())),
            Err(failure) => {
                self.undo(&plan).await;
                Err(Attempt::Region(failure.to_string()))
            }
        }
    }

    /// Looks up ids, refuses name clashes (dirty nodes) and builds the user data.
    async fn nova_plan<'a>(
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
        let flavor = self.config.flavor.as_deref().unwrap_or_default();
        let image = self.config.image.as_deref().unwrap_or_default();
        let flavor_id = servers::flavor_id(&api, flavor).await.map_err(in_region)?;
        let image_id = servers::image_id(&api, image).await.map_err(in_region)?;
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
        for name in names {
            let found = servers::find_by_name(&api, name).await.map_err(in_region)?;
            if let Some(server) = found.first() {
                return Err(Attempt::Fatal(error(format!(
                    "{}: a server named `{name}` already exists (id {}, status {}, run {}): a dirty node from an earlier run? Delete it first",
                    api.region(),
                    server.id,
                    server.status,
                    server.run_id().unwrap_or("unknown"),
                ))));
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
            made: Mutex::new(Vec::new()),
        })
    }

    /// One server: ledger intent, create, ledger created, ACTIVE, address, SSH.
    async fn create_server(&self, plan: &Plan<'_>, name: &str) -> Result<Host> {
        let cx = plan.cx;
        if cx.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let api = &plan.api;
        let log = cx.host_log(name)?;
        let spec = Resource::new(NAME, SERVER, scope_of(plan.region), name);
        cx.ledger.intent(&spec).await?;
        remember(plan, &spec, None);
        log.note(&format!(
            "{}: creating bare-metal server {name}",
            api.region()
        ));
        let new = NewServer {
            name: name.to_owned(),
            flavor_id: plan.flavor_id.clone(),
            image_id: plan.image_id.clone(),
            networks: plan.networks.clone(),
            security_groups: self.config.security_groups.clone(),
            config_drive: self.config.config_drive,
            user_data: Some(plan.user_data.clone()),
            metadata: naming::tags(&cx.run_id, cx.job.as_deref()),
            key_name: self.config.key_name.clone(),
            availability_zone: self.config.availability_zone.clone(),
        };
        let id = servers::create(api, &new)
            .await
            .map_err(|e| e.into_core(NAME))?;
        cx.ledger.created(&spec, &id).await?;
        remember(plan, &spec, Some(&id));
        let host = self.server_wait(api, &id, name, &log).await?;
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
    async fn server_wait(&self, api: &Api, id: &str, name: &str, log: &HostLog) -> Result<Host> {
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
        loop {
            if let Some(address) = server.address(self.config.address_network.as_deref()) {
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
            api.sleep(poll.min(Duration::from_secs(1)))
                .await
                .map_err(to_core)?;
            server = servers::get(api, id)
                .await
                .map_err(to_core)?
                .ok_or_else(|| error(format!("{}: {name} ({id}) disappeared", api.region())))?;
        }
    }

    /// Deletes every server of a failed region attempt before the next region is tried;
    /// what cannot be deleted now stays live in the ledger for cleanup.
    async fn undo(&self, plan: &Plan<'_>) {
        let made = plan.made.lock().map(|m| m.clone()).unwrap_or_default();
        let api = plan
            .api
            .clone()
            .with_cancel(&tokio_util::sync::CancellationToken::new());
        for (spec, id) in made {
            match self
                .delete_server(&api, &spec, id.as_deref(), &plan.cx.run_id)
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

    /// Deletes the server of `spec`: by `id`, or — with only the intent written — every
    /// server with exactly that name *and* this run's tag; waits until Nova says 404.
    pub(crate) async fn delete_server(
        &self,
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
        let timeout = Self::seconds(self.config.delete_timeout_secs);
        let poll = Self::seconds(self.config.poll_secs.min(2.0));
        for id in &ids {
            servers::delete(api, id).await?;
        }
        for id in &ids {
            servers::wait_gone(api, id, timeout, poll).await?;
        }
        Ok(())
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
