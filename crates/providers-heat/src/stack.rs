//! Heat's stack API: create (safe to retry), show, failed resources, delete, list by tag.

use gate_openstack::{Api, Error, Method, Request, Result, Service};
use serde_json::{Value, json};

/// A stack as Heat shows it.
#[derive(Debug, Clone)]
pub(crate) struct Stack {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) status: String,
    pub(crate) reason: String,
    pub(crate) outputs: Value,
    pub(crate) tags: Vec<String>,
    pub(crate) created: Option<String>,
}

impl Stack {
    fn from_json(value: &Value) -> Option<Stack> {
        let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
        Some(Stack {
            id: value["id"].as_str()?.to_owned(),
            name: text("stack_name"),
            status: text("stack_status"),
            reason: text("stack_status_reason"),
            outputs: value["outputs"].clone(),
            tags: value["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
            created: value["creation_time"].as_str().map(str::to_owned),
        })
    }

    /// The value of output `key`, if the stack has it.
    pub(crate) fn output(&self, key: &str) -> Option<&Value> {
        self.outputs
            .as_array()?
            .iter()
            .find(|o| o["output_key"] == key)
            .map(|o| &o["output_value"])
    }

    /// The run id of gate's tag.
    pub(crate) fn run_id(&self) -> Option<&str> {
        self.tags
            .iter()
            .find_map(|t| t.strip_prefix(crate::provider::RUN_TAG_PREFIX))
    }
}

/// What to create.
pub(crate) struct NewStack<'a> {
    pub(crate) name: &'a str,
    pub(crate) template: &'a str,
    pub(crate) parameters: &'a serde_json::Map<String, Value>,
    pub(crate) tags: &'a [String],
    pub(crate) timeout_mins: u32,
}

/// Creates the stack and returns its id. A create whose answer was lost (a retry meeting
/// 409 Conflict) is found by name and taken when it carries the same tags.
pub(crate) async fn create(api: &Api, new: &NewStack<'_>) -> Result<String> {
    let body = json!({
        "stack_name": new.name,
        "template": new.template,
        "parameters": new.parameters,
        "tags": new.tags.join(","),
        "timeout_mins": new.timeout_mins,
        "disable_rollback": true,
    });
    let request = Request::new(Method::POST, Service::Orchestration, "stacks").body(&body);
    match api.call(&request).await {
        Ok(reply) => reply.body["stack"]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::Config(format!("{}: Heat's answer has no stack id", api.region()))
            }),
        Err(error) if error.status() == Some(409) => match find(api, new.name).await? {
            Some(stack) if new.tags.iter().all(|t| stack.tags.contains(t)) => Ok(stack.id),
            _ => Err(error),
        },
        Err(error) => Err(error),
    }
}

/// The stack `name`/`id`, or `None` when Heat answers 404.
pub(crate) async fn get(api: &Api, name: &str, id: &str) -> Result<Option<Stack>> {
    match api
        .get(Service::Orchestration, &format!("stacks/{name}/{id}"), &[])
        .await
    {
        Ok(body) => Ok(Stack::from_json(&body["stack"])),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error),
    }
}

/// The live stack named exactly `name`, if any.
pub(crate) async fn find(api: &Api, name: &str) -> Result<Option<Stack>> {
    let body = api
        .get(Service::Orchestration, "stacks", &[("name", name)])
        .await?;
    let found = body["stacks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Stack::from_json)
        .find(|s| s.name == name);
    match found {
        // The list leaves out outputs and tags on some releases: show it.
        Some(stack) => get(api, &stack.name, &stack.id).await,
        None => Ok(None),
    }
}

/// Every stack of the project (optionally only those carrying `tag`).
pub(crate) async fn list(api: &Api, tag: Option<&str>) -> Result<Vec<Stack>> {
    let query: Vec<(&str, &str)> = tag.map(|t| vec![("tags", t)]).unwrap_or_default();
    let body = api.get(Service::Orchestration, "stacks", &query).await?;
    Ok(body["stacks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Stack::from_json)
        .collect())
}

/// `` `name` (type): reason `` for every resource (nested too) whose status ends in FAILED.
pub(crate) async fn failed_resources(api: &Api, name: &str, id: &str) -> Result<Vec<String>> {
    let body = api
        .get(
            Service::Orchestration,
            &format!("stacks/{name}/{id}/resources"),
            &[("nested_depth", "5")],
        )
        .await?;
    Ok(body["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["resource_status"]
                .as_str()
                .is_some_and(|s| s.ends_with("FAILED"))
        })
        .map(|r| {
            format!(
                "`{}` ({}): {}",
                r["resource_name"].as_str().unwrap_or("?"),
                r["resource_type"].as_str().unwrap_or("?"),
                r["resource_status_reason"]
                    .as_str()
                    .unwrap_or("no reason given"),
            )
        })
        .collect())
}

/// Asks Heat to delete the stack; `false` when it was already gone.
pub(crate) async fn delete(api: &Api, name: &str, id: &str) -> Result<bool> {
    api.delete(Service::Orchestration, &format!("stacks/{name}/{id}"))
        .await
}
