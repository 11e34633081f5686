//! `gate sweep`: leaked resources found without a ledger, by gate's tags and names, and
//! deleted only once two passes some minutes apart have seen them — so a sweep never races
//! a run that is just starting. Sightings are kept in a file, so the passes can be two
//! invocations (e.g. an hourly CI job).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use gate_core::{
    BackendConfig, CleanContext, Cleaner, LiveResource, Observed, Registry, Resource, RunId,
    SweepFilter,
};
use serde::{Deserialize, Serialize};

use crate::args::ConfigArgs;
use crate::commands::{Failure, Outcome, exit};
use crate::config::GateConfig;
use crate::output::table;
use crate::wiring;

/// `gate sweep`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  \
    gate sweep --dry-run                 # what is leaked, nothing deleted or recorded\n  \
    gate sweep                           # record sightings; delete what an earlier pass saw ≥ 5 min ago\n  \
    gate sweep --older-than 2h --confirm-after 10m --sightings /var/lib/gate/sweep.json")]
pub struct SweepArgs {
    /// Where the config comes from: every configured backend that can sweep (the provider,
    /// the CI agent) is asked, in every region it is configured for.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Only resources older than this (`12h`, `90m`, `45s`, `2d`); resources in ERROR or
    /// FAILED states regardless of age.
    #[arg(long, default_value = "12h", value_parser = parse_age)]
    pub older_than: Duration,
    /// Delete a resource only when an earlier pass saw it at least this long ago.
    #[arg(long, default_value = "5m", value_parser = parse_age)]
    pub confirm_after: Duration,
    /// List what is found; delete nothing and record no sighting.
    #[arg(long)]
    pub dry_run: bool,
    /// The sightings file (default: `sweep-sightings.json` in the state dir).
    #[arg(long)]
    pub sightings: Option<PathBuf>,
    /// Only this run's resources.
    #[arg(long)]
    pub run: Option<String>,
}

/// `12h`, `90m`, `45s`, `2d`, or plain seconds.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((at, _)) => (&text[..at], &text[at..]),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not an age like 12h, 90m, 45s or 2d"))?;
    let seconds = match unit {
        "s" => value,
        "m" => value * 60,
        "h" => value * 3600,
        "d" => value * 86_400,
        other => return Err(format!("unknown unit `{other}` in `{text}` (s, m, h, d)")),
    };
    Ok(Duration::from_secs(seconds))
}

/// One resource seen by a pass.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Sighting {
    backend: String,
    kind: String,
    scope: String,
    name: String,
    id: String,
    /// Unix seconds of the first pass that saw it.
    first_seen: u64,
}

fn key(backend: &str, found: &Observed) -> String {
    format!(
        "{backend}\u{1f}{}\u{1f}{}\u{1f}{}",
        found.kind, found.scope, found.id
    )
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn load_sightings(path: &Path) -> Result<BTreeMap<String, Sighting>, Failure> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Failure::usage(format!("{}: not a sightings file: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(Failure::usage(format!("{}: {e}", path.display()))),
    }
}

fn save_sightings(path: &Path, sightings: &BTreeMap<String, Sighting>) -> Result<(), Failure> {
    let infra = |e: std::io::Error| Failure {
        code: exit::INFRA,
        message: format!("writing {}: {e}", path.display()),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(infra)?;
    }
    let text = serde_json::to_vec_pretty(sightings).unwrap_or_default();
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, text).map_err(infra)?;
    std::fs::rename(&partial, path).map_err(infra)
}

/// A configured section whose backend can sweep, with that backend's cleaner.
type Sweeper = (BackendConfig, Arc<dyn Cleaner>);

/// The configured sections whose backend can sweep.
fn sweepers(config: &GateConfig, registry: &Registry) -> Result<Vec<Sweeper>, Failure> {
    let mut found = Vec::new();
    let provider = config.sections.get("provider");
    for section in provider.into_iter().chain(config.agents()) {
        if registry.has_cleaner(section.backend()) {
            let cleaner = registry
                .cleaner(section)
                .map_err(|e| Failure::usage(e.to_string()))?;
            found.push((section.clone(), cleaner));
        }
    }
    Ok(found)
}

/// `gate sweep`.
pub async fn sweep(args: &SweepArgs, registry: &Arc<Registry>) -> Outcome {
    let config = GateConfig::load(&args.config).map_err(Failure::usage)?;
    let run_id = args
        .run
        .as_ref()
        .map(|r| {
            RunId::try_from(r.clone())
                .map_err(|_| Failure::usage(format!("--run {r}: not a gate run id")))
        })
        .transpose()?;
    let connectors =
        wiring::connectors(&config, registry).map_err(|e| Failure::usage(e.to_string()))?;
    let cx = CleanContext::new(Arc::new(connectors));
    let path = args
        .sightings
        .clone()
        .unwrap_or_else(|| config.run.state_dir.join("sweep-sightings.json"));
    let mut sightings = load_sightings(&path)?;
    let filter = SweepFilter {
        older_than: args.older_than,
        run_id: run_id.clone(),
        delete: false,
    };
    let now = now_secs();
    let mut seen_now = BTreeMap::new();
    let mut rows = Vec::new();
    let mut failed = false;
    let mut unanswered = Vec::new();
    let mut deleted = 0;
    for (section, cleaner) in sweepers(&config, registry)? {
        let backend = section.backend().to_owned();
        let found = match cleaner.sweep(&filter, &cx).await {
            Ok(found) => found,
            Err(e) => {
                eprintln!("[{}] {backend}: sweep failed: {e}", section.section());
                failed = true;
                unanswered.push(backend);
                continue;
            }
        };
        for item in found {
            let key = key(&backend, &item);
            let first_seen = sightings.get(&key).map_or(now, |s| s.first_seen);
            let age = Duration::from_secs(now.saturating_sub(first_seen));
            let confirmed = sightings.contains_key(&key) && age >= args.confirm_after;
            let status = if args.dry_run {
                if confirmed { "would delete" } else { "seen" }.to_owned()
            } else if confirmed {
                match delete(cleaner.as_ref(), &backend, &item, &cx).await {
                    Ok(()) => {
                        deleted += 1;
                        "deleted".to_owned()
                    }
                    Err(e) => {
                        failed = true;
                        format!("delete failed: {e}")
                    }
                }
            } else if sightings.contains_key(&key) {
                format!("seen {}s ago, waiting", age.as_secs())
            } else {
                "first seen".to_owned()
            };
            if status != "deleted" {
                seen_now.insert(
                    key,
                    Sighting {
                        backend: backend.clone(),
                        kind: item.kind.clone(),
                        scope: item.scope.clone(),
                        name: item.name.clone(),
                        id: item.id.clone(),
                        first_seen,
                    },
                );
            }
            rows.push(vec![
                backend.clone(),
                item.kind.clone(),
                item.name.clone(),
                item.scope.clone(),
                item.run_id.map(String::from).unwrap_or_else(|| "-".into()),
                status,
            ]);
        }
    }
    if rows.is_empty() && unanswered.is_empty() {
        println!(
            "nothing leaked (older than {}s, or in an error state)",
            args.older_than.as_secs()
        );
    } else if rows.is_empty() {
        println!(
            "nothing found by the backends that answered; not swept: {}",
            unanswered.join(", ")
        );
    } else {
        println!(
            "{}",
            table(
                &["BACKEND", "KIND", "NAME", "WHERE", "RUN", "STATUS"],
                &rows
            )
        );
    }
    if !args.dry_run {
        // Only what this pass saw stays: a resource gone meanwhile starts over if it returns.
        // A backend that did not answer keeps its sightings for the next pass.
        for (key, sighting) in sightings {
            if unanswered.contains(&sighting.backend) {
                seen_now.insert(key, sighting);
            }
        }
        sightings = seen_now;
        save_sightings(&path, &sightings)?;
        println!(
            "{deleted} deleted; {} waiting for a second sighting ≥ {}s apart (kept in {})",
            sightings.len(),
            args.confirm_after.as_secs(),
            path.display()
        );
    }
    Ok(if failed { exit::INFRA } else { exit::OK })
}

/// Deletes one swept resource through the backend's cleaner, as cleanup would.
async fn delete(
    cleaner: &dyn Cleaner,
    backend: &str,
    item: &Observed,
    cx: &CleanContext,
) -> gate_core::Result<()> {
    let run_id = item
        .run_id
        .clone()
        .or_else(|| RunId::try_from("gate-sweep".to_owned()).ok())
        .ok_or_else(|| gate_core::Error::backend(backend, "no run id"))?;
    let resource = LiveResource {
        spec: Resource::new(backend, &item.kind, &item.scope, &item.name),
        run_id,
        id: Some(item.id.clone()),
        intent_at: None,
    };
    cleaner.clean(&resource, cx).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_take_units_and_plain_seconds() {
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_age("90m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_age("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_age("30"), Ok(Duration::from_secs(30)));
        assert!(parse_age("5w").unwrap_err().contains("unknown unit"));
        assert!(parse_age("soon").is_err());
    }
}
