//! Listing what exists of one kind: the list request (following `next` pages on the API's
//! own host), and each item's id, name, run id and creation time read by JSON pointer.

use std::future::Future;

use reqwest::Method;
use serde_json::Value;
use time::OffsetDateTime;

use super::api::{ApiError, MonitoringApi, status_error};
use super::plan::{KindPlan, ListPlan};
use super::template::Vars;

/// At most this many pages are read from one list.
const MAX_PAGES: usize = 1000;

/// One listed thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) run_id: Option<String>,
    pub(crate) created_at: Option<OffsetDateTime>,
}

/// Every item of `kind` (under `parent_id` for a child kind). A list answered with 404
/// (its parent is gone) is empty.
pub(crate) async fn list<C, F>(
    api: &MonitoringApi,
    kind: &KindPlan,
    list: &ListPlan,
    run_id: Option<&str>,
    parent_id: Option<&str>,
    cancelled: &C,
) -> Result<Vec<Item>, ApiError>
where
    C: Fn() -> F,
    F: Future<Output = ()>,
{
    let vars = Vars {
        run_id,
        parent_id,
        ..Vars::default()
    };
    let path = list.url.render_url(&vars).map_err(|m| ApiError::Failed {
        what: format!("listing {}", kind.kind),
        message: m.to_string(),
    })?;
    let mut url = api.url(&path);
    let mut items = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..MAX_PAGES {
        let what = format!("listing {} (GET {url})", kind.kind);
        let note = |text: &str| tracing::warn!("{what}: {text}");
        let answer = api
            .call(&what, Method::GET, &url, None, cancelled, &note)
            .await?;
        if answer.status == 404 {
            return Ok(items);
        }
        if !answer.ok() {
            return Err(status_error(&what, answer.status, &answer.body, 1));
        }
        let page = answer.json(&what)?;
        let Some(values) = page.pointer(&list.settings.items).and_then(Value::as_array) else {
            return Err(ApiError::Failed {
                what,
                message: format!("the answer has no array at `{}`", list.settings.items),
            });
        };
        items.extend(values.iter().filter_map(|v| item(v, list)));
        seen.push(url.clone());
        let next = list
            .settings
            .next
            .as_deref()
            .and_then(|p| page.pointer(p))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty());
        match next {
            None => return Ok(items),
            Some(next) if seen.iter().any(|s| s == next) => return Ok(items),
            Some(next) if !api.same_origin(next) => {
                return Err(ApiError::Failed {
                    what,
                    message: format!(
                        "the next page `{next}` is not on the API's host; not following it with the token"
                    ),
                });
            }
            Some(next) => url = next.to_owned(),
        }
    }
    Err(ApiError::Failed {
        what: format!("listing {}", kind.kind),
        message: format!("more than {MAX_PAGES} pages"),
    })
}

fn item(value: &Value, list: &ListPlan) -> Option<Item> {
    let text = |pointer: &str| match value.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let found = Item {
        id: text(&list.settings.id).filter(|s| !s.is_empty())?,
        name: text(&list.settings.name)?,
        run_id: list.settings.run_id.as_deref().and_then(text),
        created_at: list
            .settings
            .created_at
            .as_deref()
            .and_then(|p| value.pointer(p))
            .and_then(timestamp),
    };
    Some(found)
}

/// RFC 3339 text, or seconds or milliseconds since 1970 (a number past 10^11 is read as
/// milliseconds, as Rackspace's `created_at`).
pub(crate) fn timestamp(value: &Value) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    match value {
        Value::String(s) => OffsetDateTime::parse(s, &Rfc3339).ok().or_else(|| {
            s.parse::<i64>()
                .ok()
                .and_then(|n| timestamp(&Value::from(n)))
        }),
        Value::Number(n) => {
            let n = n.as_i64()?;
            let nanos = if n.abs() >= 100_000_000_000 {
                i128::from(n) * 1_000_000
            } else {
                i128::from(n) * 1_000_000_000
            };
            OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_come_as_text_seconds_or_milliseconds() {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(timestamp(&Value::from(1_700_000_000_i64)), Some(at));
        assert_eq!(timestamp(&Value::from(1_700_000_000_000_i64)), Some(at));
        assert_eq!(timestamp(&Value::from("2023-11-14T22:13:20Z")), Some(at));
        assert_eq!(timestamp(&Value::from("yesterday")), None);
        assert_eq!(timestamp(&Value::Null), None);
    }
}
