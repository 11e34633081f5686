//! The registry: backend names mapped to factories that build them from their config
//! section. Each backend crate exports `register(&mut Registry)`; the CLI (or an embedding
//! tool) calls every crate's `register` explicitly.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::traits::{
    AgentConnector, Archiver, ArtifactPublisher, Cleaner, Deployer, HostPreparer, HostValidator,
    ResourceAllocator, Tester,
};
use crate::transport::Connector;

/// One backend's config section, with where it came from so errors can name file, section
/// and key. `Debug` shows only the names: the values may hold secrets.
#[derive(Clone)]
pub struct BackendConfig {
    source: String,
    section: String,
    backend: String,
    value: config::Value,
}

impl fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendConfig")
            .field("source", &self.source)
            .field("section", &self.section)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl BackendConfig {
    /// The section `section` of `source` selecting `backend`, holding `value` (a table
    /// without the `backend` key).
    pub fn new(
        source: impl Into<String>,
        section: impl Into<String>,
        backend: impl Into<String>,
        value: config::Value,
    ) -> Self {
        Self {
            source: source.into(),
            section: section.into(),
            backend: backend.into(),
            value,
        }
    }

    /// An empty section: every setting at its default.
    pub fn empty(
        source: impl Into<String>,
        section: impl Into<String>,
        backend: impl Into<String>,
    ) -> Self {
        let table = config::Map::<String, config::Value>::new();
        Self::new(source, section, backend, config::Value::new(None, table))
    }

    /// A section built from TOML text (for tests and embedding programs).
    pub fn from_toml(section: &str, backend: &str, toml: &str) -> Result<Self> {
        let value = config::Config::builder()
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.cache.into_table())
            .map_err(|e| Error::Config {
                source_name: "<inline>".into(),
                section: section.into(),
                key: String::new(),
                message: e.to_string(),
            })?;
        Ok(Self::new(
            "<inline>",
            section,
            backend,
            config::Value::new(None, value),
        ))
    }

    /// The backend name the section selects.
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// The section name.
    pub fn section(&self) -> &str {
        &self.section
    }

    /// The file (or other source) it came from.
    pub fn source_name(&self) -> &str {
        &self.source
    }

    /// The section parsed into the backend's config struct. Strings given on the command
    /// line or in the environment are parsed by the target type (`"3"` into a number,
    /// `"27.10"` stays a string where a string is wanted). Errors name file, section and key.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        serde_path_to_error::deserialize(self.value.clone()).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            self.error(key, e.into_inner().to_string())
        })
    }

    /// A config error about `key` of this section.
    pub fn error(&self, key: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Config {
            source_name: self.source.clone(),
            section: self.section.clone(),
            key: key.into(),
            message: message.into(),
        }
    }
}

type Factory<T> = Arc<dyn Fn(&BackendConfig) -> Result<Arc<T>> + Send + Sync>;

struct Factories<T: ?Sized> {
    role: &'static str,
    by_name: BTreeMap<String, Factory<T>>,
}

impl<T: ?Sized> Factories<T> {
    fn new(role: &'static str) -> Self {
        Self {
            role,
            by_name: BTreeMap::new(),
        }
    }

    fn insert(
        &mut self,
        name: &str,
        factory: impl Fn(&BackendConfig) -> Result<Arc<T>> + Send + Sync + 'static,
    ) {
        self.by_name.insert(name.to_owned(), Arc::new(factory));
    }

    fn build(&self, config: &BackendConfig) -> Result<Arc<T>> {
        match self.by_name.get(config.backend()) {
            Some(factory) => factory(config),
            None => Err(Error::UnknownBackend {
                source_name: config.source_name().to_owned(),
                section: config.section().to_owned(),
                role: self.role,
                name: config.backend().to_owned(),
                known: self.names(),
            }),
        }
    }

    fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }
}

/// Backend factories by role and name.
pub struct Registry {
    allocators: Factories<dyn ResourceAllocator>,
    cleaners: Factories<dyn Cleaner>,
    agents: Factories<dyn AgentConnector>,
    validators: Factories<dyn HostValidator>,
    preparers: Factories<dyn HostPreparer>,
    deployers: Factories<dyn Deployer>,
    testers: Factories<dyn Tester>,
    publishers: Factories<dyn ArtifactPublisher>,
    archivers: Factories<dyn Archiver>,
    transports: Factories<dyn Connector>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (role, names) in self.roles() {
            map.entry(&role, &names);
        }
        map.finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! role_methods {
    ($($field:ident: $trait:ident, $add:ident, $build:ident, $doc:literal;)*) => {
        $(
            #[doc = concat!("Registers the ", $doc, " `name`.")]
            pub fn $add(
                &mut self,
                name: &str,
                factory: impl Fn(&BackendConfig) -> Result<Arc<dyn $trait>> + Send + Sync + 'static,
            ) -> &mut Self {
                self.$field.insert(name, factory);
                self
            }

            #[doc = concat!("Builds the ", $doc, " the section names; an unknown name lists the known ones.")]
            pub fn $build(&self, config: &BackendConfig) -> Result<Arc<dyn $trait>> {
                self.$field.build(config)
            }
        )*
    };
}

impl Registry {
    /// A registry holding gate-core's own backends: the `local` transport and the `plain`
    /// archiver.
    pub fn new() -> Self {
        let mut registry = Self {
            allocators: Factories::new("provider"),
            cleaners: Factories::new("cleaner"),
            agents: Factories::new("agent"),
            validators: Factories::new("validator"),
            preparers: Factories::new("preparer"),
            deployers: Factories::new("deployer"),
            testers: Factories::new("tester"),
            publishers: Factories::new("publisher"),
            archivers: Factories::new("archiver"),
            transports: Factories::new("transport"),
        };
        registry.add_transport(crate::local::LOCAL, |_| {
            Ok(Arc::new(crate::local::LocalConnector))
        });
        registry.add_archiver(crate::archive::PLAIN, |config| {
            Ok(Arc::new(crate::archive::PlainArchiver::new(
                config.parse()?,
            )))
        });
        registry
    }

    role_methods! {
        allocators: ResourceAllocator, add_allocator, allocator, "provider (allocator)";
        cleaners: Cleaner, add_cleaner, cleaner, "cleaner";
        agents: AgentConnector, add_agent, agent, "CI agent connector";
        validators: HostValidator, add_validator, validator, "host validator";
        preparers: HostPreparer, add_preparer, preparer, "host preparer";
        deployers: Deployer, add_deployer, deployer, "deployer";
        testers: Tester, add_tester, tester, "tester";
        publishers: ArtifactPublisher, add_publisher, publisher, "artifact publisher";
        archivers: Archiver, add_archiver, archiver, "archiver";
        transports: Connector, add_transport, transport, "transport connector";
    }

    /// Registers a provider: its allocator and the cleaner for the ledger entries it writes,
    /// both built from the same section.
    pub fn add_provider(
        &mut self,
        name: &str,
        allocator: impl Fn(&BackendConfig) -> Result<Arc<dyn ResourceAllocator>> + Send + Sync + 'static,
        cleaner: impl Fn(&BackendConfig) -> Result<Arc<dyn Cleaner>> + Send + Sync + 'static,
    ) -> &mut Self {
        self.add_allocator(name, allocator)
            .add_cleaner(name, cleaner)
    }

    /// Whether a cleaner is registered under `name`.
    pub fn has_cleaner(&self, name: &str) -> bool {
        self.cleaners.by_name.contains_key(name)
    }

    /// Every role with its registered names, for `gate providers`.
    pub fn roles(&self) -> Vec<(&'static str, Vec<String>)> {
        vec![
            (self.allocators.role, self.allocators.names()),
            (self.agents.role, self.agents.names()),
            (self.validators.role, self.validators.names()),
            (self.preparers.role, self.preparers.names()),
            (self.deployers.role, self.deployers.names()),
            (self.testers.role, self.testers.names()),
            (self.publishers.role, self.publishers.names()),
            (self.archivers.role, self.archivers.names()),
            (self.cleaners.role, self.cleaners.names()),
            (self.transports.role, self.transports.names()),
        ]
    }

    /// The registered transport names.
    pub fn transport_names(&self) -> Vec<String> {
        self.transports.names()
    }
}
