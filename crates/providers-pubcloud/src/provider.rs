//! The provider value: its checked config and the cloud it logs in to once.

use std::sync::Arc;
use std::time::Duration;

use gate_core::{BackendConfig, Error, Result};
use gate_openstack::{Api, LazyCloud};
use tokio_util::sync::CancellationToken;

use crate::NAME;
use crate::config::PubcloudConfig;

/// The ledger scope of a server made in the credentials' own region.
pub(crate) const DEFAULT_REGION_SCOPE: &str = "-";

/// The `pubcloud` provider: allocator and cleaner.
#[derive(Debug)]
pub struct PubcloudProvider {
    pub(crate) config: PubcloudConfig,
    cloud: LazyCloud,
}

impl PubcloudProvider {
    /// A provider from its config section; bad values are named by key.
    pub fn from_config(section: &BackendConfig) -> Result<Self> {
        let config: PubcloudConfig = section.parse()?;
        if config.hosts == 0 {
            return Err(section.error("hosts", "must be at least 1"));
        }
        for (key, value) in [("flavor", &config.flavor), ("image", &config.image)] {
            if value.trim().is_empty() {
                return Err(section.error(key, "is empty"));
            }
        }
        if let Err((key, message)) = config.api.check() {
            return Err(section.error(key, message));
        }
        for (key, value) in [
            ("boot_timeout_secs", config.boot_timeout_secs),
            ("poll_secs", config.poll_secs),
            ("delete_timeout_secs", config.delete_timeout_secs),
        ] {
            if !value.is_finite() || value <= 0.0 {
                return Err(section.error(
                    key,
                    format!("must be a positive number of seconds, not {value}"),
                ));
            }
        }
        let special = config.networks.iter().any(|n| n == "auto" || n == "none");
        if special && config.networks.len() > 1 {
            return Err(section.error(
                "networks",
                "\"auto\" and \"none\" stand alone; list network names or ids otherwise",
            ));
        }
        if config.concurrency == Some(0) {
            return Err(section.error("concurrency", "must be at least 1"));
        }
        if let Some(name) = &config.name
            && (name.is_empty() || name.len() > 60)
        {
            return Err(section.error("name", "must be 1 to 60 characters"));
        }
        Ok(Self {
            cloud: LazyCloud::new(config.cloud()),
            config,
        })
    }

    /// The config.
    pub fn config(&self) -> &PubcloudConfig {
        &self.config
    }

    /// Calls into `region` (`None`: the credentials' own).
    pub(crate) async fn api(
        &self,
        region: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<Api> {
        self.cloud
            .region(region, cancel)
            .await
            .map_err(|e| e.into_core(NAME))
    }

    pub(crate) fn seconds(value: f64) -> Duration {
        Duration::try_from_secs_f64(value).unwrap_or(Duration::from_secs(1))
    }
}

/// The region of a ledger scope.
pub(crate) fn region_of(scope: &str) -> Option<&str> {
    (scope != DEFAULT_REGION_SCOPE && !scope.is_empty()).then_some(scope)
}

/// The ledger scope of a region.
pub(crate) fn scope_of(region: Option<&str>) -> String {
    region.unwrap_or(DEFAULT_REGION_SCOPE).to_owned()
}

/// Shared so one value is both allocator and cleaner in the registry.
pub(crate) fn shared(section: &BackendConfig) -> Result<Arc<PubcloudProvider>> {
    PubcloudProvider::from_config(section).map(Arc::new)
}

/// An error of this provider.
pub(crate) fn error(message: impl Into<String>) -> Error {
    Error::backend(NAME, message)
}
