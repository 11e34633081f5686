//! The checked config: templates parsed, kinds resolved, headers validated. Built once per
//! connector or cleaner; every error names its key.

use reqwest::header::{HeaderName, HeaderValue};

use super::config::{ListSettings, MonitoringConfig, ResourceSettings};
use super::template::{JsonTemplate, Template, Var};

/// A config error: the key and what is wrong.
type KeyError = (String, String);

/// Where the create answer holds the new id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IdFrom {
    /// The last path segment of `Location`.
    Location,
    /// A header's whole value.
    Header(HeaderName),
    /// A JSON pointer into the body.
    Pointer(String),
}

/// How to list one kind.
#[derive(Debug, Clone)]
pub(crate) struct ListPlan {
    pub(crate) url: Template,
    pub(crate) settings: ListSettings,
}

/// One kind of thing, checked.
#[derive(Debug, Clone)]
pub(crate) struct KindPlan {
    pub(crate) kind: String,
    /// The index of the parent kind in [`Plan::kinds`].
    pub(crate) parent: Option<usize>,
    pub(crate) label: Template,
    pub(crate) method: reqwest::Method,
    pub(crate) create: Template,
    pub(crate) body: Option<JsonTemplate>,
    pub(crate) id_from: IdFrom,
    pub(crate) delete: Template,
    pub(crate) list: Option<ListPlan>,
}

impl KindPlan {
    /// Whether an item named `name` (with run id `item_run`, if the list gives one) is
    /// one of run `run_id`'s: by the run id the list gives where configured, else by the
    /// name matching `label` for that run.
    pub(crate) fn owned_by(&self, name: &str, item_run: Option<&str>, run_id: &str) -> bool {
        match self.list.as_ref().and_then(|l| l.settings.run_id.as_ref()) {
            Some(_) => item_run == Some(run_id),
            None => self.label.matches_run(name, run_id),
        }
    }
}

/// The whole checked config.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) config: MonitoringConfig,
    pub(crate) base: String,
    pub(crate) kinds: Vec<KindPlan>,
    /// The token header, when there is a token.
    pub(crate) token_header: HeaderName,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

impl Plan {
    pub(crate) fn new(config: MonitoringConfig) -> Result<Plan, KeyError> {
        let err = |key: &str, message: String| (key.to_owned(), message);
        let url =
            reqwest::Url::parse(&config.url).map_err(|e| err("url", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(err("url", "must be an http:// or https:// URL".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(err("url", "must not carry credentials; use `token`".into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(err("url", "must not have a query or fragment".into()));
        }
        let token_header =
            HeaderName::from_bytes(config.token_header.as_bytes()).map_err(|_| {
                err(
                    "token_header",
                    format!("`{}` is not a header name", config.token_header),
                )
            })?;
        if config.token.as_ref().is_some_and(|t| t.expose().is_empty()) {
            return Err(err("token", "is empty".into()));
        }
        let mut headers = Vec::new();
        for (name, value) in &config.headers {
            let key = format!("headers.{name}");
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| err(&key, format!("`{name}` is not a header name")))?;
            if config.token.is_some() && header == token_header {
                return Err(err(
                    &key,
                    "is the token's header; set `token` instead".into(),
                ));
            }
            let value = HeaderValue::from_str(value)
                .map_err(|_| err(&key, "is not a valid header value".into()))?;
            headers.push((header, value));
        }
        if config.api.tries == 0 {
            return Err(err("api.tries", "must be at least 1".into()));
        }
        for (key, value) in [
            ("api.first_delay_secs", config.api.first_delay_secs),
            ("api.max_delay_secs", config.api.max_delay_secs),
            ("api.request_timeout_secs", config.api.request_timeout_secs),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(err(
                    key,
                    format!("must be a number of seconds ≥ 0, not {value}"),
                ));
            }
        }
        if config.resources.is_empty() {
            return Err(err(
                "resources",
                "needs at least one [[agent.resources]]".into(),
            ));
        }
        let mut kinds: Vec<KindPlan> = Vec::new();
        for (i, settings) in config.resources.iter().enumerate() {
            let kind =
                kind_plan(settings, &kinds).map_err(|(k, m)| (format!("resources[{i}].{k}"), m))?;
            kinds.push(kind);
        }
        Ok(Plan {
            base: config.base_url(),
            config,
            kinds,
            token_header,
            headers,
        })
    }

    /// The kind called `kind`.
    pub(crate) fn kind(&self, kind: &str) -> Option<&KindPlan> {
        self.kinds.iter().find(|k| k.kind == kind)
    }

    /// The parent kind of `kind`, if it has one.
    pub(crate) fn parent_of(&self, kind: &KindPlan) -> Option<&KindPlan> {
        kind.parent.and_then(|i| self.kinds.get(i))
    }
}

fn kind_plan(s: &ResourceSettings, earlier: &[KindPlan]) -> Result<KindPlan, KeyError> {
    let err = |key: &str, message: String| (key.to_owned(), message);
    if s.kind.is_empty()
        || !s
            .kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(err(
            "kind",
            format!("`{}` is not a kind (a-z, 0-9, `-`, `_`)", s.kind),
        ));
    }
    if earlier.iter().any(|k| k.kind == s.kind) {
        return Err(err("kind", format!("`{}` is used twice", s.kind)));
    }
    let parent = match &s.parent {
        None => None,
        Some(p) => Some(earlier.iter().position(|k| &k.kind == p).ok_or_else(|| {
            err(
                "parent",
                format!("`{p}` is not the kind of an earlier [[agent.resources]]"),
            )
        })?),
    };
    let with_parent = |mut vars: Vec<Var>| {
        if parent.is_some() {
            vars.push(Var::ParentId);
        }
        vars
    };
    let label = Template::parse(&s.label, &[Var::Name, Var::Address, Var::RunId])
        .map_err(|m| err("label", m))?;
    if label
        .render_plain(&super::template::Vars::default())
        .is_ok_and(|l| l.is_empty())
    {
        return Err(err("label", "is empty".into()));
    }
    let create_vars = with_parent(vec![
        Var::Name,
        Var::Address,
        Var::RunId,
        Var::Label,
        Var::CreatedAt,
    ]);
    let create = relative(&s.create, &create_vars).map_err(|m| err("create", m))?;
    let body = s
        .body
        .as_deref()
        .map(|b| JsonTemplate::parse(b, &create_vars))
        .transpose()
        .map_err(|m| err("body", m))?;
    let delete = relative(
        &s.delete,
        &with_parent(vec![Var::Id, Var::RunId, Var::Label]),
    )
    .map_err(|m| err("delete", m))?;
    let method = match s.method.to_ascii_uppercase().as_str() {
        "POST" => reqwest::Method::POST,
        "PUT" => reqwest::Method::PUT,
        other => return Err(err("method", format!("`{other}` is not POST or PUT"))),
    };
    let id_from = match s.id_from.as_str() {
        "location" => IdFrom::Location,
        p if p.starts_with('/') => IdFrom::Pointer(p.to_owned()),
        other => match other.strip_prefix("header:") {
            Some(name) => IdFrom::Header(
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| err("id_from", format!("`{name}` is not a header name")))?,
            ),
            None => {
                return Err(err(
                    "id_from",
                    format!(
                        "`{other}`: use `location`, `header:NAME` or a JSON pointer like `/id`"
                    ),
                ));
            }
        },
    };
    let list = match &s.list {
        None => None,
        Some(l) => {
            let url =
                relative(&l.url, &with_parent(vec![Var::RunId])).map_err(|m| err("list.url", m))?;
            let pointers = [
                ("list.items", Some(&l.items)),
                ("list.id", Some(&l.id)),
                ("list.name", Some(&l.name)),
                ("list.run_id", l.run_id.as_ref()),
                ("list.created_at", l.created_at.as_ref()),
                ("list.next", l.next.as_ref()),
            ];
            for (key, pointer) in pointers {
                if let Some(p) = pointer
                    && !(p.is_empty() || p.starts_with('/'))
                {
                    return Err(err(
                        key,
                        format!("`{p}` is not a JSON pointer (like `/id`)"),
                    ));
                }
            }
            if l.run_id.is_none() && !label.uses(Var::RunId) {
                return Err(err(
                    "list",
                    "cannot tell this run's things from others: set `list.run_id` (a pointer to the run id the body stores) or use {run_id} in `label`".into(),
                ));
            }
            Some(ListPlan {
                url,
                settings: l.clone(),
            })
        }
    };
    Ok(KindPlan {
        kind: s.kind.clone(),
        parent,
        label,
        method,
        create,
        body,
        id_from,
        delete,
        list,
    })
}

/// A URL template relative to the base URL.
fn relative(text: &str, allowed: &[Var]) -> Result<Template, String> {
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("http:") || lower.starts_with("https:") || text.starts_with("//") {
        return Err(format!(
            "`{text}` must be relative to `url` (the token is only sent to that API)"
        ));
    }
    Template::parse(text.trim_start_matches('/'), allowed)
}
