//! Logging in: a `clouds.yaml` entry or the `OS_*` environment, through the `openstack`
//! crate's session (osauth underneath). The password stays inside the session; nothing here
//! prints it.

use std::path::{Path, PathBuf};

use openstack::IdOrName;
use openstack::auth::Password;
use openstack::session::Session;
use osauth::identity::ApplicationCredential;
use serde::Deserialize;

use crate::config::CloudConfig;
use crate::error::{Error, Result};

/// Where `clouds.yaml` is looked for, in order (the first that exists wins):
/// `$OS_CLIENT_CONFIG_FILE`, `./clouds.yaml`, `~/.config/openstack/clouds.yaml`,
/// `/etc/openstack/clouds.yaml`.
pub fn clouds_yaml_paths() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(file) = std::env::var_os("OS_CLIENT_CONFIG_FILE") {
        paths.push(PathBuf::from(file));
    }
    paths.push(PathBuf::from("clouds.yaml"));
    if let Some(home) = std::env::var_os("HOME") {
        paths.push(Path::new(&home).join(".config/openstack/clouds.yaml"));
    }
    paths.push(PathBuf::from("/etc/openstack/clouds.yaml"));
    paths
}

#[derive(Deserialize)]
struct CloudsFile {
    clouds: std::collections::BTreeMap<String, CloudEntry>,
}

#[derive(Deserialize)]
struct CloudEntry {
    #[serde(default)]
    auth_type: Option<String>,
    auth: AuthEntry,
    #[serde(default)]
    region_name: Option<String>,
    #[serde(default)]
    interface: Option<String>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth_url: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    project_name: Option<String>,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    user_domain_name: Option<String>,
    #[serde(default)]
    project_domain_name: Option<String>,
    #[serde(default)]
    application_credential_id: Option<String>,
    #[serde(default)]
    application_credential_secret: Option<String>,
}

/// A logged-in session and where it came from.
pub(crate) struct Login {
    pub(crate) session: Session,
    /// `cloud <name> (<file>)` or `OS_* environment`, for messages.
    pub(crate) source: String,
    /// The entry's or `OS_REGION_NAME`'s region.
    pub(crate) region: Option<String>,
}

/// Logs in to the cloud `config` names.
pub(crate) async fn login(config: &CloudConfig) -> Result<Login> {
    let name = config
        .cloud
        .clone()
        .or_else(|| std::env::var("OS_CLOUD").ok().filter(|n| !n.is_empty()));
    if name.is_none()
        && let Some(file) = &config.clouds_file
    {
        return Err(Error::Config(format!(
            "clouds_file {} is set but no cloud is named: set `cloud` (or OS_CLOUD)",
            file.display()
        )));
    }
    match name {
        Some(name) => from_clouds_yaml(&name, config.clouds_file.as_deref()).await,
        None => from_env().await,
    }
}

async fn from_env() -> Result<Login> {
    let source = "the OS_* environment".to_owned();
    if std::env::var_os("OS_AUTH_URL").is_none() {
        return Err(Error::Config(
            "no cloud: set `cloud` (a clouds.yaml entry), OS_CLOUD, or the OS_* variables (OS_AUTH_URL, OS_USERNAME, …)".into(),
        ));
    }
    let region = std::env::var("OS_REGION_NAME").ok();
    let session = osauth::CloudConfig::from_env()
        .map_err(|e| Error::Config(format!("{source}: {e}")))?
        .create_session()
        .await
        .map_err(|e| auth_error(&source, &e))?;
    Ok(Login {
        session,
        source,
        region,
    })
}

async fn from_clouds_yaml(name: &str, file: Option<&Path>) -> Result<Login> {
    let searched = match file {
        Some(file) => vec![file.to_owned()],
        None => clouds_yaml_paths(),
    };
    let Some(path) = searched.iter().find(|p| p.is_file()) else {
        let list: Vec<_> = searched.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::Config(format!(
            "cloud `{name}`: no clouds.yaml found (looked in {})",
            list.join(", ")
        )));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    let mut file: CloudsFile = serde_yaml_ng::from_str(&text)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    let known: Vec<_> = file.clouds.keys().cloned().collect();
    let entry = file.clouds.remove(name).ok_or_else(|| {
        Error::Config(format!(
            "{}: no cloud `{name}` (it has: {})",
            path.display(),
            known.join(", ")
        ))
    })?;
    let source = format!("cloud `{name}` ({})", path.display());
    let missing = |key: &str| Error::Config(format!("{source}: auth.{key} is missing"));
    let auth = entry.auth;
    let kind = entry.auth_type.as_deref().unwrap_or("password");
    let session = match kind {
        "password" | "v3password" => {
            let user = auth.username.ok_or_else(|| missing("username"))?;
            let password = auth.password.ok_or_else(|| missing("password"))?;
            let domain = auth.user_domain_name.unwrap_or_else(|| "Default".into());
            let project = match (auth.project_id, auth.project_name) {
                (Some(id), _) => IdOrName::Id(id),
                (None, Some(project)) => IdOrName::Name(project),
                (None, None) => return Err(missing("project_name")),
            };
            let project_domain = auth.project_domain_name.unwrap_or_else(|| "Default".into());
            let login = Password::new(&auth.auth_url, user, password, domain)
                .map_err(|e| Error::Config(format!("{source}: auth.auth_url: {e}")))?
                .with_project_scope(project, IdOrName::Name(project_domain));
            Session::new(login).await
        }
        "v3applicationcredential" => {
            let id = auth
                .application_credential_id
                .ok_or_else(|| missing("application_credential_id"))?;
            let secret = auth
                .application_credential_secret
                .ok_or_else(|| missing("application_credential_secret"))?;
            let login = ApplicationCredential::new(&auth.auth_url, id, secret)
                .map_err(|e| Error::Config(format!("{source}: auth.auth_url: {e}")))?;
            Session::new(login).await
        }
        other => {
            return Err(Error::Config(format!(
                "{source}: auth_type `{other}` is not supported (password, v3applicationcredential)"
            )));
        }
    }
    .map_err(|e| auth_error(&source, &e))?;
    let mut session = session;
    if let Some(interface) = &entry.interface {
        let interface = interface
            .parse()
            .map_err(|_| Error::Config(format!("{source}: interface `{interface}` is unknown")))?;
        session.set_endpoint_interface(interface);
    }
    Ok(Login {
        session,
        source,
        region: entry.region_name,
    })
}

/// An authentication failure: osauth's message carries the status and Keystone's reason,
/// never the request body.
fn auth_error(source: &str, error: &osauth::Error) -> Error {
    Error::Auth {
        cloud: source.to_owned(),
        message: error.to_string(),
    }
}
