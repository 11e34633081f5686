//! After the upgrade: every test resource still there and healthy, with evidence (the
//! API's view of it and, for servers, the console output where the cloud gives it).
//! Volumes are checked in [`super::volumes`].

use gate_core::{Result, StageContext};
use gate_openstack::{Api, Service};
use serde_json::{Value, json};

use super::{NETWORK, OpenStackResources, SERVER, VOLUME};
use crate::checks::cloud::{ResourceCheck, TestResource};
use crate::host::HostSteps;

/// The console lines kept as evidence.
const CONSOLE_LINES: u64 = 50;

/// Checks each of `made`. An API failure is that resource's problem, not the stage's error,
/// so every resource gets its JUnit case.
pub(super) async fn verify(
    me: &OpenStackResources,
    cx: &StageContext,
    made: &[TestResource],
) -> Result<Vec<ResourceCheck>> {
    let primary = HostSteps::primary(cx)?;
    let api = match me.api(None, &cx.cancel).await {
        Ok(api) => api,
        Err(gate_core::Error::Cancelled) => return Err(gate_core::Error::Cancelled),
        // No login after the upgrade (Keystone down, say): every resource is unchecked,
        // and the timeline and JUnit are still written.
        Err(e) => {
            return Ok(made
                .iter()
                .map(|resource| ResourceCheck {
                    resource: resource.clone(),
                    problem: Some(format!("could not be checked: {e}")),
                    output: String::new(),
                })
                .collect());
        }
    };
    let mut checks = Vec::new();
    for resource in made {
        let (problem, output) = match resource.kind.as_str() {
            SERVER => server(&api, resource).await,
            NETWORK => network(&api, resource).await,
            VOLUME => super::volumes::verify(&api, resource)
                .await
                .unwrap_or_else(|e| api_problem(&format!("GET volumes/{}", resource.id), e)),
            other => (Some(format!("unknown kind `{other}`")), String::new()),
        };
        if matches!(problem, Some(ref p) if p == CANCELLED) {
            return Err(gate_core::Error::Cancelled);
        }
        primary.note(&format!(
            "upgrade checks: {} {} ({}): {}",
            resource.kind,
            resource.name,
            resource.id,
            problem.as_deref().unwrap_or("survived")
        ));
        checks.push(ResourceCheck {
            resource: resource.clone(),
            problem,
            output,
        });
    }
    Ok(checks)
}

const CANCELLED: &str = "cancelled";

fn api_problem(what: &str, error: gate_openstack::Error) -> (Option<String>, String) {
    match error {
        gate_openstack::Error::Cancelled => (Some(CANCELLED.into()), String::new()),
        other => (
            Some(format!("could not be checked: {what}: {other}")),
            String::new(),
        ),
    }
}

async fn server(api: &Api, resource: &TestResource) -> (Option<String>, String) {
    let path = format!("servers/{}", resource.id);
    let body = match api.get(Service::Compute, &path, &[]).await {
        Ok(body) => body,
        Err(e) if e.is_not_found() => {
            return (
                Some(format!(
                    "gone: {}: Nova answers 404 for server {} — it did not survive the upgrade",
                    api.region(),
                    resource.id
                )),
                format!("GET {path}: 404 Not Found\n"),
            );
        }
        Err(e) => return api_problem(&format!("GET {path}"), e),
    };
    let shown = &body["server"];
    let status = shown["status"].as_str().unwrap_or("unknown");
    let problem = match status {
        "ACTIVE" => None,
        "ERROR" => Some(format!(
            "in ERROR after the upgrade: {}",
            shown["fault"]["message"]
                .as_str()
                .unwrap_or("Nova gives no fault")
        )),
        other => Some(format!("status {other} after the upgrade, not ACTIVE")),
    };
    let mut output = format!(
        "server show:\n{}\n",
        serde_json::to_string_pretty(shown).unwrap_or_default()
    );
    // The console is evidence only: a cloud (or a driver) without it is no problem.
    let action = json!({"os-getConsoleOutput": {"length": CONSOLE_LINES}});
    match api
        .post(
            Service::Compute,
            &format!("servers/{}/action", resource.id),
            &action,
        )
        .await
    {
        Ok(answer) => {
            if let Some(console) = answer["output"].as_str() {
                output.push_str(&format!(
                    "console output (last {CONSOLE_LINES} lines):\n{console}\n"
                ));
            }
        }
        Err(e) => output.push_str(&format!("no console output: {e}\n")),
    }
    (problem, output)
}

async fn network(api: &Api, resource: &TestResource) -> (Option<String>, String) {
    let path = format!("networks/{}", resource.id);
    let body: Value = match api.get(Service::Network, &path, &[]).await {
        Ok(body) => body,
        Err(e) if e.is_not_found() => {
            return (
                Some(format!(
                    "gone: {}: Neutron answers 404 for network {} — it did not survive the \
                     upgrade",
                    api.region(),
                    resource.id
                )),
                format!("GET {path}: 404 Not Found\n"),
            );
        }
        Err(e) => return api_problem(&format!("GET {path}"), e),
    };
    let shown = &body["network"];
    let status = shown["status"].as_str().unwrap_or("unknown");
    let problem = (status != "ACTIVE").then(|| format!("status {status} after the upgrade"));
    let output = format!(
        "network show:\n{}\n",
        serde_json::to_string_pretty(shown).unwrap_or_default()
    );
    (problem, output)
}
