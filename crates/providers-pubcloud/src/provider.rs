//! The provider value: its checked config and the cloud it logs in to once.

use std::sync::Arc;

use gate_core::{BackendConfig, Result};
use gate_openstack::{Api, LazyCloud, NovaServerConfig, SharedConfig};
use tokio_util::sync::CancellationToken;

use crate::NAME;
use crate::config::PubcloudConfig;

/// The `pubcloud` provider: allocator and cleaner.
#[derive(Debug)]
pub struct PubcloudProvider {
    pub(crate) config: PubcloudConfig,
    pub(crate) shared: SharedConfig,
    pub(crate) nova: NovaServerConfig,
    cloud: LazyCloud,
}

impl PubcloudProvider {
    /// A provider from its config section; bad values are named by key.
    pub fn from_config(section: &BackendConfig) -> Result<Self> {
        let config: PubcloudConfig = section.parse()?;
        let (shared, nova) = (config.shared(), config.nova());
        if config.hosts == 0 {
            return Err(section.error("hosts", "must be at least 1"));
        }
        for (key, value) in [("flavor", &config.flavor), ("image", &config.image)] {
            if value.trim().is_empty() {
                return Err(section.error(key, "is empty"));
            }
        }
        if let Err((key, message)) = shared.check().and_then(|()| nova.check()) {
            return Err(section.error(key, message));
        }
        if let Some(network) = &config.floating_network {
            if network.trim().is_empty() {
                return Err(section.error("floating_network", "is empty"));
            }
            if !config.floating_ip {
                return Err(section.error(
                    "floating_network",
                    "is set but floating_ip is not: set floating_ip = true as well",
                ));
            }
        }
        Ok(Self {
            cloud: LazyCloud::new(shared.cloud()),
            config,
            shared,
            nova,
        })
    }

    /// The config.
    pub fn config(&self) -> &PubcloudConfig {
        &self.config
    }

    /// The cloud, logged in to on first use.
    pub(crate) fn cloud(&self) -> &LazyCloud {
        &self.cloud
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
}

/// Shared so one value is both allocator and cleaner in the registry.
pub(crate) fn shared(section: &BackendConfig) -> Result<Arc<PubcloudProvider>> {
    PubcloudProvider::from_config(section).map(Arc::new)
}
