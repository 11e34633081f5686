//! Nova mode: servers with a bare-metal flavor through the shared Nova allocator, in
//! `region`, then the fallback regions (none by default; the last region's servers are
//! left to cleanup); patient timeouts, for bare metal boots in minutes, not seconds.

use gate_core::{AllocateContext, Inventory, Result};
use gate_openstack::allocator::{Existing, FailedRegion, ServerRequest};

use crate::NAME;
use crate::provider::OnmetalProvider;

impl OnmetalProvider {
    /// Nova mode's allocation.
    pub(crate) async fn allocate_nova(&self, cx: &AllocateContext) -> Result<Inventory> {
        let config = &self.config;
        let request = ServerRequest {
            backend: NAME,
            noun: "bare-metal server",
            shared: &self.shared,
            nova: &self.nova,
            flavor: config.flavor.as_deref().unwrap_or_default(),
            image: config.image.as_deref().unwrap_or_default(),
            config_drive: config.config_drive,
            hosts: self.host_count(),
            regions: config.nova_regions(),
            failed_region: FailedRegion::KeepLast,
            existing: Existing::Refuse,
            floating_ip: None,
            boot_timeout: self.nova.boot_timeout(),
            poll: self.shared.poll(),
            delete_timeout: self.shared.delete_timeout(),
        };
        request.allocate(self.cloud()?, cx).await
    }
}
