//! `[agent]` with `backend = "monitoring"`: the API, its credentials, how calls are
//! retried, and the things to create per host (`[[agent.resources]]`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use gate_core::{BackendConfig, Result, Secret};
use serde::Deserialize;

use super::plan::Plan;

/// Which hosts get monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MonitoredHosts {
    /// Every host of the inventory (the default).
    #[default]
    All,
    /// Only the primary host.
    Primary,
}

/// Settings of the `monitoring` agent connector and its cleaner.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringConfig {
    /// The API's base URL, e.g. `https://monitoring.api.rackspacecloud.com/v1.0/123456/`
    /// (required). Every URL template is relative to it; it is also the ledger's `scope`.
    pub url: String,
    /// The API token (a secret: `{ env = "MONITORING_TOKEN" }`), sent in `token_header`.
    /// Default: none (no auth header).
    #[serde(default)]
    pub token: Option<Secret>,
    /// The header that carries the token. Default: `X-Auth-Token`.
    #[serde(default = "default_token_header")]
    pub token_header: String,
    /// Text put before the token, e.g. `"Bearer "` with `token_header = "Authorization"`.
    /// Default: empty.
    #[serde(default)]
    pub token_prefix: String,
    /// More request headers (not secret: they may be logged). Default: none.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A CA certificate (PEM) to trust for an `https://` API, besides the usual roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// `all` hosts (default) or only the `primary`.
    #[serde(default)]
    pub hosts: MonitoredHosts,
    /// How API calls are retried.
    #[serde(default)]
    pub api: RetrySettings,
    /// What to create per host, in order (required, at least one).
    pub resources: Vec<ResourceSettings>,
}

/// How API calls are retried on 5xx, 429 and connection errors (`[agent.api]`); other
/// answers are never retried.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Attempts per call, the first included. Default: 10.
    #[serde(default = "default_tries")]
    pub tries: u32,
    /// The first wait, in seconds; each next one doubles. Default: 1.
    #[serde(default = "default_first_delay")]
    pub first_delay_secs: f64,
    /// The longest wait, in seconds; a longer `Retry-After` is cut to it. Default: 30.
    #[serde(default = "default_max_delay")]
    pub max_delay_secs: f64,
    /// How long one request may take, in seconds. Default: 30.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: f64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            tries: default_tries(),
            first_delay_secs: default_first_delay(),
            max_delay_secs: default_max_delay(),
            request_timeout_secs: default_request_timeout(),
        }
    }
}

impl RetrySettings {
    /// The wait after failed attempt `attempt` (0-based), given the server's `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let max = secs(self.max_delay_secs);
        if let Some(asked) = retry_after {
            return asked.min(max);
        }
        secs(self.first_delay_secs * 2f64.powi(attempt.min(30) as i32)).min(max)
    }

    /// The time limit of one request.
    pub fn request_timeout(&self) -> Duration {
        secs(self.request_timeout_secs)
    }
}

fn secs(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::ZERO)
}

/// One thing created per host (`[[agent.resources]]`): an entity, a check, an alarm, …
///
/// Placeholders: `{name}` and `{address}` (the host), `{run_id}`, `{label}` (this thing's
/// rendered `label`), `{created_at}` (now, RFC 3339), `{parent_id}` (with `parent`), `{id}`
/// (in `delete`). In URLs values are percent-encoded; in `body` they go into JSON strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSettings {
    /// Its ledger kind, e.g. `entity` or `check` (required; unique; `a-z`, `0-9`, `-`, `_`).
    pub kind: String,
    /// The kind of an earlier resource this one is created under; its id is `{parent_id}`
    /// and cleanup deletes this one first. Default: none.
    #[serde(default)]
    pub parent: Option<String>,
    /// Its name: `{name}`, `{address}`, `{run_id}`. Default: `{run_id}-{name}`.
    #[serde(default = "default_label")]
    pub label: String,
    /// The create request's method: `POST` or `PUT`. Default: `POST`.
    #[serde(default = "default_method")]
    pub method: String,
    /// The create request's URL, relative to `url`, e.g. `entities` (required).
    pub create: String,
    /// The create request's JSON body, e.g. `'{"label": "{label}"}'`. Default: none.
    #[serde(default)]
    pub body: Option<String>,
    /// Where the answer holds the new id: `location` (the last segment of the `Location`
    /// header; the default), `header:NAME`, or a JSON pointer into the body such as `/id`.
    #[serde(default = "default_id_from")]
    pub id_from: String,
    /// The delete request's URL, relative to `url`, e.g. `entities/{id}` (required).
    pub delete: String,
    /// How to list what exists: lets cleanup find a thing whose create answer was lost
    /// (only its intent is in the ledger), and enables `observe` and `sweep`. Default: none.
    #[serde(default)]
    pub list: Option<ListSettings>,
}

/// A list request and where its answer holds the items (JSON pointers).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSettings {
    /// The list URL, relative to `url`: `{run_id}`, `{parent_id}` (required).
    pub url: String,
    /// The array of items. Default: `/values` (Rackspace's paginated collections).
    #[serde(default = "default_items")]
    pub items: String,
    /// An item's id. Default: `/id`.
    #[serde(default = "default_id")]
    pub id: String,
    /// An item's name (what `label` rendered). Default: `/label`.
    #[serde(default = "default_name")]
    pub name: String,
    /// An item's run id, e.g. `/metadata/gate_run_id`. Default: none — then the name must
    /// match `label` for the run (so `label` must use `{run_id}`).
    #[serde(default)]
    pub run_id: Option<String>,
    /// An item's creation time (RFC 3339, or seconds or milliseconds since 1970), e.g.
    /// `/created_at`. Default: none — then `sweep` never deletes these.
    #[serde(default)]
    pub created_at: Option<String>,
    /// The next page's URL, e.g. `/metadata/next_href` (it must be on the API's host).
    /// Default: none (one page).
    #[serde(default)]
    pub next: Option<String>,
}

fn default_token_header() -> String {
    "X-Auth-Token".into()
}
fn default_tries() -> u32 {
    10
}
fn default_first_delay() -> f64 {
    1.0
}
fn default_max_delay() -> f64 {
    30.0
}
fn default_request_timeout() -> f64 {
    30.0
}
fn default_label() -> String {
    "{run_id}-{name}".into()
}
fn default_method() -> String {
    "POST".into()
}
fn default_id_from() -> String {
    "location".into()
}
fn default_items() -> String {
    "/values".into()
}
fn default_id() -> String {
    "/id".into()
}
fn default_name() -> String {
    "/label".into()
}

impl MonitoringConfig {
    /// Parses the section; errors name file, section and key.
    pub fn from_section(section: &BackendConfig) -> Result<Self> {
        Ok(Self::plan(section)?.config)
    }

    /// Parses and checks the section into what the connector and cleaner use.
    pub(crate) fn plan(section: &BackendConfig) -> Result<Plan> {
        let config: MonitoringConfig = section.parse()?;
        Plan::new(config).map_err(|(key, message)| section.error(key, message))
    }

    /// The API's base URL, ending in `/`.
    pub fn base_url(&self) -> String {
        if self.url.ends_with('/') {
            self.url.clone()
        } else {
            format!("{}/", self.url)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "url = \"https://mon.example/v1.0/123\"\ntoken = \"tok-config-sentinel\"\n";
    const ENTITY: &str =
        "[[resources]]\nkind = \"entity\"\ncreate = \"entities\"\ndelete = \"entities/{id}\"\n";

    fn parse(toml: &str) -> Result<Plan> {
        MonitoringConfig::plan(&BackendConfig::from_toml("agent", "monitoring", toml)?)
    }

    #[test]
    fn defaults_follow_the_rackspace_shape() {
        let plan = parse(&format!("{BASE}{ENTITY}")).unwrap();
        let config = &plan.config;
        assert_eq!(config.base_url(), "https://mon.example/v1.0/123/");
        assert_eq!(config.token_header, "X-Auth-Token");
        assert_eq!(config.hosts, MonitoredHosts::All);
        assert_eq!(config.api.tries, 10);
        let entity = &config.resources[0];
        assert_eq!(
            (
                entity.label.as_str(),
                entity.method.as_str(),
                entity.id_from.as_str()
            ),
            ("{run_id}-{name}", "POST", "location")
        );
        let retry = RetrySettings::default();
        assert_eq!(retry.delay(0, None), Duration::from_secs(1));
        assert_eq!(retry.delay(9, None), Duration::from_secs(30));
        assert_eq!(
            retry.delay(0, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert!(!format!("{config:?}").contains("tok-config-sentinel"));
    }

    #[test]
    fn the_documented_example_parses() {
        let docs = include_str!("mod.rs");
        let start = docs.find("//! ```toml\n//! [agent]\n").unwrap();
        let end = start + docs[start..].find("//! ```\n").unwrap();
        let toml: String = docs[start..end]
            .lines()
            .skip(2)
            .map(|l| l.trim_start_matches("//!").trim_start_matches(' '))
            .filter(|l| !l.starts_with("backend ="))
            .map(|l| {
                l.replace("[agent.api]", "[api]")
                    .replace("[[agent.resources]]", "[[resources]]")
                    .replace("{ env = \"RAX_AUTH_TOKEN\" }", "\"tok-docs-example\"")
            })
            .collect::<Vec<_>>()
            .join("\n");
        let plan = parse(&toml).unwrap();
        let kinds: Vec<_> = plan.kinds.iter().map(|k| k.kind.as_str()).collect();
        assert_eq!(kinds, ["entity", "check"]);
        assert_eq!(plan.kinds[1].parent, Some(0));
        assert!(plan.kinds.iter().all(|k| k.list.is_some()));
    }

    #[test]
    fn bad_values_name_their_key() {
        let check = |extra: &str| -> String {
            let toml = format!("{BASE}{ENTITY}{extra}");
            parse(&toml)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        for (extra, key) in [
            (
                "[[resources]]\nkind = \"entity\"\ncreate = \"x\"\ndelete = \"x/{id}\"\n",
                "resources[1].kind",
            ),
            (
                "[[resources]]\nkind = \"check\"\nparent = \"nope\"\ncreate = \"c\"\ndelete = \"c/{id}\"\n",
                "resources[1].parent",
            ),
            (
                "[[resources]]\nkind = \"check\"\ncreate = \"c/{parent_id}\"\ndelete = \"c/{id}\"\n",
                "resources[1].create",
            ),
            (
                "[[resources]]\nkind = \"check\"\ncreate = \"c\"\nbody = \"{oops\"\ndelete = \"c/{id}\"\n",
                "resources[1].body",
            ),
            (
                "[[resources]]\nkind = \"check\"\ncreate = \"c\"\ndelete = \"c/{name}\"\n",
                "resources[1].delete",
            ),
            (
                "[[resources]]\nkind = \"check\"\ncreate = \"c\"\ndelete = \"c/{id}\"\nid_from = \"body\"\n",
                "resources[1].id_from",
            ),
            (
                "[[resources]]\nkind = \"check\"\ncreate = \"https://elsewhere/c\"\ndelete = \"c/{id}\"\n",
                "resources[1].create",
            ),
            (
                "[[resources]]\nkind = \"check\"\nlabel = \"{name}\"\ncreate = \"c\"\ndelete = \"c/{id}\"\nlist = { url = \"c\" }\n",
                "resources[1].list",
            ),
            (
                "[[resources]]\nkind = \"check\"\nmethod = \"GET\"\ncreate = \"c\"\ndelete = \"c/{id}\"\n",
                "resources[1].method",
            ),
            (
                "[[resources]]\nkind = \"check\"\ncreate = \"c\"\ndelete = \"c/{id}\"\nbogus = 1\n",
                "resources[1]",
            ),
        ] {
            let err = check(extra);
            assert!(err.contains(&format!("[agent] {key}")), "{extra}: {err}");
        }
        let err = parse(&format!("url = \"ftp://x\"\n{ENTITY}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("[agent] url"), "{err}");
        let err = parse("url = \"https://x\"\nresources = []")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[agent] resources"), "{err}");
    }
}
