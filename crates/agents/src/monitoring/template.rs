//! Templates with `{placeholder}`s: labels, URL paths and JSON bodies.
//!
//! Values are never pasted into text as they are: in a URL path each value is
//! percent-encoded as one segment (so `/`, `?` or `#` in a host name stay data), and in a
//! JSON body the template is parsed as JSON *first* and values are put into its strings,
//! so the serializer escapes quotes, backslashes and newlines. `{{` and `}}` are literal
//! braces.

use std::fmt;

use serde_json::Value;

/// A placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Var {
    /// `{name}`: the host's name.
    Name,
    /// `{address}`: the host's address.
    Address,
    /// `{run_id}`: the run id.
    RunId,
    /// `{label}`: the thing's own name (its rendered `label`).
    Label,
    /// `{created_at}`: the time of the create request, RFC 3339 in UTC.
    CreatedAt,
    /// `{parent_id}`: the id of the thing it is created under.
    ParentId,
    /// `{id}`: the thing's own id.
    Id,
}

impl Var {
    fn parse(name: &str) -> Option<Var> {
        Some(match name {
            "name" => Var::Name,
            "address" => Var::Address,
            "run_id" => Var::RunId,
            "label" => Var::Label,
            "created_at" => Var::CreatedAt,
            "parent_id" => Var::ParentId,
            "id" => Var::Id,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Var::Name => "name",
            Var::Address => "address",
            Var::RunId => "run_id",
            Var::Label => "label",
            Var::CreatedAt => "created_at",
            Var::ParentId => "parent_id",
            Var::Id => "id",
        }
    }
}

/// The placeholders a template may use, for error messages.
pub(crate) fn names(allowed: &[Var]) -> String {
    allowed
        .iter()
        .map(|v| format!("{{{}}}", v.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The values at hand; a placeholder without a value cannot be rendered.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Vars<'a> {
    pub(crate) name: Option<&'a str>,
    pub(crate) address: Option<&'a str>,
    pub(crate) run_id: Option<&'a str>,
    pub(crate) label: Option<&'a str>,
    pub(crate) created_at: Option<&'a str>,
    pub(crate) parent_id: Option<&'a str>,
    pub(crate) id: Option<&'a str>,
}

impl<'a> Vars<'a> {
    fn get(&self, var: Var) -> Option<&'a str> {
        match var {
            Var::Name => self.name,
            Var::Address => self.address,
            Var::RunId => self.run_id,
            Var::Label => self.label,
            Var::CreatedAt => self.created_at,
            Var::ParentId => self.parent_id,
            Var::Id => self.id,
        }
    }
}

/// A placeholder used where its value is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Missing(pub(crate) &'static str);

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}} has no value here", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A parsed template string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`, allowing only the placeholders in `allowed`.
    pub(crate) fn parse(text: &str, allowed: &[Var]) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if rest.starts_with("{{") || rest.starts_with("}}") {
                literal.push(c);
                rest = &rest[2..];
                continue;
            }
            if c != '{' {
                literal.push(c);
                rest = &rest[c.len_utf8()..];
                continue;
            }
            let Some(end) = rest.find('}') else {
                return Err(format!(
                    "`{{` without a closing `}}` (write `{{{{` for a literal brace) in `{text}`"
                ));
            };
            let name = &rest[1..end];
            let var = Var::parse(name)
                .filter(|v| allowed.contains(v))
                .ok_or_else(|| {
                    format!(
                        "unknown placeholder `{{{name}}}` in `{text}`; here you can use {}",
                        names(allowed)
                    )
                })?;
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Var(var));
            rest = &rest[end + 1..];
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// Whether the template uses `var`.
    pub(crate) fn uses(&self, var: Var) -> bool {
        self.parts.contains(&Part::Var(var))
    }

    /// The text with every value inserted as it is (for names, not for URLs or JSON).
    pub(crate) fn render_plain(&self, vars: &Vars<'_>) -> Result<String, Missing> {
        self.render_with(vars, |value, out| out.push_str(value))
    }

    /// The text with every value percent-encoded as one URL path segment.
    pub(crate) fn render_url(&self, vars: &Vars<'_>) -> Result<String, Missing> {
        self.render_with(vars, |value, out| out.push_str(&encode_segment(value)))
    }

    fn render_with(
        &self,
        vars: &Vars<'_>,
        insert: impl Fn(&str, &mut String),
    ) -> Result<String, Missing> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Var(var) => insert(vars.get(*var).ok_or(Missing(var.name()))?, &mut out),
            }
        }
        Ok(out)
    }

    /// Whether `name` is what this template renders to for run `run_id` and *some*
    /// non-empty values of its other placeholders. The template must use `{run_id}`.
    pub(crate) fn matches_run(&self, name: &str, run_id: &str) -> bool {
        if !self.uses(Var::RunId) {
            return false;
        }
        let pieces: Vec<Option<&str>> = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Text(text) => Some(text.as_str()),
                Part::Var(Var::RunId) => Some(run_id),
                Part::Var(_) => None,
            })
            .collect();
        glob(&pieces, name)
    }
}

/// Matches `text` against literal pieces (`Some`) and wildcards of one or more
/// characters (`None`), by backtracking.
fn glob(pieces: &[Option<&str>], text: &str) -> bool {
    match pieces.split_first() {
        None => text.is_empty(),
        Some((Some(literal), rest)) => text
            .strip_prefix(literal)
            .is_some_and(|after| glob(rest, after)),
        Some((None, rest)) => (1..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .any(|i| glob(rest, &text[i..])),
    }
}

/// A JSON body template: JSON whose strings (keys and values) are templates.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JsonTemplate {
    value: Value,
}

impl JsonTemplate {
    /// Parses `text` as JSON and every string in it as a template.
    pub(crate) fn parse(text: &str, allowed: &[Var]) -> Result<JsonTemplate, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON ({e}): `{text}`"))?;
        check_strings(&value, allowed)?;
        Ok(JsonTemplate { value })
    }

    /// The body with every value inserted into its strings, serialized.
    pub(crate) fn render(&self, vars: &Vars<'_>) -> Result<Vec<u8>, Missing> {
        let value = fill(&self.value, vars)?;
        Ok(value.to_string().into_bytes())
    }
}

fn check_strings(value: &Value, allowed: &[Var]) -> Result<(), String> {
    match value {
        Value::String(text) => Template::parse(text, allowed).map(drop),
        Value::Array(items) => items.iter().try_for_each(|v| check_strings(v, allowed)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            Template::parse(k, allowed)?;
            check_strings(v, allowed)
        }),
        _ => Ok(()),
    }
}

fn fill(value: &Value, vars: &Vars<'_>) -> Result<Value, Missing> {
    // The templates were checked at parse time; any placeholder is accepted here.
    const ALL: &[Var] = &[
        Var::Name,
        Var::Address,
        Var::RunId,
        Var::Label,
        Var::CreatedAt,
        Var::ParentId,
        Var::Id,
    ];
    let text = |t: &str| match Template::parse(t, ALL) {
        Ok(template) => template.render_plain(vars),
        Err(_) => Ok(t.to_owned()),
    };
    Ok(match value {
        Value::String(s) => Value::String(text(s)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| fill(v, vars))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                out.insert(text(k)?, fill(v, vars)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// `value` percent-encoded for one URL path segment (only unreserved characters stay).
pub(crate) fn encode_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `%XX` escapes decoded; `None` for a malformed escape or bytes that are not UTF-8.
pub(crate) fn decode_segment(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &[Var] = &[Var::Name, Var::Address, Var::RunId, Var::Label];

    fn vars<'a>(name: &'a str) -> Vars<'a> {
        Vars {
            name: Some(name),
            address: Some("10.0.0.5"),
            run_id: Some("gate-1a2b3c4d"),
            label: Some("gate-1a2b3c4d-web"),
            ..Vars::default()
        }
    }

    #[test]
    fn urls_encode_values_as_one_segment() {
        let t = Template::parse("entities/{name}/checks?x={{y}}", HOST).unwrap();
        let url = t.render_url(&vars("a/b?c#d e")).unwrap();
        assert_eq!(url, "entities/a%2Fb%3Fc%23d%20e/checks?x={y}");
        assert_eq!(decode_segment("a%2Fb%3Fc%23d%20e").unwrap(), "a/b?c#d e");
    }

    #[test]
    fn bodies_escape_values_inside_json_strings() {
        let t = JsonTemplate::parse(
            r#"{"label": "{label}", "meta": {"host": "{name}"}, "n": 3}"#,
            HOST,
        )
        .unwrap();
        let hostile = "x\", \"admin\": true, \"y\": \"\n\\";
        let body = t.render(&vars(hostile)).unwrap();
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["meta"]["host"], hostile);
        assert_eq!(parsed["n"], 3);
        assert!(parsed.get("admin").is_none());
    }

    #[test]
    fn bad_templates_say_what_is_wrong() {
        let err = Template::parse("entities/{id}", HOST).unwrap_err();
        assert!(err.contains("{id}") && err.contains("{name}"), "{err}");
        assert!(
            Template::parse("a{name", HOST)
                .unwrap_err()
                .contains("closing")
        );
        assert!(
            JsonTemplate::parse("{label}", HOST)
                .unwrap_err()
                .contains("not JSON")
        );
        let missing = Template::parse("{address}", HOST)
            .unwrap()
            .render_plain(&Vars::default())
            .unwrap_err();
        assert_eq!(missing.to_string(), "{address} has no value here");
    }

    #[test]
    fn names_match_the_label_of_their_run_only() {
        let t = Template::parse("{run_id}-{name}", HOST).unwrap();
        assert!(t.matches_run("gate-1a2b3c4d-web-1", "gate-1a2b3c4d"));
        assert!(!t.matches_run("gate-1a2b3c4d-", "gate-1a2b3c4d"));
        assert!(!t.matches_run("gate-1a2b3c4e-web-1", "gate-1a2b3c4d"));
        assert!(!t.matches_run("xgate-1a2b3c4d-web", "gate-1a2b3c4d"));
        let suffix = Template::parse("{name}.{run_id}", HOST).unwrap();
        assert!(suffix.matches_run("a.b.gate-1", "gate-1"));
        let no_run = Template::parse("{name}", HOST).unwrap();
        assert!(!no_run.matches_run("gate-1", "gate-1"));
    }
}
