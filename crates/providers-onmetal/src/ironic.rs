//! Ironic's node API, through the retried calls of gate-openstack (microversion 1.56):
//! list, show, JSON-patch and provision a node; a 409 "node is locked" is waited out.

use std::time::{Duration, Instant};

use gate_openstack::{Api, Failure, Method, Request, Service, naming};
use serde_json::{Value, json};

/// A node as Ironic shows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// Its UUID.
    pub(crate) uuid: String,
    /// Its name, when it has one.
    pub(crate) name: Option<String>,
    /// `available`, `deploying`, `active`, `deploy failed`, …
    pub(crate) provision_state: String,
    /// Where it is going, when on its way.
    pub(crate) target_provision_state: Option<String>,
    /// The last failure.
    pub(crate) last_error: Option<String>,
    /// The instance it is associated with.
    pub(crate) instance_uuid: Option<String>,
    /// Its resource class.
    pub(crate) resource_class: Option<String>,
    /// In maintenance: Ironic acts on it no more.
    pub(crate) maintenance: bool,
    /// The whole node object.
    pub(crate) raw: Value,
}

impl Node {
    /// Parses one node object; `None` without a UUID.
    pub(crate) fn from_json(value: &Value) -> Option<Node> {
        let text = |key: &str| {
            value[key]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Some(Node {
            uuid: text("uuid")?,
            name: text("name"),
            // Microversions before 1.2 show `available` as null.
            provision_state: text("provision_state").unwrap_or_else(|| "available".into()),
            target_provision_state: text("target_provision_state"),
            last_error: text("last_error"),
            instance_uuid: text("instance_uuid"),
            resource_class: text("resource_class"),
            maintenance: value["maintenance"].as_bool().unwrap_or(false),
            raw: value.clone(),
        })
    }

    /// Its name, else its UUID: the ledger name and host name.
    pub(crate) fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.uuid)
    }

    /// The text at `field/key` (e.g. `extra/address`), or at a top-level `field`.
    pub(crate) fn field(&self, path: &str) -> Option<String> {
        let mut at = &self.raw;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            at = at.get(part)?;
        }
        match at {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// The run gate marked it with (`extra/gate_run_id`, else `instance_info/gate_run_id`).
    pub(crate) fn run_id(&self) -> Option<String> {
        self.field(&format!("extra/{}", naming::RUN_ID_KEY))
            .or_else(|| self.field(&format!("instance_info/{}", naming::RUN_ID_KEY)))
    }
}

/// The nodes matching `query` (Ironic's filters: `provision_state`, `resource_class`,
/// `associated`, `maintenance`, …), every page.
pub(crate) async fn list(api: &Api, query: &[(&str, &str)]) -> gate_openstack::Result<Vec<Node>> {
    const PAGE: usize = 200;
    let limit = PAGE.to_string();
    let mut marker: Option<String> = None;
    let mut found = Vec::new();
    loop {
        let mut page_query: Vec<(&str, &str)> = query.to_vec();
        page_query.push(("limit", &limit));
        if let Some(marker) = &marker {
            page_query.push(("marker", marker));
        }
        let body = api
            .get(Service::Baremetal, "nodes/detail", &page_query)
            .await?;
        let page: Vec<Node> = body["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Node::from_json)
            .collect();
        let full = page.len() >= PAGE;
        marker = page.last().map(|n| n.uuid.clone());
        found.extend(page);
        if !full {
            return Ok(found);
        }
    }
}

/// The node `id` (a name or UUID), or `None` when Ironic does not know it (404).
pub(crate) async fn get(api: &Api, id: &str) -> gate_openstack::Result<Option<Node>> {
    match api
        .get(Service::Baremetal, &format!("nodes/{id}"), &[])
        .await
    {
        Ok(body) => Ok(Node::from_json(&body)),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error),
    }
}

/// Applies the JSON patch `ops` to node `id`.
pub(crate) async fn patch(api: &Api, id: &str, ops: &Value) -> gate_openstack::Result<Node> {
    let path = format!("nodes/{id}");
    let request = Request::new(Method::PATCH, Service::Baremetal, &path).body(ops);
    let body = unlocked(api, &request).await?.body;
    Node::from_json(&body).ok_or_else(|| gate_openstack::Error::Api {
        region: api.region().to_owned(),
        method: "PATCH".into(),
        service: "baremetal".into(),
        path,
        status: None,
        message: "the answer has no node".into(),
    })
}

/// Asks for provision state `target` of node `id` (`body` holds `target` and more).
pub(crate) async fn provision(api: &Api, id: &str, body: &Value) -> gate_openstack::Result<()> {
    let path = format!("nodes/{id}/states/provision");
    let request = Request::new(Method::PUT, Service::Baremetal, &path).body(body);
    unlocked(api, &request).await.map(drop)
}

/// Undeploys node `id` (`target: deleted`).
pub(crate) async fn undeploy(api: &Api, id: &str) -> gate_openstack::Result<()> {
    provision(api, id, &json!({"target": "deleted"})).await
}

/// Whether a 409 says the node is locked by a conductor at work (worth waiting out), as
/// opposed to a conflict of states or owners.
fn is_locked(error: &gate_openstack::Error) -> bool {
    error.status() == Some(409) && error.to_string().to_ascii_lowercase().contains("locked")
}

/// Sends `request`, waiting out "node is locked" answers as transient ones.
async fn unlocked(
    api: &Api,
    request: &Request<'_>,
) -> gate_openstack::Result<gate_openstack::Reply> {
    let mut attempt = 0;
    loop {
        match api.call(request).await {
            Err(error) if is_locked(&error) && attempt + 1 < api.retry().tries => {
                let failure = Failure {
                    error,
                    transient: true,
                    retry_after: None,
                };
                api.pause(attempt, &failure).await?;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Polls node `uuid` every `poll` until `done` says so (its answer returned), up to
/// `timeout` (then a timeout naming `what`); a node that disappears is `None`.
pub(crate) async fn wait_for(
    api: &Api,
    uuid: &str,
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut done: impl FnMut(&Node) -> bool,
) -> gate_openstack::Result<Option<Node>> {
    let deadline = Instant::now() + timeout;
    loop {
        match get(api, uuid).await? {
            None => return Ok(None),
            Some(node) if done(&node) => return Ok(Some(node)),
            Some(node) if Instant::now() >= deadline => {
                return Err(gate_openstack::Error::Timeout {
                    region: api.region().to_owned(),
                    what: format!(
                        "node {} {what} (it is `{}`{})",
                        node.label(),
                        node.provision_state,
                        node.target_provision_state
                            .as_deref()
                            .map(|t| format!(", going to `{t}`"))
                            .unwrap_or_default()
                    ),
                    after: timeout,
                });
            }
            Some(_) => api.sleep(poll).await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_marks_and_labels_come_from_the_node_object() {
        let node = Node::from_json(&json!({
            "uuid": "0c5e", "name": null, "provision_state": "active",
            "target_provision_state": null, "maintenance": false,
            "extra": {"address": "10.0.0.7", "gate_run_id": "gate-12345678"},
            "instance_info": {"root_gb": 10}
        }))
        .unwrap();
        assert_eq!(node.label(), "0c5e");
        assert_eq!(node.field("extra/address").as_deref(), Some("10.0.0.7"));
        assert_eq!(node.field("instance_info/root_gb").as_deref(), Some("10"));
        assert_eq!(node.field("extra/missing"), None);
        assert_eq!(node.run_id().as_deref(), Some("gate-12345678"));
    }
}
