//! An out-of-tree gate provider, as a third party would write one: each host is a local
//! Unix user (`useradd --create-home`), commands run as that user in its home through
//! gate-core's local transport (`setpriv`), cleanup is `userdel --remove`. Needs root.
//!
//! ```toml
//! [provider]
//! backend = "unix-users"
//! hosts = 2
//! setup = "mkdir -p etc"     # optional: runs as each new user, like cloud-init user data
//! ```
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use gate_core::local::LocalTransport;
use gate_core::transport::ExecOutput;
use gate_core::{
    AllocateContext, BackendConfig, CleanContext, Cleaned, Cleaner, Command, Connector, Error,
    ExecIo, Host, Inventory, LiveResource, Observed, Registry, Resource, ResourceAllocator, Result,
    RunId, SweepFilter, Transport, TransportExt,
};
use tokio_util::sync::CancellationToken;

/// The provider's registry name; ledger entries carry it so cleanup finds this cleaner.
pub const NAME: &str = "unix-users";
/// The transport its hosts name: the local one, as the host's user.
pub const TRANSPORT: &str = "unix-user";
const KIND: &str = "user";
/// Every user's comment (GECOS) field starts with this, then the run id and creation time.
const TAG: &str = "gate-run";

/// `[provider]` with `backend = "unix-users"`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersConfig {
    /// How many hosts (users) to create, 1 to 16. Default: 1.
    #[serde(default = "one")]
    pub hosts: usize,
    /// Where the home directories go (`<home_root>/<user>`). Default: `/home`.
    #[serde(default = "home_root")]
    pub home_root: PathBuf,
    /// A bash script run as each new user in its home, as cloud-init user data would be.
    #[serde(default)]
    pub setup: Option<String>,
    /// Labels given to every host.
    #[serde(default)]
    pub labels: Vec<String>,
}
fn one() -> usize {
    1
}
fn home_root() -> PathBuf {
    "/home".into()
}

/// Registers the `unix-users` provider (allocator and cleaner) and its `unix-user` transport.
pub fn register(registry: &mut Registry) {
    registry.add_provider(
        NAME,
        |c| Ok(Arc::new(UsersProvider::new(c)?)),
        |c| Ok(Arc::new(UsersProvider::new(c)?)),
    );
    registry.add_transport(TRANSPORT, |_| Ok(Arc::new(UserConnector)));
}

/// The provider: allocator, cleaner, observer and sweeper of users.
#[derive(Debug, Clone)]
pub struct UsersProvider(UsersConfig);

impl UsersProvider {
    /// Builds it from its section; errors name the key.
    pub fn new(section: &BackendConfig) -> Result<Self> {
        let config: UsersConfig = section.parse()?;
        if !(1..=16).contains(&config.hosts) {
            return Err(section.error("hosts", "must be between 1 and 16"));
        }
        Ok(Self(config))
    }
}

/// Runs a program on this machine as gate's user; its exit code and stdout.
async fn sys(program: &str, args: &[&str]) -> Result<(i32, String)> {
    let out = tokio::process::Command::new(program).args(args).output();
    let out = out.await.map_err(|e| Error::backend(NAME, format!("{program}: {e}")))?;
    let (code, err) = (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr));
    match code {
        0 | 2 if program == "getent" => Ok((code, String::from_utf8_lossy(&out.stdout).into())),
        0 => Ok((0, String::from_utf8_lossy(&out.stdout).into())),
        _ => Err(Error::backend(NAME, format!("{program} {args:?}: {code}: {err}"))),
    }
}

fn now() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    since.unwrap_or_default().as_secs()
}

/// Every user gate made (its comment is `gate-run <run id> <unix time>`), with that time.
async fn gate_users() -> Result<Vec<(Observed, u64)>> {
    let (_, passwd) = sys("getent", &["passwd"]).await?;
    let user = |line: &str| {
        let f: Vec<&str> = line.split(':').collect();
        let mut tag = f.get(4)?.split(' ');
        let (TAG, Some(run), Some(at)) = (tag.next()?, tag.next(), tag.next()) else {
            return None;
        };
        let (run_id, name, id) = (RunId::try_from(run.to_owned()).ok(), f[0].into(), f[2].into());
        let (kind, scope) = (KIND.into(), "localhost".into());
        Some((Observed { kind, scope, name, id, run_id }, at.parse().ok()?))
    };
    Ok(passwd.lines().filter_map(user).collect())
}

/// Kills the user's processes, then removes it and its home; gone already is fine.
async fn remove(name: &str) -> Result<Cleaned> {
    sys("pkill", &["-KILL", "-u", name]).await.ok();
    match sys("userdel", &["--remove", name]).await {
        Err(_) if sys("getent", &["passwd", name]).await?.0 == 2 => Ok(Cleaned::Deleted),
        done => done.map(|_| Cleaned::Deleted),
    }
}

fn refuse(name: &str, why: &str) -> Result<Cleaned> {
    Err(Error::backend(NAME, format!("refusing to remove {name}: {why}")))
}

#[async_trait]
impl ResourceAllocator for UsersProvider {
    async fn allocate(&self, cx: &AllocateContext) -> Result<Inventory> {
        let mut hosts = Vec::new();
        for n in 1..=self.0.hosts {
            if cx.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let name = format!("{}-{n}", cx.run_id);
            let home = self.0.home_root.join(&name).display().to_string();
            let tag = format!("{TAG} {} {}", cx.run_id, now());
            let spec = Resource::new(NAME, KIND, "localhost", &name);
            cx.ledger.intent(&spec).await?; // before the create: a crash leaves a trace
            let args = ["--create-home", "--home-dir", &home, "--comment", &tag, &name];
            sys("useradd", &args).await?;
            let (_, entry) = sys("getent", &["passwd", &name]).await?;
            let uid = entry.split(':').nth(2).unwrap_or_default();
            cx.ledger.created(&spec, uid).await?;
            let (user, labels, home) = (name.clone(), self.0.labels.clone(), Some(home));
            let (address, transport) = ("localhost".into(), TRANSPORT.into());
            let host = Host { name, address, port: 0, user, labels, transport, home };
            let transport = cx.connector.connect(&host, &cx.cancel).await?; // it answers
            if let Some(setup) = &self.0.setup {
                let (log, cancel) = (&cx.host_log(&host.name)?, &cx.cancel);
                let setup = Command::script(setup).env("GATE_RUN_ID", cx.run_id.as_str());
                transport.run(&setup, &ExecIo { log, cancel }).await?;
            }
            hosts.push(host);
        }
        Inventory::new(hosts).map_err(|e| Error::backend(NAME, e.to_string()))
    }
}

#[async_trait]
impl Cleaner for UsersProvider {
    async fn clean(&self, resource: &LiveResource, _: &CleanContext) -> Result<Cleaned> {
        let name = &resource.spec.name;
        let users = gate_users().await?;
        let Some((user, _)) = users.iter().find(|(u, _)| &u.name == name) else {
            return match sys("getent", &["passwd", name]).await?.0 {
                2 => Ok(Cleaned::Deleted), // gone, or never created (an intent-only entry)
                _ => refuse(name, "it is not gate's"),
            };
        };
        // The exact name *and* the run id (and the uid, once recorded).
        let other_id = resource.id.as_ref().is_some_and(|id| id != &user.id);
        if user.run_id.as_ref() != Some(&resource.run_id) || other_id {
            return refuse(name, "it belongs to another run");
        }
        remove(name).await
    }

    async fn observe(&self, run_id: &RunId, _: &CleanContext) -> Result<Vec<Observed>> {
        let users = gate_users().await?.into_iter().map(|(user, _)| user);
        Ok(users.filter(|u| u.run_id.as_ref() == Some(run_id)).collect())
    }

    async fn sweep(&self, filter: &SweepFilter, _: &CleanContext) -> Result<Vec<Observed>> {
        let mut found = Vec::new();
        for (user, at) in gate_users().await? {
            let old = now().saturating_sub(at) >= filter.older_than.as_secs();
            if old && filter.run_id.as_ref().is_none_or(|r| Some(r) == user.run_id.as_ref()) {
                if filter.delete {
                    remove(&user.name).await?;
                }
                found.push(user);
            }
        }
        Ok(found)
    }
}

/// Opens a [`UserTransport`] to a host of this provider.
#[derive(Debug)]
pub struct UserConnector;

#[async_trait]
impl Connector for UserConnector {
    async fn connect(&self, host: &Host, _: &CancellationToken) -> Result<Arc<dyn Transport>> {
        Ok(Arc::new(UserTransport(LocalTransport::new(host.clone())?)))
    }
}

/// gate-core's local transport, with every command run as the host's user.
#[derive(Debug)]
pub struct UserTransport(LocalTransport);

impl UserTransport {
    fn as_user(&self, cmd: &Command) -> Command {
        let user = self.host().user.as_str();
        let ids = ["--reuid", user, "--regid", user, "--init-groups", "--", cmd.program()];
        let mut out = Command::new("setpriv").args(ids).args(cmd.arg_list());
        out = out.env("USER", user).env("LOGNAME", user);
        for (key, value) in cmd.env_list() {
            out = out.env(key.as_str(), value.clone());
        }
        out = cmd.working_dir().map_or(out.clone(), |dir| out.cwd(dir));
        cmd.time_limit().map_or(out.clone(), |limit| out.timeout(limit))
    }
}

type Sink<'a> = &'a mut (dyn tokio::io::AsyncWrite + Send + Unpin);

#[async_trait]
impl Transport for UserTransport {
    fn host(&self) -> &Host {
        self.0.host()
    }
    async fn exec(&self, cmd: &Command, io: &ExecIo<'_>) -> Result<ExecOutput> {
        self.0.exec(&self.as_user(cmd), io).await
    }
    async fn upload(&self, local: &Path, remote: &str) -> Result<()> {
        self.0.upload(local, remote).await?;
        let owner = format!("{0}:{0}", self.host().user);
        let path = self.0.resolve(remote).display().to_string();
        sys("chown", &["-R", &owner, &path]).await.map(drop)
    }
    async fn download(&self, remote: &str, local: &Path) -> Result<()> {
        self.0.download(remote, local).await
    }
    async fn download_tree(&self, remote: &str, sink: Sink<'_>, io: &ExecIo<'_>) -> Result<()> {
        self.0.download_tree(remote, sink, io).await
    }
    async fn exec_to(&self, cmd: &Command, sink: Sink<'_>, io: &ExecIo<'_>) -> Result<ExecOutput> {
        self.0.exec_to(&self.as_user(cmd), sink, io).await
    }
}
