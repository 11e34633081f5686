//! Credentials of a test project, and making one.

use std::path::Path;

use serde_json::json;

use super::REGION;
use super::rest::ApiSession;
use crate::error::{Result, io};

/// Password credentials of one user scoped to one project, domain `Default`, region
/// [`REGION`]. `Debug` never shows the password.
#[derive(Clone)]
pub struct Credentials {
    pub(crate) auth_url: String,
    pub(crate) username: String,
    pub(crate) password: String,
    pub(crate) user_id: String,
    pub(crate) project_name: String,
    pub(crate) project_id: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("auth_url", &self.auth_url)
            .field("username", &self.username)
            .field("password", &"***")
            .field("project_name", &self.project_name)
            .field("project_id", &self.project_id)
            .finish()
    }
}

impl Credentials {
    /// Keystone's URL: `http://127.0.0.1:PORT/v3`.
    pub fn auth_url(&self) -> &str {
        &self.auth_url
    }

    /// The user's name.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The user's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The user's id.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The project's name.
    pub fn project_name(&self) -> &str {
        &self.project_name
    }

    /// The project's id.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// The domain of the user and the project: `Default`.
    pub fn domain(&self) -> &str {
        "Default"
    }

    /// The region: [`REGION`].
    pub fn region(&self) -> &str {
        REGION
    }

    /// A fresh token for these credentials, with its catalog.
    pub fn session(&self) -> Result<ApiSession> {
        ApiSession::authenticate(
            &self.auth_url,
            &self.username,
            &self.password,
            &self.project_name,
            "Default",
        )
    }

    /// A `clouds.yaml` with one cloud called `cloud` holding these credentials.
    pub fn clouds_yaml(&self, cloud: &str) -> String {
        format!(
            "clouds:\n  {cloud}:\n    auth_type: password\n    auth:\n      \
             auth_url: {auth_url}\n      username: {username}\n      password: {password}\n      \
             project_name: {project}\n      user_domain_name: Default\n      \
             project_domain_name: Default\n    region_name: {REGION}\n    \
             interface: public\n    identity_api_version: 3\n",
            auth_url = self.auth_url,
            username = quote(&self.username),
            password = quote(&self.password),
            project = quote(&self.project_name),
        )
    }

    /// Writes [`clouds_yaml`](Self::clouds_yaml) to `path` (mode 0600).
    pub fn write_clouds_yaml(&self, path: &Path, cloud: &str) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(io(format!("creating {}", path.display())))?;
        file.write_all(self.clouds_yaml(cloud).as_bytes())
            .map_err(io(format!("writing {}", path.display())))
    }

    /// The `OS_*` environment variables of these credentials (as `openstack` clients
    /// read them).
    pub fn os_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OS_AUTH_URL", self.auth_url.clone()),
            ("OS_AUTH_TYPE", "password".into()),
            ("OS_USERNAME", self.username.clone()),
            ("OS_PASSWORD", self.password.clone()),
            ("OS_PROJECT_NAME", self.project_name.clone()),
            ("OS_USER_DOMAIN_NAME", "Default".into()),
            ("OS_PROJECT_DOMAIN_NAME", "Default".into()),
            ("OS_REGION_NAME", REGION.into()),
            ("OS_INTERFACE", "public".into()),
            ("OS_IDENTITY_API_VERSION", "3".into()),
        ]
    }
}

/// A YAML single-quoted scalar.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// 16 random bytes from the kernel, as hex.
pub(crate) fn random_hex() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut bytes))
        .map_err(io("reading /dev/urandom"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Makes project `name` and user `name` with the `member` and `heat_stack_owner` roles on
/// it, as the cloud admin.
pub(crate) fn create(admin: &Credentials, name: &str) -> Result<Credentials> {
    let session = admin.session()?;
    let project = session.post(
        "identity",
        "/projects",
        &json!({"project": {"name": name, "domain_id": "default",
                 "description": "gate test project"}}),
    )?;
    let project_id = project["project"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let password = random_hex()?;
    let user = session.post(
        "identity",
        "/users",
        &json!({"user": {"name": name, "password": password, "domain_id": "default",
                 "default_project_id": project_id}}),
    )?;
    let user_id = user["user"]["id"].as_str().unwrap_or_default().to_owned();
    for role in ["member", "heat_stack_owner"] {
        grant(&session, &project_id, &user_id, role)?;
    }
    Ok(Credentials {
        auth_url: admin.auth_url.clone(),
        username: name.to_owned(),
        password,
        user_id,
        project_name: name.to_owned(),
        project_id,
    })
}

/// Gives `user_id` role `role` (by name) on `project_id`.
pub(crate) fn grant(
    session: &ApiSession,
    project_id: &str,
    user_id: &str,
    role: &str,
) -> Result<()> {
    let roles = session.get("identity", &format!("/roles?name={role}"))?;
    let role_id = roles["roles"][0]["id"].as_str().unwrap_or_default();
    session.call_ok(
        "PUT",
        "identity",
        &format!("/projects/{project_id}/users/{user_id}/roles/{role_id}"),
        None,
    )?;
    Ok(())
}
