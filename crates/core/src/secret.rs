//! Secrets: a type that never prints, and the redaction of every known secret value
//! from text gate writes (logs, streamed command output, errors, run.json, archives).
//!
//! In config a secret is written as `{ secret = "…" }`, `{ env = "VAR" }` or
//! `{ file = "path" }` (a plain string is accepted in a field that is always secret).
//! Resolving one registers its value with the process-wide redactor, so [`redact`]
//! replaces it with `***` wherever it shows up afterwards.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a redacted secret is replaced with.
pub const MASK: &str = "***";

/// Secret values shorter than this are not redacted (masking every `a` in a log would make
/// it unreadable); a warning says so when one is registered.
pub const MIN_REDACTED_LEN: usize = 3;

static KNOWN: RwLock<Vec<Arc<str>>> = RwLock::new(Vec::new());

/// A secret value: a password, token or private key. `Debug` and `Serialize` print `***`;
/// the value is reachable only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps `value` and registers it for redaction.
    pub fn new(value: impl Into<String>) -> Self {
        let value: Arc<str> = Arc::from(value.into());
        register(&value);
        Self(value)
    }

    /// The secret value itself. Pass it only to the API or process that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({MASK})")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(MASK)
    }
}

/// The forms a secret may take in config.
#[derive(Deserialize)]
#[serde(untagged)]
enum SecretSource {
    Plain(String),
    Inline { secret: String },
    Env { env: String },
    File { file: std::path::PathBuf },
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let source = SecretSource::deserialize(deserializer).map_err(|_| {
            D::Error::custom(
                "expected a secret: a string, { secret = \"…\" }, { env = \"VAR\" } or { file = \"path\" }",
            )
        })?;
        match source {
            SecretSource::Plain(value) | SecretSource::Inline { secret: value } => {
                Ok(Secret::new(value))
            }
            SecretSource::Env { env } => std::env::var(&env)
                .map(Secret::new)
                .map_err(|_| D::Error::custom(format!("environment variable {env} is not set"))),
            SecretSource::File { file } => std::fs::read_to_string(&file)
                .map(|text| Secret::new(text.trim_end_matches(['\n', '\r'])))
                .map_err(|e| D::Error::custom(format!("reading {}: {e}", file.display()))),
        }
    }
}

/// Registers `value` so that [`redact`] masks it. Multi-line values (private keys) are
/// registered line by line as well, so a partial echo is masked too.
pub fn register(value: &str) {
    let mut pieces: Vec<&str> = vec![value];
    if value.contains('\n') {
        pieces.extend(value.lines().map(str::trim).filter(|l| l.len() >= 8));
    }
    let mut too_short = false;
    {
        let Ok(mut known) = KNOWN.write() else {
            return;
        };
        for piece in pieces {
            if piece.len() < MIN_REDACTED_LEN {
                too_short |= !piece.is_empty();
                continue;
            }
            if !known.iter().any(|k| &**k == piece) {
                known.push(Arc::from(piece));
            }
        }
        // Longest first, so a secret that contains another is masked whole.
        known.sort_by_key(|k| std::cmp::Reverse(k.len()));
    }
    // Logged only once the lock is released: the log writer redacts, taking it to read.
    if too_short {
        tracing::warn!(
            "a secret shorter than {MIN_REDACTED_LEN} characters cannot be redacted from output"
        );
    }
}

/// `text` with every registered secret value replaced by `***`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let Ok(known) = KNOWN.read() else {
        return Cow::Borrowed(text);
    };
    let mut out = Cow::Borrowed(text);
    for secret in known.iter() {
        if out.contains(&**secret) {
            out = Cow::Owned(out.replace(&**secret, MASK));
        }
    }
    out
}

/// `bytes` with every registered secret value replaced by `***`; `None` if none occurs.
pub fn redact_bytes(bytes: &[u8]) -> Option<Vec<u8>> {
    let known = KNOWN.read().ok()?;
    let mut out: Option<Vec<u8>> = None;
    for secret in known.iter() {
        let needle = secret.as_bytes();
        let current = out.as_deref().unwrap_or(bytes);
        if find(current, needle).is_none() {
            continue;
        }
        let mut replaced = Vec::with_capacity(current.len());
        let mut rest = current;
        while let Some(at) = find(rest, needle) {
            replaced.extend_from_slice(&rest[..at]);
            replaced.extend_from_slice(MASK.as_bytes());
            rest = &rest[at + needle.len()..];
        }
        replaced.extend_from_slice(rest);
        out = Some(replaced);
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Registers every `{ secret = "…" }` value found anywhere in a JSON tree, and returns the
/// tree with those values replaced by `***` (for run.json and `gate plan`).
pub fn redact_json(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            if map.len() == 1
                && let Some(Value::String(secret)) = map.get("secret")
            {
                register(secret);
                return Value::String(MASK.to_owned());
            }
            Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), redact_json(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(redact_json).collect()),
        Value::String(s) => Value::String(redact(s).into_owned()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_serialize_never_show_the_value() {
        let secret = Secret::new("hunter2-debug-sentinel");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"***\"");
        assert_eq!(secret.expose(), "hunter2-debug-sentinel");
    }

    #[test]
    fn redact_masks_registered_values_in_text_and_bytes() {
        let _secret = Secret::new("s3cr3t-redact-sentinel");
        assert_eq!(
            redact("token=s3cr3t-redact-sentinel; again s3cr3t-redact-sentinel"),
            "token=***; again ***"
        );
        assert_eq!(
            redact_bytes(b"x s3cr3t-redact-sentinel y").as_deref(),
            Some(&b"x *** y"[..])
        );
        assert_eq!(redact_bytes(b"nothing here"), None);
    }

    #[test]
    fn multi_line_secrets_are_masked_line_by_line() {
        let _key = Secret::new("-----BEGIN KEY-----\nAAAAB3NzaC1yc2EAAAADAQAB\n-----END KEY-----");
        assert_eq!(redact("got AAAAB3NzaC1yc2EAAAADAQAB back"), "got *** back");
    }

    #[test]
    fn config_forms_resolve_and_register() {
        let inline: Secret =
            serde_json::from_str(r#"{ "secret": "inline-form-sentinel" }"#).unwrap();
        assert_eq!(inline.expose(), "inline-form-sentinel");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "file-form-sentinel\n").unwrap();
        let from_file: Secret =
            serde_json::from_value(serde_json::json!({ "file": path })).unwrap();
        assert_eq!(from_file.expose(), "file-form-sentinel");
        assert_eq!(redact("file-form-sentinel"), MASK);
        let missing = serde_json::from_str::<Secret>(r#"{ "env": "GATE_TEST_NO_SUCH_VAR" }"#);
        assert!(
            missing
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
                .contains("GATE_TEST_NO_SUCH_VAR")
        );
    }

    #[test]
    fn redact_json_masks_inline_secrets() {
        let tree = serde_json::json!({ "env": { "TOKEN": { "secret": "json-tree-sentinel" } } });
        let redacted = redact_json(&tree);
        assert_eq!(redacted["env"]["TOKEN"], "***");
        assert_eq!(redact("json-tree-sentinel"), MASK);
    }
}
