//! gate's names and tags on cloud resources: what a run puts on everything it creates, and
//! how a sweep recognises it.

use std::collections::BTreeMap;

use gate_core::RunId;

/// Metadata key: the run that created the resource.
pub const RUN_ID_KEY: &str = "gate_run_id";
/// Metadata key: when it was created (RFC 3339, UTC).
pub const CREATED_AT_KEY: &str = "gate_created_at";
/// Metadata key: the CI job, when known.
pub const JOB_KEY: &str = "gate_job";
/// The prefix of every generated run id, so of every default name.
pub const NAME_PREFIX: &str = "gate-";

/// The names of `count` hosts: `<base>-1` … `<base>-<count>`, `base` being the configured
/// node name or else the run id.
pub fn host_names(base: Option<&str>, run_id: &RunId, count: usize) -> Vec<String> {
    let base = base.unwrap_or(run_id.as_str());
    (1..=count).map(|n| format!("{base}-{n}")).collect()
}

/// Whether `name` is named after run `run_id`: the run id itself, or `<run id>-…` (how
/// gate tells a run's resources where nothing can be tagged, e.g. Nova keypairs).
pub fn named_after_run(name: &str, run_id: &str) -> bool {
    name.strip_prefix(run_id)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

/// The metadata every resource of a run carries: run id, creation time, job.
pub fn tags(run_id: &RunId, job: Option<&str>) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    tags.insert(RUN_ID_KEY.to_owned(), run_id.as_str().to_owned());
    tags.insert(CREATED_AT_KEY.to_owned(), gate_core::time::now_rfc3339());
    if let Some(job) = job {
        // Nova metadata values hold at most 255 characters.
        tags.insert(JOB_KEY.to_owned(), job.chars().take(255).collect());
    }
    tags
}

/// A regular expression that matches exactly `name` (Nova's `name` filter is a regular
/// expression, matched anywhere): anchored, every special character escaped.
pub fn exact_name_pattern(name: &str) -> String {
    let mut pattern = String::with_capacity(name.len() + 2);
    pattern.push('^');
    for c in name.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('$');
    pattern
}

/// A protected-name pattern: `*` matches any run of characters, everything else itself
/// (e.g. `gate-keep-*`).
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    fn matches(pattern: &[char], name: &[char]) -> bool {
        match pattern.split_first() {
            None => name.is_empty(),
            Some(('*', rest)) => (0..=name.len()).any(|skip| matches(rest, &name[skip..])),
            Some((c, rest)) => name.first() == Some(c) && matches(rest, &name[1..]),
        }
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    matches(&pattern, &name)
}

/// Shuffles `items` in place (Fisher–Yates, seeded from the OS).
pub fn shuffle<T>(items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = (random_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // Without OS randomness the order stays as configured, which is still correct.
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_name_pattern_is_anchored_and_escaped() {
        assert_eq!(exact_name_pattern("gate-ab.1"), r"^gate-ab\.1$");
        assert_eq!(exact_name_pattern("a(b)*"), r"^a\(b\)\*$");
    }

    #[test]
    fn host_names_count_from_one_on_the_node_name_or_run_id() {
        let run = RunId::try_from("gate-1234abcd".to_owned()).unwrap();
        assert_eq!(
            host_names(None, &run, 2),
            ["gate-1234abcd-1", "gate-1234abcd-2"]
        );
        assert_eq!(host_names(Some("ci"), &run, 1), ["ci-1"]);
    }

    #[test]
    fn named_after_run_is_the_run_id_or_its_dash_prefix() {
        assert!(named_after_run("gate-ab12", "gate-ab12"));
        assert!(named_after_run("gate-ab12-key", "gate-ab12"));
        assert!(!named_after_run("gate-ab123", "gate-ab12"));
        assert!(!named_after_run("x-gate-ab12", "gate-ab12"));
    }

    #[test]
    fn glob_matches_stars_only() {
        assert!(glob_matches("gate-keep-*", "gate-keep-db-1"));
        assert!(!glob_matches("gate-keep-*", "gate-kept"));
        assert!(glob_matches("*", ""));
        assert!(!glob_matches("a.c", "abc"));
    }

    #[test]
    fn shuffle_keeps_every_item() {
        let mut items: Vec<u32> = (0..50).collect();
        shuffle(&mut items);
        items.sort_unstable();
        assert_eq!(items, (0..50).collect::<Vec<_>>());
    }
}
