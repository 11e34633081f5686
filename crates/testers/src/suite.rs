//! Running one external test suite (Ceph functional tests, a Selenium suite) on one host
//! and judging it by the JUnit it leaves: the part the `ceph` and `selenium` testers share.
//!
//! The suite gets a fresh results directory on its host, `gate-results/<run id>/<suite>`
//! under the home, as the absolute path `GATE_RESULTS_DIR`. Afterwards its JUnit files and
//! other files are collected from there ([`crate::collect`]), every JUnit file checked, and
//! `results/<suite>.xml` gets one case for the run itself:
//!
//! - passed: the suite exited 0, or it exited non-zero and its JUnit reports the failures;
//! - failed: it exited non-zero but its JUnit reports no failure or error;
//! - error: it left no JUnit, or could not run, timed out or was interrupted.
//!
//! The file is written in every case, so what ran is never lost.

use std::sync::Arc;

use gate_core::junit::{CaseOutcome, CaseResult};
use gate_core::{
    Command, Error, Event, ExecIo, ExecOutput, Result, StageContext, TestReport, Transport,
    TransportExt,
};

use crate::collect::{Collected, Request, collect, error_case};
use crate::validate::write_checked;

/// Creates the directory `$1` (under the home unless absolute) and prints its real path.
const MAKE_DIR: &str = r#"mkdir -p -- "$1" && cd -- "$1" && pwd -P"#;

/// One suite to run.
#[derive(Debug)]
pub struct Suite<'a> {
    /// The suite name: the JUnit file `results/<name>.xml` and the class name prefix.
    pub name: &'a str,
    /// Where it runs: a host name or label (see [`pick_host`]); `None`: the primary.
    pub host: Option<&'a str>,
    /// JUnit files it leaves (relative to its results directory unless absolute).
    pub junit: &'a [String],
    /// Other files it leaves (as `junit`), copied to `results/<host>/<files_subdir>/`.
    pub files: &'a [String],
    /// See `files`.
    pub files_subdir: &'a str,
    /// Subdirectories of the results directory to create before it runs.
    pub make_dirs: &'a [&'a str],
}

/// What became of the suite's command.
type Ran = Result<ExecOutput>;

impl Suite<'_> {
    /// Runs the command `command(results_dir, host_name)` builds, then collects and judges
    /// what it left. Fails only when the run was interrupted (after writing what it has).
    pub async fn run<F>(&self, cx: &StageContext, command: F) -> Result<TestReport>
    where
        F: FnOnce(&str, &str) -> Command,
    {
        let mut cases = Vec::new();
        let mut collected = TestReport::default();
        let step = format!("{} suite", self.name);
        let interrupted = match pick_host(cx, self.host) {
            Err(e) => {
                cases.push(error_case(self.name, step, &e));
                None
            }
            Ok(transport) => {
                let classname = format!("{}.{}", self.name, transport.host().name);
                match self.run_and_collect(cx, transport.as_ref(), command).await {
                    Ok((ran, got)) => {
                        cases.extend(got.error_cases(&classname));
                        cases.push(self.judge(&classname, &step, &ran, &got.report));
                        collected = got.report;
                        ran.err().filter(Error::is_cancelled)
                    }
                    Err(e) => {
                        cases.push(error_case(&classname, step, &e));
                        e.is_cancelled().then_some(e)
                    }
                }
            }
        };
        let path = cx.results_dir().join(format!("{}.xml", self.name));
        let mut report = write_checked(&path, self.name, &cases)?;
        if let Some(e) = interrupted {
            return Err(e);
        }
        report.absorb(collected);
        Ok(report)
    }

    /// Runs the suite, then collects what it left (also after a timeout or a failure to
    /// start, not after an interrupt).
    async fn run_and_collect<F>(
        &self,
        cx: &StageContext,
        transport: &dyn Transport,
        command: F,
    ) -> Result<(Ran, Collected)>
    where
        F: FnOnce(&str, &str) -> Command,
    {
        let host = transport.host().name.clone();
        let log = cx.host_log(&host)?;
        let io = ExecIo {
            log: &log,
            cancel: &cx.cancel,
        };
        let relative = format!("gate-results/{}/{}", cx.run_id.as_str(), self.name);
        let made = transport
            .run(&Command::script(MAKE_DIR).arg("gate").arg(&relative), &io)
            .await?;
        let dir = made.stdout.trim().to_owned();
        for sub in self.make_dirs {
            let mkdir = Command::new("mkdir").arg("-p").arg(format!("{dir}/{sub}"));
            transport.run(&mkdir, &io).await?;
        }
        let event = |status: &str| Event::HostStep {
            host: host.clone(),
            step: format!("{} suite", self.name),
            status: status.to_owned(),
        };
        cx.events.emit(&event("started"));
        let ran = transport.exec(&command(&dir, &host), &io).await;
        let ok = ran.as_ref().is_ok_and(|out| out.status.success());
        cx.events.emit(&event(if ok { "ok" } else { "failed" }));
        if ran.as_ref().is_err_and(Error::is_cancelled) {
            return Ok((ran, Collected::default()));
        }
        let request = Request {
            base: Some(&dir),
            junit: self.junit,
            files: self.files,
            files_subdir: self.files_subdir,
        };
        let got = collect(cx, transport, request).await?;
        if !self.junit.is_empty() && got.report.junit_files.is_empty() {
            log.note(&format!(
                "{} suite: no JUnit file matches {} in {dir}",
                self.name,
                self.junit.join(", ")
            ));
        }
        Ok((ran, got))
    }

    /// The case for the run itself (see the module docs).
    fn judge(&self, classname: &str, step: &str, ran: &Ran, collected: &TestReport) -> CaseResult {
        let out = match ran {
            Ok(out) => out,
            Err(e) => return error_case(classname, step.to_owned(), e),
        };
        let reported = collected.failures + collected.errors;
        let status = out.status.to_string();
        let (outcome, output) = if !self.junit.is_empty() && collected.junit_files.is_empty() {
            let message = format!("the suite left no JUnit XML (it {status})");
            (CaseOutcome::Error { message }, Some(out.tail.join("\n")))
        } else if out.status.success() {
            (CaseOutcome::Passed, None)
        } else if reported > 0 {
            let note =
                format!("The suite {status}; its {reported} failing case(s) are in its JUnit.");
            (CaseOutcome::Passed, Some(note))
        } else {
            let message = format!("the suite {status} but its JUnit shows no failure");
            (CaseOutcome::Failed { message }, Some(out.tail.join("\n")))
        };
        CaseResult {
            classname: classname.to_owned(),
            name: step.to_owned(),
            duration: out.duration,
            outcome,
            output,
        }
    }
}

/// The host a suite runs on: the one named `want`, else the first with that label, else
/// (when `want` is `None`) the primary.
pub fn pick_host(cx: &StageContext, want: Option<&str>) -> Result<Arc<dyn Transport>> {
    let Some(want) = want else {
        return Ok(cx.primary().clone());
    };
    let by_name = cx.transports.iter().find(|t| t.host().name == want);
    let by_label = || {
        cx.transports
            .iter()
            .find(|t| t.host().labels.iter().any(|l| l == want))
    };
    by_name
        .or_else(by_label)
        .cloned()
        .ok_or_else(|| Error::Stage {
            stage: cx.stage,
            message: format!("no host is named or labelled `{want}`"),
        })
}
