//! What cleanup, `observe()` and sweeps of the Nova providers share: deleting a server or
//! floating IP by id (or by exact name and run id when only the intent was written), a
//! keypair by its name, what a sweep may take, and how found resources are reported.

use std::time::Duration;

use gate_core::ledger::Resource;
use gate_core::{Observed, RunId, SweepFilter};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{FLOATING_IP_KIND, KEYPAIR_KIND, SERVER_KIND};
use crate::api::Api;
use crate::floating_ips::{self, FloatingIp};
use crate::keypairs::{self, Keypair};
use crate::naming;
use crate::servers::{self, Server};

/// The longest a create call cut off by a crash is taken to stay at work in the API before
/// what it makes shows (Nova records a server within its `POST /servers`; 9 s was seen on
/// a machine under a load of 15): the request timeout, at most 30 s.
pub fn create_in_flight(api: &Api) -> Duration {
    api.retry().request_timeout().min(Duration::from_secs(30))
}

/// How long a delete waits: for the resource to be gone (`timeout`), between two looks
/// (`poll`), and — for an entry with only its intent — for a create call sent just before
/// a crash to land (`settle`, see [`gate_core::LiveResource::create_may_land_within`]).
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    /// Until the resource is gone.
    pub timeout: Duration,
    /// Between two looks.
    pub poll: Duration,
    /// How long an intent-only server not found by name may still appear.
    pub settle: Duration,
}

/// Deletes the server, floating IP or keypair of a ledger entry (by its kind): see
/// [`delete_server`], [`delete_floating_ip`] and [`delete_keypair`].
pub async fn delete_entry(
    api: &Api,
    spec: &Resource,
    id: Option<&str>,
    run_id: &RunId,
    wait: Wait,
) -> crate::Result<()> {
    match spec.kind.as_str() {
        SERVER_KIND => delete_server(api, &spec.name, id, run_id, wait).await,
        FLOATING_IP_KIND => delete_floating_ip(api, &spec.name, id, run_id).await,
        KEYPAIR_KIND => delete_keypair(api, &spec.name, id, run_id).await,
        other => Err(crate::Error::Config(format!(
            "{} has no ledger kind `{other}` (of `{}`)",
            spec.backend, spec.name
        ))),
    }
}

/// Deletes server `name`: by `id`, or — when only the intent was written — every server
/// with exactly that name *and* this run's tag; waits until Nova says 404.
///
/// A server not found by name is looked for again until `wait.settle` has passed: Nova may
/// still be working on a create call that a crash cut off.
pub async fn delete_server(
    api: &Api,
    name: &str,
    id: Option<&str>,
    run_id: &RunId,
    wait: Wait,
) -> crate::Result<()> {
    let ids: Vec<String> = match id {
        Some(id) => vec![id.to_owned()],
        None => {
            let settled = std::time::Instant::now() + wait.settle;
            loop {
                let found: Vec<String> = servers::find_by_name(api, name)
                    .await?
                    .into_iter()
                    .filter(|s| s.run_id() == Some(run_id.as_str()))
                    .map(|s| s.id)
                    .collect();
                if !found.is_empty() || std::time::Instant::now() >= settled {
                    break found;
                }
                api.sleep(wait.poll).await?;
            }
        }
    };
    for id in &ids {
        servers::delete(api, id).await?;
    }
    for id in &ids {
        servers::wait_gone(api, id, wait.timeout, wait.poll).await?;
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

/// Deletes keypair `name`. Nova knows a keypair by its name only, so the name is what is
/// deleted; an id (the name again, by convention) only says the create succeeded. Keypairs
/// cannot be tagged: when only the intent was written, the name must carry the run id
/// (the run id, or `<run id>-…`) — a keypair merely called `name` may be anyone's, and is
/// left alone ([`Error::Ambiguous`](crate::Error::Ambiguous)) unless it is gone already.
/// Gone already (404) counts as deleted.
pub async fn delete_keypair(
    api: &Api,
    name: &str,
    id: Option<&str>,
    run_id: &RunId,
) -> crate::Result<()> {
    if id.is_none() && !naming::named_after_run(name, run_id.as_str()) {
        if keypairs::get(api, name).await?.is_none() {
            return Ok(());
        }
        return Err(crate::Error::Ambiguous {
            region: api.region().to_owned(),
            what: format!("keypair `{name}`"),
            reason: format!(
                "only its intent is in the ledger, and keypairs carry no run-id tag, so it may \
                 not be run {run_id}'s (its name is not `{run_id}` or `{run_id}-…`); delete it \
                 by hand if it is"
            ),
        });
    }
    keypairs::delete(api, name).await?;
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

/// Whether a sweep may take a keypair called `name`, as far as its name tells (keypairs
/// cannot be tagged): a `gate-` name, not `protected`, and named after the filter's run
/// (`<run id>` or `<run id>-…`) if it names one. Its age is [`keypair_sweepable`]'s to check.
pub fn keypair_name_sweepable(
    name: &str,
    filter: &SweepFilter,
    protected_names: &[String],
) -> bool {
    let run_ok = filter
        .run_id
        .as_ref()
        .is_none_or(|run| naming::named_after_run(name, run.as_str()));
    name.starts_with(naming::NAME_PREFIX) && !protected(protected_names, name) && run_ok
}

/// Whether a sweep may take `keypair` (its detail, with `created_at`): its name passes
/// [`keypair_name_sweepable`] and Nova created it at least the filter's age ago (keypairs
/// have no ERROR state; one of unknown age is left alone).
pub fn keypair_sweepable(
    keypair: &Keypair,
    filter: &SweepFilter,
    protected_names: &[String],
    now: OffsetDateTime,
) -> bool {
    let age = keypair
        .created_at()
        .and_then(|at| Duration::try_from(now - at).ok());
    keypair_name_sweepable(&keypair.name, filter, protected_names)
        && age.is_some_and(|a| a >= filter.older_than)
}

/// A keypair as sweeps report it, in ledger scope `scope`: its id is its name (what Nova
/// knows it by); its run is `run` when it is named after it (nothing tags a keypair).
pub fn observed_keypair(scope: &str, keypair: &Keypair, run: Option<&RunId>) -> Observed {
    Observed {
        kind: KEYPAIR_KIND.into(),
        scope: scope.to_owned(),
        name: keypair.name.clone(),
        id: keypair.name.clone(),
        run_id: run
            .filter(|r| naming::named_after_run(&keypair.name, r.as_str()))
            .cloned(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair(name: &str, created: Option<&str>) -> Keypair {
        Keypair {
            name: name.to_owned(),
            fingerprint: None,
            created: created.map(str::to_owned),
        }
    }

    fn filter(hours: u64, run: Option<&str>) -> SweepFilter {
        SweepFilter {
            older_than: Duration::from_secs(hours * 3600),
            run_id: run.map(|r| RunId::try_from(r.to_owned()).unwrap()),
            delete: false,
        }
    }

    #[test]
    fn a_keypair_is_swept_by_gate_name_and_age_only() {
        let now = OffsetDateTime::parse("2024-05-08T12:00:00Z", &Rfc3339).unwrap();
        let old = Some("2024-05-07T12:06:13.681238");
        let protected = ["gate-keep-*".to_owned()];
        let twelve = filter(12, None);
        assert!(keypair_sweepable(
            &keypair("gate-ab12cd34", old),
            &twelve,
            &protected,
            now
        ));
        assert!(!keypair_sweepable(
            &keypair("mykey", old),
            &twelve,
            &protected,
            now
        ));
        assert!(!keypair_sweepable(
            &keypair("gate-keep-ci", old),
            &twelve,
            &protected,
            now
        ));
        let young = Some("2024-05-08T11:00:00.000000");
        assert!(!keypair_sweepable(
            &keypair("gate-ab12cd34", young),
            &twelve,
            &protected,
            now
        ));
        assert!(
            !keypair_sweepable(&keypair("gate-ab12cd34", None), &twelve, &protected, now),
            "an unknown age is left alone"
        );
    }

    #[test]
    fn a_run_filter_takes_the_keypairs_named_after_the_run() {
        let now = OffsetDateTime::parse("2024-05-08T12:00:00Z", &Rfc3339).unwrap();
        let old = Some("2024-05-01T00:00:00");
        let run = filter(0, Some("gate-ab12cd34"));
        for (name, taken) in [
            ("gate-ab12cd34", true),
            ("gate-ab12cd34-key", true),
            ("gate-ab12cd345", false),
            ("gate-ffffffff", false),
        ] {
            assert_eq!(
                keypair_sweepable(&keypair(name, old), &run, &[], now),
                taken,
                "{name}"
            );
            let seen = observed_keypair("RegionOne", &keypair(name, old), run.run_id.as_ref());
            assert_eq!(seen.run_id.is_some(), taken, "{name}");
            assert_eq!((seen.kind.as_str(), seen.id.as_str()), (KEYPAIR_KIND, name));
        }
    }
}
