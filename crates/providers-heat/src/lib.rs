//! gate-providers-heat: the `heat` provider — one Heat stack per run, for multi-node
//! topologies a template describes.
//!
//! The stack is in the ledger before it is created (an `intent` with its name, `created`
//! with its id) and tagged `gate_run_id=<run>`. Allocation waits for `CREATE_COMPLETE`
//! (on `CREATE_FAILED` the error names each failed resource and Heat's reason), then reads
//! the hosts from the output `hosts_output`: a list of `{name, address}`, primary first —
//! for example
//!
//! ```yaml
//! outputs:
//!   hosts:
//!     value:
//!       - {name: {get_attr: [controller, name]}, address: {get_attr: [controller, first_address]}}
//!       - {name: {get_attr: [compute, name]}, address: {get_attr: [compute, first_address]}}
//! ```
//!
//! An entry may give its Nova server (`server: {get_resource: controller}`) instead of an
//! `address`: gate then reads the address from Nova, not from the attribute values Heat kept
//! when the server turned ACTIVE (an address assigned later never reaches those).
//!
//! Cleanup deletes the stack and waits for `DELETE_COMPLETE`, deleting again after a
//! `DELETE_FAILED`.
//!
//! From Rust, through the registry (no API is called until `allocate`: the cloud is logged
//! in to on first use); bad values are named by key:
//!
//! ```
//! use gate_core::{BackendConfig, Registry};
//!
//! let mut registry = Registry::new();
//! gate_providers_heat::register(&mut registry);
//! let section = BackendConfig::from_toml("provider", "heat", r#"
//!     cloud = "lab"
//!     template = "stacks/three-nodes.yaml"
//!     parameters = { flavor = "gate.small" }
//! "#)?;
//! let (_allocator, _cleaner) = (registry.allocator(&section)?, registry.cleaner(&section)?);
//! let empty = BackendConfig::from_toml("provider", "heat", "template = 'a.yaml'\nhosts_output = ''")?;
//! let err = registry.allocator(&empty).unwrap_err().to_string();
//! assert!(err.contains("[provider] hosts_output"), "{err}");
//! # Ok::<(), gate_core::Error>(())
//! ```
#![deny(missing_docs)]

mod config;
mod provider;
mod stack;

pub use config::HeatConfig;
pub use provider::HeatProvider;

use gate_core::Registry;

/// The registry name of the provider.
pub const NAME: &str = "heat";
/// The ledger kind of a stack.
pub const STACK: &str = "stack";

/// Registers the `heat` provider.
pub fn register(registry: &mut Registry) {
    registry.add_provider(
        NAME,
        |config| Ok(provider::shared(config)?),
        |config| Ok(provider::shared(config)?),
    );
}
