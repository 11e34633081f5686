//! What cleanup, `observe()` and sweeps of the Nova providers share: deleting a server or
//! floating IP by id (or by exact name and run id when only the intent was written), what a
//! sweep may take, and how found resources are reported.

use std::time::Duration;

use gate_core::ledger::Resource;
use gate_core::{Observed, RunId, SweepFilter};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{FLOATING_IP_KIND, SERVER_KIND};
use crate::api::Api;
use crate::floating_ips::{self, FloatingIp};
use crate::naming;
use crate::servers::{self, Server};

/// Deletes the server or floating IP of a ledger entry (by its kind): see
/// [`delete_server`] and [`delete_floating_ip`].
pub async fn delete_entry(
    api: &Api,
    spec: &Resource,
    id: Option<&str>,
    run_id: &RunId,
    timeout: Duration,
    poll: Duration,
) -> crate::Result<()> {
    match spec.kind.as_str() {
        SERVER_KIND => delete_server(api, &spec.name, id, run_id, timeout, poll).await,
        FLOATING_IP_KIND => delete_floating_ip(api, &spec.name, id, run_id).await,
        other => Err(crate::Error::Config(format!(
            "{} has no ledger kind `{other}` (of `{}`)",
            spec.backend, spec.name
        ))),
    }
}

/// Deletes server `name`: by `id`, or — when only the intent was written — every server
/// with exactly that name *and* this run's tag; waits until Nova says 404.
pub async fn delete_server(
    api: &Api,
    name: &str,
    id: Option<&str>,
    run_id: &RunId,
    timeout: Duration,
    poll: Duration,
) -> crate::Result<()> {
    let ids: Vec<String> = match id {
        Some(id) => vec![id.to_owned()],
        None => servers::find_by_name(api, name)
            .await?
            .into_iter()
            .filter(|s| s.run_id() == Some(run_id.as_str()))
            .map(|s| s.id)
            .collect(),
    };
    for id in &ids {
        servers::delete(api, id).await?;
    }
    for id in &ids {
        servers::wait_gone(api, id, timeout, poll).await?;
    }
    Ok(())
}

/// Deletes floating IP `name`: by `id`, or — when only the intent was written — every
/// floating IP whose description names it exactly *and* carries this run's id. Gone
/// already (404) counts as deleted.
pub async fn delete_floating_ip(
    api: &Api,
    name: &str,
    id: Option<&str>,
    run_id: &RunId,
) -> crate::Result<()> {
    let ids: Vec<String> = match id {
        Some(id) => vec![id.to_owned()],
        None => floating_ips::find_by_name(api, name, Some(run_id.as_str()))
            .await?
            .into_iter()
            .map(|f| f.id)
            .collect(),
    };
    for id in &ids {
        floating_ips::delete(api, id).await?;
    }
    Ok(())
}

/// How old something is, from gate's `gate_created_at` tag or else the cloud's own stamp.
fn age(tag: Option<&str>, created: Option<&str>, now: OffsetDateTime) -> Option<Duration> {
    let at = OffsetDateTime::parse(tag.or(created)?, &Rfc3339).ok()?;
    (now - at).try_into().ok()
}

fn protected(patterns: &[String], name: &str) -> bool {
    patterns
        .iter()
        .any(|pattern| naming::glob_matches(pattern, name))
}

/// Whether a sweep may take `server`: gate's (tagged, or a `gate-` name), not `protected`,
/// of the filter's run if it names one, and older than the filter's age or in ERROR.
pub fn server_sweepable(
    server: &Server,
    filter: &SweepFilter,
    protected_names: &[String],
    now: OffsetDateTime,
) -> bool {
    let ours = server.run_id().is_some() || server.name.starts_with(naming::NAME_PREFIX);
    let run_ok = filter
        .run_id
        .as_ref()
        .is_none_or(|run| server.run_id() == Some(run.as_str()));
    let tag = server.metadata.get(naming::CREATED_AT_KEY);
    let due = server.status == "ERROR"
        || age(tag.map(String::as_str), server.created.as_deref(), now)
            .is_some_and(|a| a >= filter.older_than);
    ours && !protected(protected_names, &server.name) && run_ok && due
}

/// Whether a sweep may take `fip`: gate's (its description names it and a run), not
/// `protected`, of the filter's run if it names one, and older than the filter's age or in
/// ERROR.
pub fn floating_ip_sweepable(
    fip: &FloatingIp,
    filter: &SweepFilter,
    protected_names: &[String],
    now: OffsetDateTime,
) -> bool {
    let tags = fip.tags();
    let (Some(name), Some(run)) = (
        tags.get(floating_ips::NAME_KEY),
        tags.get(naming::RUN_ID_KEY),
    ) else {
        return false;
    };
    let run_ok = filter.run_id.as_ref().is_none_or(|r| r.as_str() == run);
    let tag = tags.get(naming::CREATED_AT_KEY).map(String::as_str);
    let due = fip.status == "ERROR"
        || age(tag, fip.created.as_deref(), now).is_some_and(|a| a >= filter.older_than);
    !protected(protected_names, name) && run_ok && due
}

/// A server as `observe()` and sweeps report it, in ledger scope `scope`.
pub fn observed_server(scope: &str, server: &Server) -> Observed {
    Observed {
        kind: SERVER_KIND.into(),
        scope: scope.to_owned(),
        name: server.name.clone(),
        id: server.id.clone(),
        run_id: server
            .run_id()
            .and_then(|r| RunId::try_from(r.to_owned()).ok()),
    }
}

/// A floating IP as `observe()` and sweeps report it, in ledger scope `scope`.
pub fn observed_floating_ip(scope: &str, fip: &FloatingIp) -> Observed {
    Observed {
        kind: FLOATING_IP_KIND.into(),
        scope: scope.to_owned(),
        name: fip.name().unwrap_or_else(|| fip.address.clone()),
        id: fip.id.clone(),
        run_id: fip.run_id().and_then(|r| RunId::try_from(r).ok()),
    }
}
