//! Loading gate's TOML config: the file, then `GATE__SECTION__KEY` environment overrides,
//! then `--set key=value`. Errors name the file, the section and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gate_core::BackendConfig;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::args::ConfigArgs;

/// The embedded default config: the local example.
pub const EMBEDDED: &str = include_str!("../../../examples/local.toml");
/// What the embedded config is called in messages.
pub const EMBEDDED_NAME: &str = "<embedded local example>";

/// The backend sections, with the role that builds them and their default backend.
pub const SECTIONS: &[(&str, Option<&str>)] = &[
    ("provider", Some("local")),
    ("agent", None),
    ("validator", None),
    ("preparer", None),
    ("deployer", None),
    ("tester", None),
    ("publisher", None),
    ("archiver", Some("streamed")),
];

/// The sections that may also be an array of tables (`[[agent]]`), stored as `agent.1`,
/// `agent.2`, … in config order.
pub const MANY: &[&str] = &["agent"];

/// `[run]`: where state and artifacts go and how the run behaves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The state directory. Default: `.gate`.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The local artifacts directory. Default: `artifacts`.
    #[serde(default = "default_artifacts_dir")]
    pub artifacts_dir: PathBuf,
    /// Hosts worked on at once. Default: 10.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// The CI job name (tagged on resources). Default: `JOB_NAME` from the environment.
    #[serde(default)]
    pub job: Option<String>,
    /// The keys file: OpenSSH public keys allowed on the run's hosts, fetched once per run
    /// from an `https://`, `http://` or `file://` URL (or a plain path).
    #[serde(default)]
    pub keys_file: Option<String>,
    /// A CA certificate (PEM) to trust for an `https://` keys file, besides the usual roots.
    #[serde(default)]
    pub keys_ca: Option<PathBuf>,
}

fn default_state_dir() -> PathBuf {
    ".gate".into()
}
fn default_artifacts_dir() -> PathBuf {
    "artifacts".into()
}
fn default_concurrency() -> usize {
    10
}

/// A config error, always naming where.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::error::Error for ConfigError {}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The loaded config.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// Where it came from (a path, or the embedded example).
    pub source: String,
    /// `[run]`.
    pub run: RunConfig,
    /// Backend sections by name, each with its backend.
    pub sections: BTreeMap<String, BackendConfig>,
    /// `[transport.NAME]` tables by transport name.
    pub transports: BTreeMap<String, config::Map<String, config::Value>>,
    /// The whole resolved config as JSON, secrets masked.
    pub redacted: serde_json::Value,
    /// SHA-256 of `redacted`.
    pub digest: String,
}

impl GateConfig {
    /// Loads the config `args` name.
    pub fn load(args: &ConfigArgs) -> Result<Self, ConfigError> {
        let (source, text) = match &args.config {
            Some(path) => (path.display().to_string(), read(path)?),
            None if Path::new("gate.toml").exists() => {
                ("gate.toml".to_owned(), read(Path::new("gate.toml"))?)
            }
            None => (EMBEDDED_NAME.to_owned(), EMBEDDED.to_owned()),
        };
        Self::from_text(&source, &text, &args.sets)
    }

    /// Parses `text` (TOML from `source`) with environment and `--set` overrides.
    pub fn from_text(source: &str, text: &str, sets: &[String]) -> Result<Self, ConfigError> {
        let err = |e: config::ConfigError| ConfigError(format!("{source}: {e}"));
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("GATE")
                    .prefix_separator("__")
                    .separator("__"),
            );
        for set in sets {
            let Some((key, value)) = set.split_once('=') else {
                return Err(ConfigError(format!(
                    "--set {set}: expected KEY=VALUE, e.g. --set provider.hosts=5"
                )));
            };
            builder = builder.set_override(key.trim(), value).map_err(err)?;
        }
        let table = builder
            .build()
            .and_then(|c| c.cache.into_table())
            .map_err(err)?;

        let known: Vec<&str> = ["run", "transport"]
            .into_iter()
            .chain(SECTIONS.iter().map(|(name, _)| *name))
            .collect();
        if let Some(unknown) = table.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ConfigError(format!(
                "{source}: [{unknown}]: unknown section; sections are: {}",
                known.join(", ")
            )));
        }

        let run_value = table.get("run").cloned().unwrap_or_else(|| {
            config::Value::new(None, config::Map::<String, config::Value>::new())
        });
        let run: RunConfig = BackendConfig::new(source, "run", "", run_value)
            .parse()
            .map_err(|e| ConfigError(e.to_string()))?;
        if run.concurrency == 0 {
            return Err(ConfigError(format!(
                "{source}: [run] concurrency: must be at least 1"
            )));
        }

        let mut sections = BTreeMap::new();
        for (name, default) in SECTIONS {
            if let Some(value) = table.get(*name)
                && let config::ValueKind::Array(tables) = &value.kind
            {
                if !MANY.contains(name) {
                    return Err(ConfigError(format!(
                        "{source}: [[{name}]]: only one [{name}] table is allowed"
                    )));
                }
                for (i, value) in tables.iter().enumerate() {
                    let numbered = format!("{name}.{}", i + 1);
                    let section = backend_section(source, &numbered, value.clone(), *default)?;
                    sections.insert(numbered, section);
                }
                continue;
            }
            let section = match table.get(*name) {
                Some(value) => Some(backend_section(source, name, value.clone(), *default)?),
                None => default.map(|backend| BackendConfig::empty(source, *name, backend)),
            };
            if let Some(section) = section {
                sections.insert((*name).to_owned(), section);
            }
        }

        let mut transports = BTreeMap::new();
        if let Some(value) = table.get("transport") {
            let all = value.clone().into_table().map_err(|_| {
                ConfigError(format!(
                    "{source}: [transport]: must hold tables such as [transport.ssh]"
                ))
            })?;
            for (name, value) in all {
                let section = value.into_table().map_err(|_| {
                    ConfigError(format!("{source}: [transport.{name}]: must be a table"))
                })?;
                transports.insert(name, section);
            }
        }

        let tree = serde_json::Value::deserialize(config::Value::new(None, table))
            .map_err(|e| ConfigError(format!("{source}: {e}")))?;
        let redacted = gate_core::secret::redact_json(&tree);
        let digest = format!(
            "{:x}",
            Sha256::digest(serde_json::to_vec(&redacted).unwrap_or_default())
        );
        Ok(Self {
            source: source.to_owned(),
            run,
            sections,
            transports,
            redacted,
            digest,
        })
    }

    /// The `[agent]` table, or every `[[agent]]` table in config order.
    pub fn agents(&self) -> Vec<&BackendConfig> {
        let mut numbered: Vec<(usize, &BackendConfig)> = self
            .sections
            .iter()
            .filter_map(|(name, section)| match name.as_str() {
                "agent" => Some((0, section)),
                other => other
                    .strip_prefix("agent.")
                    .and_then(|n| n.parse().ok())
                    .map(|n| (n, section)),
            })
            .collect();
        numbered.sort_by_key(|(n, _)| *n);
        numbered.into_iter().map(|(_, section)| section).collect()
    }

    /// The section selecting `backend` for cleanup, if the config has one.
    pub fn section_for_backend(&self, backend: &str) -> Option<&BackendConfig> {
        self.sections.values().find(|s| s.backend() == backend)
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))
}

/// A backend section: its `backend` key (or the default) and the rest of the table.
fn backend_section(
    source: &str,
    name: &str,
    value: config::Value,
    default: Option<&str>,
) -> Result<BackendConfig, ConfigError> {
    let mut table = value
        .into_table()
        .map_err(|_| ConfigError(format!("{source}: [{name}]: must be a table")))?;
    let backend = match table.remove("backend") {
        Some(value) => value
            .into_string()
            .map_err(|_| ConfigError(format!("{source}: [{name}] backend: must be a string")))?,
        None => match default {
            Some(default) => default.to_owned(),
            None => {
                return Err(ConfigError(format!(
                    "{source}: [{name}] backend: missing; say which {name} to use (`gate providers` lists them)"
                )));
            }
        },
    };
    Ok(BackendConfig::new(
        source,
        name,
        backend,
        config::Value::new(None, table),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_and_set_override_the_file_and_stay_strings_until_parsed() {
        let cfg = GateConfig::from_text(
            "t.toml",
            "[provider]\nbackend = \"local\"\nhosts = 2\n",
            &["provider.hosts=5".into(), "provider.name=27.10".into()],
        )
        .unwrap();
        let local: gate_providers_local::LocalConfig = cfg.sections["provider"].parse().unwrap();
        assert_eq!(local.hosts, 5);
        assert_eq!(local.name.as_deref(), Some("27.10"));
    }

    #[test]
    fn errors_name_file_section_and_key() {
        let cases = [
            ("[provder]\nhosts = 1", "t.toml: [provder]: unknown section"),
            ("[run]\nstate = 1", "t.toml: [run]"),
            (
                "[deployer]\nprepare = []",
                "t.toml: [deployer] backend: missing",
            ),
            ("[provider]\nhosts = [", "t.toml"),
        ];
        for (text, expected) in cases {
            let err = GateConfig::from_text("t.toml", text, &[])
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        let err = GateConfig::from_text("t.toml", "", &["novalue".into()]).unwrap_err();
        assert!(err.to_string().contains("KEY=VALUE"));
    }

    #[test]
    fn digest_ignores_secret_values_and_masks_them() {
        let a = GateConfig::from_text(
            "t",
            "[deployer]\nbackend = \"script\"\nenv = { T = { secret = \"cfg-digest-one\" } }",
            &[],
        )
        .unwrap();
        let b = GateConfig::from_text(
            "t",
            "[deployer]\nbackend = \"script\"\nenv = { T = { secret = \"cfg-digest-two\" } }",
            &[],
        )
        .unwrap();
        assert_eq!(a.digest, b.digest);
        assert!(!a.redacted.to_string().contains("cfg-digest-one"));
        let c = GateConfig::from_text(
            "t",
            "[deployer]\nbackend = \"script\"\nenv = { T = \"plain\" }",
            &[],
        )
        .unwrap();
        assert_ne!(a.digest, c.digest);
    }

    #[test]
    fn agent_tables_may_repeat_and_keep_their_order() {
        let text = "[[agent]]\nbackend = \"jenkins\"\nurl = \"http://127.0.0.1:1/\"\n\
                    [[agent]]\nbackend = \"monitoring\"\n";
        let cfg = GateConfig::from_text("t.toml", text, &[]).unwrap();
        let backends: Vec<&str> = cfg.agents().iter().map(|s| s.backend()).collect();
        assert_eq!(backends, ["jenkins", "monitoring"]);
        assert!(!cfg.sections.contains_key("agent"));

        let single = GateConfig::from_text("t.toml", "[agent]\nbackend = \"jenkins\"", &[]);
        assert_eq!(single.unwrap().agents()[0].backend(), "jenkins");

        let err = GateConfig::from_text("t.toml", "[[deployer]]\nbackend = \"script\"", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[[deployer]]: only one [deployer] table"),
            "{err}"
        );
        let err = GateConfig::from_text("t.toml", "[[agent]]\nurl = \"x\"", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("[agent.1] backend: missing"), "{err}");
    }

    #[test]
    fn the_embedded_example_loads() {
        let cfg = GateConfig::from_text(EMBEDDED_NAME, EMBEDDED, &[]).unwrap();
        assert_eq!(cfg.sections["provider"].backend(), "local");
        assert_eq!(cfg.sections["archiver"].backend(), "streamed");
    }
}
