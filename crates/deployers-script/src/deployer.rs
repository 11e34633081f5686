//! Running the configured steps of a stage.

use std::time::Duration;

use async_trait::async_trait;
use gate_core::steps::{Step, base_env, check_env_name, check_steps, require_success, run_step};
use gate_core::{BackendConfig, Deployer, Result, StageContext, StageOutcome, all_ok};

use gate_deploy::UpgradeChecks;

use crate::config::ScriptConfig;

/// The `script` deployer.
#[derive(Debug, Clone)]
pub struct ScriptDeployer {
    config: ScriptConfig,
    checks: UpgradeChecks,
}

impl ScriptDeployer {
    /// A deployer from its config section (steps checked).
    pub fn from_config(section: &BackendConfig) -> Result<Self> {
        let config: ScriptConfig = section.parse()?;
        for (key, steps) in [
            ("prepare", &config.prepare),
            ("deploy", &config.deploy),
            ("upgrade", &config.upgrade),
        ] {
            check_steps(section, key, steps)?;
        }
        for name in config.env.keys() {
            check_env_name(section, "env", name)?;
        }
        // Test resources in the deployed cloud are recorded under this deployer's name, so
        // its cleaner (registered with it) deletes them.
        let checks = UpgradeChecks::for_deployer(section, &config.upgrade_checks, crate::NAME)?;
        Ok(Self { config, checks })
    }

    async fn run_steps(
        &self,
        cx: &StageContext,
        key: &str,
        steps: &[Step],
    ) -> Result<StageOutcome> {
        if steps.is_empty() {
            return Ok(StageOutcome::Skipped(format!(
                "no `{key}` steps are configured"
            )));
        }
        let env = base_env(cx, &self.config.env);
        let timeout = Duration::from_secs(self.config.timeout_secs);
        for (i, step) in steps.iter().enumerate() {
            let name = step.display_name(i);
            tracing::info!("{}: step {}/{}: {name}", cx.stage, i + 1, steps.len());
            let outcomes = run_step(cx, step, &name, self.config.hosts, &env, timeout).await;
            all_ok(require_success(outcomes, &name))?;
        }
        Ok(StageOutcome::Done)
    }
}

#[async_trait]
impl Deployer for ScriptDeployer {
    async fn prepare_deployment(&self, cx: &StageContext) -> Result<StageOutcome> {
        self.run_steps(cx, "prepare", &self.config.prepare).await
    }

    async fn deploy(&self, cx: &StageContext) -> Result<StageOutcome> {
        self.run_steps(cx, "deploy", &self.config.deploy).await
    }

    async fn upgrade(&self, cx: &StageContext) -> Result<StageOutcome> {
        if self.config.upgrade.is_empty() {
            return self.run_steps(cx, "upgrade", &self.config.upgrade).await;
        }
        let lifetime = Duration::from_secs(self.config.timeout_secs) * 4;
        self.checks
            .around(
                cx,
                lifetime,
                self.run_steps(cx, "upgrade", &self.config.upgrade),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gate_core::testkit::LocalStage;
    use gate_core::{Secret, Stage};

    fn deployer(toml: &str) -> Result<ScriptDeployer> {
        ScriptDeployer::from_config(&BackendConfig::from_toml("deployer", crate::NAME, toml)?)
    }

    #[tokio::test]
    async fn steps_run_in_order_on_the_selected_hosts_with_env() {
        let stage = LocalStage::new(2, Stage::Deploy).await;
        let d = deployer(
            r#"
            env = { RELEASE = "27.10" }
            [[deploy]]
            script = 'echo "$RELEASE $GATE_HOST $GATE_STAGE" > first'
            hosts = "all"
            [[deploy]]
            run = ["cp", "first", "second"]
            "#,
        )
        .unwrap();
        assert_eq!(d.deploy(&stage.cx).await.unwrap(), StageOutcome::Done);
        let first = std::fs::read_to_string(stage.home(2).join("first")).unwrap();
        assert_eq!(first, "27.10 host-2 deploy\n");
        assert!(stage.home(1).join("second").exists());
        assert!(
            !stage.home(2).join("second").exists(),
            "the second step is primary-only"
        );
        assert!(matches!(
            d.upgrade(&stage.cx).await.unwrap(),
            StageOutcome::Skipped(_)
        ));
    }

    #[test]
    fn test_resources_in_the_deployed_cloud_are_checked_and_cleaned_as_the_script_deployers() {
        let err = deployer("[upgrade_checks.resources]\nservers = 1\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("upgrade_checks.resources.flavor"), "{err}");
        let toml = "[upgrade_checks.resources]\nvolumes = 2\ncloud = \"deployed\"\n";
        deployer(toml).unwrap();
        // Its ledger entries (backend `script`) reach a cleaner built from its section.
        let mut registry = gate_core::Registry::new();
        crate::register(&mut registry);
        let section = BackendConfig::from_toml("deployer", crate::NAME, toml).unwrap();
        let cleaner = registry.cleaner(&section).unwrap();
        assert!(
            format!("{cleaner:?}").contains("backend: \"script\""),
            "{cleaner:?}"
        );
        let hooks = BackendConfig::from_toml("deployer", crate::HOOKS, toml).unwrap();
        assert!(registry.cleaner(&hooks).is_ok());
    }

    #[tokio::test]
    async fn a_failing_step_names_the_host_and_stops_the_sequence() {
        let stage = LocalStage::new(2, Stage::Deploy).await;
        let d = deployer(
            r#"
            [[deploy]]
            script = 'echo "about to fail on $GATE_HOST"; [ "$GATE_HOST" != host-2 ]'
            hosts = "all"
            [[deploy]]
            run = ["touch", "never"]
            "#,
        )
        .unwrap();
        let err = d.deploy(&stage.cx).await.unwrap_err().to_string();
        assert!(err.contains("host host-2"), "{err}");
        assert!(err.contains("about to fail on host-2"), "{err}");
        assert!(!stage.home(1).join("never").exists());
    }

    #[tokio::test]
    async fn secret_env_values_are_masked_in_the_host_log() {
        let stage = LocalStage::new(1, Stage::Deploy).await;
        let _registered = Secret::new("deployer-unit-sentinel");
        let d = deployer(
            r#"
            [[deploy]]
            script = 'echo "token is $TOKEN"'
            env = { TOKEN = { secret = "deployer-unit-sentinel" } }
            "#,
        )
        .unwrap();
        d.deploy(&stage.cx).await.unwrap();
        let log = std::fs::read_to_string(stage.cx.logs_dir().join("host-1.log")).unwrap();
        assert!(log.contains("token is ***"), "{log}");
        assert!(!log.contains("deployer-unit-sentinel"), "{log}");
    }

    #[test]
    fn steps_need_exactly_one_of_run_and_script() {
        for (toml, key) in [
            ("[[deploy]]\nname = \"x\"", "[deployer] deploy[0]"),
            ("[[prepare]]\nrun = []", "[deployer] prepare[0].run"),
            (
                "[[upgrade]]\nrun = [\"a\"]\nscript = \"b\"",
                "[deployer] upgrade[0]",
            ),
            ("env = { \"BAD-NAME\" = \"x\" }", "[deployer] env"),
            (
                "[[deploy]]\nscript = \"x\"\nhosts = \"some\"",
                "[deployer] deploy[0].hosts",
            ),
        ] {
            let err = deployer(toml).unwrap_err().to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
    }
}
