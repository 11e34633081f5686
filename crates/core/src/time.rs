//! Timestamps as gate writes them.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The current time, RFC 3339 in UTC with millisecond precision.
pub fn now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

/// `at` as RFC 3339 in UTC with millisecond precision.
pub fn format_rfc3339(at: OffsetDateTime) -> String {
    let at = at
        .replace_nanosecond(at.millisecond() as u32 * 1_000_000)
        .unwrap_or(at);
    at.format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}
