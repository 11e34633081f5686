//! The `selenium` tester: runs a Selenium suite (pytest or nose style, or a command of your
//! own) on one host against a URL, and publishes its JUnit and screenshots.
//!
//! The suite finds what it needs in its environment: `GATE_SELENIUM_URL` (the page under
//! test), `GATE_SELENIUM_BROWSER` and `GATE_SELENIUM_DRIVER` (binaries: pass the driver to
//! Selenium's `Service` so Selenium Manager downloads nothing), `GATE_SELENIUM_BROWSER_ARGS`
//! (space-separated flags), `GATE_SCREENSHOTS_DIR` (where to save screenshots),
//! `GATE_RESULTS_DIR`, and `SE_OFFLINE=true`. JUnit files land in `results/<host>-<file>`
//! (checked), screenshots in `results/<host>/screenshots/`, and the run itself is judged in
//! `results/<suite>.xml` (see [`crate::suite`]).
//!
//! ```toml
//! [tester]
//! backend = "selenium"
//! url = "https://172.29.236.100/"       # Horizon
//! python = "/opt/horizon-tests/bin/python"
//! cwd = "horizon-selenium"
//! tests = ["tests/test_login.py"]
//! ```

mod config;

pub use config::{DEFAULT_BROWSER_ARGS, Runner, SeleniumConfig};

use std::time::Duration;

use async_trait::async_trait;
use gate_core::steps::{Step, base_env};
use gate_core::{BackendConfig, EnvValue, Result, StageContext, TestReport, Tester};

use crate::config::{check_command, check_suite_name};
use crate::suite::Suite;

/// The registry name of the tester.
pub const NAME: &str = "selenium";

/// The screenshots directory under the suite's results directory.
const SCREENSHOTS: &str = "screenshots";

/// Runs a Selenium suite and publishes its JUnit and screenshots.
#[derive(Debug, Clone)]
pub struct SeleniumTester {
    config: SeleniumConfig,
}

impl SeleniumTester {
    /// A tester from its config section.
    pub fn from_config(section: &BackendConfig) -> Result<Self> {
        let config: SeleniumConfig = section.parse()?;
        check_suite_name(section, &config.suite)?;
        if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
            return Err(section.error("url", "must be an http:// or https:// URL"));
        }
        if config.url.chars().any(char::is_whitespace) {
            return Err(section.error("url", "must not contain whitespace"));
        }
        if let Some(arg) = config
            .browser_args
            .iter()
            .find(|a| a.is_empty() || a.chars().any(char::is_whitespace))
        {
            return Err(section.error(
                "browser_args",
                format!("`{arg}`: flags are passed space-separated, so none may be empty or hold whitespace"),
            ));
        }
        check_command(section, &config.step(None), false)?;
        Ok(Self { config })
    }
}

impl SeleniumConfig {
    /// The suite's command as a step: `run`/`script` when given, else the runner writing
    /// its JUnit into `results_dir` (`None` only for checking).
    fn step(&self, results_dir: Option<&str>) -> Step {
        let custom = self.run.is_some() || self.script.is_some();
        let run = match results_dir {
            Some(dir) if !custom => Some(self.runner_argv(dir)),
            _ => self.run.clone(),
        };
        Step {
            name: None,
            run,
            script: self.script.clone(),
            hosts: None,
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            timeout_secs: Some(self.timeout_secs),
        }
    }

    /// The runner's argument vector, its JUnit going to `<results_dir>/<suite>.xml`.
    pub fn runner_argv(&self, results_dir: &str) -> Vec<String> {
        let junit = format!("{results_dir}/{}.xml", self.suite);
        let mut argv = vec![self.python.clone(), "-m".into()];
        match self.runner {
            Runner::Pytest => {
                argv.extend(["pytest".into(), "-v".into(), format!("--junitxml={junit}")])
            }
            Runner::Nose => argv.extend([
                "nose".into(),
                "-v".into(),
                "--with-xunit".into(),
                format!("--xunit-file={junit}"),
            ]),
            Runner::Nose2 => argv.extend([
                "nose2".into(),
                "-v".into(),
                "--plugin".into(),
                "nose2.plugins.junitxml".into(),
                "--junit-xml".into(),
                "--junit-xml-path".into(),
                junit,
            ]),
        }
        argv.extend(self.args.iter().cloned());
        argv.extend(self.tests.iter().cloned());
        argv
    }
}

#[async_trait]
impl Tester for SeleniumTester {
    async fn test(&self, cx: &StageContext) -> Result<TestReport> {
        let c = &self.config;
        let suite = Suite {
            name: &c.suite,
            host: c.host.as_deref(),
            junit: &c.junit,
            files: &c.screenshots,
            files_subdir: SCREENSHOTS,
            make_dirs: &[SCREENSHOTS],
        };
        let base = base_env(cx, &Default::default());
        suite
            .run(cx, |dir, host| {
                let vars = [
                    ("GATE_HOST", host.to_owned()),
                    ("GATE_RESULTS_DIR", dir.to_owned()),
                    ("GATE_SCREENSHOTS_DIR", format!("{dir}/{SCREENSHOTS}")),
                    ("GATE_SELENIUM_URL", c.url.clone()),
                    ("GATE_SELENIUM_BROWSER", c.browser.clone()),
                    ("GATE_SELENIUM_DRIVER", c.driver.clone()),
                    ("GATE_SELENIUM_BROWSER_ARGS", c.browser_args.join(" ")),
                    ("SE_OFFLINE", "true".to_owned()),
                ];
                let env = base.into_iter().chain(
                    vars.into_iter()
                        .map(|(k, v)| (k.to_owned(), EnvValue::from(v))),
                );
                c.step(Some(dir))
                    .command(env, Duration::from_secs(c.timeout_secs))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gate_core::Stage;
    use gate_core::junit::read_counts;
    use gate_core::testkit::LocalStage;

    fn tester(toml: &str) -> Result<SeleniumTester> {
        SeleniumTester::from_config(&BackendConfig::from_toml("tester", NAME, toml)?)
    }

    #[test]
    fn runners_write_their_junit_into_the_results_dir() {
        let t = tester("url = \"http://127.0.0.1:8080/\"\nargs = [\"-x\"]\ntests = [\"t.py\"]")
            .unwrap();
        assert_eq!(
            t.config.runner_argv("/r"),
            [
                "python3",
                "-m",
                "pytest",
                "-v",
                "--junitxml=/r/selenium.xml",
                "-x",
                "t.py"
            ]
        );
        let t =
            tester("url = \"http://h/\"\nrunner = \"nose\"\npython = \"/v/bin/python\"").unwrap();
        assert_eq!(
            t.config.runner_argv("/r"),
            [
                "/v/bin/python",
                "-m",
                "nose",
                "-v",
                "--with-xunit",
                "--xunit-file=/r/selenium.xml",
                "."
            ]
        );
        let t = tester("url = \"http://h/\"\nrunner = \"nose2\"\nsuite = \"horizon\"").unwrap();
        assert!(t.config.runner_argv("/r").ends_with(&[
            "--junit-xml-path".into(),
            "/r/horizon.xml".into(),
            ".".into()
        ]));
    }

    /// A stand-in `python` that acts like pytest: one passing and one failing case in the
    /// JUnit file it was asked for, a screenshot, and what it was given.
    const FAKE_PYTHON: &str = r#"#!/usr/bin/env bash
junit=${4#--junitxml=}
printf '<testsuite name="pytest" tests="2"><testcase classname="test_ui" name="test_title"/><testcase classname="test_ui" name="test_login"><failure message="no form">AssertionError</failure></testcase></testsuite>' > "$junit"
printf 'PNG' > "$GATE_SCREENSHOTS_DIR/test_login.png"
env | grep -E '^(GATE_SELENIUM_|SE_OFFLINE)' | sort > "$GATE_RESULTS_DIR/env.txt"
exit 1
"#;

    #[tokio::test]
    async fn junit_and_screenshots_arrive_and_the_suite_gets_its_environment() {
        let stage = LocalStage::new(1, Stage::Test).await;
        let python = stage.home(1).join("fake-python");
        std::fs::write(&python, FAKE_PYTHON).unwrap();
        std::fs::set_permissions(&python, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let t = tester(&format!(
            "url = \"http://127.0.0.1:9/x?a=1&b=$(id)\"\npython = \"{}\"\nscreenshots = [\"screenshots/*.png\", \"env.txt\"]",
            python.display()
        ))
        .unwrap();
        let report = t.test(&stage.cx).await.unwrap();
        assert_eq!((report.tests, report.failures, report.errors), (3, 1, 0));
        let results = stage.cx.results_dir();
        assert_eq!(
            read_counts(&results.join("host-1-selenium.xml"))
                .unwrap()
                .tests,
            2
        );
        assert_eq!(
            std::fs::read(results.join("host-1/screenshots/test_login.png")).unwrap(),
            b"PNG"
        );
        let env = std::fs::read_to_string(results.join("host-1/screenshots/env.txt")).unwrap();
        assert!(
            env.contains("GATE_SELENIUM_URL=http://127.0.0.1:9/x?a=1&b=$(id)\n"),
            "{env}"
        );
        assert!(
            env.contains("GATE_SELENIUM_DRIVER=/usr/bin/chromedriver\n"),
            "{env}"
        );
        assert!(env.contains("SE_OFFLINE=true\n"), "{env}");
        assert!(
            env.contains(&format!(
                "GATE_SELENIUM_BROWSER_ARGS={}\n",
                DEFAULT_BROWSER_ARGS.join(" ")
            )),
            "{env}"
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        for (toml, key) in [
            ("", "url"),
            ("url = \"file:///etc/passwd\"", "[tester] url"),
            (
                "url = \"http://h/\"\nbrowser_args = [\"--a b\"]",
                "[tester] browser_args",
            ),
            ("url = \"http://h/\"\nrunner = \"robot\"", "[tester] runner"),
            ("url = \"http://h/\"\nrun = []", "[tester] run"),
            ("url = \"http://h/\"\nsuite = \"\"", "[tester] suite"),
        ] {
            let err = tester(toml).unwrap_err().to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
    }
}
