//! gate-providers-pubcloud: the `pubcloud` provider — OpenStack Nova servers for a run.
//!
//! Every server is in the ledger before it can leak (an `intent` with its exact name before
//! the create call, `created` with its id after), carries gate's tags (`gate_run_id`,
//! `gate_created_at`, `gate_job`) and boots with root reachable by the keys file's keys and
//! the run's own key (cloud-init user data). Regions are tried in random order, then the
//! fallback regions; a region where anything fails (build ERROR, timeout, quota, no SSH)
//! has its half-built servers deleted before the next is tried. Cleanup deletes by id, or by
//! exact name and run id for a server whose id never reached the ledger; `sweep` finds
//! what a lost ledger left behind — servers and floating IPs by tag, and the user's Nova
//! keypairs, which cannot be tagged, by their `gate-` name and age. With `floating_ip =
//! true` every server gets a Neutron floating IP (in the ledger as the server's child,
//! before the create call too), associated with its port; gate reaches the host at the
//! floating address.
//!
//! ```toml
//! [provider]
//! backend = "pubcloud"
//! cloud = "public"
//! hosts = 2
//! flavor = "gate.small"
//! image = "gate-tiny"
//! regions = ["RegionOne"]
//! ```
//!
//! From Rust, through the registry (the cloud is logged in to on first use, not here); bad
//! values are named by key:
//!
//! ```
//! use gate_core::{BackendConfig, Registry};
//!
//! let mut registry = Registry::new();
//! gate_providers_pubcloud::register(&mut registry);
//! let section = BackendConfig::from_toml("provider", "pubcloud", r#"
//!     cloud = "public"
//!     flavor = "gate.small"
//!     image = "gate-tiny"
//!     floating_ip = true
//! "#)?;
//! let (_allocator, _cleaner) = (registry.allocator(&section)?, registry.cleaner(&section)?);
//! let none = BackendConfig::from_toml("provider", "pubcloud", "flavor = 'm1'\nimage = 'x'\nhosts = 0")?;
//! let err = registry.allocator(&none).unwrap_err().to_string();
//! assert!(err.contains("[provider] hosts: must be at least 1"), "{err}");
//! # Ok::<(), gate_core::Error>(())
//! ```
#![deny(missing_docs)]

mod allocate;
mod clean;
mod config;
mod provider;

pub use config::PubcloudConfig;
pub use provider::PubcloudProvider;

use gate_core::Registry;

/// The registry name of the provider.
pub const NAME: &str = "pubcloud";
/// The ledger kind of a server.
pub const SERVER: &str = gate_openstack::allocator::SERVER_KIND;
/// The ledger kind of a floating IP (a child of its server, named `<server>-fip`).
pub const FLOATING_IP: &str = gate_openstack::allocator::FLOATING_IP_KIND;
/// The ledger kind of a Nova keypair: cleanup deletes it by name (a keypair whose `created`
/// line is missing only when its name carries the run id); `sweep` takes old `gate-` ones.
pub const KEYPAIR: &str = gate_openstack::allocator::KEYPAIR_KIND;

/// Registers the `pubcloud` provider.
pub fn register(registry: &mut Registry) {
    registry.add_provider(
        NAME,
        |config| Ok(provider::shared(config)?),
        |config| Ok(provider::shared(config)?),
    );
}
