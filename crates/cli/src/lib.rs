//! gate-cli: the `gate` command as a library.
//!
//! [`main_with`] is the whole CLI; it takes extra `register` functions, so a downstream
//! binary is gate's CLI plus its own backends:
//!
//! ```no_run
//! fn register_mine(registry: &mut gate_core::Registry) {
//!     // registry.add_provider("mine", …);
//!     let _ = registry;
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     gate_cli::main_with(&[register_mine])
//! }
//! ```
#![deny(missing_docs)]

pub mod args;
pub mod commands;
pub mod config;
pub mod init;
pub mod jenkinsfile;
pub mod junit;
pub mod keys;
pub mod output;
pub mod remote;
pub mod sweep;
pub mod wiring;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use gate_core::Registry;

use args::{Cli, Cmd};

/// Runs the CLI with gate's built-in backends plus `extra` registrations, and returns the
/// exit code (0 success, 1 product failure, 2 usage, 3 infrastructure, 130/143 interrupted).
pub fn main_with(extra: &[fn(&mut Registry)]) -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let code = run(cli, extra);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli, extra: &[fn(&mut Registry)]) -> i32 {
    output::init_tracing(cli.verbose);
    let registry = Arc::new(wiring::registry(extra));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return commands::exit::INFRA;
        }
    };
    let verbose = cli.verbose;
    let outcome = runtime.block_on(async {
        match &cli.command {
            Cmd::Run(args) => commands::run(args, &registry, verbose).await,
            Cmd::Stage(args) => commands::stage(args, &registry, verbose).await,
            Cmd::Cleanup(args) => commands::cleanup(args, &registry, verbose).await,
            Cmd::Plan(args) => commands::plan(args, &registry),
            Cmd::Status(args) => commands::status(args),
            Cmd::Init(args) => commands::init(args),
            Cmd::Exec(args) => remote::exec(args, &registry).await,
            Cmd::Ssh(args) => remote::ssh(args),
            Cmd::Inventory(args) => remote::inventory(args),
            Cmd::Junit(args) => junit::run(args),
            Cmd::Sweep(args) => sweep::sweep(args, &registry).await,
            Cmd::Providers => commands::providers(&registry),
            Cmd::Jenkinsfile(args) => jenkinsfile::jenkinsfile(args),
            Cmd::Completions(args) => commands::completions(args),
            Cmd::Man(args) => commands::man(args),
        }
    });
    // Child processes of an interrupted run are killed already; do not wait on stragglers.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match outcome {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("error: {}", gate_core::secret::redact(&failure.message));
            failure.code
        }
    }
}
