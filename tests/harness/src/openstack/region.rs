//! Extra regions in Keystone's catalog: the same services, some reached through a
//! [`FaultProxy`](super::FaultProxy), so region fallback runs against real services.

use serde_json::json;

use super::project::Credentials;
use super::{FaultProxy, REGION};
use crate::error::{HarnessError, Result};

/// Registers region `name` with an endpoint for every service of [`REGION`]; services named
/// in `through` get their URLs rewritten to go through that proxy. A region `name` that is
/// already there loses its endpoints first: services attached to by many test processes
/// may still have one from an earlier process whose pid this one reuses.
pub(crate) fn add(admin: &Credentials, name: &str, through: &[(&str, &FaultProxy)]) -> Result<()> {
    let session = admin.session()?;
    let existing = session.call("GET", "identity", &format!("/regions/{name}"), None)?;
    if existing.status == 200 {
        let old = session.get("identity", &format!("/endpoints?region_id={name}"))?;
        for endpoint in old["endpoints"].as_array().into_iter().flatten() {
            let id = endpoint["id"].as_str().unwrap_or_default();
            session.call_ok("DELETE", "identity", &format!("/endpoints/{id}"), None)?;
        }
    } else {
        session.post("identity", "/regions", &json!({"region": {"id": name}}))?;
    }
    let services = session.get("identity", "/services")?;
    let endpoints = session.get("identity", &format!("/endpoints?region_id={REGION}"))?;
    let list = endpoints["endpoints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if list.is_empty() {
        return Err(HarnessError::Command {
            command: format!("adding region {name}"),
            detail: format!("{REGION} has no endpoints"),
        });
    }
    for endpoint in list {
        let service_id = endpoint["service_id"].as_str().unwrap_or_default();
        let kind = services["services"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["id"] == service_id)
            .and_then(|s| s["type"].as_str())
            .unwrap_or_default();
        let mut url = endpoint["url"].as_str().unwrap_or_default().to_owned();
        if let Some((_, proxy)) = through.iter().find(|(service, _)| *service == kind) {
            url = proxy.url_for(&url);
        }
        session.post(
            "identity",
            "/endpoints",
            &json!({"endpoint": {"service_id": service_id, "interface": endpoint["interface"],
                     "url": url, "region_id": name}}),
        )?;
    }
    Ok(())
}
