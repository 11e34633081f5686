//! gate-openstack: the OpenStack plumbing gate's providers share — logging in from
//! `clouds.yaml` or `OS_*` through the `openstack` crate's session, API calls retried with
//! backoff (5xx, 429 with `Retry-After`, connection errors; never quota errors), gate's
//! names and tags, servers (create, find by exact name, wait, delete), Neutron floating IPs
//! for them, Nova keypairs (list, age, delete — known by name only, as nothing tags them),
//! the cloud-init user data that puts the run's keys on root, the keys provider sections
//! share ([`SharedConfig`], [`NovaServerConfig`]) and the region-by-region server allocator
//! of the Nova providers ([`allocator`]).
//!
//! ```no_run
//! use gate_openstack::{Cloud, CloudConfig, servers};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn example() -> gate_openstack::Result<()> {
//! let cloud = Cloud::connect(&CloudConfig { cloud: Some("mycloud".into()), ..Default::default() }).await?;
//! let api = cloud.region(Some("RegionOne"), &CancellationToken::new());
//! for server in servers::list(&api).await? {
//!     println!("{} {} {}", server.id, server.name, server.status);
//! }
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod allocator;
mod api;
mod auth;
mod config;
mod error;
pub mod floating_ips;
pub mod keypairs;
pub mod naming;
mod provider_config;
pub mod servers;
pub mod userdata;

pub use api::{
    Api, BAREMETAL_MICROVERSION, COMPUTE_MICROVERSION, Cloud, Failure, LazyCloud, Reply, Request,
    Service, fault_message,
};
pub use auth::clouds_yaml_paths;
pub use config::{CloudConfig, RetryConfig};
pub use error::{Error, Result};
pub use provider_config::{NovaServerConfig, SharedConfig, seconds};
pub use reqwest::Method;
