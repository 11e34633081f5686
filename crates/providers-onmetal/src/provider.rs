//! The provider value: its checked config and the API it logs in to once.

use gate_core::{BackendConfig, Error, Result};
use gate_openstack::allocator::{region_of, scope_of};
use gate_openstack::{Api, Cloud, LazyCloud, NovaServerConfig, SharedConfig};
use std::fmt;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::NAME;
use crate::config::{IronicAuth, Mode, OnmetalConfig};

/// How the provider reaches its API.
enum Login {
    /// Keystone (`clouds.yaml` or `OS_*`): Nova, or Ironic from the catalog.
    Keystone(LazyCloud),
    /// A standalone Ironic at a fixed endpoint, logged in to on first use.
    Standalone {
        endpoint: String,
        basic: Option<(String, gate_core::secret::Secret)>,
        cloud: tokio::sync::OnceCell<Cloud>,
    },
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Login::Keystone(cloud) => f.debug_tuple("Keystone").field(cloud).finish(),
            Login::Standalone {
                endpoint, basic, ..
            } => f
                .debug_struct("Standalone")
                .field("endpoint", endpoint)
                .field("user", &basic.as_ref().map(|(user, _)| user))
                .finish_non_exhaustive(),
        }
    }
}

/// The `onmetal` provider: allocator and cleaner, in Nova or Ironic mode.
#[derive(Debug)]
pub struct OnmetalProvider {
    pub(crate) config: OnmetalConfig,
    pub(crate) shared: SharedConfig,
    pub(crate) nova: NovaServerConfig,
    login: Login,
}

impl OnmetalProvider {
    /// A provider from its config section; bad values are named by key.
    pub fn from_config(section: &BackendConfig) -> Result<Self> {
        let config: OnmetalConfig = section.parse()?;
        let (shared, nova) = (config.shared(), config.nova());
        check(&config, &shared, &nova).map_err(|(key, message)| section.error(key, message))?;
        let login = match (&config.endpoint, config.auth) {
            (Some(endpoint), auth) => Login::Standalone {
                endpoint: endpoint.trim_end_matches('/').to_owned(),
                basic: match auth {
                    IronicAuth::Noauth => None,
                    IronicAuth::HttpBasic => config.username.clone().zip(config.password.clone()),
                },
                cloud: tokio::sync::OnceCell::new(),
            },
            (None, _) => Login::Keystone(LazyCloud::new(shared.cloud())),
        };
        Ok(Self {
            config,
            shared,
            nova,
            login,
        })
    }

    /// The config.
    pub fn config(&self) -> &OnmetalConfig {
        &self.config
    }

    /// Calls into `region` (`None`: the credentials' own; ignored by a standalone Ironic).
    pub(crate) async fn api(
        &self,
        region: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<Api> {
        match &self.login {
            Login::Keystone(cloud) => cloud
                .region(region, cancel)
                .await
                .map_err(|e| e.into_core(NAME)),
            Login::Standalone {
                endpoint,
                basic,
                cloud,
            } => {
                let cloud = cloud
                    .get_or_try_init(|| async {
                        let basic = basic
                            .as_ref()
                            .map(|(user, password)| (user.as_str(), password.expose()));
                        Cloud::standalone(endpoint, basic, &self.config.api).await
                    })
                    .await
                    .map_err(|e| e.into_core(NAME))?;
                Ok(cloud.region(None, cancel))
            }
        }
    }

    /// The ledger scope of Ironic nodes: the endpoint, else the region (`-`: the
    /// credentials' own).
    pub(crate) fn node_scope(&self) -> String {
        match &self.login {
            Login::Standalone { endpoint, .. } => endpoint.clone(),
            Login::Keystone(_) => scope_of(self.config.region.as_deref()),
        }
    }

    /// The region to call for a node's ledger scope (`None` for an endpoint).
    pub(crate) fn node_region<'a>(&self, scope: &'a str) -> Option<&'a str> {
        match &self.login {
            Login::Standalone { .. } => None,
            Login::Keystone(_) => region_of(scope),
        }
    }

    /// The Keystone-logged-in cloud (Nova mode never has a standalone endpoint).
    pub(crate) fn cloud(&self) -> Result<&LazyCloud> {
        match &self.login {
            Login::Keystone(cloud) => Ok(cloud),
            Login::Standalone { .. } => Err(error(
                "Nova mode logs in through Keystone; endpoint is for mode = \"ironic\"",
            )),
        }
    }

    /// How many hosts: `hosts`, else as many as `nodes` lists, else 1.
    pub(crate) fn host_count(&self) -> usize {
        match (self.config.hosts, self.config.nodes.len()) {
            (Some(hosts), _) => hosts,
            (None, 0) => 1,
            (None, listed) => listed,
        }
    }
}

/// Checks what serde cannot: positive numbers, and the fields of the chosen mode only.
fn check(
    config: &OnmetalConfig,
    shared: &SharedConfig,
    nova: &NovaServerConfig,
) -> std::result::Result<(), (String, String)> {
    let fail = |key: &str, message: &str| Err((key.to_owned(), message.to_owned()));
    if config.hosts == Some(0) {
        return fail("hosts", "must be at least 1");
    }
    shared.check()?;
    nova.check_common()?;
    match config.mode {
        Mode::Nova => check_nova(config, nova),
        Mode::Ironic => check_ironic(config, nova),
    }
}

fn check_nova(
    config: &OnmetalConfig,
    nova: &NovaServerConfig,
) -> std::result::Result<(), (String, String)> {
    for (key, value) in [("flavor", &config.flavor), ("image", &config.image)] {
        if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
            return Err((key.into(), "is required with mode = \"nova\"".into()));
        }
    }
    let ironic_only = [
        ("endpoint", config.endpoint.is_some()),
        ("username", config.username.is_some()),
        ("password", config.password.is_some()),
        ("resource_class", config.resource_class.is_some()),
        ("nodes", !config.nodes.is_empty()),
        ("image_source", config.image_source.is_some()),
        ("instance_info", !config.instance_info.is_empty()),
        ("addresses", !config.addresses.is_empty()),
    ];
    if let Some((key, _)) = ironic_only.iter().find(|(_, set)| *set) {
        return Err(((*key).into(), "is for mode = \"ironic\" only".into()));
    }
    nova.check()
}

fn check_ironic(
    config: &OnmetalConfig,
    nova: &NovaServerConfig,
) -> std::result::Result<(), (String, String)> {
    if config
        .image_source
        .as_deref()
        .is_none_or(|v| v.trim().is_empty())
    {
        return Err((
            "image_source".into(),
            "is required with mode = \"ironic\"".into(),
        ));
    }
    if config.resource_class.is_none() && config.nodes.is_empty() {
        return Err((
            "resource_class".into(),
            "mode = \"ironic\" needs resource_class or nodes".into(),
        ));
    }
    let mut nova_only = nova.nova_keys_set();
    for (key, set) in [
        ("flavor", config.flavor.is_some()),
        ("image", config.image.is_some()),
    ] {
        if set {
            nova_only.push(key);
        }
    }
    if let Some(key) = nova_only.first() {
        return Err(((*key).into(), "is for mode = \"nova\" only".into()));
    }
    if !config.nodes.is_empty()
        && let Some(hosts) = config.hosts
        && hosts > config.nodes.len()
    {
        return Err((
            "hosts".into(),
            format!("is {hosts} but nodes lists {}", config.nodes.len()),
        ));
    }
    match (config.endpoint.as_deref(), config.auth) {
        (None, IronicAuth::HttpBasic) => Err((
            "auth".into(),
            "http_basic needs an endpoint (without one, Keystone logs in)".into(),
        )),
        (Some(endpoint), _)
            if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") =>
        {
            Err((
                "endpoint".into(),
                "must be an http:// or https:// URL".into(),
            ))
        }
        (Some(_), IronicAuth::HttpBasic)
            if config.username.is_none() || config.password.is_none() =>
        {
            Err((
                "password".into(),
                "auth = \"http_basic\" needs username and password".into(),
            ))
        }
        (Some(_), _) if config.cloud.is_some() || config.clouds_file.is_some() => Err((
            "cloud".into(),
            "a standalone endpoint does not use a cloud: set one or the other".into(),
        )),
        _ => Ok(()),
    }
}

/// Shared so one value is both allocator and cleaner in the registry.
pub(crate) fn shared(section: &BackendConfig) -> Result<Arc<OnmetalProvider>> {
    OnmetalProvider::from_config(section).map(Arc::new)
}

/// An error of this provider.
pub(crate) fn error(message: impl Into<String>) -> Error {
    Error::backend(NAME, message)
}

#[async_trait::async_trait]
impl gate_core::ResourceAllocator for OnmetalProvider {
    async fn allocate(&self, cx: &gate_core::AllocateContext) -> Result<gate_core::Inventory> {
        match self.config.mode {
            Mode::Nova => self.allocate_nova(cx).await,
            Mode::Ironic => self.allocate_ironic(cx).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(toml: &str) -> Result<OnmetalProvider> {
        OnmetalProvider::from_config(&BackendConfig::from_toml("provider", "onmetal", toml)?)
    }

    fn refused(toml: &str) -> String {
        parse(toml).unwrap_err().to_string()
    }

    const NOVA: &str = "mode = \"nova\"\nflavor = \"onmetal-io1\"\nimage = \"ubuntu\"\n";
    const IRONIC: &str =
        "mode = \"ironic\"\nresource_class = \"metal\"\nimage_source = \"http://i/x.qcow2\"\n";

    #[test]
    fn bare_metal_defaults_are_patient_and_have_no_fallback() {
        let provider = parse(NOVA).unwrap();
        let config = provider.config();
        assert_eq!(config.boot_timeout_secs, 3600.0);
        assert_eq!(config.delete_timeout_secs, 3600.0);
        assert_eq!(provider.nova.boot_timeout(), Duration::from_secs(3600));
        assert!(config.config_drive);
        assert_eq!(config.nova_regions(), [None]);
        assert_eq!(provider.host_count(), 1);
        assert_eq!(provider.node_scope(), "-");
        let ironic = parse(IRONIC).unwrap();
        assert_eq!(ironic.config().address_field, "extra/address");
        let listed = parse(&format!("{IRONIC}nodes = [\"a\", \"b\"]\n")).unwrap();
        assert_eq!(listed.host_count(), 2);
    }

    #[test]
    fn each_mode_refuses_the_other_modes_keys_and_needs_its_own() {
        assert!(refused("mode = \"nova\"\nimage = \"x\"\n").contains("flavor"));
        let error = refused(&format!("{NOVA}endpoint = \"http://ironic:6385\"\n"));
        assert!(
            error.contains("endpoint") && error.contains("ironic"),
            "{error}"
        );
        let error = refused(&format!("{IRONIC}flavor = \"x\"\n"));
        assert!(
            error.contains("flavor") && error.contains("nova"),
            "{error}"
        );
        let error = refused("mode = \"ironic\"\nimage_source = \"http://i/x\"\n");
        assert!(error.contains("resource_class or nodes"), "{error}");
        assert!(refused("mode = \"ironic\"\nresource_class = \"m\"\n").contains("image_source"));
        assert!(refused(&format!("{NOVA}bogus = 1\n")).contains("bogus"));
        assert!(refused(&format!("{NOVA}pol_secs = 1\n")).contains("pol_secs"));
        let error = refused(&format!("{IRONIC}networks = [\"x\"]\n"));
        assert!(
            error.contains("networks") && error.contains("nova"),
            "{error}"
        );
        assert!(refused("mode = \"metal\"\n").contains("mode"));
        let error = refused(&format!("{IRONIC}nodes = [\"a\"]\nhosts = 2\n"));
        assert!(error.contains("hosts"), "{error}");
    }

    #[test]
    fn a_standalone_endpoint_takes_noauth_or_http_basic_and_never_shows_the_password() {
        let scoped = parse(&format!("{IRONIC}endpoint = \"http://ironic:6385/\"\n")).unwrap();
        assert_eq!(scoped.node_scope(), "http://ironic:6385");
        assert_eq!(scoped.node_region("http://ironic:6385"), None);
        let error = refused(&format!(
            "{IRONIC}endpoint = \"http://ironic:6385\"\nauth = \"http_basic\"\n"
        ));
        assert!(error.contains("username and password"), "{error}");
        let error = refused(&format!("{IRONIC}auth = \"http_basic\"\n"));
        assert!(error.contains("needs an endpoint"), "{error}");
        let error = refused(&format!("{IRONIC}endpoint = \"ironic:6385\"\n"));
        assert!(error.contains("http://"), "{error}");
        let secret = "s3cret-basic-password";
        let basic = parse(&format!(
            "{IRONIC}endpoint = \"https://ironic\"\nauth = \"http_basic\"\nusername = \"gate\"\n\
             password = {{ secret = \"{secret}\" }}\n"
        ))
        .unwrap();
        let shown = format!("{basic:?}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains("gate"), "{shown}");
    }

    #[test]
    fn keystone_scopes_name_the_region() {
        let provider = parse(&format!("{IRONIC}region = \"IAD\"\n")).unwrap();
        assert_eq!(provider.node_scope(), "IAD");
        assert_eq!(provider.node_region("IAD"), Some("IAD"));
        assert_eq!(provider.node_region("-"), None);
    }
}
