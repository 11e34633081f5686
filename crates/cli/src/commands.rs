//! The subcommands.

use std::sync::Arc;

use gate_core::ledger::Replay;
use gate_core::{
    Error, EventSink, Interrupt, Pipeline, PipelineOptions, Registry, RunState, Stage, StateDir,
};

use crate::args::{CleanupArgs, ConfigArgs, InitArgs, RunArgs, StageArgs, StatusArgs};
use crate::config::{EMBEDDED, GateConfig};
use crate::output::{PlainEvents, first_line, stage_table, status_word};
use crate::wiring;

/// Exit codes.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Bad usage or config.
    pub const USAGE: i32 = 2;
    /// Infrastructure failed.
    pub const INFRA: i32 = 3;
}

/// A failure before any stage ran: a message and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: i32,
    /// What to tell the user.
    pub message: String,
}

impl Failure {
    fn usage(message: impl ToString) -> Self {
        Self {
            code: exit::USAGE,
            message: message.to_string(),
        }
    }

    fn from_core(e: Error) -> Self {
        let code = match e {
            Error::Io { .. } => exit::INFRA,
            _ => exit::USAGE,
        };
        Self {
            code,
            message: e.to_string(),
        }
    }
}

type Outcome = Result<i32, Failure>;

/// Everything a pipeline command needs.
struct Loaded {
    config: GateConfig,
    pipeline: Pipeline,
}

fn load(
    args: &ConfigArgs,
    registry: &Arc<Registry>,
    keep: bool,
    verbose: u8,
) -> Result<Loaded, Failure> {
    let config = GateConfig::load(args).map_err(Failure::usage)?;
    let backends = wiring::backends(&config, registry).map_err(Failure::usage)?;
    let events: Arc<dyn EventSink> = Arc::new(PlainEvents::new(verbose > 0));
    let pipeline = Pipeline {
        backends,
        state: StateDir::new(&config.run.state_dir),
        artifacts_dir: config.run.artifacts_dir.clone(),
        events,
        options: PipelineOptions {
            keep,
            concurrency: config.run.concurrency,
            job: config
                .run
                .job
                .clone()
                .or_else(|| std::env::var("JOB_NAME").ok()),
            keys_file: None,
            config_digest: config.digest.clone(),
            config: config.redacted.clone(),
        },
    };
    Ok(Loaded { config, pipeline })
}

/// Refuses a config whose digest differs from the recorded run's, unless forced.
fn check_digest(loaded: &Loaded, run: &RunState, force: bool) -> Result<(), Failure> {
    if run.config_digest == loaded.config.digest || force {
        return Ok(());
    }
    Err(Failure::usage(format!(
        "{}: this config differs from the one run {} started with (digest {} vs {}); pass the same -c and --set, or --force",
        loaded.config.source,
        run.run_id,
        short(&loaded.config.digest),
        short(&run.config_digest)
    )))
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

async fn execute(loaded: &Loaded, stages: &[Stage]) -> Outcome {
    let _lock = loaded.pipeline.state.lock().map_err(Failure::from_core)?;
    let interrupt = Interrupt::new();
    let listener = interrupt
        .listen_for_signals()
        .map_err(|e| Failure::usage(format!("cannot watch for signals: {e}")))?;
    let summary = loaded.pipeline.run(stages, &interrupt).await;
    listener.abort();
    let summary = summary.map_err(Failure::from_core)?;
    let run = &summary.run;
    let verdict = match summary.exit_code {
        0 if run.kept => "passed, hosts kept (free them with `gate cleanup`)",
        0 => "passed",
        1 => "FAILED (the product)",
        2 => "FAILED (usage)",
        3 => "FAILED (infrastructure)",
        _ => "INTERRUPTED",
    };
    eprintln!(
        "\nrun {}: {verdict} — exit {}\n{}",
        run.run_id,
        summary.exit_code,
        stage_table(run)
    );
    for cause in run
        .causes
        .iter()
        .filter(|c| stages.iter().any(|s| Some(*s) == c.stage))
    {
        eprintln!(
            "  {}: {}",
            cause.stage.map(|s| s.name()).unwrap_or("run"),
            first_line(&cause.message)
        );
    }
    eprintln!(
        "state: {}  artifacts: {}",
        loaded.pipeline.state.root().display(),
        loaded.pipeline.artifacts_dir.display()
    );
    Ok(summary.exit_code)
}

/// `gate run`.
pub async fn run(args: &RunArgs, registry: &Arc<Registry>, verbose: u8) -> Outcome {
    let loaded = load(&args.config, registry, args.keep, verbose)?;
    let stages = args.stages();
    if stages.is_empty() {
        return Err(Failure::usage(
            "the stage selection is empty: check --from, --to, --skip and --only",
        ));
    }
    if !stages.contains(&Stage::Allocate)
        && let Ok(Some(run)) = loaded.pipeline.state.load_run()
    {
        check_digest(&loaded, &run, false)?;
    }
    execute(&loaded, &stages).await
}

/// `gate stage`.
pub async fn stage(args: &StageArgs, registry: &Arc<Registry>, verbose: u8) -> Outcome {
    let loaded = load(&args.config, registry, false, verbose)?;
    if args.stage != Stage::Allocate
        && let Ok(Some(run)) = loaded.pipeline.state.load_run()
    {
        check_digest(&loaded, &run, args.force)?;
    }
    execute(&loaded, &[args.stage]).await
}

/// `gate cleanup`.
pub async fn cleanup(args: &CleanupArgs, registry: &Arc<Registry>, verbose: u8) -> Outcome {
    let loaded = load(&args.config, registry, false, verbose)?;
    let state = &loaded.pipeline.state;
    let run = state.load_run().map_err(Failure::from_core)?;
    let live = Replay::read(&state.ledger())
        .map_err(Failure::from_core)?
        .live();
    let Some(run) = run else {
        if live.is_empty() {
            eprintln!("nothing to clean up in {}", state.root().display());
            return Ok(exit::OK);
        }
        return Err(Failure::usage(format!(
            "{}: the ledger holds {} live resource(s) but run.json is missing; restore it, or free them with the backend's own tools",
            state.root().display(),
            live.len()
        )));
    };
    check_digest(&loaded, &run, args.force)?;
    execute(&loaded, &[Stage::Cleanup]).await
}

/// `gate plan`.
pub fn plan(args: &ConfigArgs, registry: &Arc<Registry>) -> Outcome {
    let loaded = load(args, registry, false, 0)?;
    let config = &loaded.config;
    println!(
        "config: {} (digest {})",
        config.source,
        short(&config.digest)
    );
    println!("state dir: {}", config.run.state_dir.display());
    println!("artifacts: {}", config.run.artifacts_dir.display());
    println!("\nstages:");
    for stage in Stage::ALL {
        match loaded.pipeline.backends.name_for(stage) {
            Some(backend) => println!("  {:<20} {backend}", stage.name()),
            None => println!("  {:<20} - (not configured: skipped)", stage.name()),
        }
    }
    let resolved = serde_json::to_string_pretty(&config.redacted).unwrap_or_default();
    println!("\nresolved config (secrets masked):\n{resolved}");
    Ok(exit::OK)
}

/// `gate status`.
pub fn status(args: &StatusArgs) -> Outcome {
    let state_dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => {
            GateConfig::load(&args.config)
                .map_err(Failure::usage)?
                .run
                .state_dir
        }
    };
    let state = StateDir::new(&state_dir);
    let run = state.load_run().map_err(Failure::from_core)?;
    let inventory = state.load_inventory().map_err(Failure::from_core)?;
    let replay = Replay::read(&state.ledger()).map_err(Failure::from_core)?;
    let live = replay.live();
    if args.json {
        let value = serde_json::json!({
            "state_dir": state_dir,
            "run": run,
            "inventory": inventory,
            "live_resources": live.iter().map(|r| serde_json::json!({
                "backend": r.spec.backend, "kind": r.spec.kind, "scope": r.spec.scope,
                "name": r.spec.name, "id": r.id, "run_id": r.run_id,
            })).collect::<Vec<_>>(),
            "ledger_warnings": replay.warnings,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(exit::OK);
    }
    let Some(run) = run else {
        println!("no run recorded in {}", state_dir.display());
        return Ok(exit::OK);
    };
    println!(
        "run {} (started {}, exit {})",
        run.run_id, run.started_at, run.exit_code
    );
    print!("{}", stage_table(&run));
    if let Some(inventory) = inventory {
        println!("hosts:");
        for host in inventory.hosts() {
            println!(
                "  {:<28} {}@{} via {}",
                host.name, host.user, host.address, host.transport
            );
        }
    }
    println!("live resources: {}", live.len());
    for r in &live {
        println!(
            "  {} {} {} ({})",
            r.spec.backend,
            r.spec.kind,
            r.spec.name,
            r.id.as_deref().unwrap_or("intent only")
        );
    }
    for warning in &replay.warnings {
        println!("warning: {warning}");
    }
    let _ = status_word;
    Ok(exit::OK)
}

/// `gate init`.
pub fn init(args: &InitArgs) -> Outcome {
    if args.path.exists() && !args.force {
        return Err(Failure::usage(format!(
            "{} exists; pass --force to overwrite it",
            args.path.display()
        )));
    }
    std::fs::write(&args.path, EMBEDDED)
        .map_err(|e| Failure::usage(format!("writing {}: {e}", args.path.display())))?;
    println!(
        "wrote {}: a local pipeline to start from. Next: `gate plan -c {0}`, then `gate run -c {0}`.",
        args.path.display()
    );
    Ok(exit::OK)
}

/// `gate providers`.
pub fn providers(registry: &Registry) -> Outcome {
    for (role, names) in registry.roles() {
        println!(
            "{role:<12} {}",
            if names.is_empty() {
                "-".into()
            } else {
                names.join(", ")
            }
        );
    }
    Ok(exit::OK)
}
