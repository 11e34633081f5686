//! Nova servers: create (safe to retry: a lost answer never makes a twin), find by exact
//! name, list, wait for ACTIVE or gone, delete; flavors, images and networks by name or id.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api::{Api, Request, Service};
use crate::error::{Error, Result};
use crate::naming::{RUN_ID_KEY, exact_name_pattern};
use reqwest::Method;

/// A server as Nova shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `BUILD`, `ACTIVE`, `ERROR`, …
    pub status: String,
    /// Its metadata (gate's tags among them).
    pub metadata: BTreeMap<String, String>,
    /// When Nova created it (RFC 3339).
    pub created: Option<String>,
    /// `accessIPv4`, when set.
    pub access_ipv4: Option<String>,
    /// The `addresses` object: network name → list of `{addr, version, OS-EXT-IPS:type}`.
    pub addresses: Value,
    /// The fault message of a server in ERROR.
    pub fault: Option<String>,
}

impl Server {
    /// Parses one server object; `None` without an id.
    pub fn from_json(value: &Value) -> Option<Server> {
        let text = |key: &str| crate::api::text_field(value, key);
        let metadata = value["metadata"]
            .as_object()
            .map(|map| {
                map.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        Some(Server {
            id: text("id")?,
            name: text("name").unwrap_or_default(),
            status: text("status").unwrap_or_default(),
            metadata,
            created: text("created"),
            access_ipv4: text("accessIPv4"),
            addresses: value["addresses"].clone(),
            fault: value["fault"]["message"].as_str().map(str::to_owned),
        })
    }

    /// The run id tag.
    pub fn run_id(&self) -> Option<&str> {
        self.metadata.get(RUN_ID_KEY).map(String::as_str)
    }

    /// The address to reach it at: `accessIPv4`, else a floating IPv4, else the first
    /// fixed IPv4 (of `network` when given), else any address.
    pub fn address(&self, network: Option<&str>) -> Option<String> {
        if let Some(ip) = &self.access_ipv4 {
            return Some(ip.clone());
        }
        let networks = self.addresses.as_object()?;
        let entries = || {
            networks
                .iter()
                .filter(|(name, _)| network.is_none_or(|n| n == name.as_str()))
                .flat_map(|(_, list)| list.as_array().into_iter().flatten())
        };
        let pick = |floating: Option<bool>, v4: bool| {
            entries().find_map(|entry| {
                let kind = entry["OS-EXT-IPS:type"].as_str();
                let is_floating = kind == Some("floating");
                let version_ok = !v4 || entry["version"].as_u64() == Some(4);
                (floating.is_none_or(|f| f == is_floating) && version_ok)
                    .then(|| entry["addr"].as_str().map(str::to_owned))
                    .flatten()
            })
        };
        pick(Some(true), true)
            .or_else(|| pick(None, true))
            .or_else(|| pick(None, false))
    }
}

/// Networks to boot on (compute microversion 2.37 semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Networks {
    /// `"auto"`: the project's network, allocated when it has none.
    Auto,
    /// `"none"`: no network.
    None,
    /// These network ids.
    Ids(Vec<String>),
}

/// What to create.
#[derive(Debug, Clone)]
pub struct NewServer {
    /// The exact name.
    pub name: String,
    /// The flavor id.
    pub flavor_id: String,
    /// The image id.
    pub image_id: String,
    /// Networks.
    pub networks: Networks,
    /// Security group names.
    pub security_groups: Vec<String>,
    /// Whether to attach a config drive.
    pub config_drive: bool,
    /// The user data (plain text; encoded here).
    pub user_data: Option<String>,
    /// Metadata (gate's tags).
    pub metadata: BTreeMap<String, String>,
    /// A Nova keypair name.
    pub key_name: Option<String>,
    /// An availability zone.
    pub availability_zone: Option<String>,
}

impl NewServer {
    fn body(&self) -> Value {
        use base64::Engine as _;
        let networks = match &self.networks {
            Networks::Auto => json!("auto"),
            Networks::None => json!("none"),
            Networks::Ids(ids) => {
                json!(ids.iter().map(|id| json!({"uuid": id})).collect::<Vec<_>>())
            }
        };
        let mut server = json!({
            "name": self.name,
            "flavorRef": self.flavor_id,
            "imageRef": self.image_id,
            "networks": networks,
            "metadata": self.metadata,
        });
        if !self.security_groups.is_empty() {
            server["security_groups"] = json!(
                self.security_groups
                    .iter()
                    .map(|n| json!({"name": n}))
                    .collect::<Vec<_>>()
            );
        }
        if self.config_drive {
            server["config_drive"] = json!(true);
        }
        if let Some(data) = &self.user_data {
            server["user_data"] = json!(base64::engine::general_purpose::STANDARD.encode(data));
        }
        if let Some(key) = &self.key_name {
            server["key_name"] = json!(key);
        }
        if let Some(zone) = &self.availability_zone {
            server["availability_zone"] = json!(zone);
        }
        json!({ "server": server })
    }
}

/// Creates `new` and returns its id. A transient failure is retried, but first the server is
/// looked up by its exact name and run id: a create whose answer was lost is adopted, never
/// made twice.
pub async fn create(api: &Api, new: &NewServer) -> Result<String> {
    let body = new.body();
    let request = Request::new(Method::POST, Service::Compute, "servers").body(&body);
    let run_id = new.metadata.get(RUN_ID_KEY).map(String::as_str);
    let mut attempt = 0;
    loop {
        match api.send_once(&request).await {
            Ok(reply) => {
                return reply.body["server"]["id"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Error::Api {
                        region: api.region().to_owned(),
                        method: "POST".into(),
                        service: "compute".into(),
                        path: "servers".into(),
                        status: Some(reply.status),
                        message: "the answer has no server id".into(),
                    });
            }
            Err(failure) if failure.transient && attempt + 1 < api.retry().tries => {
                api.pause(attempt, &failure).await?;
                attempt += 1;
                let twins = find_by_name(api, &new.name).await?;
                if let Some(made) = twins.iter().find(|s| s.run_id() == run_id) {
                    tracing::info!(
                        region = api.region(),
                        "server `{}` was created although the answer was lost; using {}",
                        new.name,
                        made.id
                    );
                    return Ok(made.id.clone());
                }
            }
            Err(failure) => return Err(failure.error),
        }
    }
}

/// The server `id`, or `None` when it does not exist (404).
pub async fn get(api: &Api, id: &str) -> Result<Option<Server>> {
    match api
        .get(Service::Compute, &format!("servers/{id}"), &[])
        .await
    {
        Ok(body) => Ok(Server::from_json(&body["server"])),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error),
    }
}

/// Every server of the project in this region (all pages), optionally filtered by Nova's
/// `name` regular expression.
pub async fn list_matching(api: &Api, name_pattern: Option<&str>) -> Result<Vec<Server>> {
    const PAGE: usize = 500;
    let limit = PAGE.to_string();
    let mut marker: Option<String> = None;
    let mut found = Vec::new();
    loop {
        let mut query: Vec<(&str, &str)> = vec![("limit", &limit)];
        if let Some(pattern) = name_pattern {
            query.push(("name", pattern));
        }
        if let Some(marker) = &marker {
            query.push(("marker", marker));
        }
        let body = api.get(Service::Compute, "servers/detail", &query).await?;
        let page: Vec<Server> = body["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Server::from_json)
            .collect();
        let full = page.len() >= PAGE;
        marker = page.last().map(|s| s.id.clone());
        found.extend(page);
        if !full {
            return Ok(found);
        }
    }
}

/// Every server of the project in this region.
pub async fn list(api: &Api) -> Result<Vec<Server>> {
    list_matching(api, None).await
}

/// The servers named exactly `name` (the filter is anchored and escaped, and the name is
/// checked again).
pub async fn find_by_name(api: &Api, name: &str) -> Result<Vec<Server>> {
    let pattern = exact_name_pattern(name);
    let mut servers = list_matching(api, Some(&pattern)).await?;
    servers.retain(|s| s.name == name);
    Ok(servers)
}

/// Asks Nova to delete `id`; `false` when it was already gone.
pub async fn delete(api: &Api, id: &str) -> Result<bool> {
    api.delete(Service::Compute, &format!("servers/{id}")).await
}

/// Polls `id` every `poll` until ACTIVE (returned), ERROR ([`Error::BuildFailed`]), gone or
/// `timeout`.
pub async fn wait_active(api: &Api, id: &str, timeout: Duration, poll: Duration) -> Result<Server> {
    let deadline = Instant::now() + timeout;
    loop {
        let server = get(api, id).await?;
        match server {
            Some(server) if server.status == "ACTIVE" => return Ok(server),
            Some(server) if server.status == "ERROR" => {
                return Err(Error::BuildFailed {
                    region: api.region().to_owned(),
                    fault: server
                        .fault
                        .clone()
                        .unwrap_or_else(|| "no fault given".into()),
                    name: server.name,
                    id: server.id,
                });
            }
            Some(_) => {}
            None => {
                return Err(Error::BuildFailed {
                    region: api.region().to_owned(),
                    name: String::new(),
                    id: id.to_owned(),
                    fault: "the server disappeared while building".into(),
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                region: api.region().to_owned(),
                what: format!("server {id} becoming ACTIVE"),
                after: timeout,
            });
        }
        api.sleep(poll).await?;
    }
}

/// Polls `id` every `poll` until Nova answers 404, up to `timeout`.
pub async fn wait_gone(api: &Api, id: &str, timeout: Duration, poll: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while get(api, id).await?.is_some() {
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                region: api.region().to_owned(),
                what: format!("server {id} being deleted"),
                after: timeout,
            });
        }
        api.sleep(poll).await?;
    }
    Ok(())
}

/// The id of flavor `name_or_id` (an id is taken as is when Nova knows it).
pub async fn flavor_id(api: &Api, name_or_id: &str) -> Result<String> {
    match api
        .get(Service::Compute, &format!("flavors/{name_or_id}"), &[])
        .await
    {
        Ok(body) => {
            if let Some(id) = body["flavor"]["id"].as_str() {
                return Ok(id.to_owned());
            }
        }
        Err(error) if error.is_not_found() => {}
        Err(error) => return Err(error),
    }
    let body = api
        .get(Service::Compute, "flavors", &[("is_public", "None")])
        .await?;
    one_by_name(api, "flavor", name_or_id, &body["flavors"])
}

/// The id of image `name_or_id`.
pub async fn image_id(api: &Api, name_or_id: &str) -> Result<String> {
    match api
        .get(Service::Image, &format!("images/{name_or_id}"), &[])
        .await
    {
        Ok(body) => {
            if let Some(id) = body["id"].as_str() {
                return Ok(id.to_owned());
            }
        }
        Err(error) if error.is_not_found() || error.status() == Some(400) => {}
        Err(error) => return Err(error),
    }
    let body = api
        .get(Service::Image, "images", &[("name", name_or_id)])
        .await?;
    one_by_name(api, "image", name_or_id, &body["images"])
}

fn one_by_name(api: &Api, what: &str, name: &str, list: &Value) -> Result<String> {
    let ids: Vec<&str> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["name"].as_str() == Some(name))
        .filter_map(|item| item["id"].as_str())
        .collect();
    match ids.as_slice() {
        [id] => Ok((*id).to_owned()),
        [] => Err(Error::Config(format!(
            "{}: no {what} named `{name}`",
            api.region()
        ))),
        _ => Err(Error::Config(format!(
            "{}: {} {what}s are named `{name}` ({}); give the id",
            api.region(),
            ids.len(),
            ids.join(", ")
        ))),
    }
}

/// The id of network `name_or_id` (Neutron; an id is taken as is when Neutron knows it).
pub async fn network_id(api: &Api, name_or_id: &str) -> Result<String> {
    match api
        .get(Service::Network, &format!("networks/{name_or_id}"), &[])
        .await
    {
        Ok(body) => {
            if let Some(id) = body["network"]["id"].as_str() {
                return Ok(id.to_owned());
            }
        }
        Err(error) if error.is_not_found() => {}
        Err(error) => return Err(error),
    }
    let body = api
        .get(Service::Network, "networks", &[("name", name_or_id)])
        .await?;
    one_by_name(api, "network", name_or_id, &body["networks"])
}

/// Merges `metadata` into server `id`'s metadata.
pub async fn set_metadata(api: &Api, id: &str, metadata: &BTreeMap<String, String>) -> Result<()> {
    let body = json!({ "metadata": metadata });
    api.post(Service::Compute, &format!("servers/{id}/metadata"), &body)
        .await
        .map(|_| ())
}
