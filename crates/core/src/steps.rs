//! Configured commands ("steps") run on hosts: the building block of the `script`
//! deployer, the `command` tester and free-form preparer scripts.
//!
//! ```toml
//! [[deployer.deploy]]
//! name = "install"
//! script = "./install.sh --release \"$RELEASE\""   # shell the user wrote
//! env = { RELEASE = "27.1.0", TOKEN = { env = "DEPLOY_TOKEN" } }
//!
//! [[deployer.deploy]]
//! run = ["systemctl", "restart", "thing"]          # a program and its arguments
//! hosts = "all"
//! ```
//!
//! Values reach a step only through its environment or its argument list, never pasted into
//! a shell string.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::command::{Command, EnvValue};
use crate::context::StageContext;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::fanout::HostOutcome;
use crate::registry::BackendConfig;
use crate::transport::{ExecOutput, Transport};

/// Which hosts a step runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hosts {
    /// Only the primary host.
    #[default]
    Primary,
    /// Every host, in parallel (bounded by `run.concurrency`).
    All,
}

/// One configured command.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// A name for logs and JUnit. Default: the program, or `step N`.
    #[serde(default)]
    pub name: Option<String>,
    /// A program and its arguments (no shell involved).
    #[serde(default)]
    pub run: Option<Vec<String>>,
    /// A bash script (run with `-euo pipefail`).
    #[serde(default)]
    pub script: Option<String>,
    /// Where it runs. Default: the section's `hosts`.
    #[serde(default)]
    pub hosts: Option<Hosts>,
    /// Extra environment for this step (values may be secrets).
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    /// Working directory on the host (relative to its home).
    #[serde(default)]
    pub cwd: Option<String>,
    /// Time limit in seconds. Default: the section's `timeout_secs`.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

impl Step {
    /// The step's display name; `index` is its 0-based position.
    pub fn display_name(&self, index: usize) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        match &self.run {
            Some(argv) if !argv.is_empty() => argv.join(" "),
            _ => format!("step {}", index + 1),
        }
    }

    /// The command for this step: `env` first, then the step's own environment (which
    /// wins), its working directory, and its timeout (else `default_timeout`).
    pub fn command<I>(&self, env: I, default_timeout: Duration) -> Command
    where
        I: IntoIterator<Item = (String, EnvValue)>,
    {
        let mut cmd = match (&self.run, &self.script) {
            (Some(argv), _) if !argv.is_empty() => {
                Command::new(argv[0].clone()).args(argv[1..].iter().cloned())
            }
            (_, Some(script)) => Command::script(script.clone()),
            // Rejected by `check_steps`; an empty command fails loudly if it slips through.
            _ => Command::script("echo 'this step has neither run nor script' >&2; exit 2"),
        };
        for (key, value) in env.into_iter().chain(self.env.clone()) {
            cmd = cmd.env(key, value);
        }
        if let Some(cwd) = &self.cwd {
            cmd = cmd.cwd(cwd.clone());
        }
        let timeout = self.timeout_secs.map(Duration::from_secs);
        cmd.timeout(timeout.unwrap_or(default_timeout))
    }
}

/// Checks that every step of `steps` (the list under `key`) has exactly one of `run`
/// (non-empty) and `script`, and that env names are valid; errors name file, section and key.
pub fn check_steps(section: &BackendConfig, key: &str, steps: &[Step]) -> Result<()> {
    for (i, step) in steps.iter().enumerate() {
        check_step(section, &format!("{key}[{i}]"), step)?;
    }
    Ok(())
}

/// Checks one step found at key `at` (e.g. `deploy[2]`): exactly one of `run` (non-empty)
/// and `script`, and valid env names.
pub fn check_step(section: &BackendConfig, at: &str, step: &Step) -> Result<()> {
    match (&step.run, &step.script) {
        (Some(run), None) if !run.is_empty() => {}
        (Some(_), None) => return Err(section.error(format!("{at}.run"), "is empty")),
        (None, Some(_)) => {}
        (Some(_), Some(_)) => {
            return Err(section.error(at, "give either `run` or `script`, not both"));
        }
        (None, None) => return Err(section.error(at, "needs `run` or `script`")),
    }
    for name in step.env.keys() {
        check_env_name(section, &format!("{at}.env"), name)?;
    }
    Ok(())
}

/// Checks an environment variable name (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn check_env_name(section: &BackendConfig, key: &str, name: &str) -> Result<()> {
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(section.error(
            key.to_owned(),
            format!("`{name}` is not a valid environment variable name"),
        ))
    }
}

/// The environment every step gets: `GATE_RUN_ID`, `GATE_STAGE`, `GATE_PRIMARY`,
/// `GATE_HOSTS` (space-separated names), then `env` from the section.
pub fn base_env(cx: &StageContext, env: &BTreeMap<String, EnvValue>) -> Vec<(String, EnvValue)> {
    let names: Vec<&str> = cx
        .inventory
        .hosts()
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    let mut vars = vec![
        ("GATE_RUN_ID".to_owned(), EnvValue::from(cx.run_id.as_str())),
        ("GATE_STAGE".to_owned(), EnvValue::from(cx.stage.name())),
        (
            "GATE_PRIMARY".to_owned(),
            EnvValue::from(cx.inventory.primary().name.as_str()),
        ),
        ("GATE_HOSTS".to_owned(), EnvValue::from(names.join(" "))),
    ];
    vars.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    vars
}

/// The transports `hosts` selects.
pub fn select(cx: &StageContext, hosts: Hosts) -> Vec<Arc<dyn Transport>> {
    match hosts {
        Hosts::Primary => vec![cx.primary().clone()],
        Hosts::All => cx.transports.clone(),
    }
}

/// Runs `step` on the hosts it selects (`default_hosts` unless it says), with `env` and
/// then the step's own environment, `GATE_HOST` set per host, and the step's timeout (else
/// `default_timeout`). `name` labels its host-step events. Returns each host's output; a
/// non-zero exit is an outcome, not an error (see [`require_success`]).
pub async fn run_step(
    cx: &StageContext,
    step: &Step,
    name: &str,
    default_hosts: Hosts,
    env: &[(String, EnvValue)],
    default_timeout: Duration,
) -> Vec<HostOutcome<ExecOutput>> {
    let targets = select(cx, step.hosts.unwrap_or(default_hosts));
    cx.on_hosts(&targets, |transport, hio| {
        let host = transport.host().name.clone();
        let host_env = env
            .iter()
            .cloned()
            .chain([("GATE_HOST".to_owned(), EnvValue::from(host))]);
        let cmd = step.command(host_env, default_timeout);
        async move {
            let step = |status: &str| Event::HostStep {
                host: transport.host().name.clone(),
                step: name.to_owned(),
                status: status.to_owned(),
            };
            hio.events().emit(&step("started"));
            let result = transport.exec(&cmd, &hio.io()).await;
            let ok = result.as_ref().is_ok_and(|out| out.status.success());
            hio.events().emit(&step(if ok { "ok" } else { "failed" }));
            result
        }
    })
    .await
}

/// `outcomes` with every non-zero exit turned into an [`Error::Command`] naming the host,
/// the step and the tail of its output, ready for [`crate::all_ok`].
pub fn require_success(
    outcomes: Vec<HostOutcome<ExecOutput>>,
    name: &str,
) -> Vec<HostOutcome<ExecOutput>> {
    outcomes
        .into_iter()
        .map(|outcome| {
            let host = outcome.host;
            let result = outcome.result.and_then(|out| {
                if out.status.success() {
                    Ok(out)
                } else {
                    Err(Error::Command {
                        host: host.clone(),
                        command: format!("step `{name}`"),
                        status: out.status.to_string(),
                        tail: out.tail,
                    })
                }
            });
            HostOutcome { host, result }
        })
        .collect()
}
