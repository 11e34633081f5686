//! The `command` tester.

use std::time::Duration;

use async_trait::async_trait;
use gate_core::junit::{CaseOutcome, CaseResult};
use gate_core::steps::{Hosts, base_env, check_env_name, check_steps, run_step, select};
use gate_core::{BackendConfig, Result, StageContext, TestReport, Tester, Transport};

use crate::collect::{Request, collect, error_case};
use crate::config::{CommandConfig, check_suite_name};
use crate::validate::write_checked;

/// The registry name of the tester.
pub const NAME: &str = "command";

/// Runs test commands and turns their outcomes into JUnit.
#[derive(Debug, Clone)]
pub struct CommandTester {
    config: CommandConfig,
}

impl CommandTester {
    /// A tester from its config section.
    pub fn from_config(section: &BackendConfig) -> Result<Self> {
        let config: CommandConfig = section.parse()?;
        if config.tests.is_empty() {
            return Err(section.error("tests", "needs at least one test"));
        }
        check_suite_name(section, &config.suite)?;
        check_steps(section, "tests", &config.tests)?;
        for name in config.env.keys() {
            check_env_name(section, "env", name)?;
        }
        Ok(Self { config })
    }

    /// Collects the configured JUnit and other files from one host; files that could not
    /// be copied become error cases.
    async fn collect(
        &self,
        cx: &StageContext,
        transport: &dyn Transport,
        cases: &mut Vec<CaseResult>,
    ) -> Result<TestReport> {
        let host = &transport.host().name;
        let request = Request {
            base: None,
            junit: &self.config.junit,
            files: &self.config.files,
            files_subdir: "",
        };
        let collected = collect(cx, transport, request).await?;
        cases.extend(collected.error_cases(&self.classname(host)));
        Ok(collected.report)
    }

    fn classname(&self, host: &str) -> String {
        format!("{}.{host}", self.config.suite)
    }
}

#[async_trait]
impl Tester for CommandTester {
    async fn test(&self, cx: &StageContext) -> Result<TestReport> {
        let mut cases = Vec::new();
        let mut collected = TestReport::default();
        let interrupted = self.run_tests(cx, &mut cases).await.err();
        if interrupted.is_none() {
            for transport in select(cx, Hosts::All) {
                match self.collect(cx, transport.as_ref(), &mut cases).await {
                    Ok(report) => collected.absorb(report),
                    Err(e) => cases.push(error_case(
                        &self.classname(&transport.host().name),
                        "collect results".into(),
                        &e,
                    )),
                }
            }
        }
        // The suite is written whatever happened, so what ran is never lost.
        let path = cx.results_dir().join(format!("{}.xml", self.config.suite));
        let mut report = write_checked(&path, &self.config.suite, &cases)?;
        if let Some(e) = interrupted {
            return Err(e);
        }
        report.absorb(collected);
        Ok(report)
    }
}

impl CommandTester {
    /// Runs every test on its hosts, a case per test and host. Stops early only when the
    /// run is cancelled (what ran so far stays in `cases`).
    async fn run_tests(&self, cx: &StageContext, cases: &mut Vec<CaseResult>) -> Result<()> {
        let env = base_env(cx, &self.config.env);
        let timeout = Duration::from_secs(self.config.timeout_secs);
        for (i, test) in self.config.tests.iter().enumerate() {
            let name = test.display_name(i);
            for outcome in run_step(cx, test, &name, self.config.hosts, &env, timeout).await {
                let case = match outcome.result {
                    Ok(out) => CaseResult {
                        classname: self.classname(&outcome.host),
                        name: name.clone(),
                        duration: out.duration,
                        outcome: if out.status.success() {
                            CaseOutcome::Passed
                        } else {
                            CaseOutcome::Failed {
                                message: out.status.to_string(),
                            }
                        },
                        output: (!out.status.success()).then(|| out.tail.join("\n")),
                    },
                    Err(e) if e.is_cancelled() => {
                        cases.push(error_case(&self.classname(&outcome.host), name, &e));
                        return Err(e);
                    }
                    Err(e) => error_case(&self.classname(&outcome.host), name.clone(), &e),
                };
                cases.push(case);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gate_core::Stage;
    use gate_core::junit::read_counts;
    use gate_core::testkit::LocalStage;

    fn tester(toml: &str) -> Result<CommandTester> {
        CommandTester::from_config(&BackendConfig::from_toml("tester", NAME, toml)?)
    }

    #[tokio::test]
    async fn each_test_on_each_host_is_a_junit_case() {
        let stage = LocalStage::new(2, Stage::Test).await;
        std::fs::write(stage.home(2).join("marker"), "x").unwrap();
        let t = tester(
            r#"
            suite = "smoke"
            hosts = "all"
            [[tests]]
            name = "marker present"
            script = 'echo "looking on $GATE_HOST"; test -f marker'
            [[tests]]
            run = ["true"]
            hosts = "primary"
            "#,
        )
        .unwrap();
        let report = t.test(&stage.cx).await.unwrap();
        assert_eq!((report.tests, report.failures, report.errors), (3, 1, 0));
        let xml = std::fs::read_to_string(stage.cx.results_dir().join("smoke.xml")).unwrap();
        assert!(xml.contains(r#"classname="smoke.host-1""#), "{xml}");
        assert!(
            xml.contains("looking on host-1"),
            "the failure carries its output: {xml}"
        );
        assert_eq!(
            read_counts(&stage.cx.results_dir().join("smoke.xml"))
                .unwrap()
                .tests,
            3
        );
    }

    #[tokio::test]
    async fn junit_and_other_files_are_collected_from_every_host_and_garbage_is_kept_as_broken() {
        let stage = LocalStage::new(2, Stage::Test).await;
        let t = tester(
            r#"
            hosts = "primary"
            files = ["logs/*.log"]
            [[tests]]
            name = "unit"
            hosts = "all"
            script = """
            mkdir -p results logs
            printf '<testsuite name="u" tests="2"><testcase name="a"/><testcase name="b"><failure message="x"/></testcase></testsuite>' > results/unit.xml
            echo "ran on $GATE_HOST" > logs/run.log
            if [ "$GATE_HOST" = host-2 ]; then echo '<html>502</html>' > results/bad.xml; fi
            """
            "#,
        )
        .unwrap();
        let report = t.test(&stage.cx).await.unwrap();
        // 2 own cases + 2x2 collected + 1 error report standing in for the bad file.
        assert_eq!(report.tests, 2 + 4 + 1);
        assert_eq!(report.failures, 2);
        assert_eq!(report.errors, 1);
        let results = stage.cx.results_dir();
        for host in ["host-1", "host-2"] {
            assert_eq!(
                read_counts(&results.join(format!("{host}-unit.xml")))
                    .unwrap()
                    .tests,
                2
            );
            assert_eq!(
                std::fs::read_to_string(results.join(host).join("run.log")).unwrap(),
                format!("ran on {host}\n")
            );
        }
        assert_eq!(
            std::fs::read_to_string(results.join("host-2-bad-broken.xml")).unwrap(),
            "<html>502</html>\n"
        );
        let error = std::fs::read_to_string(results.join("host-2-bad.xml")).unwrap();
        assert!(
            error.contains("host-2-bad.xml is not valid JUnit XML: at byte"),
            "{error}"
        );
        assert!(error.contains("root element is &lt;html&gt;"), "{error}");
        assert!(!results.join("host-1-bad.xml").exists());
    }

    #[tokio::test]
    async fn a_cancelled_run_still_writes_what_ran() {
        let stage = LocalStage::new(1, Stage::Test).await;
        let t = tester(
            r#"
            [[tests]]
            name = "quick"
            run = ["true"]
            [[tests]]
            name = "slow"
            run = ["sleep", "30"]
            "#,
        )
        .unwrap();
        let cancel = stage.cx.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            cancel.cancel();
        });
        assert!(t.test(&stage.cx).await.unwrap_err().is_cancelled());
        let counts = read_counts(&stage.cx.results_dir().join("command.xml")).unwrap();
        assert_eq!((counts.tests, counts.errors), (2, 1));
    }

    #[test]
    fn config_errors_name_the_key() {
        for (toml, key) in [
            ("", "[tester] tests"),
            (
                "suite = \"a/b\"\n[[tests]]\nrun = [\"x\"]",
                "[tester] suite",
            ),
            ("[[tests]]\nname = \"x\"", "[tester] tests[0]"),
            (
                "timeout_secs = \"soon\"\n[[tests]]\nrun = [\"x\"]",
                "[tester] timeout_secs",
            ),
        ] {
            let err = tester(toml).unwrap_err().to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
    }
}
