//! The stages of the `osa` deployer.

use std::time::Duration;

use async_trait::async_trait;
use gate_core::{BackendConfig, Command, Deployer, EnvValue, Result, StageContext, StageOutcome};
use gate_deploy::{HostSteps, Repository, RepositoryKeys, UpgradeChecks, ansible_env};

use crate::config::{OsaConfig, TargetKind};
use crate::render;

/// The file-form playbooks, run from `playbooks/`.
const FILE_PLAYBOOKS: [&str; 3] = [
    "setup-hosts.yml",
    "setup-infrastructure.yml",
    "setup-openstack.yml",
];
/// The collection-form playbooks of newer releases, run from the checkout.
const COLLECTION_PLAYBOOKS: [&str; 3] = [
    "openstack.osa.setup_hosts",
    "openstack.osa.setup_infrastructure",
    "openstack.osa.setup_openstack",
];

/// The `osa` deployer.
#[derive(Debug, Clone)]
pub struct OsaDeployer {
    config: OsaConfig,
    repo: Repository,
    checks: UpgradeChecks,
}

impl OsaDeployer {
    /// A deployer from its config section, every value checked.
    pub fn from_config(section: &BackendConfig) -> Result<Self> {
        let config: OsaConfig = section.parse()?;
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
        let file = &config.variables_file;
        if file.contains('/') || !file.starts_with("user_") || !file.ends_with(".yml") {
            return Err(section.error(
                "variables_file",
                format!("`{file}` must be a file name `user_*.yml`"),
            ));
        }
        let scenario_ok = !config.scenario.is_empty()
            && config
                .scenario
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !scenario_ok {
            return Err(section.error("scenario", "use letters, digits and `_`"));
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

    /// A script of the checkout (`scripts/NAME`) run from the checkout with `env`.
    fn script(&self, name: &str, env: &[(String, EnvValue)]) -> Command {
        let mut cmd = Command::new(format!("{}/scripts/{name}", self.config.path))
            .cwd(self.config.path.clone())
            .timeout(self.timeout());
        for (k, v) in env.iter().cloned().chain(self.config.env.clone()) {
            cmd = cmd.env(k, v);
        }
        cmd
    }

    fn config_path(&self, file: &str) -> String {
        format!("{}/{file}", self.config.config_dir.trim_end_matches('/'))
    }

    /// Writes the variables file (and the secrets file, if any), plus the host list for
    /// multi-node.
    async fn write_config(&self, cx: &StageContext, primary: &HostSteps) -> Result<()> {
        if self.config.target == TargetKind::MultiNode {
            let uc = render::user_config(&self.config, &cx.inventory);
            primary
                .write_file(
                    &self.config_path("openstack_user_config.yml"),
                    &render::to_yaml(&uc),
                    0o644,
                )
                .await?;
        }
        let vars = render::variables(&self.config);
        primary
            .write_file(
                &self.config_path(&self.config.variables_file),
                &render::to_yaml(&vars),
                0o644,
            )
            .await?;
        if !self.config.secret_variables.is_empty() {
            primary
                .write_file(
                    &self.config_path("user_zzz_gate_secrets.yml"),
                    &render::to_yaml(&render::secret_variables(&self.config)),
                    0o600,
                )
                .await?;
        }
        Ok(())
    }

    fn scenario_env(&self) -> Vec<(String, EnvValue)> {
        vec![(
            "SCENARIO".to_owned(),
            EnvValue::from(self.config.features.scenario(&self.config.scenario)),
        )]
    }

    /// The playbook sequence of the release checked out: `(working dir, playbooks)`.
    async fn playbooks(&self, primary: &HostSteps) -> Result<(String, Vec<String>)> {
        if !self.config.playbooks.is_empty() {
            let dir = format!("{}/playbooks", self.config.path);
            return Ok((dir, self.config.playbooks.clone()));
        }
        let dir = format!("{}/playbooks", self.config.path);
        if primary
            .is_file(&format!("{dir}/{}", FILE_PLAYBOOKS[0]))
            .await?
        {
            Ok((dir, FILE_PLAYBOOKS.iter().map(|p| p.to_string()).collect()))
        } else {
            Ok((
                self.config.path.clone(),
                COLLECTION_PLAYBOOKS.iter().map(|p| p.to_string()).collect(),
            ))
        }
    }

    /// Runs the deploy sequence; `label` prefixes the step names.
    async fn run_playbooks(&self, primary: &HostSteps, label: &str) -> Result<()> {
        let env = ansible_env(primary).await?;
        let (dir, playbooks) = self.playbooks(primary).await?;
        for playbook in &playbooks {
            let mut cmd = Command::new("openstack-ansible")
                .arg(playbook)
                .cwd(dir.clone())
                .timeout(self.timeout());
            for (k, v) in env.iter().cloned().chain(self.config.env.clone()) {
                cmd = cmd.env(k, v);
            }
            primary.step(&format!("{label}{playbook}"), &cmd).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Deployer for OsaDeployer {
    async fn prepare_deployment(&self, cx: &StageContext) -> Result<StageOutcome> {
        let primary = HostSteps::primary(cx)?;
        self.repo
            .checkout(&self.repo.version)
            .run(&primary, "check out openstack-ansible")
            .await?;
        let scenario = self.scenario_env();
        match self.config.target {
            TargetKind::Aio => {
                primary
                    .step(
                        "bootstrap-ansible",
                        &self.script("bootstrap-ansible.sh", &scenario),
                    )
                    .await?;
                primary
                    .step("bootstrap-aio", &self.script("bootstrap-aio.sh", &scenario))
                    .await?;
                self.write_config(cx, &primary).await?;
            }
            TargetKind::MultiNode => {
                let skeleton = format!("{}/etc/openstack_deploy/.", self.config.path);
                primary
                    .step(
                        "config skeleton",
                        &Command::script(
                            r#"mkdir -p -- "$2"; [ ! -d "$1" ] || cp -Rn -- "$1" "$2""#,
                        )
                        .arg("gate-skeleton")
                        .arg(skeleton)
                        .arg(self.config.config_dir.clone()),
                    )
                    .await?;
                self.write_config(cx, &primary).await?;
                primary
                    .step(
                        "bootstrap-ansible",
                        &self.script("bootstrap-ansible.sh", &[]),
                    )
                    .await?;
                primary
                    .step(
                        "generate secrets",
                        &self
                            .script("pw-token-gen.py", &[])
                            .args(["--file".to_owned(), self.config_path("user_secrets.yml")]),
                    )
                    .await?;
            }
        }
        Ok(StageOutcome::Done)
    }

    async fn deploy(&self, cx: &StageContext) -> Result<StageOutcome> {
        let primary = HostSteps::primary(cx)?;
        self.run_playbooks(&primary, "").await?;
        Ok(StageOutcome::Done)
    }

    async fn upgrade(&self, cx: &StageContext) -> Result<StageOutcome> {
        let Some(target) = &self.repo.upgrade_to else {
            return Ok(StageOutcome::Skipped(
                "no `upgrade_to` is configured".into(),
            ));
        };
        let primary = HostSteps::primary(cx)?;
        let lifetime = self.timeout() * 8;
        self.checks
            .around(cx, lifetime, async {
                self.repo
                    .checkout(target)
                    .run(&primary, "check out the upgrade target")
                    .await?;
                let mut env = ansible_env(&primary).await?;
                env.extend(self.scenario_env());
                env.push(("I_REALLY_KNOW_WHAT_I_AM_DOING".into(), "true".into()));
                primary
                    .step("run-upgrade", &self.script("run-upgrade.sh", &env))
                    .await?;
                self.run_playbooks(&primary, "idempotency: ").await?;
                Ok(StageOutcome::Done)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployer(toml: &str) -> Result<OsaDeployer> {
        OsaDeployer::from_config(&BackendConfig::from_toml("deployer", crate::NAME, toml)?)
    }

    #[test]
    fn an_unknown_feature_flag_is_a_config_error_naming_it() {
        let err = deployer("[features]\ncepth = true\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[deployer] features"), "{err}");
        assert!(err.contains("cepth") && err.contains("ceph"), "{err}");
    }

    #[test]
    fn hostile_versions_and_paths_are_refused_at_config_time() {
        for (toml, key) in [
            (
                "version = \"27.1.0; touch /tmp/pwned\"",
                "[deployer] version",
            ),
            ("upgrade_to = \"$(id)\"", "[deployer] upgrade_to"),
            ("repo = \"--upload-pack=x\"", "[deployer] repo"),
            ("path = \"relative\"", "[deployer] path"),
            ("variables_file = \"../x.yml\"", "[deployer] variables_file"),
            ("scenario = \"aio lxc\"", "[deployer] scenario"),
            ("env = { \"A-B\" = \"x\" }", "[deployer] env"),
            ("target = \"cloud\"", "[deployer] target"),
        ] {
            let err = deployer(toml).unwrap_err().to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
        if let Err(e) = deployer("") {
            panic!("the defaults must be valid: {e}");
        }
    }

    #[test]
    fn cloud_test_resources_are_checked_and_then_build() {
        let err = deployer("[upgrade_checks.resources]\nservers = 2\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("upgrade_checks.resources.flavor"), "{err}");
        deployer(
            "[upgrade_checks.resources]\nservers = 2\nflavor = \"m1.tiny\"\nimage = \"cirros\"\n",
        )
        .unwrap();
        deployer("[upgrade_checks.resources]\nvolumes = 1\n").unwrap();
        let err = deployer("[upgrade_checks.resources]\nvolumes = 1\nvolume_size_gb = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("upgrade_checks.resources.volume_size_gb"),
            "{err}"
        );
    }
}
