//! gate-providers-local: the `local` provider, gate's embedded default, and the `static`
//! provider for lab hosts reached over SSH.
//!
//! Each host is a directory on this machine, `<root>/<run id>/<name>-N/` (root defaults to
//! the system temp dir, so the state dir stays small). Commands run there through gate-core's
//! local transport with the directory as `HOME`; cleanup removes the directories. Nothing
//! needs root, a network or a cloud.
//!
//! ```toml
//! [provider]
//! backend = "local"
//! hosts = 3
//! setup = "mkdir -p etc logs"   # optional: runs in each new host, like cloud-init user data
//! ```
//!
//! From Rust, through the registry as the CLI does (docs/embedding.md runs a whole pipeline):
//!
//! ```
//! use gate_core::{BackendConfig, Registry};
//!
//! let mut registry = Registry::new();
//! gate_providers_local::register(&mut registry);
//! let section = BackendConfig::from_toml("provider", "local", "hosts = 2")?;
//! let allocator = registry.allocator(&section)?;
//! let cleaner = registry.cleaner(&section)?;
//! assert!(format!("{allocator:?}").contains("LocalProvider"));
//! # let _ = cleaner;
//! let too_many = BackendConfig::from_toml("provider", "local", "hosts = 1000")?;
//! assert!(registry.allocator(&too_many).unwrap_err().to_string().contains("[provider] hosts"));
//! # Ok::<(), gate_core::Error>(())
//! ```
#![deny(missing_docs)]

mod config;
mod provider;
mod static_hosts;

pub use config::{LocalConfig, Rekick, StaticConfig, StaticHost};
pub use provider::LocalProvider;
pub use static_hosts::StaticProvider;

use std::sync::Arc;

use gate_core::Registry;

/// The registry name of the provider.
pub const NAME: &str = "local";

/// Registers the `local` and `static` providers.
pub fn register(registry: &mut Registry) {
    registry.add_provider(
        NAME,
        |config| Ok(Arc::new(LocalProvider::from_config(config)?)),
        |config| Ok(Arc::new(LocalProvider::from_config(config)?)),
    );
    registry.add_provider(
        static_hosts::NAME,
        |config| Ok(static_hosts::shared(config)?),
        |config| Ok(static_hosts::shared(config)?),
    );
}
