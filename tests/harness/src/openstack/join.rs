//! Playing cloud-init: servers of the fake driver become fleet hosts.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use super::project::Credentials;
use super::rest::ApiSession;
use crate::SshFleet;
use crate::error::{HarnessError, Result, io};

/// The external network of a floating-IP join
/// ([`OpenStack::join_floating_ips_to`](super::OpenStack::join_floating_ips_to)): its
/// floating addresses are the fleet's host addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloatingNetwork {
    /// The network's id.
    pub id: String,
    /// The network's name (`gate-test-<label>-<pid>-<n>`).
    pub name: String,
    /// Its floating addresses, one per fleet host.
    pub addresses: Vec<String>,
}

/// A server that was given a fleet host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The server's id.
    pub server_id: String,
    /// The server's name.
    pub server_name: String,
    /// The fleet host's name (`fleet-1`, …).
    pub host: String,
    /// The fleet host's address: the server's `accessIPv4`, or in a floating-IP join the
    /// floating address associated with its port.
    pub address: String,
    /// The public keys installed from the user data.
    pub keys: Vec<String>,
}

/// The running join task of [`OpenStack::join_servers_to`](super::OpenStack::join_servers_to);
/// stops on drop and gives every host back its own `authorized_keys`.
#[derive(Debug)]
pub struct JoinGuard<'fleet> {
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
    fleet: PhantomData<&'fleet SshFleet>,
    floating: Option<(FloatingNetwork, Credentials)>,
}

/// What a join watches for.
#[derive(Debug, Clone)]
enum Mode {
    /// An ACTIVE server gets a free host, whose address becomes its `accessIPv4`.
    AccessIp,
    /// A floating IP of this network associated with an ACTIVE server's port gets the host
    /// with that address.
    Floating(String),
}

#[derive(Debug)]
struct State {
    stop: AtomicBool,
    joined: Mutex<Vec<Joined>>,
    errors: Mutex<Vec<String>>,
}

/// One fleet host as the join task sees it.
#[derive(Debug)]
struct Slot {
    name: String,
    address: String,
    authorized_keys: PathBuf,
    original: String,
    server: Option<String>,
    /// The floating IP that brought the server here (floating-IP join).
    floating: Option<String>,
}

impl JoinGuard<'_> {
    /// The external network of a floating-IP join (`None` for an `accessIPv4` join).
    pub fn floating_network(&self) -> Option<&FloatingNetwork> {
        self.floating.as_ref().map(|(network, _)| network)
    }

    /// The servers joined so far (deleted ones too), oldest first.
    pub fn joined(&self) -> Vec<Joined> {
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

    /// Waits until server `server_id` is joined (polling, up to `timeout`).
    pub fn wait_joined(&self, server_id: &str, timeout: Duration) -> Result<Joined> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.joined().into_iter().find(|j| j.server_id == server_id) {
                return Ok(found);
            }
            if Instant::now() > deadline {
                return Err(HarnessError::NotReady {
                    host: format!("server {server_id}"),
                    seconds: timeout.as_secs(),
                    detail: format!("not joined to a fleet host; errors: {:?}", self.errors()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for JoinGuard<'_> {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some((network, admin)) = &self.floating
            && let Ok(session) = admin.session()
        {
            let path = format!("/_harness/external-networks/{}", network.id);
            let _ = session.call("DELETE", "network", &path, None);
        }
    }
}

pub(crate) fn start<'fleet>(
    admin: &Credentials,
    fleet: &'fleet SshFleet,
    project: Option<&str>,
) -> Result<JoinGuard<'fleet>> {
    spawn(admin, fleet, project, Mode::AccessIp, None)
}

/// A floating-IP join: makes the external network `name` with the fleet's addresses.
pub(crate) fn start_floating<'fleet>(
    admin: &Credentials,
    fleet: &'fleet SshFleet,
    project: Option<&str>,
    name: &str,
) -> Result<JoinGuard<'fleet>> {
    let addresses: Vec<String> = fleet.hosts().iter().map(|h| h.address()).collect();
    let session = admin.session()?;
    let made = session.call_ok(
        "POST",
        "network",
        "/_harness/external-networks",
        Some(&json!({"name": name, "addresses": addresses})),
    )?;
    let network = FloatingNetwork {
        id: made["network"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        name: name.to_owned(),
        addresses,
    };
    spawn(
        admin,
        fleet,
        project,
        Mode::Floating(network.id.clone()),
        Some((network, admin.clone())),
    )
}

fn spawn<'fleet>(
    admin: &Credentials,
    fleet: &'fleet SshFleet,
    project: Option<&str>,
    mode: Mode,
    floating: Option<(FloatingNetwork, Credentials)>,
) -> Result<JoinGuard<'fleet>> {
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
            server: None,
            floating: None,
        });
    }
    let state = Arc::new(State {
        stop: AtomicBool::new(false),
        joined: Mutex::new(Vec::new()),
        errors: Mutex::new(Vec::new()),
    });
    let session = admin.session()?;
    let thread = {
        let (state, admin) = (state.clone(), admin.clone());
        let filter = project.map(str::to_owned);
        std::thread::Builder::new()
            .name("openstack-join".into())
            .spawn(move || watch(&state, &admin, session, filter.as_deref(), &mode, slots))
            .map_err(io("starting the join thread"))?
    };
    Ok(JoinGuard {
        state,
        thread: Some(thread),
        fleet: PhantomData,
        floating,
    })
}

/// The join loop: every 200 ms, the servers of the project (or all), until stopped.
fn watch(
    state: &State,
    admin: &Credentials,
    mut session: ApiSession,
    project: Option<&str>,
    mode: &Mode,
    mut slots: Vec<Slot>,
) {
    let path = match project {
        Some(project) => format!("/servers/detail?all_tenants=1&project_id={project}"),
        None => "/servers/detail?all_tenants=1".to_owned(),
    };
    let record = |error: String| {
        if let Ok(mut errors) = state.errors.lock()
            && errors.last() != Some(&error)
        {
            errors.push(error);
        }
    };
    let mut seen_at: HashMap<String, Instant> = HashMap::new();
    while !state.stop.load(Ordering::SeqCst) {
        let servers = match session.call("GET", "compute", &path, None) {
            Ok(answer) if answer.status == 401 => {
                match admin.session() {
                    Ok(fresh) => session = fresh,
                    Err(error) => record(error.to_string()),
                }
                continue;
            }
            Ok(answer) if answer.status == 200 => answer.json(),
            Ok(answer) => {
                record(format!(
                    "listing servers: HTTP {}: {}",
                    answer.status,
                    answer.text()
                ));
                Value::Null
            }
            Err(error) => {
                record(error.to_string());
                Value::Null
            }
        };
        if let (Some(servers), Mode::Floating(network)) = (servers["servers"].as_array(), mode) {
            let path = format!("/v2.0/floatingips?floating_network_id={network}");
            match session.call_ok("GET", "network", &path, None) {
                Ok(answer) => {
                    let fips = answer["floatingips"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    release_unfloated(&mut slots, servers, &fips);
                    for fip in &fips {
                        match join_floating(&session, servers, fip, &mut slots) {
                            Ok(Some(joined)) => {
                                if let Ok(mut all) = state.joined.lock() {
                                    all.push(joined);
                                }
                            }
                            Ok(None) => {}
                            Err(error) => record(format!(
                                "floating IP {}: {error}",
                                fip["id"].as_str().unwrap_or_default()
                            )),
                        }
                    }
                }
                Err(error) => record(error.to_string()),
            }
        } else if let Some(servers) = servers["servers"].as_array() {
            release_gone(&mut slots, servers);
            for server in servers {
                let id = server["id"].as_str().unwrap_or_default();
                let taken = slots.iter().any(|s| s.server.as_deref() == Some(id));
                // Only ACTIVE servers: an address set while Nova's compute still builds
                // the server may be lost when the compute saves the instance.
                if server["status"] != "ACTIVE" || taken || seen_at.contains_key(id) {
                    continue;
                }
                match join_one(&session, server, &mut slots) {
                    Ok(joined) => {
                        seen_at.insert(id.to_owned(), Instant::now());
                        if let Ok(mut all) = state.joined.lock() {
                            all.push(joined);
                        }
                    }
                    Err(error) => record(format!("server {id}: {error}")),
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for slot in slots.iter().filter(|s| s.server.is_some()) {
        let _ = std::fs::write(&slot.authorized_keys, &slot.original);
    }
}

/// Gives the hosts of deleted servers back their own keys.
fn release_gone(slots: &mut [Slot], servers: &[Value]) {
    for slot in slots.iter_mut() {
        let Some(server) = slot.server.clone() else {
            continue;
        };
        let alive = servers
            .iter()
            .any(|s| s["id"] == server.as_str() && s["status"] != "DELETED");
        if !alive {
            let _ = std::fs::write(&slot.authorized_keys, &slot.original);
            slot.server = None;
        }
    }
}

/// Gives the hosts whose floating IP is gone, disassociated or moved (or whose server is
/// gone) their own keys back.
fn release_unfloated(slots: &mut [Slot], servers: &[Value], fips: &[Value]) {
    for slot in slots.iter_mut() {
        let (Some(server), Some(floating)) = (slot.server.clone(), slot.floating.clone()) else {
            continue;
        };
        let server_alive = servers
            .iter()
            .any(|s| s["id"] == server.as_str() && s["status"] != "DELETED");
        let still_floated = fips.iter().any(|f| {
            f["id"] == floating.as_str()
                && !f["port_id"].is_null()
                && f["floating_ip_address"] == slot.address.as_str()
        });
        if !server_alive || !still_floated {
            let _ = std::fs::write(&slot.authorized_keys, &slot.original);
            slot.server = None;
            slot.floating = None;
        }
    }
}

/// For a floating IP just associated with an ACTIVE server's port (still `DOWN`): the
/// server's keys go to the host with the floating address, then the floating IP turns
/// `ACTIVE`. `None` when there is nothing to do (yet).
fn join_floating(
    session: &ApiSession,
    servers: &[Value],
    fip: &Value,
    slots: &mut [Slot],
) -> Result<Option<Joined>> {
    let (Some(fip_id), Some(port_id), Some(address)) = (
        fip["id"].as_str(),
        fip["port_id"].as_str(),
        fip["floating_ip_address"].as_str(),
    ) else {
        return Ok(None);
    };
    if fip["status"] != "DOWN" {
        return Ok(None);
    }
    let port = session.call_ok("GET", "network", &format!("/v2.0/ports/{port_id}"), None)?;
    let device = port["port"]["device_id"].as_str().unwrap_or_default();
    let Some(server) = servers
        .iter()
        .find(|s| s["id"] == device && s["status"] == "ACTIVE")
    else {
        return Ok(None);
    };
    let slot = slots
        .iter_mut()
        .find(|slot| slot.address == address)
        .ok_or_else(|| HarnessError::Command {
            command: "joining a floating IP to the fleet".into(),
            detail: format!("no fleet host has the address {address}"),
        })?;
    if slot.server.as_deref().is_some_and(|s| s != device) {
        let _ = std::fs::write(&slot.authorized_keys, &slot.original);
    }
    let keys = install_keys(server, slot)?;
    slot.server = Some(device.to_owned());
    slot.floating = Some(fip_id.to_owned());
    let status = json!({"status": "ACTIVE"});
    let path = format!("/_harness/floatingips/{fip_id}/status");
    if let Err(error) = session.call_ok("POST", "network", &path, Some(&status)) {
        let _ = std::fs::write(&slot.authorized_keys, &slot.original);
        slot.server = None;
        slot.floating = None;
        return Err(error);
    }
    Ok(Some(Joined {
        server_id: device.to_owned(),
        server_name: server["name"].as_str().unwrap_or_default().to_owned(),
        host: slot.name.clone(),
        address: slot.address.clone(),
        keys,
    }))
}

/// Appends the keys of `server`'s user data to the host's root `authorized_keys`.
fn install_keys(server: &Value, slot: &Slot) -> Result<Vec<String>> {
    let user_data = server["OS-EXT-SRV-ATTR:user_data"]
        .as_str()
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let keys = keys_from_user_data(&user_data);
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
    Ok(keys)
}

/// Installs the user data's keys on a free host and sets the server's `accessIPv4`.
fn join_one(session: &ApiSession, server: &Value, slots: &mut [Slot]) -> Result<Joined> {
    let id = server["id"].as_str().unwrap_or_default();
    let slot = slots
        .iter_mut()
        .find(|slot| slot.server.is_none())
        .ok_or_else(|| HarnessError::Command {
            command: "joining a server to the fleet".into(),
            detail: "no free fleet host".into(),
        })?;
    let keys = install_keys(server, slot)?;
    slot.server = Some(id.to_owned());
    let address = json!({"server": {"accessIPv4": slot.address}});
    if let Err(error) = session.call_ok("PUT", "compute", &format!("/servers/{id}"), Some(&address))
    {
        // Not joined after all: the host is free again, and the next pass retries.
        let _ = std::fs::write(&slot.authorized_keys, &slot.original);
        slot.server = None;
        return Err(error);
    }
    Ok(Joined {
        server_id: id.to_owned(),
        server_name: server["name"].as_str().unwrap_or_default().to_owned(),
        host: slot.name.clone(),
        address: slot.address.clone(),
        keys,
    })
}

/// The SSH public keys a server's user data gives root: the `ssh_authorized_keys` (at any
/// depth, e.g. under `users:`) of a `#cloud-config`, else every public key line found in
/// the text (a script, or a multipart document).
pub(crate) fn keys_from_user_data(user_data: &str) -> Vec<String> {
    if user_data.starts_with("#cloud-config")
        && let Ok(document) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(user_data)
    {
        let mut keys = Vec::new();
        collect_yaml_keys(&document, &mut keys);
        return keys;
    }
    scan_keys(user_data)
}

fn collect_yaml_keys(value: &serde_yaml_ng::Value, keys: &mut Vec<String>) {
    use serde_yaml_ng::Value as Y;
    match value {
        Y::Mapping(map) => {
            for (key, value) in map {
                if key.as_str() == Some("ssh_authorized_keys") {
                    match value {
                        Y::String(one) => keys.push(one.trim().to_owned()),
                        Y::Sequence(many) => keys.extend(
                            many.iter()
                                .filter_map(|k| k.as_str())
                                .map(|k| k.trim().to_owned()),
                        ),
                        _ => {}
                    }
                } else {
                    collect_yaml_keys(value, keys);
                }
            }
        }
        Y::Sequence(items) => items.iter().for_each(|item| collect_yaml_keys(item, keys)),
        _ => {}
    }
}

/// Every `<type> <base64>` public key in `text` (comments are not kept).
fn scan_keys(text: &str) -> Vec<String> {
    const TYPES: [&str; 7] = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    let tokens: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | '[' | ']'))
        .filter(|t| !t.is_empty())
        .collect();
    let mut keys = Vec::new();
    for pair in tokens.windows(2) {
        if TYPES.contains(&pair[0]) && pair[1].starts_with("AAAA") {
            let key = format!("{} {}", pair[0], pair[1]);
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_cloud_config_and_from_scripts() {
        let cloud_config = "#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 AAAAC3x a@b\n\
                            users:\n  - name: root\n    ssh_authorized_keys: [ssh-rsa AAAAB3y c]\n";
        assert_eq!(
            keys_from_user_data(cloud_config),
            ["ssh-ed25519 AAAAC3x a@b", "ssh-rsa AAAAB3y c"]
        );
        let script = "#!/bin/sh\necho 'ssh-ed25519 AAAAC3z ci' >> /root/.ssh/authorized_keys\n";
        assert_eq!(keys_from_user_data(script), ["ssh-ed25519 AAAAC3z"]);
        assert!(keys_from_user_data("").is_empty());
    }
}
