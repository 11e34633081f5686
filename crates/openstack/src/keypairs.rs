//! Nova keypairs: list (every page), show (with `created_at`), delete by name.
//!
//! Nova knows a keypair by its name only (no id in its API), keeps keypairs per *user*
//! (not per project: the credentials' user sees their own), and gives them neither metadata
//! nor tags — so gate recognises its keypairs by name (the `gate-` prefix, the run id) and
//! their age by the `created_at` of the detail (the list does not carry it).

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::api::{Api, Service};
use crate::error::Result;

/// A keypair as Nova shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Keypair {
    /// Its name: what Nova knows it by.
    pub name: String,
    /// The fingerprint of its public key.
    pub fingerprint: Option<String>,
    /// When Nova created it, as Nova writes it (UTC, often without a zone:
    /// `2024-05-07T12:06:13.681238`); only the detail ([`get`]) carries it.
    pub created: Option<String>,
}

impl Keypair {
    /// Parses one keypair object (the inner `keypair` of a list item, or of a detail);
    /// `None` without a name.
    pub fn from_json(value: &Value) -> Option<Keypair> {
        let text = |key: &str| crate::api::text_field(value, key);
        Some(Keypair {
            name: text("name")?,
            fingerprint: text("fingerprint"),
            created: text("created_at"),
        })
    }

    /// When Nova created it, when the detail said so.
    pub fn created_at(&self) -> Option<OffsetDateTime> {
        self.created.as_deref().and_then(parse_nova_time)
    }
}

/// A time as Nova writes it: RFC 3339, or — keypairs' `created_at` — a UTC time without a
/// zone (`2024-05-07T12:06:13.681238`, the fraction optional, `T` or a space).
pub fn parse_nova_time(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(&format!("{}Z", text.replacen(' ', "T", 1)), &Rfc3339))
        .ok()
}

/// The path of keypair `name`.
fn path(name: &str) -> String {
    format!("os-keypairs/{name}")
}

/// Every keypair of the credentials' user in this region (every page: `limit` and
/// `marker`, compute 2.35+). Without `created_at`: ask [`get`] for that.
pub async fn list(api: &Api) -> Result<Vec<Keypair>> {
    const PAGE: usize = 500;
    let limit = PAGE.to_string();
    let mut marker: Option<String> = None;
    let mut found = Vec::new();
    loop {
        let mut query: Vec<(&str, &str)> = vec![("limit", &limit)];
        if let Some(marker) = &marker {
            query.push(("marker", marker));
        }
        let body = api.get(Service::Compute, "os-keypairs", &query).await?;
        let page: Vec<Keypair> = body["keypairs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| Keypair::from_json(&item["keypair"]))
            .collect();
        // Nova links the next page when this one is full (by its own `max_limit`, which
        // may be below ours).
        let next = body["keypairs_links"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|link| link["rel"] == "next");
        let last = page.last().map(|k| k.name.clone());
        let more = (next || page.len() >= PAGE) && last.is_some() && last != marker;
        marker = last;
        found.extend(page);
        if !more {
            return Ok(found);
        }
    }
}

/// Keypair `name` with its `created_at`, or `None` when it does not exist (404).
pub async fn get(api: &Api, name: &str) -> Result<Option<Keypair>> {
    match api.get(Service::Compute, &path(name), &[]).await {
        Ok(body) => Ok(Keypair::from_json(&body["keypair"])),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error),
    }
}

/// Asks Nova to delete keypair `name` (done at once); `false` when it was already gone.
pub async fn delete(api: &Api, name: &str) -> Result<bool> {
    api.delete(Service::Compute, &path(name)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nova_times_parse_with_or_without_a_zone() {
        let naive = parse_nova_time("2024-05-07T12:06:13.681238").unwrap();
        assert_eq!(naive.offset(), time::UtcOffset::UTC);
        assert_eq!((naive.hour(), naive.microsecond()), (12, 681_238));
        let whole = parse_nova_time("2024-05-07 12:06:13").unwrap();
        assert_eq!(whole.unix_timestamp(), naive.unix_timestamp());
        let zoned = parse_nova_time("2024-05-07T14:06:13+02:00").unwrap();
        assert_eq!(zoned.unix_timestamp(), naive.unix_timestamp());
        assert!(parse_nova_time("yesterday").is_none());
    }

    #[test]
    fn a_detail_gives_name_and_creation_time() {
        let detail = json!({"keypair": {"name": "gate-1", "fingerprint": "aa:bb",
            "created_at": "2024-05-07T12:06:13.000000", "id": 7, "user_id": "u"}});
        let keypair = Keypair::from_json(&detail["keypair"]).unwrap();
        assert_eq!(keypair.name, "gate-1");
        assert_eq!(keypair.created_at().map(|t| t.year()), Some(2024));
        assert!(Keypair::from_json(&json!({"fingerprint": "x"})).is_none());
    }
}
