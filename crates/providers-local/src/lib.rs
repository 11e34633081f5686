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
