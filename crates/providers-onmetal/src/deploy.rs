//! Ironic mode: pick `available` nodes, mark and deploy each with a config drive carrying
//! the keys, wait for `active`, an address and SSH.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gate_core::ledger::Resource;
use gate_core::{AllocateContext, Error, Host, HostOutcome, Inventory, Result, all_ok, bounded};
use gate_openstack::{Api, naming, userdata};
use serde_json::{Value, json};

use crate::ironic::{self, Node};
use crate::provider::{OnmetalProvider, error};
use crate::release::{instance_uuid, pointer};
use crate::{NAME, NODE};

/// What the nodes of one allocation share.
struct Plan<'a> {
    cx: &'a AllocateContext,
    api: Api,
    scope: String,
    user_data: String,
    public_keys: Value,
    /// The nodes each host starts with, then the spares taken when one was claimed by
    /// someone else in between.
    picks: Mutex<(Vec<Option<Node>>, VecDeque<Node>)>,
}

impl OnmetalProvider {
    /// Ironic mode's allocation.
    pub(crate) async fn allocate_ironic(&self, cx: &AllocateContext) -> Result<Inventory> {
        let api = self.api(self.config.region.as_deref(), &cx.cancel).await?;
        let count = self.host_count();
        let scope = self.node_scope();
        let mut candidates = self.candidates(&api, &scope, count).await?;
        let spares = candidates.split_off(count);
        let keys: Vec<String> = cx.keys.authorized().iter().map(|k| k.line()).collect();
        let user_data =
            userdata::with_root_keys(&keys, self.nova.user_data.as_deref()).map_err(error)?;
        let public_keys: serde_json::Map<String, Value> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| (format!("gate-{}", i + 1), Value::String(key.clone())))
            .collect();
        tracing::info!("{NAME}: {scope}: deploying {count} node(s)");
        let plan = Plan {
            cx,
            api,
            scope,
            user_data,
            public_keys: Value::Object(public_keys),
            picks: Mutex::new((candidates.into_iter().map(Some).collect(), spares.into())),
        };
        let limit = self.nova.concurrency.unwrap_or(cx.concurrency);
        let outcomes = bounded(0..count, limit, |slot| self.deploy_slot(&plan, slot)).await;
        if cx.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let hosts = all_ok(outcomes)?;
        Inventory::new(hosts).map_err(|e| error(e.to_string()))
    }

    /// The nodes to deploy, the first `count` first, spares after; fails without changing
    /// anything when fewer than `count` are free.
    async fn candidates(&self, api: &Api, scope: &str, count: usize) -> Result<Vec<Node>> {
        let to_core = |e: gate_openstack::Error| e.into_core(NAME);
        let class = self.config.resource_class.as_deref();
        if !self.config.nodes.is_empty() {
            let mut usable = Vec::new();
            let mut refused = Vec::new();
            for id in &self.config.nodes {
                match ironic::get(api, id).await.map_err(to_core)? {
                    None => refused.push(format!("`{id}` does not exist")),
                    Some(node) => match unusable(&node, class) {
                        Some(why) => refused.push(format!("`{id}` {why}")),
                        None => usable.push(node),
                    },
                }
            }
            if usable.len() < count {
                return Err(error(format!(
                    "{scope}: {count} node(s) wanted but only {} of the listed nodes can be deployed; nothing was changed: {}",
                    usable.len(),
                    refused.join("; ")
                )));
            }
            return Ok(usable);
        }
        let class = class.unwrap_or_default();
        let query = [
            ("provision_state", "available"),
            ("resource_class", class),
            ("associated", "false"),
            ("maintenance", "false"),
        ];
        let mut free: Vec<Node> = ironic::list(api, &query)
            .await
            .map_err(to_core)?
            .into_iter()
            .filter(|node| unusable(node, Some(class)).is_none())
            .collect();
        if free.len() < count {
            let names: Vec<&str> = free.iter().map(Node::label).collect();
            return Err(error(format!(
                "{scope}: {count} node(s) of resource class `{class}` wanted but {} available{}; nothing was changed",
                free.len(),
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", names.join(", "))
                }
            )));
        }
        naming::shuffle(&mut free);
        Ok(free)
    }

    /// One host: its node, else spares while nodes turn out to be taken.
    async fn deploy_slot(&self, plan: &Plan<'_>, slot: usize) -> HostOutcome<Host> {
        let mut first = take(plan, |(picks, _)| {
            picks.get_mut(slot).and_then(Option::take)
        });
        let mut taken = Vec::new();
        loop {
            let Some(node) = first
                .take()
                .or_else(|| take(plan, |(_, spares)| spares.pop_front()))
            else {
                return HostOutcome {
                    host: format!("host {}", slot + 1),
                    result: Err(error(format!(
                        "{}: not enough available nodes: {} were taken by someone else meanwhile",
                        plan.scope,
                        taken.join(", ")
                    ))),
                };
            };
            let label = node.label().to_owned();
            match self.deploy_one(plan, &node).await {
                Err(Taken) => taken.push(label),
                Ok(result) => {
                    return HostOutcome {
                        host: label,
                        result,
                    };
                }
            }
        }
    }

    /// Ledger intent, mark (claim), deploy, ledger created, `active`, address, SSH.
    /// `Err(Taken)` when someone else claimed the node first (nothing changed).
    async fn deploy_one(
        &self,
        plan: &Plan<'_>,
        node: &Node,
    ) -> std::result::Result<Result<Host>, Taken> {
        let cx = plan.cx;
        if cx.cancel.is_cancelled() {
            return Ok(Err(Error::Cancelled));
        }
        let label = node.label();
        let spec = Resource::new(NAME, NODE, plan.scope.clone(), label);
        let log = match cx.host_log(label) {
            Ok(log) => log,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = cx.ledger.intent(&spec).await {
            return Ok(Err(e));
        }
        let api = &plan.api;
        let to_core = |e: gate_openstack::Error| e.into_core(NAME);
        match ironic::patch(api, &node.uuid, &self.claim(cx, label)).await {
            Ok(_) => {}
            // A retried claim whose first answer was lost finds the node claimed by us.
            Err(e) if e.status() == Some(409) && self.ours_now(api, node, cx).await => {}
            Err(e) if e.status() == Some(409) => {
                log.note(&format!("{}: {label} was taken meanwhile: {e}", plan.scope));
                return match cx.ledger.released(&spec).await {
                    Ok(()) => Err(Taken),
                    Err(e) => Ok(Err(e)),
                };
            }
            Err(e) => return Ok(Err(to_core(e))),
        }
        log.note(&format!(
            "{}: deploying {label} ({})",
            plan.scope, node.uuid
        ));
        let result = async {
            let body = json!({"target": "active", "configdrive": self.configdrive(plan, node, cx)});
            match ironic::provision(api, &node.uuid, &body).await {
                Ok(()) => {}
                // A retried request whose first answer was lost finds the deploy going.
                Err(e)
                    if matches!(e.status(), Some(400 | 409)) && self.deploying(api, node).await => {
                }
                Err(e) => return Err(to_core(e)),
            }
            cx.ledger.created(&spec, &node.uuid).await?;
            let host = self.wait_deployed(plan, node, &log).await?;
            cx.connector.connect(&host, &cx.cancel).await?;
            log.note(&format!(
                "{}: {label} answers on {}:{}",
                plan.scope, host.address, host.port
            ));
            Ok(host)
        }
        .await;
        Ok(result)
    }

    /// Whether `node` is claimed by this run now.
    async fn ours_now(&self, api: &Api, node: &Node, cx: &AllocateContext) -> bool {
        let want = instance_uuid(&cx.run_id, node.label());
        matches!(ironic::get(api, &node.uuid).await, Ok(Some(now)) if now.instance_uuid == Some(want))
    }

    /// Whether `node` is on its way to `active` (or got there, or failed trying).
    async fn deploying(&self, api: &Api, node: &Node) -> bool {
        matches!(ironic::get(api, &node.uuid).await, Ok(Some(now))
            if now.provision_state != "available"
                && (now.target_provision_state.as_deref() == Some("active")
                    || now.provision_state == "active"))
    }

    /// The JSON patch that marks a node as this run's: the instance UUID (Ironic refuses a
    /// second claim with 409), the instance info, gate's tags in `extra`.
    fn claim(&self, cx: &AllocateContext, label: &str) -> Value {
        let add = |path: String, value: &str| json!({"op": "add", "path": path, "value": value});
        let mut ops = vec![add(
            "/instance_uuid".into(),
            &instance_uuid(&cx.run_id, label),
        )];
        let image = self.config.image_source.as_deref().unwrap_or_default();
        ops.push(add("/instance_info/image_source".into(), image));
        for (key, value) in &self.config.instance_info {
            ops.push(add(format!("/instance_info/{}", pointer(key)), value));
        }
        ops.push(add(
            format!("/instance_info/{}", naming::RUN_ID_KEY),
            cx.run_id.as_str(),
        ));
        for (key, value) in naming::tags(&cx.run_id, cx.job.as_deref()) {
            ops.push(add(format!("/extra/{}", pointer(&key)), &value));
        }
        Value::Array(ops)
    }

    /// The config drive: meta data with the keys and gate's tags, and gate's user data.
    fn configdrive(&self, plan: &Plan<'_>, node: &Node, cx: &AllocateContext) -> Value {
        let label = node.label();
        json!({
            "meta_data": {
                "uuid": instance_uuid(&cx.run_id, label),
                "name": label,
                "hostname": label,
                "public_keys": plan.public_keys,
                "meta": naming::tags(&cx.run_id, cx.job.as_deref()),
            },
            "user_data": plan.user_data,
        })
    }

    /// Waits for `active` (a failed deploy is released and named), then the address.
    async fn wait_deployed(
        &self,
        plan: &Plan<'_>,
        node: &Node,
        log: &gate_core::HostLog,
    ) -> Result<Host> {
        let api = &plan.api;
        let to_core = |e: gate_openstack::Error| e.into_core(NAME);
        let timeout = self.nova.boot_timeout();
        let poll = self.shared.poll();
        let started = Instant::now();
        let label = node.label();
        let done = |n: &Node| {
            (n.provision_state == "active" && n.target_provision_state.is_none())
                || matches!(n.provision_state.as_str(), "deploy failed" | "error")
        };
        let node = ironic::wait_for(api, &node.uuid, "becoming active", timeout, poll, done)
            .await
            .map_err(to_core)?
            .ok_or_else(|| error(format!("{}: node {label} disappeared", plan.scope)))?;
        if node.provision_state != "active" {
            return Err(self.failed_deploy(plan, &node).await);
        }
        log.note(&format!(
            "{}: {label} is active after {:.0}s",
            plan.scope,
            started.elapsed().as_secs_f64()
        ));
        let mut current = node;
        loop {
            if let Some(address) = self.address_of(&current) {
                return Ok(self.shared.host(label, address));
            }
            if started.elapsed() >= timeout {
                return Err(error(format!(
                    "{}: {label} is active but has no address at `{}` after {}s (or set addresses.\"{label}\")",
                    plan.scope,
                    self.config.address_field,
                    timeout.as_secs()
                )));
            }
            api.sleep(poll.min(Duration::from_secs(1)))
                .await
                .map_err(to_core)?;
            current = ironic::get(api, &current.uuid)
                .await
                .map_err(to_core)?
                .ok_or_else(|| error(format!("{}: node {label} disappeared", plan.scope)))?;
        }
    }

    /// A node's address: configured by name or UUID, else at `address_field`.
    fn address_of(&self, node: &Node) -> Option<String> {
        let by_config = |id: &str| self.config.addresses.get(id).cloned();
        node.name
            .as_deref()
            .and_then(by_config)
            .or_else(|| by_config(&node.uuid))
            .or_else(|| node.field(&self.config.address_field))
    }

    /// Releases a node whose deploy failed and names it with Ironic's `last_error`.
    async fn failed_deploy(&self, plan: &Plan<'_>, node: &Node) -> Error {
        let label = node.label();
        let why = node.last_error.as_deref().unwrap_or("no last_error given");
        let spec = Resource::new(NAME, NODE, plan.scope.clone(), label);
        let api = plan
            .api
            .clone()
            .with_cancel(&tokio_util::sync::CancellationToken::new());
        let released = match self.release(&api, &node.uuid, &plan.cx.run_id, label).await {
            Ok(()) => match plan.cx.ledger.released(&spec).await {
                Ok(()) => "it is released".to_owned(),
                Err(e) => format!("it is released, but the ledger says otherwise: {e}"),
            },
            Err(e) => format!("releasing it failed too, cleanup will try again: {e}"),
        };
        error(format!(
            "{}: node `{label}` ({}) failed to deploy: {why}; {released}",
            plan.scope, node.uuid
        ))
    }
}

/// Someone else claimed the node between the listing and the claim.
struct Taken;

/// Why `node` cannot be deployed now, if it cannot.
fn unusable(node: &Node, class: Option<&str>) -> Option<String> {
    if node.maintenance {
        return Some("is in maintenance".into());
    }
    if node.provision_state != "available" || node.target_provision_state.is_some() {
        return Some(format!("is `{}`, not `available`", node.provision_state));
    }
    if let Some(instance) = &node.instance_uuid {
        return Some(format!("is associated with instance {instance}"));
    }
    match class {
        Some(class) if node.resource_class.as_deref() != Some(class) => Some(format!(
            "is of resource class `{}`, not `{class}`",
            node.resource_class.as_deref().unwrap_or("none")
        )),
        _ => None,
    }
}

fn take<T>(
    plan: &Plan<'_>,
    pick: impl FnOnce(&mut (Vec<Option<Node>>, VecDeque<Node>)) -> Option<T>,
) -> Option<T> {
    plan.picks
        .lock()
        .ok()
        .and_then(|mut picks| pick(&mut picks))
}
