//! gate-core: the model, stage traits, ledger and pipeline engine of gate.
//!
//! gate runs CI gating pipelines for OpenStack deployments as a fixed sequence of
//! [`Stage`]s. Each stage is a trait ([`ResourceAllocator`], [`Deployer`], [`Tester`], …)
//! implemented by pluggable backends and wired by name through a [`Registry`]. Every
//! resource a run creates goes to the durable [`Ledger`] before it is created, so
//! [`cleanup_ledger`] can free everything, even after a crash.
//!
//! ```
//! use gate_core::{Command, Stage, shell_quote};
//!
//! assert_eq!("prepare-hosts".parse::<Stage>(), Ok(Stage::PrepareHosts));
//! let cmd = Command::new("echo").arg("it's here");
//! assert_eq!(cmd.to_shell_line(), "echo 'it'\\''s here'");
//! assert_eq!(shell_quote("a b"), "'a b'");
//! ```
//!
//! A backend owns its config struct and parses its section with it; errors name the
//! section and the key (see docs/authors.md for the whole contract):
//!
//! ```
//! use gate_core::{BackendConfig, Registry};
//!
//! #[derive(Debug, serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct MyConfig {
//!     /// How many hosts. Default: 1.
//!     #[serde(default)]
//!     hosts: usize,
//! }
//!
//! let section = BackendConfig::from_toml("provider", "mine", "hosts = 2")?;
//! assert_eq!(section.parse::<MyConfig>()?.hosts, 2);
//!
//! let typo = BackendConfig::from_toml("provider", "mine", "hostz = 2")?;
//! let err = typo.parse::<MyConfig>().unwrap_err().to_string();
//! assert!(err.contains("[provider] hostz: unknown field `hostz`"), "{err}");
//!
//! // Backends are found by name; an unknown one lists the known ones.
//! let registry = Registry::new();
//! let err = registry.allocator(&section).unwrap_err().to_string();
//! assert!(err.contains("unknown provider `mine`"), "{err}");
//! # Ok::<(), gate_core::Error>(())
//! ```
#![deny(missing_docs)]

pub mod archive;
pub mod cleanup;
pub mod command;
pub mod context;
pub mod error;
pub mod events;
pub mod fanout;
pub mod interrupt;
pub mod junit;
pub mod keys;
pub mod ledger;
pub mod local;
pub mod model;
pub mod pipeline;
pub mod registry;
pub mod report;
pub mod secret;
pub mod stage;
pub mod state;
pub mod steps;
pub mod time;
pub mod traits;
pub mod transport;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use cleanup::{CleanerLookup, CleanupReport, cleanup_ledger};
pub use command::{Command, EnvValue, shell_quote};
pub use context::{AllocateContext, CleanContext, HostIo, StageContext};
pub use error::{Error, Result};
pub use events::{Event, EventSink, TracingEvents};
pub use fanout::{HostOutcome, all_ok, bounded, fan_out};
pub use interrupt::Interrupt;
pub use ledger::{Ledger, LiveResource, Resource};
pub use model::{Host, Inventory, RunId};
pub use pipeline::{Backend, Backends, Pipeline, PipelineOptions, RunSummary};
pub use registry::{BackendConfig, Registry};
pub use secret::Secret;
pub use stage::Stage;
pub use state::{RunState, StageStatus, StateDir};
pub use traits::{
    AgentConnector, ArchiveReport, Archiver, ArtifactPublisher, Cleaned, Cleaner, Deployer,
    HostPreparer, HostValidator, Observed, ResourceAllocator, StageOutcome, SweepFilter,
    TestReport, Tester,
};
pub use transport::{Connector, Connectors, ExecIo, ExecOutput, HostLog, Transport, TransportExt};
