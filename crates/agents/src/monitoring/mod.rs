//! The `monitoring` agent connector: registers every host with a monitoring service over a
//! generic REST API in the `connect` stage — the seed (rpc-gating) made Rackspace Cloud
//! Monitoring entities and checks per host and listed them in its resources file.
//!
//! Per host, each `[[agent.resources]]` entry is created in order: an `intent` line goes to
//! the ledger (backend `monitoring`, the entry's `kind`, scope the API's URL, name its
//! rendered `label`), then the create request (retried with backoff on 5xx, 429 and
//! connection errors), then a `created` line with the id read from the answer. An entry
//! with `parent` is created under the earlier one (`{parent_id}`), is its child in the
//! ledger, and is deleted before it; the first entry is a child of the host's own resource,
//! so it goes before the host's server. Its [`MonitoringCleaner`] deletes each thing by id
//! (404 counts as gone); for a thing whose create answer never came (only its intent is in
//! the ledger) it finds the thing by exact label *and* run id through `list`, or — without
//! `list` — fails naming it, so nothing is forgotten silently. `observe` and `sweep` (things
//! named `gate-…`, older than the age, by the creation time the list gives; nothing without
//! one) work for kinds with `list`.
//!
//! Values go into URLs percent-encoded and into bodies as JSON strings (the template is
//! parsed as JSON first), never pasted as text. The token is a secret: it is never in
//! `Debug`, logs or errors.
//!
//! Rackspace Cloud Monitoring, an entity and a ping check per host:
//!
//! ```toml
//! [agent]
//! backend = "monitoring"
//! url = "https://monitoring.api.rackspacecloud.com/v1.0/123456/"
//! token = { env = "RAX_AUTH_TOKEN" }      # sent as X-Auth-Token (`token_header`)
//! hosts = "all"                           # or "primary"
//!
//! [agent.api]
//! tries = 10                              # 5xx, 429 and connection errors; waits 1 s, 2 s, … ≤ 30 s
//!
//! [[agent.resources]]
//! kind = "entity"
//! label = "{run_id}-{name}"
//! create = "entities"                     # POST, relative to `url`
//! body = '''{"label": "{label}", "agent_id": "{name}",
//!            "ip_addresses": {"default": "{address}"},
//!            "metadata": {"gate_run_id": "{run_id}", "gate_created_at": "{created_at}"}}'''
//! id_from = "location"                    # 201 + Location: …/entities/enXXXX
//! delete = "entities/{id}"
//! list = { url = "entities", run_id = "/metadata/gate_run_id", created_at = "/created_at", next = "/metadata/next_href" }
//!
//! [[agent.resources]]
//! kind = "check"
//! parent = "entity"
//! label = "{run_id}-{name}-ping"
//! create = "entities/{parent_id}/checks"
//! body = '''{"label": "{label}", "type": "remote.ping", "monitoring_zones_poll": ["mzord"],
//!            "target_alias": "default", "period": 60, "timeout": 30}'''
//! delete = "entities/{parent_id}/checks/{id}"
//! list = { url = "entities/{parent_id}/checks", created_at = "/created_at", next = "/metadata/next_href" }
//! ```
//!
//! Installing the monitoring *agent* on the hosts is a `prepare-hosts` script step (it runs
//! after `connect`, so the entity exists; `agent_id` above is the host's name):
//!
//! ```toml
//! [preparer]
//! backend = "steps"
//! env = { MONITORING_AGENT_TOKEN = { env = "RAX_AGENT_TOKEN" } }
//!
//! [[preparer.steps]]
//! type = "script"
//! name = "monitoring agent"
//! hosts = "all"
//! script = '''
//! apt-get install -y rackspace-monitoring-agent
//! printf 'monitoring_id %s\nmonitoring_token %s\n' "$GATE_HOST" "$MONITORING_AGENT_TOKEN" \
//!   > /etc/rackspace-monitoring-agent.cfg
//! systemctl enable --now rackspace-monitoring-agent
//! '''
//! ```
//!
//! ```
//! let mut registry = gate_core::Registry::new();
//! gate_agents::register(&mut registry);
//! assert!(registry.has_cleaner(gate_agents::monitoring::NAME));
//! ```

mod api;
mod cleaner;
mod config;
mod connector;
mod list;
mod plan;
mod template;

pub use cleaner::MonitoringCleaner;
pub use config::{ListSettings, MonitoredHosts, MonitoringConfig, ResourceSettings, RetrySettings};
pub use connector::MonitoringConnector;

use std::sync::Arc;

use gate_core::Registry;

use self::plan::KindPlan;
use self::template::{decode_segment, encode_segment};

/// The registry name of the connector and its cleaner (and the ledger's backend name).
pub const NAME: &str = "monitoring";

/// Registers the `monitoring` connector and its cleaner.
pub fn register(registry: &mut Registry) {
    registry
        .add_agent(NAME, |config| {
            Ok(Arc::new(MonitoringConnector::from_config(config)?))
        })
        .add_cleaner(NAME, |config| {
            Ok(Arc::new(MonitoringCleaner::from_config(config)?))
        });
}

/// The ledger scope of a thing: the API's base URL, and for a child the parent's kind and
/// id after `#` (`https://api/v1.0/123/#entity=enAB12`), so cleanup can reach it from the
/// ledger line alone — even when only its intent was written.
pub(crate) fn scope(base: &str, parent: Option<&KindPlan>, parent_id: Option<&str>) -> String {
    match (parent, parent_id) {
        (Some(kind), Some(id)) => format!("{base}#{}={}", kind.kind, encode_segment(id)),
        _ => base.to_owned(),
    }
}

/// The parent id in a [`scope`], checked against the base URL and the parent kind.
pub(crate) fn parent_id_in(
    scope: &str,
    base: &str,
    parent: Option<&KindPlan>,
) -> Result<Option<String>, String> {
    let (url, fragment) = match scope.split_once('#') {
        Some((url, fragment)) => (url, Some(fragment)),
        None => (scope, None),
    };
    if url != base {
        return Err(format!(
            "it lives on {url}, but [agent] url is {base}; clean up with that API's config"
        ));
    }
    match (parent, fragment) {
        (None, None) => Ok(None),
        (Some(kind), Some(fragment)) => fragment
            .strip_prefix(&format!("{}=", kind.kind))
            .and_then(decode_segment)
            .filter(|id| !id.is_empty())
            .map(Some)
            .ok_or_else(|| format!("its scope `{scope}` does not name a {} id", kind.kind)),
        (None, Some(_)) => Err(format!(
            "its scope `{scope}` names a parent, but its kind has none in this config"
        )),
        (Some(kind), None) => Err(format!("its scope `{scope}` names no {} id", kind.kind)),
    }
}
