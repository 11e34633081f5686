//! Test volumes through the cloud's block-storage (Cinder v3) API: made `available` before
//! the upgrade, checked after it, deleted (and waited for until Cinder answers 404) at
//! cleanup. A volume's metadata carries the run's tags, so one whose id never reached the
//! ledger is found by exact name *and* run id.

use std::time::Instant;

use gate_core::ledger::Resource;
use gate_core::{Error, LiveResource, Observed, Result, RunId, StageContext};
use gate_openstack::allocator::Wait;
use gate_openstack::{Api, Service, naming};
use serde_json::{Value, json};

use super::{OpenStackResources, PURPOSE, PURPOSE_KEY, VOLUME};
use crate::checks::cloud::TestResource;
use crate::host::HostSteps;

/// The statuses of a volume that survived: detached or attached.
const HEALTHY: [&str; 2] = ["available", "in-use"];

/// Makes test volume `n` and waits until it is `available`.
pub(super) async fn create(
    me: &OpenStackResources,
    cx: &StageContext,
    api: &Api,
    primary: &HostSteps,
    n: u32,
) -> Result<TestResource> {
    // The catalog must have block storage before anything is recorded.
    match api.has_service(Service::BlockStorage).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(me.key_error(
                "volumes",
                format!(
                    "test volumes need the cloud's block-storage service (Cinder); the \
                     catalog of {} has none",
                    api.region()
                ),
            ));
        }
        Err(e) => return Err(me.failed("reading the service catalog", e)),
    }
    let name = format!("{}-upgrade-vol-{n}", cx.run_id);
    let spec = Resource::new(&me.backend, VOLUME, me.scope(), &name);
    let what = |doing: &str| format!("test volume `{name}`: {doing}");
    cx.ledger.intent(&spec).await?;
    // A volume of this run with this name (an upgrade stage run again) is taken over.
    let existing = find(api, &name, cx.run_id.as_str())
        .await
        .map_err(|e| me.failed(&what("looking for an earlier one"), e))?;
    let id = match existing.into_iter().next() {
        Some(id) => id,
        None => {
            let mut metadata = naming::tags(&cx.run_id, None);
            metadata.insert(PURPOSE_KEY.to_owned(), PURPOSE.to_owned());
            let body = json!({"volume": {
                "name": name,
                "size": me.config.volume_size_gb,
                "description": "gate upgrade check",
                "metadata": metadata,
            }});
            let answer = api
                .post(Service::BlockStorage, "volumes", &body)
                .await
                .map_err(|e| match e {
                    gate_openstack::Error::Cancelled => Error::Cancelled,
                    other => me.key_error(
                        "volumes",
                        format!("the cloud refused test volume `{name}`: {other}"),
                    ),
                })?;
            answer["volume"]["id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| {
                    me.key_error(
                        "volumes",
                        format!("the answer to creating test volume `{name}` has no id: {answer}"),
                    )
                })?
        }
    };
    cx.ledger.created(&spec, &id).await?;
    let started = Instant::now();
    let timeout = OpenStackResources::seconds(me.config.boot_timeout_secs);
    let poll = OpenStackResources::seconds(me.config.poll_secs);
    loop {
        let shown = show(api, &id)
            .await
            .map_err(|e| me.failed(&what("waiting for `available`"), e))?;
        let status = shown["status"].as_str().unwrap_or("unknown");
        match status {
            "available" => break,
            "error" => {
                return Err(Error::backend(
                    &me.backend,
                    format!(
                        "upgrade checks: {}: test volume `{name}` ({id}) went to `error` \
                         (the ledger has it; cleanup deletes it)",
                        api.region()
                    ),
                ));
            }
            _ if started.elapsed() >= timeout => {
                return Err(Error::backend(
                    &me.backend,
                    format!(
                        "upgrade checks: {}: test volume `{name}` ({id}) is still `{status}` \
                         after {}s",
                        api.region(),
                        timeout.as_secs()
                    ),
                ));
            }
            _ => api
                .sleep(poll)
                .await
                .map_err(|e| me.failed(&what("waiting for `available`"), e))?,
        }
    }
    primary.note(&format!(
        "upgrade checks: {}: test volume {name} ({id}) available after {:.0}s",
        api.region(),
        started.elapsed().as_secs_f64()
    ));
    Ok(TestResource {
        kind: VOLUME.into(),
        name,
        id,
        addresses: Vec::new(),
    })
}

/// After the upgrade: the volume is still there, `available` or `in-use`.
pub(super) async fn verify(
    api: &Api,
    resource: &TestResource,
) -> gate_openstack::Result<(Option<String>, String)> {
    let path = format!("volumes/{}", resource.id);
    let body = match api.get(Service::BlockStorage, &path, &[]).await {
        Ok(body) => body,
        Err(e) if e.is_not_found() => {
            return Ok((
                Some(format!(
                    "gone: {}: Cinder answers 404 for volume {} — it did not survive the \
                     upgrade",
                    api.region(),
                    resource.id
                )),
                format!("GET {path}: 404 Not Found\n"),
            ));
        }
        Err(e) => return Err(e),
    };
    let shown = &body["volume"];
    let status = shown["status"].as_str().unwrap_or("unknown");
    let problem = (!HEALTHY.contains(&status))
        .then(|| format!("status `{status}` after the upgrade, not available or in-use"));
    let output = format!(
        "volume show:\n{}\n",
        serde_json::to_string_pretty(shown).unwrap_or_default()
    );
    Ok((problem, output))
}

/// Deletes the ledger entry's volume (by id, else by exact name and run id — looked for
/// until `wait.settle` has passed, as a create cut off by a crash may still land) and waits
/// until Cinder answers 404. A volume still `creating` cannot be deleted yet: asked again
/// until `wait.timeout`.
pub(super) async fn delete(
    api: &Api,
    resource: &LiveResource,
    wait: Wait,
) -> gate_openstack::Result<()> {
    let (timeout, poll) = (wait.timeout, wait.poll);
    let ids = match &resource.id {
        Some(id) => vec![id.clone()],
        None => {
            let settled = Instant::now() + wait.settle;
            loop {
                let found = find(api, &resource.spec.name, resource.run_id.as_str()).await?;
                if !found.is_empty() || Instant::now() >= settled {
                    break found;
                }
                api.sleep(poll).await?;
            }
        }
    };
    let started = Instant::now();
    for id in &ids {
        let path = format!("volumes/{id}");
        loop {
            match api.delete(Service::BlockStorage, &path).await {
                Ok(_) => break,
                // 400: not in a state that can be deleted (still creating, say).
                Err(e) if e.status() == Some(400) && started.elapsed() < timeout => {
                    api.sleep(poll).await?;
                }
                Err(e) => return Err(e),
            }
        }
        while started.elapsed() < timeout {
            match api.get(Service::BlockStorage, &path, &[]).await {
                Err(e) if e.is_not_found() => break,
                Err(e) => return Err(e),
                Ok(_) => api.sleep(poll).await?,
            }
        }
        if api.get(Service::BlockStorage, &path, &[]).await.is_ok() {
            return Err(gate_openstack::Error::Timeout {
                region: api.region().to_owned(),
                what: format!("deleting volume {id}"),
                after: timeout,
            });
        }
    }
    Ok(())
}

/// The run's test volumes, as Cinder lists them.
pub(super) async fn observe(
    api: &Api,
    run_id: &RunId,
    scope: &str,
) -> gate_openstack::Result<Vec<Observed>> {
    let all = api
        .get(Service::BlockStorage, "volumes/detail", &[])
        .await?;
    Ok(volumes_of(&all)
        .filter(|v| v["metadata"][naming::RUN_ID_KEY] == run_id.as_str())
        .map(|v| Observed {
            kind: VOLUME.into(),
            scope: scope.to_owned(),
            name: v["name"].as_str().unwrap_or_default().to_owned(),
            id: v["id"].as_str().unwrap_or_default().to_owned(),
            run_id: Some(run_id.clone()),
        })
        .collect())
}

/// One volume's details.
async fn show(api: &Api, id: &str) -> gate_openstack::Result<Value> {
    let body = api
        .get(Service::BlockStorage, &format!("volumes/{id}"), &[])
        .await?;
    Ok(body["volume"].clone())
}

/// The ids of the volumes named exactly `name` that carry `run_id` (Cinder's `name` filter
/// is exact, the name and tag are checked again all the same).
async fn find(api: &Api, name: &str, run_id: &str) -> gate_openstack::Result<Vec<String>> {
    let found = api
        .get(Service::BlockStorage, "volumes/detail", &[("name", name)])
        .await?;
    Ok(volumes_of(&found)
        .filter(|v| v["name"] == name && v["metadata"][naming::RUN_ID_KEY] == run_id)
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect())
}

fn volumes_of(body: &Value) -> impl Iterator<Item = &Value> {
    body["volumes"].as_array().into_iter().flatten()
}
