//! The `hooks` deployer: the repository under test carries its own gating hooks,
//! `gating/<action>/pre` (optional, retried), `run` (required) and `post` (optional, always
//! runs, never changes the result).

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use gate_core::steps::{base_env, check_env_name, select};
use gate_core::{
    BackendConfig, Command, Deployer, EnvValue, Error, Result, StageContext, StageOutcome, all_ok,
};
use gate_deploy::{Checkout, HostSteps, UpgradeChecks, Version, parse_url, parse_version};

use crate::hooks_config::HooksConfig;

/// The `hooks` deployer.
#[derive(Debug, Clone)]
pub struct HooksDeployer {
    config: HooksConfig,
    version: Version,
    job: String,
    checks: UpgradeChecks,
}

/// What happened to one action on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    /// The action's hooks ran.
    Yes,
    /// The repository has no such action.
    NoAction,
}

/// Checks a folder name: letters, digits, `.`, `_`, `-`, not `.` or `..`.
fn check_name(section: &BackendConfig, key: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(section.error(key, format!("`{name}` is not a plain folder name")))
    }
}

impl HooksDeployer {
    /// A deployer from its config section, every value checked.
    pub fn from_config(section: &BackendConfig) -> Result<Self> {
        let config: HooksConfig = section.parse()?;
        let version = parse_version(section, "version", &config.version)?;
        if let Some(repo) = &config.repo {
            parse_url(section, "repo", repo)?;
        }
        for (key, path) in [("path", &config.path), ("work_dir", &config.work_dir)] {
            if path.is_empty() || path.starts_with('-') || path.chars().any(char::is_control) {
                return Err(section.error(key, format!("`{path}` is not a usable path")));
            }
        }
        check_name(section, "hooks_dir", &config.hooks_dir)?;
        check_name(section, "actions.prepare", &config.actions.prepare)?;
        check_name(section, "actions.deploy", &config.actions.deploy)?;
        check_name(section, "actions.upgrade", &config.actions.upgrade)?;
        if config.pre_attempts == 0 {
            return Err(section.error("pre_attempts", "must be at least 1"));
        }
        for name in config.env.keys() {
            check_env_name(section, "env", name)?;
        }
        // Test resources in the deployed cloud are recorded under this deployer's name, so
        // its cleaner (registered with it) deletes them.
        let checks = UpgradeChecks::for_deployer(section, &config.upgrade_checks, crate::HOOKS)?;
        let job = config
            .job
            .clone()
            .or_else(|| std::env::var("JOB_NAME").ok())
            .unwrap_or_default();
        Ok(Self {
            config,
            version,
            job,
            checks,
        })
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout_secs)
    }

    fn action_dir(&self, action: &str) -> String {
        format!("{}/{}/{action}", self.config.path, self.config.hooks_dir)
    }

    /// The environment of a hook: gate's base variables, the `GATE_*` and `RE_*` job
    /// variables, then the user's `env`.
    fn env(
        &self,
        cx: &StageContext,
        host: &str,
        action: &str,
        work: &str,
        status: Option<&str>,
    ) -> Vec<(String, EnvValue)> {
        let job = if self.job.is_empty() {
            cx.run_id.as_str().to_owned()
        } else {
            self.job.clone()
        };
        let branch = self
            .config
            .branch
            .clone()
            .unwrap_or_else(|| self.version.to_string());
        let artifacts = format!("{work}/artifacts");
        let results = format!("{work}/results");
        let mut vars = base_env(cx, &Default::default());
        vars.push(("GATE_HOST".into(), host.into()));
        for (gate, re, value) in [
            ("GATE_JOB_NAME", "RE_JOB_NAME", job.as_str()),
            ("GATE_ACTION", "RE_JOB_ACTION", action),
            ("GATE_SCENARIO", "RE_JOB_SCENARIO", &self.config.scenario),
            ("GATE_IMAGE", "RE_JOB_IMAGE", &self.config.image),
            ("GATE_BRANCH", "RE_JOB_BRANCH", &branch),
            ("GATE_ARTIFACT_DIR", "RE_HOOK_ARTIFACT_DIR", &artifacts),
            ("GATE_RESULT_DIR", "RE_HOOK_RESULT_DIR", &results),
        ]
        .into_iter()
        .chain(status.map(|s| ("GATE_JOB_STATUS", "RE_JOB_STATUS", s)))
        {
            vars.push((gate.into(), value.into()));
            vars.push((re.into(), value.into()));
        }
        vars.extend(self.config.env.clone());
        vars
    }

    fn hook(&self, action: &str, hook: &str, env: &[(String, EnvValue)]) -> Command {
        let mut cmd = Command::new(format!("./{}/{action}/{hook}", self.config.hooks_dir))
            .cwd(self.config.path.clone())
            .timeout(self.timeout());
        for (k, v) in env.iter().cloned() {
            cmd = cmd.env(k, v);
        }
        cmd
    }

    /// Runs `action` on one host: `pre` (retried), `run`, then `post` whatever happened.
    async fn run_on(
        &self,
        cx: &StageContext,
        host: &HostSteps,
        action: &str,
        required: bool,
    ) -> Result<Ran> {
        let dir = self.action_dir(action);
        let exists = |path: String| async move {
            let out = host
                .probe(&Command::new("test").arg("-e").arg(path))
                .await?;
            Ok::<bool, Error>(out.status.success())
        };
        if !exists(dir.clone()).await? {
            if required {
                return Err(Error::Host {
                    host: host.name().to_owned(),
                    message: format!("the repository has no `{dir}/run` hook"),
                });
            }
            host.note(&format!("no `{dir}`: nothing to do for `{action}`"));
            return Ok(Ran::NoAction);
        }
        if !exists(format!("{dir}/run")).await? {
            return Err(Error::Host {
                host: host.name().to_owned(),
                message: format!("`{dir}` has no `run` hook; every action needs one"),
            });
        }
        let work = host
            .quiet(
                &Command::script(
                    r#"rm -rf -- "$1"; mkdir -p -- "$1/artifacts" "$1/results"; cd -- "$1"; pwd"#,
                )
                .arg("gate-hooks")
                .arg(format!("{}/{action}", self.config.work_dir)),
            )
            .await?
            .stdout
            .trim()
            .to_owned();
        let env = self.env(cx, host.name(), action, &work, None);

        let mut result = Ok(());
        if exists(format!("{dir}/pre")).await? {
            let attempts = self.config.pre_attempts;
            for attempt in 1..=attempts {
                let name = format!("{action}/pre (attempt {attempt} of {attempts})");
                result = host
                    .step(&name, &self.hook(action, "pre", &env))
                    .await
                    .map(|_| ());
                if result.is_ok() || cx.cancel.is_cancelled() {
                    break;
                }
            }
        }
        if result.is_ok() {
            result = host
                .step(&format!("{action}/run"), &self.hook(action, "run", &env))
                .await
                .map(|_| ());
        }
        if exists(format!("{dir}/post")).await? {
            let status = if result.is_ok() { "SUCCESS" } else { "FAILURE" };
            let env = self.env(cx, host.name(), action, &work, Some(status));
            if let Err(e) = host
                .step(&format!("{action}/post"), &self.hook(action, "post", &env))
                .await
            {
                tracing::warn!("{}: {action}/post failed (ignored): {e}", host.name());
                host.note(&format!(
                    "{action}/post failed; it never changes the result: {e}"
                ));
            }
        }
        let local: PathBuf = cx
            .artifacts_subdir(PathBuf::from("hooks").join(host.name()))?
            .join(action);
        if let Err(e) = host.transport().download(&work, &local).await {
            tracing::warn!("{}: collecting {work}: {e}", host.name());
            host.note(&format!("collecting {work} failed: {e}"));
        }
        result.map(|()| Ran::Yes)
    }

    /// Runs `action` on the selected hosts.
    async fn action(
        &self,
        cx: &StageContext,
        action: &str,
        required: bool,
    ) -> Result<StageOutcome> {
        let targets = select(cx, self.config.hosts);
        let outcomes = cx
            .on_hosts(&targets, |transport, io| async move {
                let host = HostSteps::new(transport, io);
                self.run_on(cx, &host, action, required).await
            })
            .await;
        let ran = all_ok(outcomes)?;
        if ran.contains(&Ran::Yes) {
            Ok(StageOutcome::Done)
        } else {
            Ok(StageOutcome::Skipped(format!(
                "the repository has no `{}` hooks",
                self.action_dir(action)
            )))
        }
    }
}

#[async_trait]
impl Deployer for HooksDeployer {
    async fn prepare_deployment(&self, cx: &StageContext) -> Result<StageOutcome> {
        if let Some(url) = &self.config.repo {
            let checkout = Checkout {
                dest: self.config.path.clone(),
                url: url.clone(),
                version: self.version.clone(),
                timeout: self.timeout(),
            };
            let targets = select(cx, self.config.hosts);
            let outcomes = cx
                .on_hosts(&targets, |transport, io| {
                    let checkout = checkout.clone();
                    async move {
                        let host = HostSteps::new(transport, io);
                        checkout.run(&host, "check out the repository").await
                    }
                })
                .await;
            all_ok(outcomes)?;
        }
        let outcome = self.action(cx, &self.config.actions.prepare, false).await?;
        Ok(match (outcome, &self.config.repo) {
            (StageOutcome::Skipped(_), Some(_)) => StageOutcome::Done,
            (outcome, _) => outcome,
        })
    }

    async fn deploy(&self, cx: &StageContext) -> Result<StageOutcome> {
        self.action(cx, &self.config.actions.deploy, true).await
    }

    async fn upgrade(&self, cx: &StageContext) -> Result<StageOutcome> {
        let action = &self.config.actions.upgrade;
        let primary = HostSteps::primary(cx)?;
        let dir = self.action_dir(action);
        let present = primary
            .probe(&Command::new("test").arg("-d").arg(&dir))
            .await?
            .status
            .success();
        if !present {
            return Ok(StageOutcome::Skipped(format!(
                "the repository has no `{dir}` hooks"
            )));
        }
        self.checks
            .around(cx, self.timeout() * 2, self.action(cx, action, true))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gate_core::testkit::LocalStage;
    use gate_core::{Stage, StageOutcome};

    fn deployer(toml: &str) -> Result<HooksDeployer> {
        HooksDeployer::from_config(&BackendConfig::from_toml("deployer", crate::HOOKS, toml)?)
    }

    fn write(stage: &LocalStage, path: &str, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        let file = stage.home(1).join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, text).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[tokio::test]
    async fn run_is_required_while_a_missing_action_is_skipped_or_refused() {
        let mut stage = LocalStage::new(1, Stage::PrepareDeployment).await;
        let d = deployer("").unwrap();
        std::fs::create_dir_all(stage.home(1).join("repo/gating/prepare")).unwrap();
        let err = d
            .prepare_deployment(&stage.cx)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no `run` hook"), "{err}");
        write(
            &stage,
            "repo/gating/prepare/run",
            "#!/bin/sh\necho \"$GATE_ACTION $RE_JOB_ACTION\" > ../prepared\n",
        );
        assert_eq!(
            d.prepare_deployment(&stage.cx).await.unwrap(),
            StageOutcome::Done
        );
        assert_eq!(
            std::fs::read_to_string(stage.home(1).join("prepared")).unwrap(),
            "prepare prepare\n"
        );
        stage.cx.stage = Stage::Deploy;
        let err = d.deploy(&stage.cx).await.unwrap_err().to_string();
        assert!(err.contains("no `repo/gating/deploy/run` hook"), "{err}");
        stage.cx.stage = Stage::Upgrade;
        assert!(matches!(
            d.upgrade(&stage.cx).await.unwrap(),
            StageOutcome::Skipped(_)
        ));
    }

    #[test]
    fn config_values_are_checked() {
        for (toml, key) in [
            ("hooks_dir = \"../x\"", "[deployer] hooks_dir"),
            (
                "actions = { deploy = \"a b\" }",
                "[deployer] actions.deploy",
            ),
            ("version = \"x;y\"", "[deployer] version"),
            ("repo = \"-x\"", "[deployer] repo"),
            ("pre_attempts = 0", "[deployer] pre_attempts"),
            ("hosts = \"some\"", "[deployer] hosts"),
        ] {
            let err = deployer(toml).unwrap_err().to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
    }
}
