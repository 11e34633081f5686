//! The subcommands.

use std::sync::Arc;

use gate_core::ledger::Replay;
use gate_core::report::{STEPS_FILE, read_steps, step_spans};
use gate_core::{
    Error, EventSink, Interrupt, Pipeline, PipelineOptions, Registry, RunState, Stage, StateDir,
};

use crate::args::{
    CleanupArgs, CompletionsArgs, ConfigArgs, InitArgs, ManArgs, RunArgs, StageArgs, StatusArgs,
};
use crate::config::{EMBEDDED, GateConfig};
use crate::output::{duration, event_sink, first_line, print_run_finished, stage_table, table};
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
    /// A bad-usage failure (exit 2).
    pub fn usage(message: impl ToString) -> Self {
        Self {
            code: exit::USAGE,
            message: message.to_string(),
        }
    }

    /// The failure for a gate-core error: I/O is infrastructure (3), the rest usage (2).
    pub fn from_core(e: Error) -> Self {
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

/// An exit code, or a failure before any work.
pub type Outcome = Result<i32, Failure>;

/// Everything a pipeline command needs.
struct Loaded {
    config: GateConfig,
    pipeline: Pipeline,
    /// Progress goes to stdout as JSON lines (`--json`).
    json: bool,
}

fn load(
    args: &ConfigArgs,
    registry: &Arc<Registry>,
    keep: bool,
    verbose: u8,
) -> Result<Loaded, Failure> {
    load_with(args, registry, keep, verbose, false)
}

/// [`load`], with progress as JSON lines on stdout when `json`.
fn load_with(
    args: &ConfigArgs,
    registry: &Arc<Registry>,
    keep: bool,
    verbose: u8,
    json: bool,
) -> Result<Loaded, Failure> {
    let config = GateConfig::load(args).map_err(Failure::usage)?;
    let backends = wiring::backends(&config, registry).map_err(Failure::usage)?;
    let events: Arc<dyn EventSink> =
        event_sink(&StateDir::new(&config.run.state_dir), verbose, json);
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
    Ok(Loaded {
        config,
        pipeline,
        json,
    })
}

/// For a run that starts now (the selection has allocate), fetches and checks the keys
/// file once; later stages read the copy in the state dir.
async fn with_keys_file(mut loaded: Loaded, stages: &[Stage]) -> Result<Loaded, Failure> {
    let Some(url) = loaded.config.run.keys_file.clone() else {
        return Ok(loaded);
    };
    if !stages.contains(&Stage::Allocate) {
        return Ok(loaded);
    }
    let ca = loaded.config.run.keys_ca.clone();
    match crate::keys::fetch(&url, ca.as_deref()).await {
        Ok(keys) => {
            eprintln!("keys file: {} key(s) from {url}", keys.keys.len());
            loaded.pipeline.options.keys_file = Some(keys);
            Ok(loaded)
        }
        Err(crate::keys::KeysError::Invalid(message)) => Err(Failure::usage(message)),
        Err(crate::keys::KeysError::Fetch(message)) => Err(Failure {
            code: exit::INFRA,
            message,
        }),
    }
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
    let report = loaded
        .pipeline
        .artifacts_dir
        .join(gate_core::report::REPORT_FILE);
    eprintln!(
        "state: {}  artifacts: {}  report: {}",
        loaded.pipeline.state.root().display(),
        loaded.pipeline.artifacts_dir.display(),
        report.display()
    );
    if loaded.json {
        print_run_finished(run, summary.exit_code, &report);
    }
    Ok(summary.exit_code)
}

/// `gate run`.
pub async fn run(args: &RunArgs, registry: &Arc<Registry>, verbose: u8) -> Outcome {
    let loaded = load_with(&args.config, registry, args.keep, verbose, args.json)?;
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
    let loaded = with_keys_file(loaded, &stages).await?;
    execute(&loaded, &stages).await
}

/// `gate stage`.
pub async fn stage(args: &StageArgs, registry: &Arc<Registry>, verbose: u8) -> Outcome {
    let loaded = load_with(&args.config, registry, false, verbose, args.json)?;
    if args.stage != Stage::Allocate
        && let Ok(Some(run)) = loaded.pipeline.state.load_run()
    {
        check_digest(&loaded, &run, args.force)?;
    }
    let loaded = with_keys_file(loaded, &[args.stage]).await?;
    execute(&loaded, &[args.stage]).await
}

/// `gate cleanup`.
pub async fn cleanup(args: &CleanupArgs, registry: &Arc<Registry>, verbose: u8) -> Outcome {
    let loaded = load_with(&args.config, registry, false, verbose, args.json)?;
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

/// `gate status`: the state dir as tables (stages, hosts with their last step, live
/// resources), or as one JSON document with `--json`. Reads only; takes no lock.
pub fn status(args: &StatusArgs) -> Outcome {
    let config = match &args.state_dir {
        Some(_) => None,
        None => Some(GateConfig::load(&args.config).map_err(Failure::usage)?),
    };
    let state_dir = match (&args.state_dir, &config) {
        (Some(dir), _) => dir.clone(),
        (None, Some(config)) => config.run.state_dir.clone(),
        (None, None) => ".gate".into(),
    };
    let state = StateDir::new(&state_dir);
    let run = state.load_run().map_err(Failure::from_core)?;
    let inventory = state.load_inventory().map_err(Failure::from_core)?;
    let replay = Replay::read(&state.ledger()).map_err(Failure::from_core)?;
    let live = replay.live();
    let steps = step_spans(&read_steps(&state.logs().join(STEPS_FILE)));
    // The last step each host ran, for the hosts table.
    let last_step = |host: &str| steps.iter().rev().find(|s| s.host == host);
    let artifacts_dir = match &config {
        Some(config) => Some(config.run.artifacts_dir.clone()),
        None => run.as_ref().and_then(|r| {
            r.config
                .pointer("/run/artifacts_dir")
                .and_then(|v| v.as_str())
                .map(std::path::PathBuf::from)
        }),
    };
    let report = artifacts_dir
        .map(|dir| dir.join(gate_core::report::REPORT_FILE))
        .filter(|path| path.is_file());
    if args.json {
        let value = serde_json::json!({
            "state_dir": state_dir,
            "run": run,
            "inventory": inventory,
            "host_steps": inventory.iter().flat_map(|i| i.hosts()).filter_map(|h| {
                last_step(&h.name).map(|s| serde_json::json!({
                    "host": h.name, "stage": s.stage, "step": s.step, "status": s.status,
                }))
            }).collect::<Vec<_>>(),
            "live_resources": live.iter().map(|r| serde_json::json!({
                "backend": r.spec.backend, "kind": r.spec.kind, "scope": r.spec.scope,
                "name": r.spec.name, "id": r.id, "run_id": r.run_id,
            })).collect::<Vec<_>>(),
            "ledger_warnings": replay.warnings,
            "report": report,
        });
        println!(
            "{}",
            gate_core::secret::redact(&serde_json::to_string_pretty(&value).unwrap_or_default())
        );
        return Ok(exit::OK);
    }
    match &run {
        None => println!("no run recorded in {}", state_dir.display()),
        Some(run) => {
            let took = match (
                gate_core::report::parse_time(&run.started_at),
                run.finished_at
                    .as_deref()
                    .and_then(gate_core::report::parse_time),
            ) {
                (Some(start), Some(end)) => {
                    duration(u64::try_from((end - start).whole_milliseconds()).unwrap_or(0))
                }
                _ => "-".into(),
            };
            println!(
                "run {} (started {}, took {took}, exit {})\n",
                run.run_id, run.started_at, run.exit_code
            );
            print!("{}", stage_table(run));
        }
    }
    if let Some(inventory) = &inventory {
        let rows: Vec<Vec<String>> = inventory
            .hosts()
            .iter()
            .enumerate()
            .map(|(n, host)| {
                let step = last_step(&host.name)
                    .map(|s| {
                        let stage = s.stage.map(|s| s.name()).unwrap_or("-");
                        format!("{stage}: {} ({})", s.step, s.status)
                    })
                    .unwrap_or_else(|| "-".into());
                vec![
                    host.name.clone(),
                    if n == 0 { "primary" } else { "" }.to_owned(),
                    format!("{}@{}", host.user, host.address),
                    host.transport.clone(),
                    host.labels.join(","),
                    step,
                ]
            })
            .collect();
        println!("\nhosts: {}", inventory.len());
        print!(
            "{}",
            table(
                &[
                    "HOST",
                    "ROLE",
                    "ADDRESS",
                    "TRANSPORT",
                    "LABELS",
                    "LAST STEP"
                ],
                &rows
            )
        );
    }
    println!("\nlive resources: {}", live.len());
    if !live.is_empty() {
        let rows: Vec<Vec<String>> = live
            .iter()
            .map(|r| {
                vec![
                    r.spec.backend.clone(),
                    r.spec.kind.clone(),
                    r.spec.name.clone(),
                    r.id.clone().unwrap_or_else(|| "(intent only)".into()),
                    r.spec.scope.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(&["BACKEND", "KIND", "NAME", "ID", "SCOPE"], &rows)
        );
        println!("free them with `gate cleanup` (same -c as the run)");
    }
    for warning in &replay.warnings {
        println!("warning: {warning}");
    }
    if let Some(report) = report {
        println!("\nreport: {}", report.display());
    }
    Ok(exit::OK)
}

/// `gate completions SHELL`: the completion script on stdout.
pub fn completions(args: &CompletionsArgs) -> Outcome {
    let mut command = <crate::args::Cli as clap::CommandFactory>::command();
    clap_complete::generate(args.shell, &mut command, "gate", &mut std::io::stdout());
    Ok(exit::OK)
}

/// `gate man`: gate.1 on stdout, or every page (gate.1, gate-run.1, …) into `--dir`.
pub fn man(args: &ManArgs) -> Outcome {
    let command = <crate::args::Cli as clap::CommandFactory>::command();
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .and_then(|()| clap_mangen::generate_to(command, dir))
                .map_err(|e| Failure {
                    code: exit::INFRA,
                    message: format!("writing man pages to {}: {e}", dir.display()),
                })?;
            eprintln!("wrote man pages to {}", dir.display());
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut out)
                .map_err(|e| Failure {
                    code: exit::INFRA,
                    message: format!("rendering the man page: {e}"),
                })?;
            std::io::Write::write_all(&mut std::io::stdout(), &out).map_err(|e| Failure {
                code: exit::INFRA,
                message: format!("writing the man page: {e}"),
            })?;
        }
    }
    Ok(exit::OK)
}

/// `gate init`: the local example, or with `--provider`, `--deployer`, `--tester` a config
/// assembled for that combination (see [`crate::init`]).
pub fn init(args: &InitArgs) -> Outcome {
    let custom = args.provider.is_some() || args.deployer.is_some() || args.tester.is_some();
    let text = if custom {
        crate::init::assemble(
            args.provider.as_deref().unwrap_or("local"),
            args.deployer.as_deref(),
            args.tester.as_deref(),
        )
        .map_err(Failure::usage)?
    } else {
        EMBEDDED.to_owned()
    };
    if args.path.exists() && !args.force {
        return Err(Failure::usage(format!(
            "{} exists; pass --force to overwrite it",
            args.path.display()
        )));
    }
    std::fs::write(&args.path, text)
        .map_err(|e| Failure::usage(format!("writing {}: {e}", args.path.display())))?;
    let what = if custom {
        "a commented config for that combination; fill in what is yours"
    } else {
        "a local pipeline to start from"
    };
    println!(
        "wrote {}: {what}. Next: `gate plan -c {0}`, then `gate run -c {0}`.",
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
