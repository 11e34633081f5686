//! A simulator of Rackspace Cloud Monitoring's REST API (v1.0), over plain HTTP on
//! 127.0.0.1: the service itself cannot run on this machine.
//!
//! It follows the public API reference (docs-cloud-monitoring, "API operations"):
//!
//! - every request needs `X-Auth-Token` (else 401 `unauthorizedError`); paths are under
//!   `/v1.0/<tenant>/`;
//! - `POST entities` (`label` required, 1–255 characters; `agent_id`, `ip_addresses` (IP
//!   addresses), `metadata` (string values), `managed`, `uri`; any other key: 400) → 201,
//!   no body, `Location: …/entities/enXXXXXXXX` and `X-Object-ID`;
//! - `POST entities/<id>/checks` (`type` required, `remote.*` or `agent.*`; a remote check
//!   needs `monitoring_zones_poll` and a `target_alias` among the entity's `ip_addresses` or
//!   a `target_hostname`) → 201 with `Location`; 404 `parentNotFoundError` without the
//!   entity;
//! - `GET entities`, `GET entities/<id>/checks`: paginated collections sorted by id,
//!   `{"values": [...], "metadata": {count, limit, marker, next_marker, next_href}}`,
//!   `limit` 1–1000 (default 100), `marker` the first id of the page; every item has
//!   `created_at` and `updated_at` in milliseconds;
//! - `GET`/`DELETE` `entities/<id>` and `entities/<id>/checks/<id>` → 200 / 204, 404
//!   `notFoundError` when absent; deleting an entity deletes its checks.
//!
//! Faults are JSON like the service's (`{"type", "code", "message", "details"}`). Tests
//! inject them ([`MonitoringSim::fail_every`], [`MonitoringSim::fail_next`]), make the
//! simulator lose answers after doing the work ([`MonitoringSim::lose_next`]), change the
//! accepted token, add things behind gate's back, and read every request with its body.

mod api;
mod http;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use self::api::answer;
use self::http::Request;
use crate::error::Result;
use crate::wire::Listener;

/// A thing the simulator holds: an entity (no `entity_id`) or a check.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitoringThing {
    /// `enXXXXXXXX` or `chXXXXXXXX`.
    pub id: String,
    /// The entity a check belongs to.
    pub entity_id: Option<String>,
    /// Its label.
    pub label: String,
    /// When it was made, in milliseconds since 1970.
    pub created_at: u64,
    /// The JSON it was created with (empty for things a test added).
    pub body: Value,
}

/// A request the simulator received.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitoringRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The decoded path.
    pub path: String,
    /// The raw query, if any.
    pub query: String,
    /// The status it got (0: the answer was lost on purpose).
    pub status: u16,
    /// The body, as text.
    pub body: String,
    /// Whether it carried the right token.
    pub authenticated: bool,
}

#[derive(Debug)]
struct Fault {
    method: String,
    prefix: String,
    status: u16,
    remaining: usize,
    lose: bool,
}

#[derive(Debug, Default)]
struct State {
    tenant: String,
    token: String,
    base: String,
    things: BTreeMap<String, MonitoringThing>,
    faults: Vec<Fault>,
    every: Option<(usize, u16)>,
    count: usize,
    serial: u64,
    requests: Vec<MonitoringRequest>,
}

/// The Rackspace Cloud Monitoring simulator. Stops on drop.
#[derive(Debug)]
pub struct MonitoringSim {
    /// Serves until dropped.
    _listener: Listener,
    state: Arc<Mutex<State>>,
}

impl MonitoringSim {
    /// Starts an API for account `tenant` that accepts `token`.
    pub fn start(tenant: &str, token: &str) -> Result<MonitoringSim> {
        let state = Arc::new(Mutex::new(State {
            tenant: tenant.to_owned(),
            token: token.to_owned(),
            ..State::default()
        }));
        let shared = state.clone();
        let listener = Listener::start("monitoring simulator", move |stream, _| {
            serve(&stream, &shared);
        })?;
        lock(&state).base = format!("http://{}/v1.0/{tenant}/", listener.addr());
        Ok(MonitoringSim {
            _listener: listener,
            state,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The account's base URL, `http://127.0.0.1:PORT/v1.0/<tenant>/`.
    pub fn url(&self) -> String {
        self.lock().base.clone()
    }

    /// Every entity, by id.
    pub fn entities(&self) -> Vec<MonitoringThing> {
        let state = self.lock();
        state
            .things
            .values()
            .filter(|t| t.entity_id.is_none())
            .cloned()
            .collect()
    }

    /// Every check of every entity, by id.
    pub fn checks(&self) -> Vec<MonitoringThing> {
        let state = self.lock();
        state
            .things
            .values()
            .filter(|t| t.entity_id.is_some())
            .cloned()
            .collect()
    }

    /// Adds an entity (`entity_id: None`) or a check directly, made `age` ago with
    /// `metadata`, as another client (or an earlier, lost run) would have; returns its id.
    pub fn add(
        &self,
        entity_id: Option<&str>,
        label: &str,
        metadata: &[(&str, &str)],
        age: Duration,
    ) -> String {
        let mut state = self.lock();
        let id = new_id(&mut state, if entity_id.is_some() { "ch" } else { "en" });
        let metadata: Map<String, Value> = metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        let created_at = now_ms().saturating_sub(age.as_millis() as u64);
        let thing = MonitoringThing {
            id: id.clone(),
            entity_id: entity_id.map(str::to_owned),
            label: label.to_owned(),
            created_at,
            body: json!({ "label": label, "metadata": metadata }),
        };
        state.things.insert(id.clone(), thing);
        id
    }

    /// Removes a thing directly (an entity with its checks), as someone else deleting it
    /// would; whether it was there.
    pub fn remove(&self, id: &str) -> bool {
        let mut state = self.lock();
        state
            .things
            .retain(|_, t| t.entity_id.as_deref() != Some(id));
        state.things.remove(id).is_some()
    }

    /// Every `n`th request from now on (`n = 0`: none) is answered with `status` (503
    /// `systemFailureError`, 429 `rateLimitReached` with `Retry-After: 1`, …).
    pub fn fail_every(&self, n: usize, status: u16) {
        let mut state = self.lock();
        state.every = (n > 0).then_some((n, status));
        state.count = 0;
    }

    /// The next `n` requests with `method` (`""`: any) whose path, below the account,
    /// starts with `prefix` get `status` and change nothing.
    pub fn fail_next(&self, method: &str, prefix: &str, status: u16, n: usize) {
        self.fault(method, prefix, status, n, false);
    }

    /// The next `n` such requests are carried out, then the connection is closed without an
    /// answer (a lost answer, as after a network failure).
    pub fn lose_next(&self, method: &str, prefix: &str, n: usize) {
        self.fault(method, prefix, 0, n, true);
    }

    fn fault(&self, method: &str, prefix: &str, status: u16, n: usize, lose: bool) {
        self.lock().faults.push(Fault {
            method: method.to_owned(),
            prefix: prefix.to_owned(),
            status,
            remaining: n,
            lose,
        });
    }

    /// From now on only `token` is accepted (the old one has expired).
    pub fn set_token(&self, token: &str) {
        self.lock().token = token.to_owned();
    }

    /// The requests received so far, oldest first.
    pub fn requests(&self) -> Vec<MonitoringRequest> {
        self.lock().requests.clone()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// A fresh id: the prefix and 8 letters and digits, as the service's.
fn new_id(state: &mut State, prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    state.serial += 1;
    let mut n = state.serial.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1_e995;
    let mut id = prefix.to_owned();
    for _ in 0..8 {
        id.push(ALPHABET[(n % ALPHABET.len() as u64) as usize] as char);
        n /= ALPHABET.len() as u64;
    }
    id
}

fn serve(stream: &TcpStream, state: &Mutex<State>) {
    let Ok(request) = Request::read(stream) else {
        return;
    };
    let (answer, lose, authenticated) = {
        let mut state = lock(state);
        let authenticated = request.headers.get("x-auth-token") == Some(&state.token);
        let (answer, lose) = answer(&request, &mut state, authenticated);
        (answer, lose, authenticated)
    };
    lock(state).requests.push(MonitoringRequest {
        method: request.method.clone(),
        path: request.path.clone(),
        query: request.query.clone(),
        status: if lose { 0 } else { answer.status },
        body: String::from_utf8_lossy(&request.body).into_owned(),
        authenticated,
    });
    if lose {
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return;
    }
    let _ = answer.write(stream, false);
}
