//! Cleanup of test resources (by id, or by exact name and run id for one whose id never
//! reached the ledger) and what really exists for a run.

use async_trait::async_trait;
use gate_core::{CleanContext, Cleaned, Cleaner, Error, LiveResource, Observed, Result, RunId};
use gate_openstack::allocator::{Wait, create_in_flight, delete_server};
use gate_openstack::servers;
use gate_openstack::{Api, Service};
use serde_json::Value;

use super::create::{delete_network, network_description};
use super::{DEFAULT_REGION_SCOPE, NETWORK, OpenStackResources, SERVER, VOLUME, region_of};

impl OpenStackResources {
    /// How long deleting `resource` waits (see [`Wait`]).
    fn wait(&self, resource: &LiveResource, api: &Api) -> Wait {
        Wait {
            timeout: Self::seconds(self.config.delete_timeout_secs),
            poll: Self::seconds(self.config.poll_secs.min(2.0)),
            settle: resource.create_may_land_within(create_in_flight(api)),
        }
    }

    async fn delete_network(
        &self,
        api: &Api,
        resource: &LiveResource,
    ) -> gate_openstack::Result<()> {
        let ids: Vec<String> = match &resource.id {
            Some(id) => vec![id.clone()],
            None => {
                let tag = network_description(resource.run_id.as_str());
                let found = api
                    .get(
                        Service::Network,
                        "networks",
                        &[("name", resource.spec.name.as_str())],
                    )
                    .await?;
                networks_of(&found)
                    .filter(|n| {
                        n["name"] == resource.spec.name.as_str() && n["description"] == tag.as_str()
                    })
                    .filter_map(|n| n["id"].as_str().map(str::to_owned))
                    .collect()
            }
        };
        for id in &ids {
            delete_network(api, id).await?;
        }
        Ok(())
    }
}

fn networks_of(body: &Value) -> impl Iterator<Item = &Value> {
    body["networks"].as_array().into_iter().flatten()
}

#[async_trait]
impl Cleaner for OpenStackResources {
    async fn clean(&self, resource: &LiveResource, cx: &CleanContext) -> Result<Cleaned> {
        let api = self
            .api(region_of(&resource.spec.scope), &cx.cancel)
            .await?;
        let what = format!(
            "deleting test {} `{}`",
            resource.spec.kind, resource.spec.name
        );
        let done = match resource.spec.kind.as_str() {
            SERVER => {
                let id = resource.id.as_deref();
                let name = &resource.spec.name;
                delete_server(&api, name, id, &resource.run_id, self.wait(resource, &api)).await
            }
            NETWORK => self.delete_network(&api, resource).await,
            VOLUME => super::volumes::delete(&api, resource, self.wait(resource, &api)).await,
            other => {
                return Err(Error::backend(
                    &self.backend,
                    format!(
                        "ledger entry `{}` has kind `{other}`, which the upgrade checks never make",
                        resource.spec.name
                    ),
                ));
            }
        };
        done.map_err(|e| self.failed(&what, e))?;
        Ok(Cleaned::Deleted)
    }

    async fn observe(&self, run_id: &RunId, cx: &CleanContext) -> Result<Vec<Observed>> {
        let api = self.api(None, &cx.cancel).await?;
        let scope = self
            .config
            .region
            .clone()
            .unwrap_or_else(|| DEFAULT_REGION_SCOPE.to_owned());
        let mut found: Vec<Observed> = servers::list(&api)
            .await
            .map_err(|e| self.failed("listing servers", e))?
            .into_iter()
            .filter(|s| s.run_id() == Some(run_id.as_str()))
            .map(|s| Observed {
                kind: SERVER.into(),
                scope: scope.clone(),
                name: s.name,
                id: s.id,
                run_id: Some(run_id.clone()),
            })
            .collect();
        // Volumes and networks only where this config makes them: a cloud may have no
        // block storage.
        if self.config.volumes > 0 {
            let volumes = super::volumes::observe(&api, run_id, &scope)
                .await
                .map_err(|e| self.failed("listing volumes", e))?;
            found.extend(volumes);
        }
        // Networks only where this config makes them: a cloud may have no network service.
        if self.config.networks > 0 {
            let tag = network_description(run_id.as_str());
            let all = api
                .get(Service::Network, "networks", &[])
                .await
                .map_err(|e| self.failed("listing networks", e))?;
            found.extend(
                networks_of(&all)
                    .filter(|n| n["description"] == tag.as_str())
                    .map(|n| Observed {
                        kind: NETWORK.into(),
                        scope: scope.clone(),
                        name: n["name"].as_str().unwrap_or_default().to_owned(),
                        id: n["id"].as_str().unwrap_or_default().to_owned(),
                        run_id: Some(run_id.clone()),
                    }),
            );
        }
        Ok(found)
    }
}
