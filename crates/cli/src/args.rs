//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use gate_core::Stage;

/// gate runs CI gating pipelines for OpenStack deployments: allocate hosts, prepare them,
/// deploy, test, upgrade, publish, archive — and always give every resource back.
#[derive(Debug, Parser)]
#[command(
    name = "gate",
    version,
    after_help = "Examples:\n  gate init                          write a commented gate.toml\n  gate plan                          show what would run\n  gate run                           run every stage (archive and cleanup always run)\n  gate run --keep                    keep the hosts for debugging; free them with `gate cleanup`\n  gate run --to deploy               stop after deploy (hosts stay)\n  gate stage deploy                  one stage in this process (e.g. a CI job per stage)\n  gate cleanup                       free everything the run's ledger holds\n\nExit codes: 0 success, 1 the product failed (deploy, test, upgrade), 2 bad usage or config,\n3 infrastructure failed or cleanup left resources, 130/143 interrupted (after cleanup)."
)]
pub struct Cli {
    /// More output: -v shows command output as it streams, -vv debug logs.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the pipeline: the selected stages in order; archive and cleanup run after a
    /// failure or an interrupt too.
    Run(RunArgs),
    /// Run one stage in this process, from the state dir (for a CI job per stage).
    Stage(StageArgs),
    /// Delete everything in the run's ledger (idempotent).
    Cleanup(CleanupArgs),
    /// Show the resolved config and the stages and backends that would run. No side effects.
    Plan(ConfigArgs),
    /// Show the state dir: the run, its stages, hosts and live resources.
    Status(StatusArgs),
    /// Write a commented example config.
    Init(InitArgs),
    /// Run a command on every host of the run at once (like `ansible all -m raw`): per-host
    /// exit status and output, a summary, exit 1 if any host failed.
    Exec(ExecArgs),
    /// Open a shell (or run a command) on one host of the run, like `kitchen login`.
    Ssh(SshArgs),
    /// Print the run's hosts for other tools: an Ansible inventory, JSON or ssh_config.
    Inventory(InventoryArgs),
    /// Convert, merge and summarize JUnit XML (subunit v2 → JUnit, streaming).
    Junit(JunitArgs),
    /// Find resources leaked without a ledger (gate's tags and names, older than an age or
    /// in ERROR) in every configured backend and region; delete each once two passes some
    /// minutes apart have seen it.
    Sweep(crate::sweep::SweepArgs),
    /// List every registered backend by role.
    Providers,
    /// Write a declarative Jenkinsfile running each stage as `gate stage` on the right node
    /// (or, with --format jjb, a Jenkins Job Builder template).
    Jenkinsfile(crate::jenkinsfile::JenkinsfileArgs),
    /// Print a shell completion script, e.g. `gate completions bash > /etc/bash_completion.d/gate`.
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write one page per subcommand with --dir.
    Man(ManArgs),
}

/// Where the config comes from.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// The config file. Default: gate.toml, else the embedded local example.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override a config value, e.g. --set provider.hosts=5 (repeatable). Values stay
    /// strings until the setting's type parses them. Environment: GATE__SECTION__KEY=value.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

/// `gate run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Where the config comes from.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Start at this stage (continues the recorded run unless it is allocate).
    #[arg(long, value_name = "STAGE")]
    pub from: Option<Stage>,
    /// Stop after this stage.
    #[arg(long, value_name = "STAGE")]
    pub to: Option<Stage>,
    /// Leave out these stages.
    #[arg(long, value_name = "STAGE", num_args = 1..)]
    pub skip: Vec<Stage>,
    /// Run only these stages.
    #[arg(long, value_name = "STAGE", num_args = 1.., conflicts_with_all = ["from", "to"])]
    pub only: Vec<Stage>,
    /// Keep the hosts (skip cleanup) for debugging; `gate cleanup` frees them later.
    #[arg(long)]
    pub keep: bool,
    /// Progress as JSON, one event per line on stdout (stage started/finished, host step,
    /// resource created/deleted, test counts, then run-finished).
    #[arg(long)]
    pub json: bool,
}

/// `gate stage`.
#[derive(Debug, Clone, Args)]
pub struct StageArgs {
    /// The stage: allocate, connect, validate, prepare-hosts, prepare-deployment, deploy,
    /// test, upgrade, publish, archive or cleanup.
    pub stage: Stage,
    /// Where the config comes from.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Accept a config that differs from the one the run started with.
    #[arg(long)]
    pub force: bool,
    /// Progress as JSON, one event per line on stdout (stage started/finished, host step,
    /// resource created/deleted, test counts, then run-finished).
    #[arg(long)]
    pub json: bool,
}

/// `gate cleanup`.
#[derive(Debug, Clone, Args)]
pub struct CleanupArgs {
    /// Where the config comes from.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Accept a config that differs from the one the run started with.
    #[arg(long)]
    pub force: bool,
    /// Progress as JSON, one event per line on stdout (stage started/finished, host step,
    /// resource created/deleted, test counts, then run-finished).
    #[arg(long)]
    pub json: bool,
}

/// `gate exec`.
#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Where the config comes from (transport settings, the state dir).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// An inventory file (gate's inventory.json format) instead of the run's.
    #[arg(short, long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Only these hosts (repeatable; default: every host).
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
    /// Hosts worked on at once. Default: every host.
    #[arg(short, long, value_name = "N")]
    pub forks: Option<usize>,
    /// Kill the command on a host after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// The program and its arguments, after `--` (no shell: use `sh -c '…'` for one).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `gate ssh`.
#[derive(Debug, Clone, Args)]
pub struct SshArgs {
    /// Where the config comes from (transport settings, the state dir).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The host's name in the inventory (default: the primary).
    pub host: Option<String>,
    /// A command to run instead of a shell, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Output formats of `gate inventory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InventoryFormat {
    /// An Ansible INI inventory: `all`, then a group per label.
    Ansible,
    /// gate's inventory.json.
    Json,
    /// An ssh_config with a `Host` block per host.
    SshConfig,
}

/// `gate inventory`.
#[derive(Debug, Clone, Args)]
pub struct InventoryArgs {
    /// Where the config comes from (the state dir).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: InventoryFormat,
}

/// `gate junit`.
#[derive(Debug, Clone, Args)]
pub struct JunitArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: JunitAction,
}

/// The `gate junit` actions.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum JunitAction {
    /// Convert a subunit v2 stream (IN, `-` for stdin) into JUnit XML (OUT), streaming:
    /// memory stays flat however long the stream.
    Convert {
        /// The input format.
        #[arg(long, value_enum, default_value = "subunit")]
        from: JunitFrom,
        /// The JUnit suite name.
        #[arg(long, default_value = "tests")]
        suite: String,
        /// The stream to read (`-`: standard input).
        input: PathBuf,
        /// The JUnit file to write.
        output: PathBuf,
    },
    /// Merge JUnit files into one `<testsuites>` file.
    Merge {
        /// The file to write.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// The files to merge.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Counts, the slowest tests and every failure of JUnit files.
    Summary {
        /// How many of the slowest tests to list.
        #[arg(long, default_value = "10")]
        slowest: usize,
        /// The files to read.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
}

/// Input formats of `gate junit convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JunitFrom {
    /// subunit v2 (Tempest, stestr, python-subunit).
    Subunit,
}

/// `gate status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Where the config comes from.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The state dir to read (default: the config's `run.state_dir`).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `gate init`.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Without --provider, --deployer or --tester: the local example pipeline. With them: a\ncommented config for that combination (provider default: local); an unknown name lists\nthe choices.\n\nExamples:\n  gate init --provider pubcloud --deployer osa --tester command\n  gate init local.toml --provider local --deployer script"
)]
pub struct InitArgs {
    /// Where to write it.
    #[arg(default_value = "gate.toml")]
    pub path: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
    /// The provider of the config (default with --deployer/--tester: local).
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// The deployer of the config (default: none).
    #[arg(long, value_name = "NAME")]
    pub deployer: Option<String>,
    /// The tester of the config (default: none).
    #[arg(long, value_name = "NAME")]
    pub tester: Option<String>,
}

/// `gate completions`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `gate man`.
#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// Write gate.1 and a page per subcommand (gate-run.1, …) into this directory instead
    /// of printing gate.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

impl RunArgs {
    /// The stages selected by --from, --to, --skip and --only, in run order.
    pub fn stages(&self) -> Vec<Stage> {
        Stage::ALL
            .into_iter()
            .filter(|s| self.only.is_empty() || self.only.contains(s))
            .filter(|s| self.from.is_none_or(|from| *s >= from))
            .filter(|s| self.to.is_none_or(|to| *s <= to))
            .filter(|s| !self.skip.contains(s))
            .collect()
    }
}
