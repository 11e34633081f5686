//! Cleanup (by id, or by exact name and run id), observation and sweeps, of servers and
//! their floating IPs.

use std::time::Duration;

use async_trait::async_trait;
use gate_core::{
    CleanContext, Cleaned, Cleaner, LiveResource, Observed, Result, RunId, SweepFilter,
};
use gate_openstack::allocator::{
    delete_entry, floating_ip_sweepable, observed_floating_ip, observed_server, region_of,
    scope_of, server_sweepable,
};
use gate_openstack::{floating_ips, servers};
use time::OffsetDateTime;

use crate::NAME;
use crate::provider::PubcloudProvider;

fn to_core(e: gate_openstack::Error) -> gate_core::Error {
    e.into_core(NAME)
}

impl PubcloudProvider {
    /// Floating IPs are looked for only where servers get them (a cloud without Neutron
    /// has no network endpoint to ask).
    fn has_floating_ips(&self) -> bool {
        self.config.floating_ip
    }
}

#[async_trait]
impl Cleaner for PubcloudProvider {
    async fn clean(&self, resource: &LiveResource, cx: &CleanContext) -> Result<Cleaned> {
        let api = self
            .api(region_of(&resource.spec.scope), &cx.cancel)
            .await?;
        delete_entry(
            &api,
            &resource.spec,
            resource.id.as_deref(),
            &resource.run_id,
            self.shared.delete_timeout(),
            self.shared.poll().min(Duration::from_secs(2)),
        )
        .await
        .map_err(to_core)?;
        Ok(Cleaned::Deleted)
    }

    async fn observe(&self, run_id: &RunId, cx: &CleanContext) -> Result<Vec<Observed>> {
        let mut found = Vec::new();
        for region in self.config.all_regions() {
            let api = self.api(region.as_deref(), &cx.cancel).await?;
            let scope = scope_of(Some(api.region()));
            if self.has_floating_ips() {
                let fips = floating_ips::list(&api, &[]).await.map_err(to_core)?;
                found.extend(
                    fips.iter()
                        .filter(|f| f.run_id().as_deref() == Some(run_id.as_str()))
                        .map(|f| observed_floating_ip(&scope, f)),
                );
            }
            let all = servers::list(&api).await.map_err(to_core)?;
            found.extend(
                all.iter()
                    .filter(|s| s.run_id() == Some(run_id.as_str()))
                    .map(|s| observed_server(&scope, s)),
            );
        }
        Ok(found)
    }

    async fn sweep(&self, filter: &SweepFilter, cx: &CleanContext) -> Result<Vec<Observed>> {
        let now = OffsetDateTime::now_utc();
        let protected = &self.shared.protected;
        let mut found = Vec::new();
        for region in self.config.all_regions() {
            let api = self.api(region.as_deref(), &cx.cancel).await?;
            let scope = scope_of(Some(api.region()));
            // Floating IPs first: they are the servers' children.
            if self.has_floating_ips() {
                let fips = floating_ips::list(&api, &[]).await.map_err(to_core)?;
                for fip in fips
                    .iter()
                    .filter(|f| floating_ip_sweepable(f, filter, protected, now))
                {
                    if filter.delete {
                        tracing::info!(
                            "{NAME}: {}: sweeping floating IP {} ({})",
                            api.region(),
                            fip.address,
                            fip.id
                        );
                        floating_ips::delete(&api, &fip.id).await.map_err(to_core)?;
                    }
                    found.push(observed_floating_ip(&scope, fip));
                }
            }
            let all = servers::list(&api).await.map_err(to_core)?;
            for server in all
                .iter()
                .filter(|s| server_sweepable(s, filter, protected, now))
            {
                if filter.delete {
                    tracing::info!(
                        "{NAME}: {}: sweeping server `{}` ({})",
                        api.region(),
                        server.name,
                        server.id
                    );
                    servers::delete(&api, &server.id).await.map_err(to_core)?;
                }
                found.push(observed_server(&scope, server));
            }
        }
        Ok(found)
    }
}
