//! The configuration reference (docs/reference.md and docs/backends/*.md) is generated from
//! the config structs themselves, and checked against them:
//!
//! - every key of every backend is gathered from its config struct (a recording serde
//!   `Deserializer`, see support/introspect.rs), its doc from the field's doc comment, its
//!   example from crates/cli/src/init.rs;
//! - the struct used for a backend must accept exactly the keys its registry factory
//!   accepts (probed with an unknown key), and every registered backend has a page;
//! - the pages on disk must be exactly what is generated: each key appears, no key that
//!   no longer exists does;
//! - each page's example config passes `gate plan`.
//!
//! Regenerate after changing a config struct, its doc comments or an example:
//!
//! ```sh
//! GATE_BLESS=1 cargo test -p gate-cli --test reference
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/introspect.rs"]
mod introspect;
#[path = "support/source_docs.rs"]
mod source_docs;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gate_core::{BackendConfig, Registry};
use introspect::{Key, Kind, keys};
use serde::de::DeserializeOwned;
use source_docs::SourceDocs;

const BLESS: &str = "GATE_BLESS=1 cargo test -p gate-cli --test reference";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_owned()
}

/// A group of keys on a page: the section's own, or one preparer step type's.
struct Group {
    title: Option<String>,
    prefix: &'static str,
    keys: Vec<Key>,
}

fn of<T: DeserializeOwned>() -> Vec<Group> {
    vec![Group {
        title: None,
        prefix: "",
        keys: keys::<T>(),
    }]
}

/// The config struct(s) of each backend. A backend missing here is still documented,
/// from its factory's list of keys (without types): add it here for types and docs.
fn typed(section: &str, backend: &str) -> Option<Vec<Group>> {
    use gate_hosts::config as steps;
    Some(match (section, backend) {
        ("provider", "local") => of::<gate_providers_local::LocalConfig>(),
        ("provider", "static") => of::<gate_providers_local::StaticConfig>(),
        ("provider", "pubcloud") => of::<gate_providers_pubcloud::PubcloudConfig>(),
        ("provider", "heat") => of::<gate_providers_heat::HeatConfig>(),
        ("provider", "onmetal") => of::<gate_providers_onmetal::OnmetalConfig>(),
        ("agent", "jenkins") => of::<gate_agents::JenkinsConfig>(),
        ("agent", "monitoring") => of::<gate_agents::MonitoringConfig>(),
        ("validator", "hosts") => of::<gate_hosts::ValidatorConfig>(),
        ("deployer", "script") => of::<gate_deployers_script::ScriptConfig>(),
        ("deployer", "hooks") => of::<gate_deployers_script::HooksConfig>(),
        ("deployer", "osa") => of::<gate_deployers_osa::OsaConfig>(),
        ("deployer", "rpco") => of::<gate_deployers_rpco::RpcoConfig>(),
        ("tester", "command") => of::<gate_testers::CommandConfig>(),
        ("tester", "selenium") => of::<gate_testers::SeleniumConfig>(),
        ("tester", "ceph") => of::<gate_testers::CephConfig>(),
        ("tester", "tempest") => of::<gate_testers::TempestConfig>(),
        ("publisher", "s3") => of::<gate_artifacts::S3Config>(),
        ("publisher", "repo-server") => of::<gate_artifacts::RepoServerConfig>(),
        ("archiver", "streamed") => of::<gate_artifacts::StreamedArchiverConfig>(),
        ("archiver", "plain") => of::<gate_core::archive::PlainArchiverConfig>(),
        ("transport.ssh", "ssh") => of::<gate_ssh::SshConfig>(),
        ("preparer", "steps") => {
            // The section's own keys come from a private struct: its factory lists them.
            // Each step type's keys come from that type's struct.
            let step = |title: &str, keys: Vec<Key>| Group {
                title: Some(format!("`type = \"{title}\"`")),
                prefix: "steps[].",
                keys,
            };
            vec![
                step("authorized-keys", keys::<steps::AuthorizedKeysStep>()),
                step("ssh-mesh", keys::<steps::SshMeshStep>()),
                step("packages", keys::<steps::PackagesStep>()),
                step("ansible", keys::<steps::AnsibleStep>()),
                step("networking", keys::<steps::NetworkingStep>()),
                step("devices", keys::<steps::DevicesStep>()),
                step("script", keys::<gate_core::steps::Step>()),
            ]
        }
        _ => return None,
    })
}

/// The keys `backend`'s factory accepts at the top of its section, from the error an
/// unknown key gets (`expected one of …`); `None` when it accepts any key.
fn probe(registry: &Registry, section: &str, backend: &str) -> Option<Vec<String>> {
    let config = BackendConfig::from_toml(section, backend, "gate_probe_unknown_key = 0").unwrap();
    let err = match section {
        "provider" => registry.allocator(&config).err(),
        "agent" => registry.agent(&config).err(),
        "validator" => registry.validator(&config).err(),
        "preparer" => registry.preparer(&config).err(),
        "deployer" => registry.deployer(&config).err(),
        "tester" => registry.tester(&config).err(),
        "publisher" => registry.publisher(&config).err(),
        "archiver" => registry.archiver(&config).err(),
        _ => registry.transport(&config).err(),
    }?
    .to_string();
    assert!(
        err.contains("unknown field `gate_probe_unknown_key`"),
        "[{section}] {backend}: an unknown key must be refused by name: {err}"
    );
    if err.contains("there are no fields") {
        return Some(Vec::new());
    }
    let list = err.split("expected ").nth(1).unwrap_or_default();
    Some(
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect(),
    )
}

/// Every documented section and backend, from the registry `gate` is built with.
fn backends(registry: &Registry) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (role, names) in registry.roles() {
        let section = match role {
            "cleaner" => continue,
            "transport" => "transport",
            "provider" | "agent" | "validator" | "preparer" | "deployer" | "tester"
            | "publisher" | "archiver" => role,
            other => panic!("a new role `{other}`: add it to the reference"),
        };
        for name in names {
            let section = if section == "transport" {
                format!("transport.{name}")
            } else {
                section.to_owned()
            };
            out.push((section, name));
        }
    }
    out
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// `(default, meaning)` from a field's doc: a `Default: X.` (or `Default X.`) sentence
/// becomes the default.
fn split_default(doc: &str) -> (String, String) {
    for marker in ["Default: ", "default: ", "Default "] {
        let found = doc.match_indices(marker).map(|(at, _)| at).find(|&at| {
            at == 0
                || doc[..at].ends_with(". ")
                || doc[..at].ends_with("; ")
                || marker != "Default "
        });
        if let Some(at) = found {
            let rest = &doc[at + marker.len()..];
            let end = rest
                .match_indices(". ")
                .map(|(e, _)| e)
                .find(|&e| !rest[..e].ends_with("e.g") && !rest[..e].ends_with("i.e"))
                .map(|e| e + 1)
                .unwrap_or(rest.len());
            let default = rest[..end].trim_end_matches('.').trim().to_owned();
            let meaning = format!("{}{}", &doc[..at], &rest[end..]).trim().to_owned();
            return (default, meaning);
        }
    }
    ("".into(), doc.to_owned())
}

fn table(out: &mut String, keys: &[Key], prefix: &str, docs: &SourceDocs) {
    out.push_str("| key | type | default | meaning |\n|---|---|---|---|\n");
    for key in keys {
        let doc = docs.field(key.owner, key.field);
        let (default, meaning) = split_default(&doc);
        let default = if default.is_empty() {
            "—".into()
        } else {
            default
        };
        out.push_str(&format!(
            "| `{prefix}{}` | {} | {} | {} |\n",
            key.path,
            cell(&key.kind.to_string()),
            cell(&default),
            cell(&meaning)
        ));
    }
}

fn page_name(section: &str, backend: &str) -> String {
    match section.strip_prefix("transport.") {
        Some(_) => format!("transport-{backend}.md"),
        None => format!("{section}-{backend}.md"),
    }
}

/// A complete config showing `backend`: a provider's example alone, any other section's
/// after the `local` provider (or, for SSH, the `static` one).
fn complete_example(section: &str, backend: &str) -> Option<String> {
    let example = gate_cli::init::example(section, backend)?;
    if section == "provider" {
        return Some(example.toml.to_owned());
    }
    let base = if section.starts_with("transport") {
        "static"
    } else {
        "local"
    };
    let provider = gate_cli::init::example("provider", base)?;
    Some(format!("{}\n{}", provider.toml, example.toml))
}

struct Generated {
    files: BTreeMap<PathBuf, String>,
    /// Documented keys per page.
    keys: BTreeMap<PathBuf, BTreeSet<String>>,
    /// Complete examples per page.
    examples: BTreeMap<PathBuf, String>,
}

fn generate() -> Generated {
    let root = repo_root();
    let docs = SourceDocs::load(&root);
    let registry = gate_cli::wiring::registry(&[]);
    let mut generated = Generated {
        files: BTreeMap::new(),
        keys: BTreeMap::new(),
        examples: BTreeMap::new(),
    };
    let header = format!(
        "<!-- Generated from the config structs by `{BLESS}`. Edit their doc comments (and the examples in crates/cli/src/init.rs), not this file. -->\n"
    );
    let mut index = format!(
        "# Configuration reference\n\n{header}\nEvery key of every backend, generated from the config structs themselves \
(keys and types from serde, meanings and defaults from the fields' doc comments), so it \
cannot drift: a test fails when a key is added, renamed or removed without regenerating. \
How a run uses these settings is in the [user guide](guide.md); secrets (`{{ secret = \"…\" }}`, \
`{{ env = \"VAR\" }}`, `{{ file = \"…\" }}`) are described there too. Any key can be overridden \
with `GATE__SECTION__KEY=value` or `--set section.key=value`; every section rejects \
unknown keys, naming the file, section and key. `gate init --provider X --deployer Y \
--tester Z` writes a commented config from the examples below.\n\n"
    );

    // [run]
    index.push_str("## `[run]`\n\n");
    let run_keys = keys::<gate_cli::config::RunConfig>();
    table(&mut index, &run_keys, "", &docs);
    let index_path = root.join("docs/reference.md");
    generated.keys.insert(
        index_path.clone(),
        run_keys.iter().map(|k| k.path.clone()).collect(),
    );

    index.push_str("\n## Backends\n\nOne page per backend, each with a complete example config that `gate plan` accepts.\n\n| section | backend | what it is |\n|---|---|---|\n");
    let mut without_settings = Vec::new();
    for (section, backend) in backends(&registry) {
        let probed = probe(&registry, &section, &backend);
        let Some(probed) = probed else {
            // Takes no settings (the `local` transport): listed after the table.
            without_settings.push(format!("`[{section}]` `{backend}`"));
            continue;
        };
        let groups = typed(&section, &backend);
        let summary = gate_cli::init::example(&section, &backend)
            .map(|e| e.summary)
            .unwrap_or("");
        let name = page_name(&section, &backend);
        index.push_str(&format!(
            "| `[{section}]` | [`{backend}`](backends/{name}) | {summary} |\n"
        ));
        let mut page = format!("# `[{section}]` — `backend = \"{backend}\"`\n\n{header}\n");
        if !summary.is_empty() {
            page.push_str(&format!(
                "{}{}.\n\n",
                summary[..1].to_uppercase(),
                &summary[1..]
            ));
        }
        page.push_str("How it behaves is in the [user guide](../guide.md); all sections: [reference](../reference.md).\n\n");
        let path = root.join("docs/backends").join(&name);
        if let Some(example) = complete_example(&section, &backend) {
            page.push_str(&format!("## Example\n\n```toml\n{example}```\n\n"));
            generated.examples.insert(path.clone(), example);
        }
        page.push_str("## Keys\n\n");
        let mut documented = BTreeSet::new();
        match groups {
            Some(groups) => {
                let top: BTreeSet<String> = groups
                    .iter()
                    .filter(|g| g.prefix.is_empty())
                    .flat_map(|g| g.keys.iter().filter(|k| !k.path.contains(['.', '['])))
                    .map(|k| k.path.clone())
                    .collect();
                let untyped: Vec<&String> = if groups.iter().any(|g| g.prefix.is_empty()) {
                    assert_eq!(
                        top,
                        probed.iter().cloned().collect::<BTreeSet<_>>(),
                        "[{section}] {backend}: the struct in `typed()` is not the one its factory parses"
                    );
                    Vec::new()
                } else {
                    probed.iter().collect()
                };
                if !untyped.is_empty() {
                    page.push_str("The section's own keys (see the [user guide](../guide.md)):\n\n| key |\n|---|\n");
                    for key in untyped {
                        page.push_str(&format!("| `{key}` |\n"));
                        documented.insert(key.clone());
                    }
                    page.push('\n');
                }
                for group in groups {
                    if let Some(title) = &group.title {
                        page.push_str(&format!("### {title}\n\n"));
                        if section == "preparer" && !title.contains("script") {
                            page.push_str("Besides `type`, every step takes `name`, `hosts` (`primary` / `all`) and `timeout_secs`.\n\n");
                        }
                    }
                    table(&mut page, &group.keys, group.prefix, &docs);
                    page.push('\n');
                    documented.extend(
                        group
                            .keys
                            .iter()
                            .map(|k| format!("{}{}", group.prefix, k.path)),
                    );
                }
            }
            None => {
                page.push_str("Types and meanings are in the crate's docs (this backend's struct is not yet listed in crates/cli/tests/reference.rs).\n\n| key |\n|---|\n");
                for key in &probed {
                    page.push_str(&format!("| `{key}` |\n"));
                    documented.insert(key.clone());
                }
                page.push('\n');
            }
        }
        generated.keys.insert(path.clone(), documented);
        generated
            .files
            .insert(path, page.trim_end().to_owned() + "\n");
    }
    if !without_settings.is_empty() {
        index.push_str(&format!(
            "\nBackends without settings (and so without a page): {}.\n",
            without_settings.join(", ")
        ));
    }
    generated.files.insert(index_path, index);
    generated
}

/// The keys a page on disk lists: the first cell of each table row.
fn keys_in(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|k| !k.starts_with('['))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_reference_lists_every_key_of_every_backend_and_nothing_else() {
    let generated = generate();
    let dir = repo_root().join("docs/backends");
    if std::env::var_os("GATE_BLESS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for old in std::fs::read_dir(&dir).unwrap().flatten() {
            if !generated.files.contains_key(&old.path()) {
                std::fs::remove_file(old.path()).unwrap();
            }
        }
        for (path, text) in &generated.files {
            std::fs::write(path, text).unwrap();
        }
        eprintln!("wrote {} reference pages", generated.files.len());
        return;
    }
    let mut problems = Vec::new();
    for (path, text) in &generated.files {
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        let (want, have) = (&generated.keys[path], keys_in(&on_disk));
        let name = path.strip_prefix(repo_root()).unwrap().display();
        for key in want.difference(&have) {
            problems.push(format!("{name}: key `{key}` is missing"));
        }
        for key in have.difference(want) {
            problems.push(format!("{name}: key `{key}` no longer exists"));
        }
        if &on_disk != text && want == &have {
            problems.push(format!(
                "{name}: differs from what the structs and examples say"
            ));
        }
    }
    for page in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if !generated.files.contains_key(&page.path()) {
            problems.push(format!(
                "{}: no such backend any more",
                page.path().display()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the reference is out of date:\n  {}\nregenerate it with `{BLESS}`",
        problems.join("\n  ")
    );
}

/// The TOML examples of the hand-written pages pass `gate plan` too (with a one-letter
/// token: short secrets once deadlocked the secret registry).
#[test]
fn the_rpc_gating_example_passes_gate_plan() {
    let text = std::fs::read_to_string(repo_root().join("docs/from-rpc-gating.md")).unwrap();
    let blocks: Vec<&str> = text
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    assert!(!blocks.is_empty());
    let work = tempfile::tempdir().unwrap();
    for block in blocks {
        std::fs::write(work.path().join("gate.toml"), block).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gate"))
            .args(["plan", "-c", "gate.toml"])
            .current_dir(work.path())
            .env("JENKINS_TOKEN", "x")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{block}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn introspection_sees_nested_tables_lists_and_enums() {
    let pubcloud = keys::<gate_providers_pubcloud::PubcloudConfig>();
    let find = |path: &str| {
        pubcloud
            .iter()
            .find(|k| k.path == path)
            .map(|k| k.kind.clone())
    };
    assert_eq!(find("hosts"), Some(Kind::Integer));
    assert_eq!(find("regions"), Some(Kind::List(Box::new(Kind::String))));
    assert_eq!(find("api"), Some(Kind::Table));
    assert_eq!(find("api.tries"), Some(Kind::Integer));
    let command = keys::<gate_testers::CommandConfig>();
    assert!(
        command.iter().any(|k| k.path == "tests[].script"),
        "{command:?}"
    );
    let jenkins = keys::<gate_agents::JenkinsConfig>();
    let launcher = jenkins.iter().find(|k| k.path == "launcher").unwrap();
    assert!(matches!(&launcher.kind, Kind::OneOf(v) if v.contains(&"inbound".to_owned())));
}

#[test]
fn every_backend_page_example_passes_gate_plan() {
    let generated = generate();
    assert!(
        generated.examples.len() >= 15,
        "too few examples: {}",
        generated.examples.len()
    );
    let work = tempfile::tempdir().unwrap();
    for (page, example) in &generated.examples {
        let config = work.path().join("gate.toml");
        std::fs::write(&config, example).unwrap();
        let mut gate = std::process::Command::new(env!("CARGO_BIN_EXE_gate"));
        // Secrets from the environment are read at plan time: give the named ones a value.
        for name in example.split("{ env = \"").skip(1) {
            gate.env(name.split('"').next().unwrap(), "placeholder");
        }
        let out = gate
            .arg("plan")
            .arg("-c")
            .arg(&config)
            .current_dir(work.path())
            .env_remove("OS_CLOUD")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: `gate plan` refused its example:\n{}",
            page.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Relative links of the reference, the backend pages and the authors' and users' pages
/// written beside them point at files that exist.
#[test]
fn links_of_the_generated_and_companion_pages_resolve() {
    let root = repo_root();
    let mut pages: Vec<PathBuf> = [
        "docs/reference.md",
        "docs/authors.md",
        "docs/embedding.md",
        "docs/from-rpc-gating.md",
        "docs/troubleshooting.md",
    ]
    .iter()
    .map(|p| root.join(p))
    .collect();
    pages.extend(
        std::fs::read_dir(root.join("docs/backends"))
            .unwrap()
            .flatten()
            .map(|e| e.path()),
    );
    let mut broken = Vec::new();
    for page in pages {
        let text = std::fs::read_to_string(&page).unwrap();
        for link in text.split("](").skip(1).filter_map(|l| l.split(')').next()) {
            let target = link.split('#').next().unwrap_or_default();
            if target.is_empty() || target.contains("://") {
                continue;
            }
            if !page.parent().unwrap().join(target).exists() {
                broken.push(format!("{}: {link}", page.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
