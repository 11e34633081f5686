//! Nova servers for a run, region by region: the allocator `pubcloud` and `onmetal` (Nova
//! mode) share, and the deletes their cleanup and a failed region's undo share.
//!
//! In a region: look up flavor, image, networks (and the floating IPs' external network),
//! refuse or adopt servers that already carry a host's name (dirty nodes), then per server,
//! bounded: ledger `intent` with the exact name, create (a lost answer is adopted, never made
//! twice), ledger `created` with the id, ACTIVE, an address (or a floating IP, itself in the
//! ledger as the server's child), SSH. When anything fails the region's servers are deleted
//! (floating IPs first) and the next region is tried — except, where the provider says so,
//! in the last region, whose servers are left to cleanup.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gate_core::ledger::Resource;
use gate_core::{AllocateContext, Error, Host, HostLog, HostOutcome, Inventory, all_ok, bounded};

use crate::api::{Api, LazyCloud};
use crate::floating_ips;
use crate::provider_config::{NovaServerConfig, SharedConfig};
use crate::servers::{self, Networks, NewServer, Server};

mod cleanup;

use crate::{naming, userdata};
pub use cleanup::{
    Wait, create_in_flight, delete_entry, delete_floating_ip, delete_keypair, delete_server,
    floating_ip_sweepable, keypair_name_sweepable, keypair_sweepable, observed_floating_ip,
    observed_keypair, observed_server, server_sweepable,
};

/// The ledger kind of a Nova server.
pub const SERVER_KIND: &str = "server";
/// The ledger kind of a floating IP (a child of its server, named `<server>-fip`).
pub const FLOATING_IP_KIND: &str = "floating_ip";
/// The ledger kind of a Nova keypair (its name is what Nova knows it by; it cannot be
/// tagged, so a run's keypairs are named after the run id).
pub const KEYPAIR_KIND: &str = "keypair";
/// The ledger scope of a resource in the credentials' own region.
pub const DEFAULT_REGION_SCOPE: &str = "-";

/// The ledger scope of a region (`None`: the credentials' own, `-`).
pub fn scope_of(region: Option<&str>) -> String {
    region.unwrap_or(DEFAULT_REGION_SCOPE).to_owned()
}

/// The region of a ledger scope (`None` for `-`).
pub fn region_of(scope: &str) -> Option<&str> {
    (scope != DEFAULT_REGION_SCOPE && !scope.is_empty()).then_some(scope)
}

/// What happens to the servers of a region that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedRegion {
    /// Deleted, in every region, before the next is tried (`pubcloud`).
    Delete,
    /// Deleted, except in the last region: left to cleanup, and that region's failure is
    /// the error as it is when it was the only region (`onmetal`: bare metal is slow to
    /// delete, and someone may want to look).
    KeepLast,
}

/// Servers that already carry a host's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Refused (a dirty node), the error pointing at the provider's `adopt = true`.
    RefuseOrAdopt {
        /// Take them over instead.
        adopt: bool,
    },
    /// Refused (a dirty node): delete it first.
    Refuse,
}

/// A provider's request for servers.
#[derive(Debug, Clone)]
pub struct ServerRequest<'a> {
    /// The provider's registry name: the ledger backend, and the name its errors carry.
    pub backend: &'static str,
    /// What a server is called in messages (`server`, `bare-metal server`).
    pub noun: &'static str,
    /// The shared keys (login user, port, labels).
    pub shared: &'a SharedConfig,
    /// The Nova keys (name, networks, …).
    pub nova: &'a NovaServerConfig,
    /// The flavor's name or id.
    pub flavor: &'a str,
    /// The image's name or id.
    pub image: &'a str,
    /// Attach a config drive.
    pub config_drive: bool,
    /// How many servers; the first is the primary.
    pub hosts: usize,
    /// The regions in the order to try (`None`: the credentials' own).
    pub regions: Vec<Option<String>>,
    /// What a failed region leaves.
    pub failed_region: FailedRegion,
    /// What a server that already has a host's name means.
    pub existing: Existing,
    /// Give every server a floating IP from this external network (`Some(None)`: the
    /// cloud's only one) and reach it there.
    pub floating_ip: Option<Option<String>>,
    /// How long a server may take to be ACTIVE with an address (a floating IP's wiring
    /// included).
    pub boot_timeout: Duration,
    /// How often to poll.
    pub poll: Duration,
    /// How long a delete may take.
    pub delete_timeout: Duration,
}

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
    /// The external network of the servers' floating IPs, when they get one.
    floating_network: Option<String>,
    user_data: String,
    adopted: BTreeMap<String, Server>,
    /// Everything this attempt put in the ledger, with its id once known.
    made: Mutex<Vec<(Resource, Option<String>)>>,
}

impl ServerRequest<'_> {
    fn error(&self, message: impl Into<String>) -> Error {
        Error::backend(self.backend, message)
    }

    /// Allocates the servers: region after region until one provides them all.
    pub async fn allocate(&self, cloud: &LazyCloud, cx: &AllocateContext) -> Result<Inventory> {
        let names = naming::host_names(self.nova.name.as_deref(), &cx.run_id, self.hosts);
        let mut failures = Vec::new();
        for (n, region) in self.regions.iter().enumerate() {
            let last = n + 1 == self.regions.len();
            let keep = last && self.failed_region == FailedRegion::KeepLast;
            if cx.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let label = region
                .clone()
                .unwrap_or_else(|| "the default region".into());
            tracing::info!(
                "{}: creating {} {}(s) in {label}",
                self.backend,
                names.len(),
                self.noun
            );
            match self
                .allocate_in(cloud, cx, region.as_deref(), &names, keep)
                .await
            {
                Ok(hosts) => return Inventory::new(hosts).map_err(|e| self.error(e.to_string())),
                Err(Attempt::Fatal(error)) => return Err(error),
                Err(Attempt::Region(why)) if keep && failures.is_empty() => {
                    return Err(self.error(why));
                }
                Err(Attempt::Region(why)) => {
                    if !keep {
                        tracing::warn!(
                            "{}: {label} failed, its {}s are deleted: {why}",
                            self.backend,
                            self.noun
                        );
                    }
                    failures.push(format!("{label}: {why}"));
                }
            }
        }
        Err(self.error(format!(
            "no region could provide {} {}(s):\n  {}",
            names.len(),
            self.noun,
            failures.join("\n  ")
        )))
    }

    async fn allocate_in(
        &self,
        cloud: &LazyCloud,
        cx: &AllocateContext,
        region: Option<&str>,
        names: &[String],
        keep: bool,
    ) -> std::result::Result<Vec<Host>, Attempt> {
        let api = cloud
            .region(region, &cx.cancel)
            .await
            .map_err(|e| Attempt::Fatal(e.into_core(self.backend)))?;
        let plan = self.plan(cx, api, region, names).await?;
        let limit = self.nova.concurrency.unwrap_or(cx.concurrency);
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
            Err(failure) if keep => Err(Attempt::Region(failure.to_string())),
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
        let in_region = |e: crate::Error| match e {
            crate::Error::Cancelled => Attempt::Fatal(Error::Cancelled),
            crate::Error::Auth { .. } => Attempt::Fatal(e.into_core(self.backend)),
            other => Attempt::Region(other.to_string()),
        };
        let flavor_id = servers::flavor_id(&api, self.flavor)
            .await
            .map_err(in_region)?;
        let image_id = servers::image_id(&api, self.image)
            .await
            .map_err(in_region)?;
        let networks = match self.nova.networks.as_slice() {
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
        let floating_network = match &self.floating_ip {
            Some(network) => Some(
                floating_ips::external_network_id(&api, network.as_deref())
                    .await
                    .map_err(in_region)?,
            ),
            None => None,
        };
        let mut adopted = BTreeMap::new();
        // One listing for every name (exact names compared here), not a call per host.
        let existing = servers::list(&api).await.map_err(in_region)?;
        for name in names {
            let Some(server) = existing.iter().find(|s| &s.name == name).cloned() else {
                continue;
            };
            if self.existing == (Existing::RefuseOrAdopt { adopt: true }) {
                adopted.insert(name.clone(), server);
                continue;
            }
            let advice = match self.existing {
                Existing::RefuseOrAdopt { .. } => "Delete it, or set adopt = true to take it over",
                Existing::Refuse => "Delete it first",
            };
            return Err(Attempt::Fatal(self.error(format!(
                "{}: a server named `{name}` already exists (id {}, status {}, run {}): a dirty node from an earlier run? {advice}",
                api.region(),
                server.id,
                server.status,
                server.run_id().unwrap_or("unknown"),
            ))));
        }
        let keys: Vec<String> = cx.keys.authorized().iter().map(|k| k.line()).collect();
        let user_data = userdata::with_root_keys(&keys, self.nova.user_data.as_deref())
            .map_err(|e| Attempt::Fatal(self.error(e)))?;
        Ok(Plan {
            cx,
            api,
            region,
            flavor_id,
            image_id,
            networks,
            floating_network,
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
        let spec = Resource::new(self.backend, SERVER_KIND, scope_of(plan.region), name);
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
                    .map_err(|e| e.into_core(self.backend))?;
                server.id.clone()
            }
            None => {
                log.note(&format!("{}: creating {} {name}", api.region(), self.noun));
                let new = NewServer {
                    name: name.to_owned(),
                    flavor_id: plan.flavor_id.clone(),
                    image_id: plan.image_id.clone(),
                    networks: plan.networks.clone(),
                    security_groups: self.nova.security_groups.clone(),
                    config_drive: self.config_drive,
                    user_data: Some(plan.user_data.clone()),
                    metadata: tags,
                    key_name: self.nova.key_name.clone(),
                    availability_zone: self.nova.availability_zone.clone(),
                };
                servers::create(api, &new)
                    .await
                    .map_err(|e| e.into_core(self.backend))?
            }
        };
        cx.ledger.created(&spec, &id).await?;
        remember(plan, &spec, Some(&id));
        let host = self.boot_wait(plan, &id, name, &log).await?;
        cx.connector.connect(&host, &cx.cancel).await?;
        log.note(&format!(
            "{}: {name} answers on {}:{}",
            api.region(),
            host.address,
            host.port
        ));
        Ok(host)
    }

    /// Waits for ACTIVE and an address (the floating IP's, when servers get one), within
    /// the boot timeout.
    async fn boot_wait(
        &self,
        plan: &Plan<'_>,
        id: &str,
        name: &str,
        log: &HostLog,
    ) -> Result<Host> {
        let api = &plan.api;
        let (timeout, poll) = (self.boot_timeout, self.poll);
        let started = Instant::now();
        let to_core = |e: crate::Error| e.into_core(self.backend);
        let mut server = servers::wait_active(api, id, timeout, poll)
            .await
            .map_err(to_core)?;
        log.note(&format!(
            "{}: {name} ({id}) is ACTIVE after {:.0}s",
            api.region(),
            started.elapsed().as_secs_f64()
        ));
        if let Some(network) = &plan.floating_network {
            let deadline = started + timeout;
            let address = self
                .floating_ip(plan, network, id, name, log, deadline)
                .await?;
            return Ok(self.host(name, address));
        }
        let network = self.nova.address_network.as_deref();
        loop {
            if let Some(address) = server.address(network) {
                return Ok(self.host(name, address));
            }
            if started.elapsed() >= timeout {
                return Err(self.error(format!(
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
                .ok_or_else(|| {
                    self.error(format!("{}: {name} ({id}) disappeared", api.region()))
                })?;
        }
    }

    /// The host `name` at `address`.
    fn host(&self, name: &str, address: String) -> Host {
        self.shared.host(name, address)
    }

    /// Gives server `id` a floating IP from `network`: its port (the cloud may add it just
    /// after ACTIVE), the floating IP (ledger intent, create, ledger created; an adopted
    /// server's own floating IP is taken over), the association, then ACTIVE (wired to the
    /// port) before `deadline`. Returns the floating address.
    async fn floating_ip(
        &self,
        plan: &Plan<'_>,
        network: &str,
        id: &str,
        name: &str,
        log: &HostLog,
        deadline: Instant,
    ) -> Result<String> {
        let (cx, api) = (plan.cx, &plan.api);
        let region = api.region();
        let fip_name = format!("{name}-fip");
        let failed = |e: crate::Error| match e {
            crate::Error::Cancelled => Error::Cancelled,
            other => self.error(format!("{name}: floating IP `{fip_name}`: {other}")),
        };
        let poll = self.poll.min(Duration::from_secs(1));
        let port = loop {
            if let Some(port) = floating_ips::server_port(api, id).await.map_err(failed)? {
                break port;
            }
            if Instant::now() >= deadline {
                return Err(self.error(format!(
                    "{region}: {name} ({id}) has no port for a floating IP after {}s",
                    self.boot_timeout.as_secs()
                )));
            }
            api.sleep(poll).await.map_err(failed)?;
        };
        let spec = Resource::new(
            self.backend,
            FLOATING_IP_KIND,
            scope_of(plan.region),
            &fip_name,
        )
        .with_parent(name);
        let existing = if plan.adopted.contains_key(name) {
            floating_ips::list(api, &[("port_id", &port)])
                .await
                .map_err(failed)?
                .into_iter()
                .next()
        } else {
            None
        };
        cx.ledger.intent(&spec).await?;
        remember(plan, &spec, None);
        let fip = match existing {
            Some(fip) => {
                log.note(&format!(
                    "{region}: adopting floating IP {} ({}) of {name}",
                    fip.address, fip.id
                ));
                fip
            }
            None => {
                let tags = naming::tags(&cx.run_id, cx.job.as_deref());
                floating_ips::create(api, network, &fip_name, &tags)
                    .await
                    .map_err(failed)?
            }
        };
        cx.ledger.created(&spec, &fip.id).await?;
        remember(plan, &spec, Some(&fip.id));
        if fip.port_id.as_deref() != Some(port.as_str()) {
            floating_ips::associate(api, &fip.id, Some(&port))
                .await
                .map_err(failed)?;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let fip = floating_ips::wait_active(api, &fip.id, left.max(poll), poll)
            .await
            .map_err(failed)?;
        log.note(&format!(
            "{region}: {name} ({id}) has floating IP {} ({})",
            fip.address, fip.id
        ));
        Ok(fip.address)
    }

    /// Deletes everything of a failed region attempt (floating IPs before their servers)
    /// and marks it deleted in the ledger; what cannot be deleted now stays live in the
    /// ledger for cleanup.
    async fn undo(&self, plan: &Plan<'_>) {
        let mut made = plan.made.lock().map(|m| m.clone()).unwrap_or_default();
        made.sort_by_key(|(spec, _)| spec.kind != FLOATING_IP_KIND);
        let api = plan
            .api
            .clone()
            .with_cancel(&tokio_util::sync::CancellationToken::new());
        for (spec, id) in made {
            let wait = Wait {
                timeout: self.delete_timeout,
                poll: self.poll.min(Duration::from_secs(2)),
                settle: Duration::ZERO,
            };
            let deleted = delete_entry(&api, &spec, id.as_deref(), &plan.cx.run_id, wait).await;
            match deleted {
                Ok(()) => {
                    if let Err(e) = plan.cx.ledger.deleted(&spec).await {
                        tracing::warn!("{}: {e}", self.backend);
                    }
                }
                Err(e) => tracing::warn!(
                    "{}: {} `{}` stays for cleanup: {e}",
                    self.backend,
                    spec.kind,
                    spec.name
                ),
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

type Result<T, E = Error> = std::result::Result<T, E>;
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_regions_round_trip() {
        assert_eq!(scope_of(None), "-");
        assert_eq!(region_of(&scope_of(None)), None);
        assert_eq!(region_of(&scope_of(Some("IAD"))), Some("IAD"));
    }
}
