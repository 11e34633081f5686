//! A whole gate pipeline run from Rust, without the CLI: the `local` provider (hosts are
//! directories), the `script` deployer and the `command` tester, wired through a
//! [`Registry`] from TOML snippets, then every stage from `allocate` to `cleanup`.
//!
//! ```sh
//! cargo run -p gate-embed-example -- /tmp/embed-work     # prints the outcome; exit 0 when green
//! ```
//!
//! Walked through in docs/embedding.md.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use gate_core::transport::Connectors;
use gate_core::{
    Backend, BackendConfig, Backends, CleanerLookup, Interrupt, Pipeline, PipelineOptions,
    Registry, Result, RunSummary, Stage, StateDir, TracingEvents,
};

/// `[provider]`: two hosts as directories under `<work>/hosts`.
const PROVIDER: &str = r#"
hosts = 2
setup = "mkdir -p etc && echo booted > etc/boot"
"#;

/// `[deployer]`: one step on every host; values reach the script through the environment.
const DEPLOYER: &str = r#"
env = { RELEASE = "27.1.0" }
[[deploy]]
name = "deploy the service"
script = 'echo "service at $RELEASE" > etc/service'
hosts = "all"
"#;

/// `[tester]`: one test case per host, JUnit to `<work>/artifacts/results/embed.xml`.
const TESTER: &str = r#"
suite = "embed"
hosts = "all"
[[tests]]
name = "the service is deployed"
run = ["grep", "-qx", "service at 27.1.0", "etc/service"]
"#;

/// Builds the backends and runs every stage with `work` as the working directory for
/// hosts, state and artifacts.
async fn run_pipeline(work: &Path) -> Result<RunSummary> {
    let mut registry = Registry::new();
    gate_providers_local::register(&mut registry);
    gate_deployers_script::register(&mut registry);
    gate_testers::register(&mut registry);
    let registry = Arc::new(registry);

    let root = format!("root = {:?}\n", work.join("hosts"));
    let provider = BackendConfig::from_toml("provider", "local", &(root + PROVIDER))?;
    let deployer = BackendConfig::from_toml("deployer", "script", DEPLOYER)?;
    let tester = BackendConfig::from_toml("tester", "command", TESTER)?;

    // Cleanup asks for the cleaner of each backend named in the ledger.
    let cleaners: CleanerLookup = {
        let (registry, provider) = (registry.clone(), provider.clone());
        Arc::new(move |_backend: &str| registry.cleaner(&provider))
    };
    // Hosts name their transport; `local` is gate-core's own.
    let mut connectors = Connectors::default();
    for name in registry.transport_names() {
        let section = BackendConfig::empty("<embed>", format!("transport.{name}"), &name);
        connectors.insert(name, registry.transport(&section)?);
    }
    let backends = Backends {
        allocator: Some(Backend::new("local", registry.allocator(&provider)?)),
        agent: None,
        validator: None,
        preparer: None,
        deployer: Some(Backend::new("script", registry.deployer(&deployer)?)),
        tester: Some(Backend::new("command", registry.tester(&tester)?)),
        publisher: None,
        archiver: None,
        cleaners,
        connector: Arc::new(connectors),
    };
    let pipeline = Pipeline {
        backends,
        state: StateDir::new(work.join(".gate")),
        artifacts_dir: work.join("artifacts"),
        events: Arc::new(TracingEvents),
        options: PipelineOptions {
            keep: false,
            concurrency: 4,
            job: Some("embed-example".into()),
            keys_file: None,
            config_digest: "embedded".into(),
            config: serde_json::json!({ "embedded": true }),
        },
    };
    let _lock = pipeline.state.lock()?;
    pipeline.run(&Stage::ALL, &Interrupt::new()).await
}

fn main() -> ExitCode {
    let work = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("gate-embed"));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(run_pipeline(&work)) {
        Ok(summary) => {
            println!("run {}: exit {}", summary.run.run_id, summary.exit_code);
            for record in &summary.run.stages {
                println!("  {:<20} {:?}", record.stage.name(), record.status);
            }
            ExitCode::from(u8::try_from(summary.exit_code).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
