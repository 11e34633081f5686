//! Before the upgrade: test networks, volumes, then servers, each in the ledger as it is
//! made, waited for until usable (a volume `available`, a server ACTIVE with an address to
//! probe).

use std::time::Instant;

use gate_core::ledger::Resource;
use gate_core::{Error, Result, StageContext, bounded};
use gate_openstack::servers::{self, Networks, NewServer, Server};
use gate_openstack::{Api, Method, Request, Service, naming};
use serde_json::json;

use super::{NETWORK, OpenStackResources, PURPOSE, PURPOSE_KEY, SERVER};
use crate::checks::cloud::TestResource;
use crate::checks::config::{ResourcesConfig, check_host};
use crate::host::HostSteps;

/// The `description` of a test network: Neutron's place for the run id tag.
pub(super) fn network_description(run_id: &str) -> String {
    format!("{}={run_id}", naming::RUN_ID_KEY)
}

/// Makes what `want` asks for.
pub(super) async fn create(
    me: &OpenStackResources,
    cx: &StageContext,
    want: &ResourcesConfig,
) -> Result<Vec<TestResource>> {
    let primary = HostSteps::primary(cx)?;
    let api = me.api(None, &cx.cancel).await?;
    let mut made = Vec::new();
    for n in 1..=want.networks {
        made.push(create_network(me, cx, &api, &primary, n).await?);
    }
    for n in 1..=want.volumes {
        made.push(super::volumes::create(me, cx, &api, &primary, n).await?);
    }
    if want.servers > 0 {
        made.extend(create_servers(me, cx, &api, &primary, want).await?);
    }
    Ok(made)
}

async fn create_network(
    me: &OpenStackResources,
    cx: &StageContext,
    api: &Api,
    primary: &HostSteps,
    n: u32,
) -> Result<TestResource> {
    // The catalog must have a network service that answers before anything is recorded.
    if let Err(e) = api
        .get(Service::Network, "networks", &[("limit", "1")])
        .await
    {
        if matches!(e, gate_openstack::Error::Cancelled) {
            return Err(Error::Cancelled);
        }
        return Err(me.key_error(
            "networks",
            format!(
                "test networks need the cloud's network service (Neutron), which did not \
                 answer: {e}"
            ),
        ));
    }
    let name = format!("{}-upgrade-net-{n}", cx.run_id);
    let spec = Resource::new(&me.backend, NETWORK, me.scope(), &name);
    cx.ledger.intent(&spec).await?;
    let body = json!({"network": {
        "name": name,
        "description": network_description(cx.run_id.as_str()),
        "admin_state_up": true,
    }});
    let answer = api
        .post(Service::Network, "networks", &body)
        .await
        .map_err(|e| {
            if matches!(e, gate_openstack::Error::Cancelled) {
                return Error::Cancelled;
            }
            me.key_error(
                "networks",
                format!("the cloud refused test network `{name}`: {e}"),
            )
        })?;
    let id = answer["network"]["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| {
            me.key_error(
                "networks",
                format!("the answer to creating test network `{name}` has no id: {answer}"),
            )
        })?;
    cx.ledger.created(&spec, &id).await?;
    primary.note(&format!(
        "upgrade checks: {}: test network {name} ({id})",
        api.region()
    ));
    Ok(TestResource {
        kind: NETWORK.into(),
        name,
        id,
        addresses: Vec::new(),
    })
}

/// What every test server shares.
struct Plan {
    flavor_id: String,
    image_id: String,
    networks: Networks,
    probe: bool,
}

async fn create_servers(
    me: &OpenStackResources,
    cx: &StageContext,
    api: &Api,
    primary: &HostSteps,
    want: &ResourcesConfig,
) -> Result<Vec<TestResource>> {
    let lookup = |key: &'static str, e: gate_openstack::Error| match e {
        gate_openstack::Error::Cancelled => Error::Cancelled,
        gate_openstack::Error::Config(message) => me.key_error(key, message),
        other => me.failed(&format!("looking up the test servers' {key}"), other),
    };
    let flavor = me.config.flavor.as_deref().unwrap_or_default();
    let image = me.config.image.as_deref().unwrap_or_default();
    let flavor_id = servers::flavor_id(api, flavor)
        .await
        .map_err(|e| lookup("flavor", e))?;
    let image_id = servers::image_id(api, image)
        .await
        .map_err(|e| lookup("image", e))?;
    let networks = match me.config.network.as_deref() {
        None | Some("auto") => Networks::Auto,
        Some("none") => Networks::None,
        Some(network) => Networks::Ids(vec![
            servers::network_id(api, network)
                .await
                .map_err(|e| lookup("network", e))?,
        ]),
    };
    let plan = Plan {
        flavor_id,
        image_id,
        networks,
        probe: want.probes_servers(),
    };
    let names: Vec<String> = (1..=want.servers)
        .map(|n| format!("{}-upgrade-{n}", cx.run_id))
        .collect();
    let outcomes = bounded(&names, cx.concurrency, |name| {
        let plan = &plan;
        async move { create_server(me, cx, api, primary, plan, name).await }
    })
    .await;
    let mut made = Vec::new();
    let mut failures = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(resource) => made.push(resource),
            Err(Error::Cancelled) => return Err(Error::Cancelled),
            Err(e) => failures.push(e.to_string()),
        }
    }
    if failures.is_empty() {
        Ok(made)
    } else {
        Err(Error::backend(
            &me.backend,
            format!(
                "upgrade checks: {} of {} test server(s) could not be made (the ledger has \
                 them; cleanup deletes them): {}",
                failures.len(),
                names.len(),
                failures.join("; ")
            ),
        ))
    }
}

async fn create_server(
    me: &OpenStackResources,
    cx: &StageContext,
    api: &Api,
    primary: &HostSteps,
    plan: &Plan,
    name: &str,
) -> Result<TestResource> {
    let started = Instant::now();
    let spec = Resource::new(&me.backend, SERVER, me.scope(), name);
    let what = |doing: &str| format!("test server `{name}`: {doing}");
    let mut metadata = naming::tags(&cx.run_id, None);
    metadata.insert(PURPOSE_KEY.to_owned(), PURPOSE.to_owned());
    cx.ledger.intent(&spec).await?;
    // A server of this run with this name (an upgrade stage run again) is taken over.
    let existing = servers::find_by_name(api, name)
        .await
        .map_err(|e| me.failed(&what("looking for an earlier one"), e))?
        .into_iter()
        .find(|s| s.run_id() == Some(cx.run_id.as_str()));
    let id = match existing {
        Some(server) => server.id,
        None => {
            let new = NewServer {
                name: name.to_owned(),
                flavor_id: plan.flavor_id.clone(),
                image_id: plan.image_id.clone(),
                networks: plan.networks.clone(),
                security_groups: Vec::new(),
                config_drive: false,
                user_data: None,
                metadata,
                key_name: None,
                availability_zone: None,
            };
            servers::create(api, &new)
                .await
                .map_err(|e| me.failed(&what("creating"), e))?
        }
    };
    cx.ledger.created(&spec, &id).await?;
    let timeout = OpenStackResources::seconds(me.config.boot_timeout_secs);
    let poll = OpenStackResources::seconds(me.config.poll_secs);
    let mut server = servers::wait_active(api, &id, timeout, poll)
        .await
        .map_err(|e| me.failed(&what("waiting for ACTIVE"), e))?;
    let mut addresses = probe_addresses(&me.config, &server);
    while plan.probe && addresses.is_empty() {
        if started.elapsed() >= timeout {
            return Err(Error::backend(
                &me.backend,
                format!(
                    "upgrade checks: {}: test server `{name}` ({id}) is ACTIVE but has no \
                     address to probe ({}) after {}s",
                    api.region(),
                    address_rule(&me.config),
                    timeout.as_secs()
                ),
            ));
        }
        api.sleep(poll.min(std::time::Duration::from_secs(1)))
            .await
            .map_err(|e| me.failed(&what("waiting for an address"), e))?;
        server = servers::get(api, &id)
            .await
            .map_err(|e| me.failed(&what("waiting for an address"), e))?
            .ok_or_else(|| {
                Error::backend(
                    &me.backend,
                    format!(
                        "upgrade checks: {}: test server `{name}` ({id}) disappeared while \
                         gate waited for its address",
                        api.region()
                    ),
                )
            })?;
        addresses = probe_addresses(&me.config, &server);
    }
    primary.note(&format!(
        "upgrade checks: {}: test server {name} ({id}) ACTIVE after {:.0}s, probed at [{}]",
        api.region(),
        started.elapsed().as_secs_f64(),
        addresses.join(", ")
    ));
    Ok(TestResource {
        kind: SERVER.into(),
        name: name.to_owned(),
        id,
        addresses,
    })
}

/// The rule `address` stands for, for messages.
fn address_rule(config: &ResourcesConfig) -> String {
    match config.address.as_deref() {
        Some("access_ipv4") => "address = \"access_ipv4\"".into(),
        Some(network) => format!("address = \"{network}\""),
        None => "accessIPv4, a floating or a fixed IPv4".into(),
    }
}

/// The addresses of `server` to probe, as `config.address` selects them; only what can be
/// a host name or address (never an option).
pub(super) fn probe_addresses(config: &ResourcesConfig, server: &Server) -> Vec<String> {
    let chosen: Vec<String> = match config.address.as_deref() {
        Some("access_ipv4") => server.access_ipv4.clone().into_iter().collect(),
        Some(network) => server.addresses[network]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| entry["addr"].as_str().map(str::to_owned))
            .collect(),
        None => {
            let named = config
                .network
                .as_deref()
                .filter(|n| !matches!(*n, "auto" | "none"));
            named
                .and_then(|n| server.address(Some(n)))
                .or_else(|| server.address(None))
                .into_iter()
                .collect()
        }
    };
    let mut unique = Vec::new();
    for address in chosen {
        if check_host(&address).is_ok() && !unique.contains(&address) {
            unique.push(address);
        }
    }
    unique
}

/// `DELETE path` of the network service, for callers outside this module.
pub(super) async fn delete_network(api: &Api, id: &str) -> gate_openstack::Result<bool> {
    let path = format!("networks/{id}");
    match api
        .call(&Request::new(Method::DELETE, Service::Network, &path))
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(access: Option<&str>) -> Server {
        Server::from_json(&json!({
            "id": "x",
            "accessIPv4": access.unwrap_or(""),
            "addresses": {"private": [{"addr": "192.168.1.5", "version": 4}],
                          "public": [{"addr": "-oops", "version": 4}]},
        }))
        .unwrap()
    }

    #[test]
    fn addresses_follow_the_configured_rule() {
        let mut config = ResourcesConfig {
            address: Some("access_ipv4".into()),
            ..ResourcesConfig::default()
        };
        assert_eq!(
            probe_addresses(&config, &server(Some("127.0.0.12"))),
            ["127.0.0.12"]
        );
        assert!(
            probe_addresses(&config, &server(None)).is_empty(),
            "only accessIPv4, never the fixed address"
        );
        config.address = Some("private".into());
        assert_eq!(
            probe_addresses(&config, &server(Some("127.0.0.12"))),
            ["192.168.1.5"]
        );
        config.address = Some("public".into());
        assert!(
            probe_addresses(&config, &server(None)).is_empty(),
            "no option-like address"
        );
        config.address = None;
        assert_eq!(
            probe_addresses(&config, &server(Some("10.1.1.1"))),
            ["10.1.1.1"]
        );
        assert_eq!(probe_addresses(&config, &server(None)), ["192.168.1.5"]);
    }
}
