//! Allocation: the shared Nova allocator, regions shuffled, failed regions emptied.

use async_trait::async_trait;
use gate_core::{AllocateContext, Inventory, ResourceAllocator, Result};
use gate_openstack::allocator::{Existing, FailedRegion, ServerRequest};
use gate_openstack::naming;

use crate::NAME;
use crate::provider::PubcloudProvider;

#[async_trait]
impl ResourceAllocator for PubcloudProvider {
    async fn allocate(&self, cx: &AllocateContext) -> Result<Inventory> {
        let config = &self.config;
        let request = ServerRequest {
            backend: NAME,
            noun: "server",
            shared: &self.shared,
            nova: &self.nova,
            flavor: &config.flavor,
            image: &config.image,
            config_drive: config.config_drive,
            hosts: config.hosts,
            regions: self.region_order(),
            failed_region: FailedRegion::Delete,
            existing: Existing::RefuseOrAdopt {
                adopt: config.adopt,
            },
            floating_ip: config.floating_ip.then(|| config.floating_network.clone()),
            boot_timeout: self.nova.boot_timeout(),
            poll: self.shared.poll(),
            delete_timeout: self.shared.delete_timeout(),
        };
        request.allocate(self.cloud(), cx).await
    }
}

impl PubcloudProvider {
    /// The primary regions shuffled, then the fallback regions shuffled; `[None]` (the
    /// credentials' region) when none is configured.
    fn region_order(&self) -> Vec<Option<String>> {
        let mut primary = self.config.regions.clone();
        let mut fallback = self.config.fallback_regions.clone();
        naming::shuffle(&mut primary);
        naming::shuffle(&mut fallback);
        let order: Vec<_> = primary.into_iter().chain(fallback).map(Some).collect();
        if order.is_empty() { vec![None] } else { order }
    }
}
