//! The stages of the `rpco` deployer.

use std::time::Duration;

use async_trait::async_trait;
use gate_core::{BackendConfig, Command, Deployer, EnvValue, Result, StageContext, StageOutcome};
use gate_deploy::{HostSteps, Repository, RepositoryKeys, UpgradeChecks, ansible_env};
use serde_yaml_ng::{Mapping, Value};

use crate::config::RpcoConfig;

/// The file gate writes the gating variables to.
pub const GATING_VARIABLES: &str = "user_zzz_gating_variables.yml";

/// The `rpco` deployer.
#[derive(Debug, Clone)]
pub struct RpcoDeployer {
    config: RpcoConfig,
    repo: Repository,
    checks: UpgradeChecks,
}

/// Checks a path inside the checkout: relative, no `..`, not an option.
fn check_relative(section: &BackendConfig, key: &str, path: &str) -> Result<()> {
    let ok = !path.is_empty()
        && !path.starts_with('/')
        && !path.starts_with('-')
        && !path.split('/').any(|p| p == "..")
        && !path.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(section.error(key, format!("`{path}` is not a path inside the checkout")))
    }
}

impl RpcoDeployer {
    /// A deployer from its config section, every value checked.
    pub fn from_config(section: &BackendConfig) -> Result<Self> {
        let config: RpcoConfig = section.parse()?;
        let repo = Repository::from_keys(
            section,
            RepositoryKeys {
                repo: &config.repo,
                version: &config.version,
                upgrade_to: config.upgrade_to.as_deref(),
                path: &config.path,
                config_dir: &config.config_dir,
                env: &config.env,
                timeout_secs: config.timeout_secs,
            },
        )?;
        check_relative(section, "upgrade_script", &config.upgrade_script)?;
        match config.post_upgrade.first() {
            Some(program) => check_relative(section, "post_upgrade[0]", program)?,
            None => return Err(section.error("post_upgrade", "is empty")),
        }
        // Test servers in the deployed cloud are recorded under this deployer's name, so its
        // cleaner (registered with it) deletes them.
        let checks = UpgradeChecks::for_deployer(section, &config.upgrade_checks, crate::NAME)?;
        Ok(Self {
            config,
            repo,
            checks,
        })
    }

    fn timeout(&self) -> Duration {
        self.repo.timeout()
    }

    /// `argv[0]` (relative to the checkout) with its arguments, run from the checkout with
    /// gate's Ansible environment, the `DEPLOY_*` flags, `extra`, then the user's `env`.
    async fn command(
        &self,
        host: &HostSteps,
        argv: &[String],
        extra: &[(&str, &str)],
    ) -> Result<Command> {
        let (program, args) = argv
            .split_first()
            .map_or(("", &[][..]), |(p, a)| (p.as_str(), a));
        let mut cmd = Command::new(format!("{}/{program}", self.config.path))
            .args(args.iter().cloned())
            .cwd(self.config.path.clone())
            .timeout(self.timeout());
        let flags = self
            .config
            .flags
            .env()
            .into_iter()
            .map(|(k, v)| (k, EnvValue::from(v)));
        let extra = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), EnvValue::from(*v)));
        for (k, v) in ansible_env(host)
            .await?
            .into_iter()
            .chain(flags)
            .chain(extra)
            .chain(self.config.env.clone())
        {
            cmd = cmd.env(k, v);
        }
        Ok(cmd)
    }

    fn deploy_sh(&self) -> Vec<String> {
        vec!["scripts/deploy.sh".to_owned()]
    }
}

/// The gating variables as YAML text.
pub fn gating_yaml(config: &RpcoConfig) -> String {
    let map: Mapping = config
        .gating_variables
        .iter()
        .map(|(k, v)| (Value::String(k.clone()), v.clone()))
        .collect();
    let body = serde_yaml_ng::to_string(&map).unwrap_or_default();
    format!("---\n# Written by gate (the `rpco` deployer); changes are overwritten.\n{body}")
}

#[async_trait]
impl Deployer for RpcoDeployer {
    async fn prepare_deployment(&self, cx: &StageContext) -> Result<StageOutcome> {
        let host = HostSteps::primary(cx)?;
        self.repo
            .checkout(&self.repo.version)
            .run(&host, "check out rpc-openstack")
            .await?;
        let bootstrap = self
            .command(
                &host,
                &self.deploy_sh(),
                &[("DEPLOY_OA", "no"), ("DEPLOY_RPC", "no")],
            )
            .await?;
        host.step("deploy.sh (bootstrap only)", &bootstrap).await?;
        let path = format!(
            "{}/{GATING_VARIABLES}",
            self.config.config_dir.trim_end_matches('/')
        );
        host.write_file(&path, &gating_yaml(&self.config), 0o644)
            .await?;
        Ok(StageOutcome::Done)
    }

    async fn deploy(&self, cx: &StageContext) -> Result<StageOutcome> {
        let host = HostSteps::primary(cx)?;
        let cmd = self
            .command(
                &host,
                &self.deploy_sh(),
                &[("DEPLOY_OA", "yes"), ("DEPLOY_RPC", "yes")],
            )
            .await?;
        host.step("deploy.sh", &cmd).await?;
        Ok(StageOutcome::Done)
    }

    async fn upgrade(&self, cx: &StageContext) -> Result<StageOutcome> {
        let Some(target) = &self.repo.upgrade_to else {
            return Ok(StageOutcome::Skipped(
                "no `upgrade_to` is configured".into(),
            ));
        };
        let host = HostSteps::primary(cx)?;
        self.checks
            .around(cx, self.timeout() * 4, async {
                self.repo
                    .checkout(target)
                    .run(&host, "check out the upgrade target")
                    .await?;
                let upgrade = self
                    .command(
                        &host,
                        std::slice::from_ref(&self.config.upgrade_script),
                        &[("I_REALLY_KNOW_WHAT_I_AM_DOING", "true")],
                    )
                    .await?;
                host.step("upgrade", &upgrade).await?;
                let check = self
                    .command(
                        &host,
                        &self.config.post_upgrade,
                        &[("DEPLOY_OA", "yes"), ("DEPLOY_RPC", "yes")],
                    )
                    .await?;
                host.step("post-upgrade check", &check).await?;
                Ok(StageOutcome::Done)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployer(toml: &str) -> Result<RpcoDeployer> {
        RpcoDeployer::from_config(&BackendConfig::from_toml("deployer", crate::NAME, toml)?)
    }

    #[test]
    fn cloud_test_servers_build_and_their_cleaner_is_registered() {
        deployer(
            "[upgrade_checks.resources]\nservers = 1\nflavor = \"m1.tiny\"\nimage = \"cirros\"\n",
        )
        .unwrap();
        let err = deployer("[upgrade_checks.resources]\nservers = 1\nflavor = \"m1.tiny\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("upgrade_checks.resources.image"), "{err}");
        let mut registry = gate_core::Registry::new();
        crate::register(&mut registry);
        assert!(registry.has_cleaner(crate::NAME));
    }

    #[test]
    fn an_unknown_flag_is_a_config_error_naming_it() {
        let err = deployer("[flags]\nelk = true\nkibana = true\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[deployer] flags"), "{err}");
        assert!(err.contains("kibana"), "{err}");
    }

    #[test]
    fn hostile_values_are_refused_at_config_time() {
        for (toml, key) in [
            ("version = \"master && reboot\"", "[deployer] version"),
            ("upgrade_to = \"r17.0.0|x\"", "[deployer] upgrade_to"),
            (
                "upgrade_script = \"../../bin/sh\"",
                "[deployer] upgrade_script",
            ),
            ("post_upgrade = []", "[deployer] post_upgrade"),
            ("config_dir = \"etc\"", "[deployer] config_dir"),
        ] {
            let err = deployer(toml).unwrap_err().to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
    }

    #[test]
    fn every_flag_is_passed_as_yes_or_no() {
        let d = deployer("[flags]\naio = true\nceph = true\n").unwrap();
        let env = d.config.flags.env();
        assert_eq!(env.len(), 10);
        assert!(env.contains(&("DEPLOY_AIO".into(), "yes".into())));
        assert!(env.contains(&("DEPLOY_SWIFT".into(), "no".into())));
    }
}
