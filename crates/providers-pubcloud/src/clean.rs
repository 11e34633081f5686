//! Cleanup (by id, or by exact name and run id), observation and sweeps, of servers and
//! their floating IPs; sweeps and cleanup of keypairs (by name: nothing tags a keypair).

use std::time::Duration;

use async_trait::async_trait;
use gate_core::{
    CleanContext, Cleaned, Cleaner, LiveResource, Observed, Result, RunId, SweepFilter,
};
use gate_openstack::allocator::{
    Wait, create_in_flight, delete_entry, floating_ip_sweepable, keypair_name_sweepable,
    keypair_sweepable, observed_floating_ip, observed_keypair, observed_server, region_of,
    scope_of, server_sweepable,
};
use gate_openstack::{Api, floating_ips, keypairs, servers};
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

    /// The keypairs in `api`'s region a sweep may take (deleted with `filter.delete`): a
    /// `gate-` name, not protected, named after the filter's run if it names one, created at
    /// least the filter's age ago. Nova shows only the credentials' user's keypairs, and
    /// their creation time only in the detail, so that is asked for each candidate.
    async fn sweep_keypairs(
        &self,
        api: &Api,
        filter: &SweepFilter,
        now: OffsetDateTime,
    ) -> Result<Vec<Observed>> {
        let protected = &self.shared.protected;
        let scope = scope_of(Some(api.region()));
        let listed = keypairs::list(api).await.map_err(to_core)?;
        let mut found = Vec::new();
        for name in listed
            .iter()
            .map(|k| &k.name)
            .filter(|name| keypair_name_sweepable(name, filter, protected))
        {
            // Gone meanwhile, or (asked by name) not the one listed: not ours to take.
            let Some(keypair) = keypairs::get(api, name).await.map_err(to_core)? else {
                continue;
            };
            if keypair.name != *name || !keypair_sweepable(&keypair, filter, protected, now) {
                continue;
            }
            if filter.delete {
                tracing::info!("{NAME}: {}: sweeping keypair `{name}`", api.region());
                keypairs::delete(api, name).await.map_err(to_core)?;
            }
            found.push(observed_keypair(&scope, &keypair, filter.run_id.as_ref()));
        }
        Ok(found)
    }
}

#[async_trait]
impl Cleaner for PubcloudProvider {
    async fn clean(&self, resource: &LiveResource, cx: &CleanContext) -> Result<Cleaned> {
        let api = self
            .api(region_of(&resource.spec.scope), &cx.cancel)
            .await?;
        let wait = Wait {
            timeout: self.shared.delete_timeout(),
            poll: self.shared.poll().min(Duration::from_secs(2)),
            settle: resource.create_may_land_within(create_in_flight(&api)),
        };
        let (spec, id) = (&resource.spec, resource.id.as_deref());
        delete_entry(&api, spec, id, &resource.run_id, wait)
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
            // Keypairs last: a server keeps its key when its keypair goes.
            found.extend(self.sweep_keypairs(&api, filter, now).await?);
        }
        Ok(found)
    }
}
