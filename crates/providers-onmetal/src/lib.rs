//! gate-providers-onmetal: the `onmetal` provider — bare-metal servers for a run, in one
//! of two modes.
//!
//! - `mode = "nova"`: Nova servers with a bare-metal flavor, as `pubcloud` makes them but
//!   with bare metal's patience (boot timeout 3600 s) and no region fallback unless
//!   `fallback_regions` are listed. Cleanup deletes the servers.
//! - `mode = "ironic"`: nodes of an Ironic API — a standalone one at `endpoint` (`noauth`
//!   or `http_basic`, as standalone Ironic is usually run) or the cloud's `baremetal`
//!   service. `available` nodes are picked by `resource_class` or from `nodes`; each is in
//!   the ledger (kind `node`, its name, scope the endpoint or region) before it is changed,
//!   then claimed with an instance UUID and gate's tags (`instance_info`, `extra`), deployed
//!   with a config drive carrying the keys and gate's cloud-config, and waited for until
//!   `active`, an address (`addresses`, else the node's `extra/address`) and SSH. Cleanup
//!   undeploys a node and waits until it is `available` again (after cleaning), then takes
//!   gate's marks off: the ledger says `released`, the node is never deleted.
//!
//! ```toml
//! [provider]
//! backend = "onmetal"
//! mode = "ironic"
//! endpoint = "http://ironic.lab:6385"
//! resource_class = "gate-metal"
//! hosts = 2
//! image_source = "http://images.lab/ubuntu-24.04.qcow2"
//! ```
//!
//! From Rust, through the registry (nothing is called until `allocate`); bad values are
//! named by key:
//!
//! ```
//! use gate_core::{BackendConfig, Registry};
//!
//! let mut registry = Registry::new();
//! gate_providers_onmetal::register(&mut registry);
//! let section = BackendConfig::from_toml("provider", "onmetal", r#"
//!     mode = "ironic"
//!     endpoint = "http://127.0.0.1:6385"
//!     resource_class = "gate-metal"
//!     image_source = "http://127.0.0.1/ubuntu.qcow2"
//! "#)?;
//! registry.allocator(&section)?;
//! let typo = BackendConfig::from_toml("provider", "onmetal", "mode = 'kvm'")?;
//! let err = registry.allocator(&typo).unwrap_err().to_string();
//! assert!(err.contains("[provider] mode"), "{err}");
//! # Ok::<(), gate_core::Error>(())
//! ```
#![deny(missing_docs)]

mod clean;
mod config;
mod deploy;
mod ironic;
mod nova;
mod provider;
mod release;

pub use config::{IronicAuth, Mode, OnmetalConfig};
pub use provider::OnmetalProvider;

use gate_core::Registry;

/// The registry name of the provider.
pub const NAME: &str = "onmetal";
/// The ledger kind of a Nova server (Nova mode).
pub const SERVER: &str = gate_openstack::allocator::SERVER_KIND;
/// The ledger kind of an Ironic node (Ironic mode).
pub const NODE: &str = "node";

/// Registers the `onmetal` provider.
pub fn register(registry: &mut Registry) {
    registry.add_provider(
        NAME,
        |config| Ok(provider::shared(config)?),
        |config| Ok(provider::shared(config)?),
    );
}
