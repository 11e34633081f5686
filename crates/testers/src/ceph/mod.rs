//! The `ceph` tester: runs a Ceph functional suite (ceph-ansible's functional tests, a
//! teuthology-style script, …) on one host and publishes its JUnit.
//!
//! The suite writes its JUnit (e.g. `py.test --junitxml="$GATE_RESULTS_DIR/ceph.xml"`) into
//! the fresh directory `GATE_RESULTS_DIR`; gate collects it as `results/<host>-<file>`,
//! checks every file, and judges the run itself in `results/<suite>.xml` (see
//! [`crate::suite`]).
//!
//! ```toml
//! [tester]
//! backend = "ceph"
//! host = "ceph-mon"              # a host name or label; default: the primary
//! cwd = "ceph-ansible"
//! script = 'py.test -v --junitxml="$GATE_RESULTS_DIR/ceph.xml" tests/functional'
//! ```

mod config;

pub use config::CephConfig;

use std::time::Duration;

use async_trait::async_trait;
use gate_core::steps::{Step, base_env};
use gate_core::{BackendConfig, EnvValue, Result, StageContext, TestReport, Tester};

use crate::config::{check_command, check_suite_name};
use crate::suite::Suite;

/// The registry name of the tester.
pub const NAME: &str = "ceph";

/// Runs a Ceph functional suite and publishes its JUnit.
#[derive(Debug, Clone)]
pub struct CephTester {
    config: CephConfig,
    step: Step,
}

impl CephTester {
    /// A tester from its config section.
    pub fn from_config(section: &BackendConfig) -> Result<Self> {
        let config: CephConfig = section.parse()?;
        check_suite_name(section, &config.suite)?;
        let step = Step {
            name: None,
            run: config.run.clone(),
            script: config.script.clone(),
            hosts: None,
            env: config.env.clone(),
            cwd: config.cwd.clone(),
            timeout_secs: Some(config.timeout_secs),
        };
        check_command(section, &step, true)?;
        Ok(Self { config, step })
    }
}

#[async_trait]
impl Tester for CephTester {
    async fn test(&self, cx: &StageContext) -> Result<TestReport> {
        let suite = Suite {
            name: &self.config.suite,
            host: self.config.host.as_deref(),
            junit: &self.config.junit,
            files: &self.config.files,
            files_subdir: NAME,
            make_dirs: &[],
        };
        let base = base_env(cx, &Default::default());
        suite
            .run(cx, |dir, host| {
                let env = base.into_iter().chain([
                    ("GATE_HOST".to_owned(), EnvValue::from(host)),
                    ("GATE_RESULTS_DIR".to_owned(), EnvValue::from(dir)),
                ]);
                self.step
                    .command(env, Duration::from_secs(self.config.timeout_secs))
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

    fn tester(toml: &str) -> Result<CephTester> {
        CephTester::from_config(&BackendConfig::from_toml("tester", NAME, toml)?)
    }

    const JUNIT: &str = r#"<testsuite name="functional" tests="2"><testcase classname="test_osds" name="test_osds_are_up"/><testcase classname="test_mons" name="test_quorum"><failure message="no quorum">assert 1 == 3</failure></testcase></testsuite>"#;

    #[tokio::test]
    async fn the_suites_junit_is_published_and_its_failures_explain_the_exit() {
        let stage = LocalStage::new(2, Stage::Test).await;
        let t = tester(&format!(
            "host = \"host-2\"\nscript = '''\necho \"$GATE_HOST\" > \"$GATE_RESULTS_DIR/where\"\nprintf '%s' '{JUNIT}' > \"$GATE_RESULTS_DIR/functional.xml\"\nexit 1\n'''\nfiles = [\"where\"]"
        ))
        .unwrap();
        let report = t.test(&stage.cx).await.unwrap();
        assert_eq!((report.tests, report.failures, report.errors), (3, 1, 0));
        let results = stage.cx.results_dir();
        assert_eq!(
            read_counts(&results.join("host-2-functional.xml"))
                .unwrap()
                .tests,
            2
        );
        assert_eq!(
            std::fs::read_to_string(results.join("host-2/ceph/where")).unwrap(),
            "host-2\n"
        );
        let own = std::fs::read_to_string(results.join("ceph.xml")).unwrap();
        assert!(
            own.contains("The suite exited with status 1; its 1 failing case(s)"),
            "{own}"
        );
    }

    #[tokio::test]
    async fn a_suite_that_leaves_no_junit_is_an_error_naming_its_exit() {
        let stage = LocalStage::new(1, Stage::Test).await;
        let t = tester("run = [\"bash\", \"-c\", \"echo ceph is not installed >&2; exit 127\"]")
            .unwrap();
        let report = t.test(&stage.cx).await.unwrap();
        assert_eq!((report.tests, report.errors), (1, 1));
        let own = std::fs::read_to_string(stage.cx.results_dir().join("ceph.xml")).unwrap();
        assert!(
            own.contains("the suite left no JUnit XML (it exited with status 127)"),
            "{own}"
        );
        assert!(own.contains("ceph is not installed"), "{own}");
    }

    #[tokio::test]
    async fn a_clean_junit_with_a_failing_exit_is_a_failure() {
        let stage = LocalStage::new(1, Stage::Test).await;
        let t = tester(
            "script = '''\nprintf '<testsuite><testcase name=\"a\"/></testsuite>' > \"$GATE_RESULTS_DIR/r.xml\"\nexit 3\n'''",
        )
        .unwrap();
        let report = t.test(&stage.cx).await.unwrap();
        assert_eq!((report.tests, report.failures), (2, 1));
    }

    #[tokio::test]
    async fn an_interrupted_suite_still_leaves_its_judgement() {
        let stage = LocalStage::new(1, Stage::Test).await;
        let t = tester("script = 'touch \"$GATE_RESULTS_DIR/started\"; sleep 60'").unwrap();
        let started = stage
            .home(1)
            .join("gate-results")
            .join(stage.cx.run_id.as_str())
            .join("ceph/started");
        let cancel = stage.cx.cancel.clone();
        let watcher = tokio::spawn(async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while !started.exists() && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            cancel.cancel();
        });
        let err = t.test(&stage.cx).await.unwrap_err();
        watcher.await.unwrap();
        assert!(err.is_cancelled(), "{err}");
        let counts = read_counts(&stage.cx.results_dir().join("ceph.xml")).unwrap();
        assert_eq!((counts.tests, counts.errors), (1, 1));
    }

    #[tokio::test]
    async fn an_unknown_host_is_an_error_case_not_a_lost_run() {
        let stage = LocalStage::new(1, Stage::Test).await;
        let t = tester("host = \"mon\"\nrun = [\"true\"]").unwrap();
        let report = t.test(&stage.cx).await.unwrap();
        assert_eq!((report.tests, report.errors), (1, 1));
        let own = std::fs::read_to_string(stage.cx.results_dir().join("ceph.xml")).unwrap();
        assert!(own.contains("no host is named or labelled `mon`"), "{own}");
    }

    #[test]
    fn config_errors_name_the_key() {
        for (toml, key) in [
            ("", "[tester] run"),
            ("run = []", "[tester] run"),
            ("run = [\"a\"]\nscript = \"b\"", "[tester] run"),
            ("suite = \"../x\"\nrun = [\"a\"]", "[tester] suite"),
            ("run = [\"a\"]\nenv = { \"A-B\" = \"x\" }", "[tester] env"),
            ("run = [\"a\"]\nhosts = \"all\"", "hosts"),
        ] {
            let err = tester(toml).unwrap_err().to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
    }
}
