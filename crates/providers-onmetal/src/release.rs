//! Giving a node back: undeploy (`target: deleted`), wait for `available` (through
//! `cleaning` when automated cleaning is on), then take gate's marks off. Never deletes.

use std::time::Instant;

use gate_core::RunId;
use gate_openstack::{Api, naming};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::NAME;
use crate::ironic::{self, Node};
use crate::provider::OnmetalProvider;

/// States a node can be undeployed from.
const UNDEPLOYABLE: [&str; 6] = [
    "active",
    "deploy failed",
    "error",
    "wait call-back",
    "rescue",
    "rescue failed",
];

/// The instance UUID gate claims node `label` with for `run`: the same every time, so a
/// cleanup that has only the ledger's intent knows it too.
pub(crate) fn instance_uuid(run: &RunId, label: &str) -> String {
    let digest = Sha256::digest(format!("gate-onmetal\0{}\0{label}", run.as_str()));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // RFC 9562 version 8 (custom), variant 10.
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// `key` escaped for a JSON pointer (RFC 6901).
pub(crate) fn pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Whether `node` carries `run`'s mark: gate's run id in `extra` or `instance_info`, or
/// the instance UUID gate claims it with.
pub(crate) fn is_ours(node: &Node, run: &RunId, label: &str) -> bool {
    node.run_id().as_deref() == Some(run.as_str())
        || node.instance_uuid.as_deref() == Some(instance_uuid(run, label).as_str())
}

impl OnmetalProvider {
    /// Gives node `id` (UUID or name) back if it carries `run`'s mark: undeploys it, waits
    /// for `available`, takes the marks off. A node that is gone or not (or no longer)
    /// this run's is left alone.
    pub(crate) async fn release(
        &self,
        api: &Api,
        id: &str,
        run: &RunId,
        label: &str,
    ) -> gate_openstack::Result<()> {
        let timeout = self.shared.delete_timeout();
        let poll = self.shared.poll().min(std::time::Duration::from_secs(5));
        let deadline = Instant::now() + timeout;
        let mut undeploy_asked = false;
        loop {
            let Some(node) = ironic::get(api, id).await? else {
                return Ok(());
            };
            if !is_ours(&node, run, label) {
                return Ok(());
            }
            let state = node.provision_state.as_str();
            // A failed or waiting node keeps its target (`deploy failed` → `active`); an
            // active one with a target is on its way already.
            let idle =
                node.target_provision_state.is_none() || !matches!(state, "active" | "rescue");
            if idle && UNDEPLOYABLE.contains(&state) && !undeploy_asked {
                tracing::info!("{NAME}: undeploying node {} ({state})", node.label());
                match ironic::undeploy(api, &node.uuid).await {
                    Ok(()) => undeploy_asked = true,
                    // The node moved meanwhile: look again.
                    Err(e) if matches!(e.status(), Some(400 | 409)) => {
                        tracing::warn!("{NAME}: undeploying {}: {e}", node.label());
                    }
                    Err(e) => return Err(e),
                }
            } else if node.target_provision_state.is_none()
                && matches!(state, "available" | "manageable" | "enroll")
            {
                return unmark(api, &node, run, label).await;
            } else if state == "clean failed" {
                return Err(gate_openstack::Error::Api {
                    region: api.region().to_owned(),
                    method: "PUT".into(),
                    service: "baremetal".into(),
                    path: format!("nodes/{}/states/provision", node.uuid),
                    status: None,
                    message: format!(
                        "node {} failed cleaning after the undeploy ({}): it needs an operator",
                        node.label(),
                        node.last_error.as_deref().unwrap_or("no last_error given")
                    ),
                });
            } else if !UNDEPLOYABLE.contains(&state) {
                // On its way (deploying, deleting, cleaning, …): wait.
                undeploy_asked = false;
            }
            if Instant::now() >= deadline {
                return Err(gate_openstack::Error::Timeout {
                    region: api.region().to_owned(),
                    what: format!(
                        "node {} going back to `available` (it is `{state}`)",
                        node.label()
                    ),
                    after: timeout,
                });
            }
            api.sleep(poll).await?;
        }
    }
}

/// Takes gate's marks off a settled node: the instance UUID gate set, the instance info
/// (gate's, since the node was claimed for this run), gate's tags in `extra`.
async fn unmark(api: &Api, node: &Node, run: &RunId, label: &str) -> gate_openstack::Result<()> {
    let remove = |path: String| json!({"op": "remove", "path": path});
    let mut ops = Vec::new();
    let claimed = node.instance_uuid.as_deref() == Some(instance_uuid(run, label).as_str());
    if claimed {
        ops.push(remove("/instance_uuid".into()));
    }
    let info_ours = node
        .field(&format!("instance_info/{}", naming::RUN_ID_KEY))
        .as_deref()
        == Some(run.as_str());
    if (claimed || info_ours)
        && let Some(info) = node.raw["instance_info"].as_object()
    {
        ops.extend(
            info.keys()
                .map(|key| remove(format!("/instance_info/{}", pointer(key)))),
        );
    }
    if let Some(extra) = node.raw["extra"].as_object() {
        for key in [naming::RUN_ID_KEY, naming::CREATED_AT_KEY, naming::JOB_KEY] {
            if extra.contains_key(key) {
                ops.push(remove(format!("/extra/{}", pointer(key))));
            }
        }
    }
    if ops.is_empty() {
        return Ok(());
    }
    ironic::patch(api, &node.uuid, &Value::Array(ops))
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_uuid_is_stable_per_run_and_node_and_well_formed() {
        let run = RunId::try_from("gate-1234abcd".to_owned()).unwrap();
        let other = RunId::try_from("gate-5678abcd".to_owned()).unwrap();
        let a = instance_uuid(&run, "node-1");
        assert_eq!(a, instance_uuid(&run, "node-1"));
        assert_ne!(a, instance_uuid(&run, "node-2"));
        assert_ne!(a, instance_uuid(&other, "node-1"));
        let parts: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{a}");
        assert_eq!(&a[14..15], "8", "{a}");
    }

    #[test]
    fn pointer_escapes_tilde_and_slash() {
        assert_eq!(pointer("a/b~c"), "a~1b~0c");
    }
}
