//! Playing cloud-init for Ironic's fake hardware: `active` nodes become fleet hosts with
//! the keys of their config drive.

use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Ironic;
use crate::SshFleet;
use crate::error::{HarnessError, Result, io};
use crate::openstack::join::keys_from_user_data;

/// A node that was given a fleet host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedNode {
    /// The node's UUID.
    pub uuid: String,
    /// The node's name.
    pub name: String,
    /// The fleet host's name (`fleet-1`, …).
    pub host: String,
    /// The fleet host's address, now the node's `instance_info/address`.
    pub address: String,
    /// The public keys installed from the config drive.
    pub keys: Vec<String>,
}

/// The running join task of [`Ironic::join_nodes_to`]; stops on drop and gives every host
/// back its own `authorized_keys`.
#[derive(Debug)]
pub struct IronicJoin<'a> {
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
    borrowed: PhantomData<(&'a SshFleet, &'a Ironic)>,
}

#[derive(Debug)]
struct State {
    stop: AtomicBool,
    joined: Mutex<Vec<JoinedNode>>,
    errors: Mutex<Vec<String>>,
}

/// One fleet host as the join task sees it.
#[derive(Debug)]
struct Slot {
    name: String,
    address: String,
    authorized_keys: PathBuf,
    original: String,
    node: Option<String>,
}

impl IronicJoin<'_> {
    /// The nodes joined so far (released ones too), oldest first.
    pub fn joined(&self) -> Vec<JoinedNode> {
        self.state
            .joined
            .lock()
            .map(|joined| joined.clone())
            .unwrap_or_default()
    }

    /// What went wrong so far (no free host, a failed API call), oldest first.
    pub fn errors(&self) -> Vec<String> {
        self.state
            .errors
            .lock()
            .map(|errors| errors.clone())
            .unwrap_or_default()
    }

    /// Waits until node `name` is joined (polling, up to `timeout`).
    pub fn wait_joined(&self, name: &str, timeout: Duration) -> Result<JoinedNode> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.joined().into_iter().find(|j| j.name == name) {
                return Ok(found);
            }
            if Instant::now() > deadline {
                return Err(HarnessError::NotReady {
                    host: format!("Ironic node {name}"),
                    seconds: timeout.as_secs(),
                    detail: format!("not joined to a fleet host; errors: {:?}", self.errors()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for IronicJoin<'_> {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub(super) fn start<'a>(
    ironic: &'a Ironic,
    fleet: &'a SshFleet,
    resource_class: &str,
) -> Result<IronicJoin<'a>> {
    let mut slots = Vec::new();
    for host in fleet.hosts() {
        let authorized_keys = host.host_path("/root/.ssh/authorized_keys");
        let original = std::fs::read_to_string(&authorized_keys)
            .map_err(io(format!("reading {}", authorized_keys.display())))?;
        slots.push(Slot {
            name: host.name().to_owned(),
            address: host.address(),
            authorized_keys,
            original,
            node: None,
        });
    }
    let state = Arc::new(State {
        stop: AtomicBool::new(false),
        joined: Mutex::new(Vec::new()),
        errors: Mutex::new(Vec::new()),
    });
    // The thread outlives no borrow: the guard joins it on drop. It gets what it needs by
    // value: the endpoint is all there is to Ironic's noauth API.
    let endpoint = ironic.endpoint();
    let class = resource_class.to_owned();
    let thread = {
        let state = state.clone();
        std::thread::Builder::new()
            .name("ironic-join".into())
            .spawn(move || watch(&state, &endpoint, &class, slots))
            .map_err(io("starting the Ironic join thread"))?
    };
    Ok(IronicJoin {
        state,
        thread: Some(thread),
        borrowed: PhantomData,
    })
}

fn call(endpoint: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let text = body.map(Value::to_string);
    let answer = super::request(
        method,
        &format!("{endpoint}/v1{path}"),
        &[("X-OpenStack-Ironic-API-Version", super::IRONIC_API_VERSION)],
        text.as_deref()
            .map(|text| ("application/json", text.as_bytes())),
    )?;
    if (200..300).contains(&answer.status) {
        Ok(answer.json())
    } else {
        Err(HarnessError::Command {
            command: format!("{method} ironic {path}"),
            detail: format!("HTTP {}: {}", answer.status, answer.text()),
        })
    }
}

/// The join loop: every 200 ms, the nodes of the resource class, until stopped.
fn watch(state: &State, endpoint: &str, class: &str, mut slots: Vec<Slot>) {
    let record = |error: String| {
        if let Ok(mut errors) = state.errors.lock()
            && errors.last() != Some(&error)
        {
            errors.push(error);
        }
    };
    let path = format!("/nodes/detail?resource_class={class}");
    while !state.stop.load(Ordering::SeqCst) {
        match call(endpoint, "GET", &path, None) {
            Ok(list) => {
                let nodes = list["nodes"].as_array().cloned().unwrap_or_default();
                release_left(&mut slots, &nodes);
                for node in &nodes {
                    let uuid = node["uuid"].as_str().unwrap_or_default();
                    let taken = slots.iter().any(|s| s.node.as_deref() == Some(uuid));
                    if node["provision_state"] != "active" || taken {
                        continue;
                    }
                    match join_one(endpoint, node, &mut slots) {
                        Ok(joined) => {
                            if let Ok(mut all) = state.joined.lock() {
                                all.push(joined);
                            }
                        }
                        Err(error) => record(format!("node {uuid}: {error}")),
                    }
                }
            }
            Err(error) => record(error.to_string()),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for slot in slots.iter().filter(|s| s.node.is_some()) {
        let _ = std::fs::write(&slot.authorized_keys, &slot.original);
    }
}

/// Gives the hosts of nodes that left `active` back their own keys.
fn release_left(slots: &mut [Slot], nodes: &[Value]) {
    for slot in slots.iter_mut() {
        let Some(uuid) = slot.node.clone() else {
            continue;
        };
        let active = nodes
            .iter()
            .any(|n| n["uuid"] == uuid.as_str() && n["provision_state"] == "active");
        if !active {
            let _ = std::fs::write(&slot.authorized_keys, &slot.original);
            slot.node = None;
        }
    }
}

/// Installs the config drive's keys on a free host and sets the node's address.
fn join_one(endpoint: &str, node: &Value, slots: &mut [Slot]) -> Result<JoinedNode> {
    let uuid = node["uuid"].as_str().unwrap_or_default();
    let slot = slots
        .iter_mut()
        .find(|slot| slot.node.is_none())
        .ok_or_else(|| HarnessError::Command {
            command: "joining an Ironic node to the fleet".into(),
            detail: "no free fleet host".into(),
        })?;
    let keys = drive_keys(&node["instance_info"]["configdrive"]);
    let mut text = slot.original.clone();
    for key in &keys {
        if !text.ends_with('\n') && !text.is_empty() {
            text.push('\n');
        }
        text.push_str(key);
        text.push('\n');
    }
    std::fs::write(&slot.authorized_keys, text)
        .map_err(io(format!("writing {}", slot.authorized_keys.display())))?;
    slot.node = Some(uuid.to_owned());
    let patch = json!([{"op": "add", "path": "/instance_info/address", "value": slot.address}]);
    if let Err(error) = call(endpoint, "PATCH", &format!("/nodes/{uuid}"), Some(&patch)) {
        // Not joined after all (the node is locked, say): the next pass retries.
        let _ = std::fs::write(&slot.authorized_keys, &slot.original);
        slot.node = None;
        return Err(error);
    }
    Ok(JoinedNode {
        uuid: uuid.to_owned(),
        name: node["name"].as_str().unwrap_or_default().to_owned(),
        host: slot.name.clone(),
        address: slot.address.clone(),
        keys,
    })
}

/// The keys of a JSON config drive: its user data's (a `#cloud-config`'s
/// `ssh_authorized_keys`, else every key in a script), then its meta data's
/// `public_keys`. An ISO image or a URL (not made by this Ironic) gives none.
fn drive_keys(drive: &Value) -> Vec<String> {
    let mut keys = drive["user_data"]
        .as_str()
        .map(keys_from_user_data)
        .unwrap_or_default();
    for key in drive["meta_data"]["public_keys"]
        .as_object()
        .into_iter()
        .flat_map(|all| all.values())
        .filter_map(Value::as_str)
    {
        if !keys.iter().any(|k| key.starts_with(k.as_str())) {
            keys.push(key.to_owned());
        }
    }
    keys
}
