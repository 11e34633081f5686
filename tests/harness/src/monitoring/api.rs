//! The API's routes: authentication, injected faults, validation of entities and checks as
//! the service validates them, paginated lists, reads and deletes.

use std::net::IpAddr;

use serde_json::{Map, Value, json};

use super::http::{Answer, Request, fault};
use super::{MonitoringThing, State, new_id, now_ms};

/// The answer to `request`, and whether to lose it after doing the work.
pub(super) fn answer(request: &Request, state: &mut State, authenticated: bool) -> (Answer, bool) {
    state.count += 1;
    if let Some((n, status)) = state.every
        && state.count.is_multiple_of(n)
    {
        return (injected(status), false);
    }
    let account = format!("/v1.0/{}/", state.tenant);
    let below = request.path.strip_prefix(&account).unwrap_or("");
    let mut lose = false;
    if let Some(f) = state.faults.iter_mut().find(|f| {
        f.remaining > 0
            && (f.method.is_empty() || f.method == request.method)
            && below.starts_with(&f.prefix)
    }) {
        f.remaining -= 1;
        if !f.lose {
            return (injected(f.status), false);
        }
        lose = true;
    }
    if !authenticated {
        let message = "Unable to authenticate user with credentials provided.";
        return (fault(401, "unauthorizedError", message), lose);
    }
    if !request.path.starts_with(&account) {
        return (fault(404, "notFoundError", "Resource not found."), lose);
    }
    let segments: Vec<&str> = below.trim_end_matches('/').split('/').collect();
    let answer = match (request.method.as_str(), segments.as_slice()) {
        ("POST", ["entities"]) => create(request, state, None),
        ("POST", ["entities", entity, "checks"]) => create(request, state, Some(entity)),
        ("GET", ["entities"]) => list(request, state, None, "entities"),
        ("GET", ["entities", entity, "checks"]) => match state.things.contains_key(*entity) {
            true => list(
                request,
                state,
                Some(entity),
                &format!("entities/{entity}/checks"),
            ),
            false => fault(404, "parentNotFoundError", "Parent entity does not exist."),
        },
        (method @ ("GET" | "DELETE"), ["entities", id]) => one(state, method, None, id),
        (method @ ("GET" | "DELETE"), ["entities", entity, "checks", id]) => {
            one(state, method, Some(entity), id)
        }
        (_, ["entities", ..]) => fault(405, "methodNotAllowed", "Method not allowed."),
        _ => fault(404, "notFoundError", "Resource not found."),
    };
    (answer, lose)
}

fn injected(status: u16) -> Answer {
    let mut answer = match status {
        429 => fault(
            429,
            "rateLimitReached",
            "Rate limit has been reached. Please wait before trying again.",
        ),
        401 => fault(
            401,
            "unauthorizedError",
            "Unable to authenticate user with credentials provided.",
        ),
        s if s >= 500 => fault(
            s,
            "systemFailureError",
            "The system is experiencing heavy load or another system failure.",
        ),
        s => fault(s, "badRequest", "Simulated fault."),
    };
    if status == 429 {
        answer.headers.push(("Retry-After", "1".into()));
    }
    answer
}

fn create(request: &Request, state: &mut State, entity: Option<&str>) -> Answer {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&request.body) else {
        return fault(400, "badRequest", "The request body is not a JSON object.");
    };
    let parent = match entity {
        Some(id) => match state.things.get(id) {
            Some(parent) if parent.entity_id.is_none() => Some(parent.clone()),
            _ => return fault(404, "parentNotFoundError", "Parent entity does not exist."),
        },
        None => None,
    };
    if let Err(message) = match &parent {
        None => check_entity(&body),
        Some(parent) => check_check(&body, parent),
    } {
        return fault(400, "badRequest", &message);
    }
    let prefix = if parent.is_some() { "ch" } else { "en" };
    let id = new_id(state, prefix);
    let label = body
        .get("label")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let thing = MonitoringThing {
        id: id.clone(),
        entity_id: entity.map(str::to_owned),
        label,
        created_at: now_ms(),
        body: Value::Object(body),
    };
    state.things.insert(id.clone(), thing);
    let location = match entity {
        Some(e) => format!("{}entities/{e}/checks/{id}", state.base),
        None => format!("{}entities/{id}", state.base),
    };
    Answer::empty(201)
        .with("Location", location)
        .with("X-Object-ID", id)
}

fn check_entity(body: &Map<String, Value>) -> std::result::Result<(), String> {
    for key in body.keys() {
        if ![
            "label",
            "agent_id",
            "ip_addresses",
            "metadata",
            "managed",
            "uri",
        ]
        .contains(&key.as_str())
        {
            return Err(format!("Validation error for key '{key}': unknown key"));
        }
    }
    match body.get("label").and_then(Value::as_str) {
        Some(l) if (1..=255).contains(&l.chars().count()) => {}
        _ => {
            return Err("Validation error for key 'label': a string of 1 to 255 characters".into());
        }
    }
    if let Some(agent) = body.get("agent_id")
        && !agent.as_str().is_some_and(|a| {
            (1..=255).contains(&a.len())
                && a.chars().all(|c| c.is_alphanumeric() || "-._".contains(c))
        })
    {
        return Err("Validation error for key 'agent_id'".into());
    }
    for (key, value) in body
        .get("ip_addresses")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if value
            .as_str()
            .and_then(|v| v.parse::<IpAddr>().ok())
            .is_none()
        {
            return Err(format!(
                "Validation error for key 'ip_addresses.{key}': not an IP address"
            ));
        }
    }
    check_metadata(body)
}

fn check_metadata(body: &Map<String, Value>) -> std::result::Result<(), String> {
    match body.get("metadata") {
        None => Ok(()),
        Some(Value::Object(map))
            if map
                .values()
                .all(|v| v.as_str().is_some_and(|s| (1..=255).contains(&s.len()))) =>
        {
            Ok(())
        }
        Some(_) => {
            Err("Validation error for key 'metadata': string values of 1 to 255 characters".into())
        }
    }
}

fn check_check(
    body: &Map<String, Value>,
    entity: &MonitoringThing,
) -> std::result::Result<(), String> {
    const KEYS: &[&str] = &[
        "label",
        "type",
        "details",
        "monitoring_zones_poll",
        "timeout",
        "period",
        "target_alias",
        "target_hostname",
        "target_resolver",
        "disabled",
        "metadata",
    ];
    if let Some(key) = body.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("Validation error for key '{key}': unknown key"));
    }
    let kind = body.get("type").and_then(Value::as_str).unwrap_or_default();
    if !(kind.starts_with("remote.") || kind.starts_with("agent.")) {
        return Err("Validation error for key 'type': a check type such as remote.ping".into());
    }
    if kind.starts_with("remote.") {
        let zones = body.get("monitoring_zones_poll").and_then(Value::as_array);
        if zones.is_none_or(|z| z.is_empty()) {
            return Err(
                "Validation error for key 'monitoring_zones_poll': required for remote checks"
                    .into(),
            );
        }
        let alias = body.get("target_alias").and_then(Value::as_str);
        let known = alias.is_some_and(|a| entity.body["ip_addresses"].get(a).is_some());
        if !known && body.get("target_hostname").is_none() {
            return Err(
                "Validation error for key 'target_alias': not one of the entity's ip_addresses"
                    .into(),
            );
        }
    }
    check_metadata(body)
}

fn list(request: &Request, state: &State, entity: Option<&str>, path: &str) -> Answer {
    let query = request.query_pairs();
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(l)) if (1..=1000).contains(&l) => l,
        Some(_) => return fault(400, "invalidLimit", "Invalid limit has been specified."),
    };
    let marker = query.get("marker").cloned();
    let all: Vec<&MonitoringThing> = state
        .things
        .values()
        .filter(|t| t.entity_id.as_deref() == entity)
        .filter(|t| marker.as_ref().is_none_or(|m| &t.id >= m))
        .collect();
    let values: Vec<Value> = all.iter().take(limit).map(|t| item(t)).collect();
    let next = all.get(limit).map(|t| t.id.clone());
    let next_href = next
        .as_ref()
        .map(|n| format!("{}{path}?limit={limit}&marker={n}", state.base));
    Answer::json(
        200,
        &json!({
            "values": values,
            "metadata": {
                "count": values.len(),
                "limit": limit,
                "marker": marker,
                "next_marker": next,
                "next_href": next_href
            }
        }),
    )
}

fn item(thing: &MonitoringThing) -> Value {
    let mut value = match &thing.body {
        Value::Object(map) => Value::Object(map.clone()),
        _ => json!({}),
    };
    value["id"] = json!(thing.id);
    value["label"] = json!(thing.label);
    value["created_at"] = json!(thing.created_at);
    value["updated_at"] = json!(thing.created_at);
    value
}

fn one(state: &mut State, method: &str, entity: Option<&str>, id: &str) -> Answer {
    if let Some(entity) = entity
        && !state.things.contains_key(entity)
    {
        return fault(404, "parentNotFoundError", "Parent entity does not exist.");
    }
    let found = state
        .things
        .get(id)
        .filter(|t| t.entity_id.as_deref() == entity)
        .cloned();
    let Some(thing) = found else {
        return fault(404, "notFoundError", "Object does not exist.");
    };
    if method == "GET" {
        return Answer::json(200, &item(&thing));
    }
    state.things.remove(id);
    if entity.is_none() {
        state
            .things
            .retain(|_, t| t.entity_id.as_deref() != Some(id));
    }
    Answer::empty(204)
}
