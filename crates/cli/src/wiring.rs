//! From config to backends: every section built through the registry.

use std::sync::Arc;

use gate_agents::AgentChain;
use gate_core::transport::Connectors;
use gate_core::{
    AgentConnector, Backend, BackendConfig, Backends, CleanerLookup, Registry, Result,
};

use crate::config::GateConfig;

/// A registry with gate's built-in backends plus `extra` registrations (a downstream
/// binary's own backends).
pub fn registry(extra: &[fn(&mut Registry)]) -> Registry {
    let mut registry = Registry::new();
    gate_ssh::register(&mut registry);
    gate_providers_local::register(&mut registry);
    gate_deployers_script::register(&mut registry);
    gate_deployers_osa::register(&mut registry);
    gate_deployers_rpco::register(&mut registry);
    gate_testers::register(&mut registry);
    gate_hosts::register(&mut registry);
    gate_agents::register(&mut registry);
    gate_artifacts::register(&mut registry);
    gate_providers_pubcloud::register(&mut registry);
    gate_providers_heat::register(&mut registry);
    gate_providers_onmetal::register(&mut registry);
    for register in extra {
        register(&mut registry);
    }
    registry
}

/// Builds every configured backend. Factories have no side effects, so this is also what
/// `gate plan` uses to check a config.
pub fn backends(config: &GateConfig, registry: &Arc<Registry>) -> Result<Backends> {
    let section = |name: &str| config.sections.get(name);
    fn build<T: ?Sized>(
        section: Option<&BackendConfig>,
        f: impl Fn(&BackendConfig) -> Result<Arc<T>>,
    ) -> Result<Option<Backend<T>>> {
        section
            .map(|s| f(s).map(|imp| Backend::new(s.backend(), imp)))
            .transpose()
    }
    let connectors = connectors(config, registry)?;
    let backends = Backends {
        allocator: build(section("provider"), |s| registry.allocator(s))?,
        agent: agents(config, registry)?,
        validator: build(section("validator"), |s| registry.validator(s))?,
        preparer: build(section("preparer"), |s| registry.preparer(s))?,
        deployer: build(section("deployer"), |s| registry.deployer(s))?,
        tester: build(section("tester"), |s| registry.tester(s))?,
        publisher: build(section("publisher"), |s| registry.publisher(s))?,
        archiver: build(section("archiver"), |s| registry.archiver(s))?,
        cleaners: cleaner_lookup(config, registry),
        connector: Arc::new(connectors),
    };
    // The provider's cleaner must build too, or cleanup would fail only at the end.
    if let Some(provider) = section("provider")
        && registry.has_cleaner(provider.backend())
    {
        registry.cleaner(provider)?;
    }
    Ok(backends)
}

/// The `[agent]`, or an [`AgentChain`] of every `[[agent]]` in config order.
fn agents(config: &GateConfig, registry: &Registry) -> Result<Option<Backend<dyn AgentConnector>>> {
    let mut agents = Vec::new();
    for section in config.agents() {
        agents.push(Backend::new(section.backend(), registry.agent(section)?));
    }
    if agents.len() <= 1 {
        return Ok(agents.pop());
    }
    let chain = AgentChain::new(agents);
    Ok(Some(Backend::new(chain.name(), Arc::new(chain))))
}

/// A connector for every registered transport, from its `[transport.NAME]` section.
pub fn connectors(config: &GateConfig, registry: &Registry) -> Result<Connectors> {
    let mut connectors = Connectors::default();
    for name in registry.transport_names() {
        connectors.insert(
            name.clone(),
            registry.transport(&transport_section(config, &name))?,
        );
    }
    Ok(connectors)
}

/// The `[transport.NAME]` section, with the SSH transport's defaults that depend on the
/// state dir: the run's own key and the run's `known_hosts`.
fn transport_section(config: &GateConfig, name: &str) -> BackendConfig {
    let mut table = config.transports.get(name).cloned().unwrap_or_default();
    if name == gate_ssh::SSH {
        let state = &config.run.state_dir;
        for (key, path) in [
            ("run_key", state.join("keys").join("id_ed25519")),
            ("known_hosts", state.join("known_hosts")),
        ] {
            table
                .entry(key.to_owned())
                .or_insert_with(|| config::Value::new(None, path.display().to_string()));
        }
    }
    BackendConfig::new(
        &config.source,
        format!("transport.{name}"),
        name,
        config::Value::new(None, table),
    )
}

/// Cleaners by backend name: built from the config section that selects that backend,
/// else from an empty section (ledger entries carry everything needed to find them).
fn cleaner_lookup(config: &GateConfig, registry: &Arc<Registry>) -> CleanerLookup {
    let config = config.clone();
    let registry = registry.clone();
    Arc::new(move |backend: &str| {
        let section = config
            .section_for_backend(backend)
            .cloned()
            .unwrap_or_else(|| BackendConfig::empty(&config.source, "cleanup", backend));
        registry.cleaner(&section)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_servers_of_the_osa_upgrade_checks_are_cleaned_with_the_deployer_section() {
        let config = GateConfig::from_text(
            "t.toml",
            "[deployer]\nbackend = \"osa\"\nupgrade_to = \"latest\"\n\
             [deployer.upgrade_checks.resources]\nservers = 2\ncloud = \"deployed\"\n\
             flavor = \"m1.tiny\"\nimage = \"cirros\"\n",
            &[],
        )
        .unwrap();
        let registry = Arc::new(registry(&[]));
        let built = backends(&config, &registry).unwrap();
        assert!(built.deployer.is_some());
        // Ledger entries of backend `osa` reach a cleaner built from `[deployer]`.
        let cleaner = (built.cleaners)("osa").unwrap();
        assert!(format!("{cleaner:?}").contains("deployed"), "{cleaner:?}");
        assert!(
            format!("{cleaner:?}").contains("section: \"deployer\""),
            "{cleaner:?}"
        );
    }
}
