//! The OpenStack implementation of [`CloudResources`]: test servers, volumes (where the
//! cloud has block storage) and networks (where it has a network service) made through the deployed cloud's own API before the
//! upgrade, verified after it, and deleted by `cleanup` like everything else.
//!
//! Every resource is in the ledger under the *deployer's* registry name (an `intent` line
//! before the create call, `created` with the id after it), so cleanup builds this type's
//! cleaner from the deployer's own section ([`register_cleaner`]) and logs in with the same
//! credentials. Names carry the run id (`<run id>-upgrade-<n>`), metadata the run's tags
//! (`gate_run_id`, `gate_created_at`), so a resource whose id never reached the ledger is
//! found by exact name *and* run id.

mod clean;
mod create;
mod verify;
mod volumes;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gate_core::{BackendConfig, Error, Registry, Result, StageContext};
use gate_openstack::{Api, LazyCloud};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::checks::cloud::{CloudResources, ResourceCheck, TestResource};
use crate::checks::config::{ResourcesConfig, UpgradeChecksConfig};

/// The ledger kind of a test server.
pub const SERVER: &str = "server";
/// The ledger kind of a test volume.
pub const VOLUME: &str = "volume";
/// The ledger kind of a test network.
pub const NETWORK: &str = "network";
/// The ledger scope of a resource made in the credentials' own region.
const DEFAULT_REGION_SCOPE: &str = "-";
/// The metadata key that tells a test server from a deployment host.
pub const PURPOSE_KEY: &str = "gate_purpose";
/// Its value on test resources.
pub const PURPOSE: &str = "upgrade-check";

/// Test resources in an OpenStack cloud, and their cleaner.
#[derive(Debug)]
pub struct OpenStackResources {
    /// The deployer's registry name: the ledger's `backend`.
    backend: String,
    /// The deployer's section, for errors naming file, section and key.
    section: BackendConfig,
    /// Where the resources table is in the section, e.g. `upgrade_checks.resources`.
    key: String,
    config: ResourcesConfig,
    cloud: LazyCloud,
}

impl OpenStackResources {
    /// The test resources `config` (the table `key` of `section`, e.g.
    /// `upgrade_checks.resources`) asks for, recorded in the ledger under `backend` (the
    /// deployer's registry name, whose cleaner [`register_cleaner`] registers). Every value
    /// is checked; errors name the key.
    pub fn from_config(
        section: &BackendConfig,
        key: &str,
        config: &ResourcesConfig,
        backend: &str,
    ) -> Result<Self> {
        let bad = |sub: &str, message: String| section.error(format!("{key}.{sub}"), message);
        if config.volumes > 0 && config.volume_size_gb == 0 {
            return Err(bad("volume_size_gb", "must be at least 1".into()));
        }
        if config.servers > 0 {
            for (sub, value) in [("flavor", &config.flavor), ("image", &config.image)] {
                match value {
                    Some(v) if !v.trim().is_empty() => {}
                    Some(_) => return Err(bad(sub, "is empty".into())),
                    None => {
                        return Err(bad(
                            sub,
                            format!(
                                "is required for test servers (servers = {})",
                                config.servers
                            ),
                        ));
                    }
                }
            }
        }
        for (sub, value) in [
            ("network", &config.network),
            ("address", &config.address),
            ("region", &config.region),
            ("cloud", &config.cloud),
        ] {
            if value.as_ref().is_some_and(|v| v.trim().is_empty()) {
                return Err(bad(sub, "is empty".into()));
            }
        }
        for (sub, value) in [
            ("boot_timeout_secs", config.boot_timeout_secs),
            ("poll_secs", config.poll_secs),
            ("delete_timeout_secs", config.delete_timeout_secs),
        ] {
            if !value.is_finite() || value <= 0.0 {
                return Err(bad(
                    sub,
                    format!("must be a positive number of seconds, not {value}"),
                ));
            }
        }
        Self::cleaner(section, key, config, backend)
    }

    /// The cleaner alone: only the retry settings are checked, so cleanup works with any
    /// section that once made resources.
    pub fn cleaner(
        section: &BackendConfig,
        key: &str,
        config: &ResourcesConfig,
        backend: &str,
    ) -> Result<Self> {
        if let Err((sub, message)) = config.api.check() {
            return Err(section.error(format!("{key}.{sub}"), message));
        }
        if config.clouds_file.is_some() && config.cloud.is_none() {
            return Err(section.error(
                format!("{key}.clouds_file"),
                "needs `cloud`: the entry of the file to use",
            ));
        }
        Ok(Self {
            backend: backend.to_owned(),
            section: section.clone(),
            key: key.to_owned(),
            config: config.clone(),
            cloud: LazyCloud::new(config.cloud_config()),
        })
    }

    /// The config.
    pub fn config(&self) -> &ResourcesConfig {
        &self.config
    }

    /// Calls into `region` (`None`: the configured one, else the credentials' own).
    async fn api(&self, region: Option<&str>, cancel: &CancellationToken) -> Result<Api> {
        let region = region.or(self.config.region.as_deref());
        self.cloud
            .region(region, cancel)
            .await
            .map_err(|e| self.failed("logging in to the cloud", e))
    }

    /// The ledger scope of the configured region.
    fn scope(&self) -> String {
        self.config
            .region
            .clone()
            .unwrap_or_else(|| DEFAULT_REGION_SCOPE.to_owned())
    }

    /// A config error about `sub` of the resources table.
    fn key_error(&self, sub: &str, message: impl Into<String>) -> Error {
        self.section
            .error(format!("{}.{sub}", self.key), message.into())
    }

    /// An API failure while doing `what`, naming the deployer and the table.
    fn failed(&self, what: &str, error: gate_openstack::Error) -> Error {
        match error {
            gate_openstack::Error::Cancelled => Error::Cancelled,
            other => Error::backend(
                &self.backend,
                format!("[{}] {}: {what}: {other}", self.section.section(), self.key),
            ),
        }
    }

    fn seconds(value: f64) -> Duration {
        Duration::try_from_secs_f64(value).unwrap_or(Duration::from_secs(1))
    }
}

/// The region of a ledger scope.
fn region_of(scope: &str) -> Option<&str> {
    (scope != DEFAULT_REGION_SCOPE && !scope.is_empty()).then_some(scope)
}

#[async_trait]
impl CloudResources for OpenStackResources {
    async fn create(&self, cx: &StageContext, want: &ResourcesConfig) -> Result<Vec<TestResource>> {
        create::create(self, cx, want).await
    }

    async fn verify(&self, cx: &StageContext, made: &[TestResource]) -> Result<Vec<ResourceCheck>> {
        verify::verify(self, cx, made).await
    }
}

/// The OpenStack test resources of `config` (the `upgrade_checks` table `key` of a
/// deployer's `section`), recorded in the ledger under `backend`; `None` when it asks for
/// none. Pass the result to [`crate::UpgradeChecks::from_config`].
pub fn resources(
    section: &BackendConfig,
    key: &str,
    config: &UpgradeChecksConfig,
    backend: &str,
) -> Result<Option<Arc<dyn CloudResources>>> {
    if !config.resources.any() {
        return Ok(None);
    }
    let made = OpenStackResources::from_config(
        section,
        &format!("{key}.resources"),
        &config.resources,
        backend,
    )?;
    Ok(Some(Arc::new(made)))
}

/// The part of a deployer's section the cleaner reads; the rest is the deployer's business.
#[derive(Deserialize)]
struct DeployerSection {
    #[serde(default)]
    upgrade_checks: UpgradeChecksConfig,
}

/// Registers the cleaner of the test resources a deployer `backend` makes: it is built from
/// that deployer's section (its `upgrade_checks.resources` table gives the cloud), so
/// `cleanup` and `gate cleanup` delete the test servers with the run's other resources.
pub fn register_cleaner(registry: &mut Registry, backend: &'static str) {
    registry.add_cleaner(backend, move |section| {
        let parsed: DeployerSection = section.parse()?;
        Ok(Arc::new(OpenStackResources::cleaner(
            section,
            "upgrade_checks.resources",
            &parsed.upgrade_checks.resources,
            backend,
        )?))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(toml: &str) -> BackendConfig {
        BackendConfig::from_toml("deployer", "osa", toml).unwrap()
    }

    fn build(toml: &str) -> Result<Option<Arc<dyn CloudResources>>> {
        #[derive(Deserialize)]
        struct Config {
            upgrade_checks: UpgradeChecksConfig,
        }
        let section = section(toml);
        let config: Config = section.parse()?;
        resources(&section, "upgrade_checks", &config.upgrade_checks, "osa")
    }

    #[test]
    fn servers_need_a_flavor_and_an_image() {
        let err = build("[upgrade_checks.resources]\nservers = 1\nimage = \"cirros\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("upgrade_checks.resources.flavor"), "{err}");
        assert!(err.contains("required"), "{err}");
        let ok = build(
            "[upgrade_checks.resources]\nservers = 1\nimage = \"cirros\"\nflavor = \"m1.tiny\"\n",
        )
        .unwrap();
        assert!(ok.is_some());
        assert!(build("[upgrade_checks]\n").unwrap().is_none());
    }

    #[test]
    fn volumes_need_a_size_of_at_least_one_gigabyte() {
        assert!(
            build("[upgrade_checks.resources]\nvolumes = 1\n")
                .unwrap()
                .is_some()
        );
        let err = build("[upgrade_checks.resources]\nvolumes = 1\nvolume_size_gb = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("upgrade_checks.resources.volume_size_gb"),
            "{err}"
        );
    }

    #[test]
    fn bad_timings_and_unknown_keys_are_refused() {
        let err = build(
            "[upgrade_checks.resources]\nservers = 1\nimage = \"i\"\nflavor = \"f\"\npoll_secs = 0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("upgrade_checks.resources.poll_secs"), "{err}");
        let err = build("[upgrade_checks.resources]\nservers = 1\nflavour = \"f\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("flavour"), "{err}");
        let err =
            build("[upgrade_checks.resources]\nnetworks = 1\nclouds_file = \"/tmp/clouds.yaml\"\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("upgrade_checks.resources.clouds_file"),
            "{err}"
        );
    }

    #[test]
    fn the_cleaner_builds_from_a_deployer_section_it_does_not_know() {
        let mut registry = Registry::new();
        register_cleaner(&mut registry, "osa");
        let section = section("version = \"27.2.0\"\nfeatures = { ceph = true }\n");
        registry.cleaner(&section).unwrap();
    }
}
