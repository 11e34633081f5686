//! The `static` provider: fixed lab hosts, reserved for one run at a time by a lock
//! directory on the host itself (so runs on different CI agents never share a host), and
//! released — not deleted — at cleanup.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gate_core::ledger::Resource;
use gate_core::{
    AllocateContext, BackendConfig, CleanContext, Cleaned, Cleaner, Command, Error, ExecIo, Host,
    HostLog, HostOutcome, Inventory, LiveResource, Observed, ResourceAllocator, Result, RunId,
    Transport, TransportExt, all_ok, bounded,
};
use tokio_util::sync::CancellationToken;

use crate::config::{StaticConfig, StaticHost};

/// The registry name of the provider.
pub const NAME: &str = "static";
/// The ledger kind of a reservation.
const RESERVATION: &str = "reservation";

/// Takes the lock directory `$1` for run `$2` for `$3` seconds: atomically with `mkdir`;
/// an expired reservation of another run is taken over; a live one is refused (exit 75).
const RESERVE: &str = r#"
lock=$1 run=$2 ttl=$3 now=$(date +%s)
take() { mkdir "$lock" 2>/dev/null && printf '%s\n%s\n' "$run" "$((now + ttl))" > "$lock/owner"; }
if take; then exit 0; fi
owner=$(sed -n 1p "$lock/owner" 2>/dev/null) expires=$(sed -n 2p "$lock/owner" 2>/dev/null)
[ "$owner" = "$run" ] && exit 0
if [ -n "$expires" ] && [ "$expires" -lt "$now" ]; then
    stale="$lock.expired.$$"
    mv "$lock" "$stale" 2>/dev/null && rm -rf "$stale" && take && exit 0
fi
echo "reserved by run ${owner:-unknown} until $(date -d "@${expires:-0}" 2>/dev/null || echo "${expires:-?}")" >&2
exit 75
"#;

/// Releases the lock directory `$1` if run `$2` holds it; prints `released`, `absent` or
/// `other <run>`.
const RELEASE: &str = r#"
lock=$1 run=$2
[ -d "$lock" ] || { echo absent; exit 0; }
owner=$(sed -n 1p "$lock/owner" 2>/dev/null)
if [ "$owner" = "$run" ]; then rm -rf "$lock" && echo released; else echo "other ${owner:-unknown}"; fi
"#;

/// Prints the run holding the lock directory `$1`, if any.
const OWNER: &str = r#"sed -n 1p "$1/owner" 2>/dev/null || true"#;

/// The `static` provider.
#[derive(Debug, Clone)]
pub struct StaticProvider {
    config: StaticConfig,
}

impl StaticProvider {
    /// A provider from its config section (host names checked: present, unique).
    pub fn from_config(section: &BackendConfig) -> Result<Self> {
        let config: StaticConfig = section.parse()?;
        if config.hosts.is_empty() {
            return Err(section.error("hosts", "needs at least one host"));
        }
        for (i, host) in config.hosts.iter().enumerate() {
            if config.hosts[..i].iter().any(|h| h.name == host.name) {
                return Err(section.error(
                    format!("hosts[{i}].name"),
                    format!("`{}` appears twice", host.name),
                ));
            }
        }
        if config.rekick.as_ref().is_some_and(|r| r.run.is_empty()) {
            return Err(section.error("rekick.run", "is empty"));
        }
        Ok(Self { config })
    }

    fn host(&self, lab: &StaticHost) -> Host {
        Host {
            name: lab.name.clone(),
            address: lab.address.clone(),
            port: lab.port,
            user: lab.user.clone(),
            labels: lab.labels.clone(),
            transport: "ssh".into(),
            home: None,
        }
    }

    fn spec(&self, lab: &StaticHost) -> Resource {
        Resource::new(
            NAME,
            RESERVATION,
            format!("{}@{}:{}", lab.user, lab.address, lab.port),
            &lab.name,
        )
    }

    async fn reserve(
        &self,
        transport: &dyn Transport,
        run_id: &RunId,
        io: &ExecIo<'_>,
    ) -> Result<()> {
        let reserve = Command::new("sh")
            .args(["-c", RESERVE, "reserve"])
            .arg(&self.config.lock_dir)
            .arg(run_id.as_str())
            .arg(self.config.reservation_ttl_secs.to_string())
            .timeout(Duration::from_secs(60));
        transport.run(&reserve, io).await.map(|_| ())
    }

    /// Reserves one host (recorded before it is taken), rekicks it if configured, and
    /// waits until it answers.
    async fn allocate_one(&self, cx: &AllocateContext, lab: &StaticHost) -> Result<Host> {
        if cx.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let host = self.host(lab);
        let spec = self.spec(lab);
        let log = cx.host_log(&host.name)?;
        let io = ExecIo {
            log: &log,
            cancel: &cx.cancel,
        };
        let transport = cx.connector.connect(&host, &cx.cancel).await?;
        cx.ledger.intent(&spec).await?;
        self.reserve(transport.as_ref(), &cx.run_id, &io).await?;
        cx.ledger.created(&spec, &self.config.lock_dir).await?;
        if let Some(rekick) = &self.config.rekick {
            rekick_host(rekick, &host, &cx.run_id, &log, &cx.cancel).await?;
            // The reinstall wiped the host's disk and the reservation with it: wait for
            // the host, then take the reservation again.
            let transport = cx.connector.connect(&host, &cx.cancel).await?;
            self.reserve(transport.as_ref(), &cx.run_id, &io).await?;
        }
        Ok(host)
    }

    fn lab_host(&self, resource: &LiveResource) -> Result<Host> {
        self.config
            .hosts
            .iter()
            .find(|lab| {
                self.spec(lab).scope == resource.spec.scope && lab.name == resource.spec.name
            })
            .map(|lab| self.host(lab))
            .or_else(|| host_from_scope(&resource.spec))
            .ok_or_else(|| {
                Error::backend(
                    NAME,
                    format!(
                        "cannot tell where `{}` is from `{}`",
                        resource.spec.name, resource.spec.scope
                    ),
                )
            })
    }
}

/// A host from a reservation's scope `user@address:port`, for a ledger whose config changed.
fn host_from_scope(spec: &Resource) -> Option<Host> {
    let (user, rest) = spec.scope.split_once('@')?;
    let (address, port) = rest.rsplit_once(':')?;
    Some(Host {
        name: spec.name.clone(),
        address: address.to_owned(),
        port: port.parse().ok()?,
        user: user.to_owned(),
        labels: Vec::new(),
        transport: "ssh".into(),
        home: None,
    })
}

/// Runs the rekick command on the controller, killed on cancel or timeout.
async fn rekick_host(
    rekick: &crate::config::Rekick,
    host: &Host,
    run_id: &RunId,
    log: &HostLog,
    cancel: &CancellationToken,
) -> Result<()> {
    let shown = rekick.run.join(" ");
    log.note(&format!("rekick: $ {shown}"));
    let mut child = tokio::process::Command::new(&rekick.run[0])
        .args(&rekick.run[1..])
        .env("GATE_HOST", &host.name)
        .env("GATE_ADDRESS", &host.address)
        .env("GATE_RUN_ID", run_id.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Host {
            host: host.name.clone(),
            message: format!("cannot start the rekick command `{shown}`: {e}"),
        })?;
    let limit = Duration::from_secs(rekick.timeout_secs);
    let status = tokio::select! {
        status = child.wait() => status,
        () = cancel.cancelled() => return Err(Error::Cancelled),
        () = tokio::time::sleep(limit) => {
            return Err(Error::Timeout { host: host.name.clone(), command: shown, after: limit, tail: vec![] });
        }
    };
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(Error::Host {
            host: host.name.clone(),
            message: format!("the rekick command `{shown}` failed: {status}"),
        }),
        Err(e) => Err(Error::Host {
            host: host.name.clone(),
            message: format!("the rekick command `{shown}`: {e}"),
        }),
    }
}

#[async_trait]
impl ResourceAllocator for StaticProvider {
    async fn allocate(&self, cx: &AllocateContext) -> Result<Inventory> {
        let outcomes = bounded(&self.config.hosts, cx.concurrency, |lab| async move {
            HostOutcome {
                host: lab.name.clone(),
                result: self.allocate_one(cx, lab).await,
            }
        })
        .await;
        if cx.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let hosts = all_ok(outcomes)?;
        Inventory::new(hosts).map_err(|e| Error::backend(NAME, e.to_string()))
    }
}

#[async_trait]
impl Cleaner for StaticProvider {
    async fn clean(&self, resource: &LiveResource, cx: &CleanContext) -> Result<Cleaned> {
        let host = self.lab_host(resource)?;
        let transport = cx.connector.connect(&host, &cx.cancel).await?;
        let log = HostLog::detached(&host.name, None);
        let io = ExecIo {
            log: &log,
            cancel: &cx.cancel,
        };
        let lock = resource
            .id
            .clone()
            .unwrap_or_else(|| self.config.lock_dir.clone());
        let release = Command::new("sh")
            .args(["-c", RELEASE, "release", &lock, resource.run_id.as_str()])
            .timeout(Duration::from_secs(60));
        let out = transport.run(&release, &io).await?;
        if let Some(other) = out.stdout.trim().strip_prefix("other ") {
            tracing::warn!(host = %host.name, "the reservation is held by run {other} now; nothing of {} is left", resource.run_id);
        }
        Ok(Cleaned::Released)
    }

    async fn observe(&self, run_id: &RunId, cx: &CleanContext) -> Result<Vec<Observed>> {
        let mut found = Vec::new();
        for lab in &self.config.hosts {
            let host = self.host(lab);
            let transport = cx.connector.connect(&host, &cx.cancel).await?;
            let log = HostLog::detached(&host.name, None);
            let io = ExecIo {
                log: &log,
                cancel: &cx.cancel,
            };
            let owner = Command::new("sh").args(["-c", OWNER, "owner", &self.config.lock_dir]);
            let out = transport.run(&owner, &io).await?;
            if out.stdout.trim() == run_id.as_str() {
                found.push(Observed {
                    kind: RESERVATION.into(),
                    scope: self.spec(lab).scope,
                    name: lab.name.clone(),
                    id: self.config.lock_dir.clone(),
                    run_id: Some(run_id.clone()),
                });
            }
        }
        Ok(found)
    }
}

/// Shared so a provider can be both allocator and cleaner in the registry.
pub fn shared(section: &BackendConfig) -> Result<Arc<StaticProvider>> {
    StaticProvider::from_config(section).map(Arc::new)
}
