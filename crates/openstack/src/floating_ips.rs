//! Neutron floating IPs for servers: create (safe to retry: a lost answer never makes a
//! twin), find by gate's name and run id, associate with a server's port, wait until the
//! cloud has wired it (`ACTIVE`), delete.
//!
//! Neutron floating IPs have no name and no metadata, so gate writes its tags into the
//! `description`, as a small JSON object: `{"gate_name": …, "gate_run_id": …,
//! "gate_created_at": …}` (Neutron allows 255 characters). A sweep reads them back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api::{Api, Request, Service};
use crate::error::{Error, Result};
use crate::naming::{CREATED_AT_KEY, RUN_ID_KEY};
use reqwest::Method;

/// The description key holding the exact name gate gave the floating IP.
pub const NAME_KEY: &str = "gate_name";

/// A floating IP as Neutron shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatingIp {
    /// Its id.
    pub id: String,
    /// The floating address.
    pub address: String,
    /// The external network it is from.
    pub network_id: String,
    /// The port it is associated with.
    pub port_id: Option<String>,
    /// `ACTIVE`, `DOWN` or `ERROR`.
    pub status: String,
    /// The description (gate's tags, as JSON, on gate's own).
    pub description: String,
    /// When Neutron created it (RFC 3339).
    pub created: Option<String>,
}

impl FloatingIp {
    /// Parses one `floatingip` object; `None` without an id.
    pub fn from_json(value: &Value) -> Option<FloatingIp> {
        let text = |key: &str| crate::api::text_field(value, key);
        Some(FloatingIp {
            id: text("id")?,
            address: text("floating_ip_address").unwrap_or_default(),
            network_id: text("floating_network_id").unwrap_or_default(),
            port_id: text("port_id"),
            status: text("status").unwrap_or_default(),
            description: text("description").unwrap_or_default(),
            created: text("created_at"),
        })
    }

    /// gate's tags from the description (empty when it is not gate's).
    pub fn tags(&self) -> BTreeMap<String, String> {
        let parsed: Option<Value> = serde_json::from_str(&self.description).ok();
        parsed
            .as_ref()
            .and_then(Value::as_object)
            .map(|map| {
                map.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The name gate gave it, if it is gate's.
    pub fn name(&self) -> Option<String> {
        self.tags().remove(NAME_KEY)
    }

    /// The run id tag.
    pub fn run_id(&self) -> Option<String> {
        self.tags().remove(RUN_ID_KEY)
    }
}

/// The description of a floating IP named `name` with `tags` (gate's run id and creation
/// time; the job is left out to stay within Neutron's 255 characters).
pub fn description(name: &str, tags: &BTreeMap<String, String>) -> String {
    let mut object = serde_json::Map::new();
    object.insert(NAME_KEY.into(), json!(name));
    for key in [RUN_ID_KEY, CREATED_AT_KEY] {
        if let Some(value) = tags.get(key) {
            object.insert(key.into(), json!(value));
        }
    }
    Value::Object(object).to_string()
}

/// The id of the external network `name_or_id`; with `None`, the one external network
/// there is (an error when there are none or several).
pub async fn external_network_id(api: &Api, name_or_id: Option<&str>) -> Result<String> {
    if let Some(name) = name_or_id {
        return crate::servers::network_id(api, name).await;
    }
    let body = api
        .get(Service::Network, "networks", &[("router:external", "true")])
        .await?;
    let found: Vec<(&str, &str)> = body["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| Some((n["id"].as_str()?, n["name"].as_str().unwrap_or(""))))
        .collect();
    match found.as_slice() {
        [(id, _)] => Ok((*id).to_owned()),
        [] => Err(Error::Config(format!(
            "{}: there is no external network to take floating IPs from",
            api.region()
        ))),
        many => Err(Error::Config(format!(
            "{}: {} external networks ({}); name one in floating_network",
            api.region(),
            many.len(),
            many.iter()
                .map(|(id, name)| format!("{name} ({id})"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Creates a floating IP on `network_id` named `name` (in its description, with `tags`).
/// A transient failure is retried, but first the floating IP is looked up by name and run
/// id: a create whose answer was lost is adopted, never made twice.
pub async fn create(
    api: &Api,
    network_id: &str,
    name: &str,
    tags: &BTreeMap<String, String>,
) -> Result<FloatingIp> {
    let body = json!({"floatingip": {
        "floating_network_id": network_id,
        "description": description(name, tags),
    }});
    let request = Request::new(Method::POST, Service::Network, "floatingips").body(&body);
    let run_id = tags.get(RUN_ID_KEY).cloned();
    let mut attempt = 0;
    loop {
        match api.send_once(&request).await {
            Ok(reply) => {
                return FloatingIp::from_json(&reply.body["floatingip"]).ok_or_else(|| {
                    Error::Api {
                        region: api.region().to_owned(),
                        method: "POST".into(),
                        service: "network".into(),
                        path: "floatingips".into(),
                        status: Some(reply.status),
                        message: "the answer has no floating IP id".into(),
                    }
                });
            }
            Err(failure) if failure.transient && attempt + 1 < api.retry().tries => {
                api.pause(attempt, &failure).await?;
                attempt += 1;
                let twins = find_by_name(api, name, run_id.as_deref()).await?;
                if let Some(made) = twins.into_iter().next() {
                    tracing::info!(
                        region = api.region(),
                        "floating IP `{name}` was created although the answer was lost; using {}",
                        made.id
                    );
                    return Ok(made);
                }
            }
            Err(failure) => return Err(failure.error),
        }
    }
}

/// The floating IP `id`, or `None` when it does not exist (404).
pub async fn get(api: &Api, id: &str) -> Result<Option<FloatingIp>> {
    match api
        .get(Service::Network, &format!("floatingips/{id}"), &[])
        .await
    {
        Ok(body) => Ok(FloatingIp::from_json(&body["floatingip"])),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error),
    }
}

/// The project's floating IPs in this region, filtered by Neutron's `query`.
pub async fn list(api: &Api, query: &[(&str, &str)]) -> Result<Vec<FloatingIp>> {
    let body = api.get(Service::Network, "floatingips", query).await?;
    Ok(body["floatingips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(FloatingIp::from_json)
        .collect())
}

/// The floating IPs gate named exactly `name` (and tagged with `run_id`, when given).
pub async fn find_by_name(api: &Api, name: &str, run_id: Option<&str>) -> Result<Vec<FloatingIp>> {
    let mut found = list(api, &[]).await?;
    found.retain(|f| {
        f.name().as_deref() == Some(name) && run_id.is_none_or(|r| f.run_id().as_deref() == Some(r))
    });
    Ok(found)
}

/// The id of the first port of server `server_id`, or `None` while it has none.
pub async fn server_port(api: &Api, server_id: &str) -> Result<Option<String>> {
    let body = api
        .get(Service::Network, "ports", &[("device_id", server_id)])
        .await?;
    Ok(body["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|p| p["id"].as_str().map(str::to_owned)))
}

/// Associates floating IP `id` with `port_id` (`None`: disassociates it).
pub async fn associate(api: &Api, id: &str, port_id: Option<&str>) -> Result<FloatingIp> {
    let body = json!({"floatingip": {"port_id": port_id}});
    let path = format!("floatingips/{id}");
    let reply = api
        .call(&Request::new(Method::PUT, Service::Network, &path).body(&body))
        .await?;
    FloatingIp::from_json(&reply.body["floatingip"]).ok_or_else(|| Error::Api {
        region: api.region().to_owned(),
        method: "PUT".into(),
        service: "network".into(),
        path,
        status: Some(reply.status),
        message: "the answer has no floating IP".into(),
    })
}

/// Polls floating IP `id` every `poll` until it is `ACTIVE` (the cloud has wired it to the
/// port), up to `timeout`; `ERROR` or gone fail at once.
pub async fn wait_active(
    api: &Api,
    id: &str,
    timeout: Duration,
    poll: Duration,
) -> Result<FloatingIp> {
    let deadline = Instant::now() + timeout;
    loop {
        let fip = get(api, id).await?;
        match fip {
            Some(fip) if fip.status == "ACTIVE" => return Ok(fip),
            Some(fip) if fip.status == "ERROR" => {
                return Err(Error::Api {
                    region: api.region().to_owned(),
                    method: "GET".into(),
                    service: "network".into(),
                    path: format!("floatingips/{id}"),
                    status: None,
                    message: format!("floating IP {} went to ERROR", fip.address),
                });
            }
            Some(_) => {}
            None => {
                return Err(Error::Api {
                    region: api.region().to_owned(),
                    method: "GET".into(),
                    service: "network".into(),
                    path: format!("floatingips/{id}"),
                    status: Some(404),
                    message: "the floating IP disappeared".into(),
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                region: api.region().to_owned(),
                what: format!("floating IP {id} becoming ACTIVE"),
                after: timeout,
            });
        }
        api.sleep(poll).await?;
    }
}

/// Deletes floating IP `id`; `false` when it was already gone (404).
pub async fn delete(api: &Api, id: &str) -> Result<bool> {
    api.delete(Service::Network, &format!("floatingips/{id}"))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_carries_name_and_run_id_and_reads_back() {
        let mut tags = BTreeMap::new();
        tags.insert(RUN_ID_KEY.to_owned(), "gate-1234abcd".to_owned());
        tags.insert(CREATED_AT_KEY.to_owned(), "2026-11-25T06:00:00Z".to_owned());
        tags.insert("gate_job".to_owned(), "x".repeat(255));
        let text = description("gate-1234abcd-1-fip", &tags);
        assert!(text.len() <= 255, "{text}");
        let fip = FloatingIp::from_json(&json!({
            "id": "f1", "floating_ip_address": "127.0.100.2", "status": "DOWN",
            "floating_network_id": "n1", "port_id": null, "description": text,
        }))
        .unwrap();
        assert_eq!(fip.name().as_deref(), Some("gate-1234abcd-1-fip"));
        assert_eq!(fip.run_id().as_deref(), Some("gate-1234abcd"));
        assert_eq!(fip.port_id, None);
        let foreign = FloatingIp {
            description: "made by hand".into(),
            ..fip
        };
        assert_eq!(foreign.name(), None);
        assert_eq!(foreign.run_id(), None);
    }
}
