//! The `hosts` validator: every host reachable, cloud-init done, clean, enough disk, the
//! required commands, the keys file's keys authorized. Writes `results/validate.xml` (a
//! test case per host and check), also when it fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gate_core::junit::{CaseOutcome, CaseResult, write_suite};
use gate_core::{
    BackendConfig, Command, Error, HostIo, HostOutcome, HostValidator, Result, StageContext,
    Transport,
};

use crate::authorized_keys;
use crate::config::{Check, ValidatorConfig};
use crate::remote::{self, script};

/// The JUnit suite (and file name) of the validator.
pub const SUITE: &str = "validate";

/// Exit status of a check script meaning "does not apply here".
const NOT_HERE: i32 = 77;

/// The `hosts` validator.
#[derive(Debug, Clone)]
pub struct HostsValidator {
    config: ValidatorConfig,
}

/// What one host's checks found.
#[derive(Debug, Default)]
struct HostReport {
    cases: Vec<CaseResult>,
    unreachable: Option<String>,
    failed: Vec<String>,
}

impl HostReport {
    fn record(&mut self, host: &str, name: String, started: Instant, outcome: Outcome) {
        let (outcome, output) = match outcome {
            Outcome::Pass => (CaseOutcome::Passed, None),
            Outcome::NotHere(why) => (CaseOutcome::Skipped, Some(why)),
            Outcome::Fail(message, tail) => {
                self.failed.push(format!("{name}: {message}"));
                (CaseOutcome::Failed { message }, tail)
            }
        };
        self.cases.push(CaseResult {
            classname: format!("{SUITE}.{host}"),
            name,
            duration: started.elapsed(),
            outcome,
            output,
        });
    }
}

/// How one check came out.
enum Outcome {
    Pass,
    NotHere(String),
    Fail(String, Option<String>),
}

impl HostsValidator {
    /// A validator from its config section.
    pub fn from_config(section: &BackendConfig) -> Result<Self> {
        Ok(Self {
            config: ValidatorConfig::from_section(section)?,
        })
    }

    /// Every check of one host, in order; the first failing to reach the host stops the
    /// rest (recorded as skipped).
    async fn check_host(
        &self,
        cx: &StageContext,
        transport: Arc<dyn Transport>,
        hio: HostIo,
    ) -> Result<HostReport> {
        let t = transport.as_ref();
        let host = t.host().name.clone();
        remote::progress(t, &hio, SUITE, "started");
        let mut report = HostReport::default();
        let started = Instant::now();
        let reach = Duration::from_secs(self.config.reach_timeout_secs);
        let answered = tokio::time::timeout(
            reach,
            t.exec(&Command::new("true").timeout(reach), &hio.io()),
        )
        .await;
        let unreachable = match answered {
            Ok(Ok(out)) if out.status.success() => None,
            Ok(Ok(out)) => Some(format!("`true` {}", out.status)),
            Ok(Err(e)) if e.is_cancelled() => return Err(e),
            Ok(Err(Error::Timeout { .. })) | Err(_) => {
                Some(format!("no answer within {}s", reach.as_secs()))
            }
            // The host is named by the error this becomes; keep only the reason.
            Ok(Err(Error::Unreachable { message, .. } | Error::Host { message, .. })) => {
                Some(message)
            }
            Ok(Err(e)) => Some(e.to_string()),
        };
        if let Some(why) = unreachable {
            report.cases.push(CaseResult {
                classname: format!("{SUITE}.{host}"),
                name: "reachable".into(),
                duration: started.elapsed(),
                outcome: CaseOutcome::Error {
                    message: why.clone(),
                },
                output: None,
            });
            for name in self.check_names() {
                report.cases.push(CaseResult {
                    classname: format!("{SUITE}.{host}"),
                    name,
                    duration: Duration::ZERO,
                    outcome: CaseOutcome::Skipped,
                    output: Some("the host is unreachable".into()),
                });
            }
            report.unreachable = Some(why);
            remote::progress(t, &hio, SUITE, "failed");
            return Ok(report);
        }
        report.record(&host, "reachable".into(), started, Outcome::Pass);

        if self.config.cloud_init != Check::Skip {
            let started = Instant::now();
            let outcome = self.cloud_init(t, &hio).await?;
            report.record(&host, "cloud-init finished".into(), started, outcome);
        }
        for marker in &self.config.markers {
            let started = Instant::now();
            let outcome = self.marker(t, &hio, marker).await?;
            report.record(&host, format!("clean: {marker} absent"), started, outcome);
        }
        for command in &self.config.commands {
            let started = Instant::now();
            let outcome = self.command(t, &hio, command).await?;
            report.record(&host, format!("command: {command}"), started, outcome);
        }
        for disk in &self.config.disk {
            let started = Instant::now();
            let outcome = self
                .disk(t, &hio, &disk.path, disk.min_free.bytes())
                .await?;
            let name = format!("disk: {} free at {}", disk.min_free, disk.path);
            report.record(&host, name, started, outcome);
        }
        if self.config.keys != Check::Skip {
            let started = Instant::now();
            let outcome = self.keys(cx, t, &hio).await?;
            report.record(&host, "authorized keys".into(), started, outcome);
        }
        let status = if report.failed.is_empty() {
            "ok"
        } else {
            "failed"
        };
        remote::progress(t, &hio, SUITE, status);
        Ok(report)
    }

    /// The names of the checks after `reachable`, for skipped cases.
    fn check_names(&self) -> Vec<String> {
        let c = &self.config;
        let mut names = Vec::new();
        if c.cloud_init != Check::Skip {
            names.push("cloud-init finished".into());
        }
        names.extend(c.markers.iter().map(|m| format!("clean: {m} absent")));
        names.extend(c.commands.iter().map(|m| format!("command: {m}")));
        names.extend(
            c.disk
                .iter()
                .map(|d| format!("disk: {} free at {}", d.min_free, d.path)),
        );
        if c.keys != Check::Skip {
            names.push("authorized keys".into());
        }
        names
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.check_timeout_secs)
    }

    /// Runs a check script: exit 0 passes, [`NOT_HERE`] does not apply, anything else fails
    /// with `failure` and the output tail; a timeout fails with `slow`.
    async fn scripted(
        &self,
        t: &dyn Transport,
        hio: &HostIo,
        cmd: Command,
        failure: &str,
        slow: &str,
    ) -> Result<Outcome> {
        match remote::exec(t, hio, &cmd).await {
            Ok(out) if out.status.success() => Ok(Outcome::Pass),
            Ok(out) if out.status == gate_core::transport::ExitStatus::Code(NOT_HERE) => {
                Ok(Outcome::NotHere(out.stdout.trim().to_owned()))
            }
            Ok(out) => Ok(Outcome::Fail(
                format!("{failure} ({})", out.status),
                Some(out.tail.join("\n")),
            )),
            Err(e) if e.is_cancelled() => Err(e),
            Err(Error::Timeout { tail, .. }) => {
                Ok(Outcome::Fail(slow.into(), Some(tail.join("\n"))))
            }
            Err(e) => Ok(Outcome::Fail(e.to_string(), None)),
        }
    }

    async fn cloud_init(&self, t: &dyn Transport, hio: &HostIo) -> Result<Outcome> {
        const SCRIPT: &str = r#"
if ! command -v cloud-init >/dev/null 2>&1; then
  echo "cloud-init is not installed"
  [ "$1" = require ] && exit 1
  exit 77
fi
rc=0
cloud-init status --wait --long || rc=$?
# 2: done, with recoverable errors (cloud-init 23.4 and later)
[ "$rc" -eq 0 ] || [ "$rc" -eq 2 ]
"#;
        let mode = if self.config.cloud_init == Check::Require {
            "require"
        } else {
            "auto"
        };
        let wait = Duration::from_secs(self.config.cloud_init_timeout_secs);
        self.scripted(
            t,
            hio,
            script(SCRIPT, [mode], wait),
            "cloud-init did not finish cleanly",
            &format!("cloud-init still running after {}s", wait.as_secs()),
        )
        .await
    }

    async fn marker(&self, t: &dyn Transport, hio: &HostIo, marker: &str) -> Result<Outcome> {
        const SCRIPT: &str = r#"
case $1 in /*) p=$1 ;; *) p=$HOME/$1 ;; esac
if [ -e "$p" ] || [ -L "$p" ]; then ls -ld -- "$p"; exit 1; fi
"#;
        self.scripted(
            t,
            hio,
            script(SCRIPT, [marker], self.timeout()),
            "present: a leftover of an earlier deploy",
            "timed out",
        )
        .await
    }

    async fn command(&self, t: &dyn Transport, hio: &HostIo, command: &str) -> Result<Outcome> {
        self.scripted(
            t,
            hio,
            script(r#"command -v -- "$1""#, [command], self.timeout()),
            "not found on PATH",
            "timed out",
        )
        .await
    }

    async fn disk(
        &self,
        t: &dyn Transport,
        hio: &HostIo,
        path: &str,
        want: u64,
    ) -> Result<Outcome> {
        const SCRIPT: &str = r#"
case $1 in /*) p=$1 ;; *) p=$HOME/$1 ;; esac
df -Pk -- "$p"
"#;
        let out = match remote::exec(t, hio, &script(SCRIPT, [path], self.timeout())).await {
            Ok(out) if out.status.success() => out,
            Ok(out) => {
                return Ok(Outcome::Fail(
                    format!("df {}", out.status),
                    Some(out.tail.join("\n")),
                ));
            }
            Err(e) if e.is_cancelled() => return Err(e),
            Err(e) => return Ok(Outcome::Fail(e.to_string(), None)),
        };
        let free = out
            .stdout
            .lines()
            .nth(1)
            .and_then(|line| line.split_whitespace().nth(3))
            .and_then(|kib| kib.parse::<u64>().ok())
            .map(|kib| kib.saturating_mul(1024));
        Ok(match free {
            Some(free) if free >= want => Outcome::Pass,
            Some(free) => Outcome::Fail(
                format!(
                    "{} free, {} wanted",
                    crate::size::Size(free / (1 << 20) * (1 << 20)),
                    crate::size::Size(want)
                ),
                None,
            ),
            None => Outcome::Fail(format!("cannot read df's output: {:?}", out.stdout), None),
        })
    }

    async fn keys(&self, cx: &StageContext, t: &dyn Transport, hio: &HostIo) -> Result<Outcome> {
        let Some(file) = &cx.keys.keys_file else {
            return Ok(if self.config.keys == Check::Require {
                Outcome::Fail("the run has no keys file".into(), None)
            } else {
                Outcome::NotHere("the run has no keys file".into())
            });
        };
        let path = self
            .config
            .authorized_keys
            .as_deref()
            .unwrap_or(authorized_keys::DEFAULT_PATH);
        let read = async {
            let resolved = remote::resolve(t, hio, path, self.timeout()).await?;
            let text = remote::read_file(t, hio, &resolved.path, self.timeout()).await?;
            Ok::<_, Error>((resolved.path, text))
        };
        let (path, text) = match read.await {
            Ok(found) => found,
            Err(e) if e.is_cancelled() => return Err(e),
            Err(e) => return Ok(Outcome::Fail(e.to_string(), None)),
        };
        let Some(text) = text else {
            return Ok(Outcome::Fail(format!("{path} does not exist"), None));
        };
        let problems = authorized_keys::missing(&text, &file.keys);
        Ok(if problems.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail(
                format!(
                    "{} of {} key(s) of {} not usable in {path}: {}",
                    problems.len(),
                    file.keys.len(),
                    file.source,
                    problems.join("; ")
                ),
                None,
            )
        })
    }
}

#[async_trait]
impl HostValidator for HostsValidator {
    async fn validate(&self, cx: &StageContext) -> Result<()> {
        let outcomes = cx
            .on_hosts(&cx.transports, |t, hio| self.check_host(cx, t, hio))
            .await;
        let mut cases = Vec::new();
        let mut results: Vec<HostOutcome<()>> = Vec::new();
        let mut cancelled = false;
        for HostOutcome { host, result } in outcomes {
            let result = match result {
                Ok(report) => {
                    cases.extend(report.cases);
                    match (report.unreachable, report.failed.is_empty()) {
                        (Some(why), _) => Err(Error::Unreachable {
                            host: host.clone(),
                            message: why,
                        }),
                        (None, true) => Ok(()),
                        (None, false) => Err(Error::Host {
                            host: host.clone(),
                            message: format!("validate: {}", report.failed.join("; ")),
                        }),
                    }
                }
                Err(e) => {
                    cancelled |= e.is_cancelled();
                    cases.push(CaseResult {
                        classname: format!("{SUITE}.{host}"),
                        name: "checks".into(),
                        duration: Duration::ZERO,
                        outcome: CaseOutcome::Error {
                            message: e.to_string(),
                        },
                        output: None,
                    });
                    Err(e)
                }
            };
            results.push(HostOutcome { host, result });
        }
        // The suite is written whatever happened.
        write_suite(
            &cx.results_dir().join(format!("{SUITE}.xml")),
            SUITE,
            &cases,
        )?;
        if cancelled {
            return Err(Error::Cancelled);
        }
        gate_core::all_ok(results).map(|_| ())
    }
}
