//! An out-of-tree gate provider, as a third party would write one: each host is a local
//! Unix user (`useradd --create-home`), commands run as that user in its home through
//! gate-core's local transport and `setpriv`, cleanup is `userdel --remove`. Needs root.
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
use tokio::io::AsyncWrite;
use tokio_util::sync::CancellationToken;

/// The provider's registry name; ledger entries carry it so cleanup finds this cleaner.
pub const NAME: &str = "unix-users";
/// The transport its hosts name: gate-core's local one, as the host's user.
pub const TRANSPORT: &str = "unix-user";

/// `[provider]` with `backend = "unix-users"`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsersConfig {
    /// How many hosts (users) to create, 1 to 16. Default: 1.
    pub hosts: usize,
    /// Where the home directories go (`<home_root>/<user>`). Default: `/home`.
    pub home_root: PathBuf,
    /// A bash script run as each new user in its home, as cloud-init user data would be.
    pub setup: Option<String>,
}

impl Default for UsersConfig {
    fn default() -> Self {
        Self { hosts: 1, home_root: "/home".into(), setup: None }
    }
}

/// Registers the `unix-users` provider (allocator and cleaner) and its `unix-user` transport.
pub fn register(registry: &mut Registry) {
    registry.add_provider(
        NAME,
        |section| Ok(Arc::new(UsersProvider::new(section)?)),
        |section| Ok(Arc::new(UsersProvider::new(section)?)),
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
            let spec = Resource::new(NAME, "user", "localhost", &name);
            cx.ledger.intent(&spec).await?; // before the create: a crash leaves a trace
            let tag = format!("gate-run {} {}", cx.run_id, now()); // the run tag, as comment
            let args = ["--create-home", "--home-dir", &home, "--comment", &tag, &name];
            sys("useradd", &args).await?;
            let uid = find(&name)?.map(|user| user.id).unwrap_or_default();
            cx.ledger.created(&spec, &uid).await?;
            let host = Host {
                name: name.clone(),
                address: "localhost".into(),
                port: 0,
                user: name,
                labels: Vec::new(),
                transport: TRANSPORT.into(),
                home: Some(home),
            };
            // Wait until it answers through the run's connector, as the next stages reach it.
            let transport = cx.connector.connect(&host, &cx.cancel).await?;
            if let Some(setup) = &self.0.setup {
                let setup = Command::script(setup).env("GATE_RUN_ID", cx.run_id.as_str());
                let log = &cx.host_log(&host.name)?;
                let cancel = &cx.cancel;
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
        let Some(user) = find(name)? else {
            return Ok(Cleaned::Deleted); // gone, or never created (an intent-only entry)
        };
        // The exact name *and* the run id (and the uid, once recorded): never a namesake.
        let same_uid = resource.id.as_ref().is_none_or(|id| id == &user.id);
        if user.run_id.as_ref() != Some(&resource.run_id) || !same_uid {
            return Err(Error::backend(NAME, format!("refusing to remove {name}: not this run's")));
        }
        remove(name).await
    }

    async fn observe(&self, run_id: &RunId, _: &CleanContext) -> Result<Vec<Observed>> {
        let users = users()?.into_iter().map(|(user, _)| user);
        Ok(users.filter(|user| user.run_id.as_ref() == Some(run_id)).collect())
    }

    async fn sweep(&self, filter: &SweepFilter, _: &CleanContext) -> Result<Vec<Observed>> {
        let mut found = Vec::new();
        for (user, created) in users()? {
            let Some(run_id) = &user.run_id else {
                continue; // not gate's
            };
            let old = now().saturating_sub(created) >= filter.older_than.as_secs();
            if old && filter.run_id.as_ref().is_none_or(|only| only == run_id) {
                if filter.delete {
                    remove(&user.name).await?;
                }
                found.push(user);
            }
        }
        Ok(found)
    }
}

/// Every user in `/etc/passwd` (the file `useradd` and `userdel` edit), its uid as id, with
/// the run id and creation time from gate's tag in its comment field, if it has one.
fn users() -> Result<Vec<(Observed, u64)>> {
    let passwd = std::fs::read_to_string("/etc/passwd");
    let passwd = passwd.map_err(|e| Error::io("reading", "/etc/passwd", e))?;
    let user = |line: &str| {
        let fields: Vec<&str> = line.split(':').collect();
        let [name, _, uid, _, comment, ..] = fields[..] else {
            return None;
        };
        let tag = comment.strip_prefix("gate-run ").and_then(|tag| tag.split_once(' '));
        let (run_id, created) = tag.unwrap_or_default();
        let user = Observed {
            kind: "user".into(),
            scope: "localhost".into(),
            name: name.into(),
            id: uid.into(),
            run_id: RunId::try_from(run_id.to_owned()).ok(),
        };
        Some((user, created.parse().unwrap_or_default()))
    };
    Ok(passwd.lines().filter_map(user).collect())
}

/// The user called `name`, if there is one.
fn find(name: &str) -> Result<Option<Observed>> {
    Ok(users()?.into_iter().map(|(user, _)| user).find(|user| user.name == name))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Kills the user's processes, then removes it and its home; gone already is fine.
async fn remove(name: &str) -> Result<Cleaned> {
    let _ = sys("pkill", &["-KILL", "-u", name]).await; // fails when none run: fine
    match sys("userdel", &["--remove", name]).await {
        Err(e) if find(name)?.is_some() => Err(e),
        _ => Ok(Cleaned::Deleted),
    }
}

/// Runs a system tool as gate's own user (root); fails unless it exits 0.
async fn sys(program: &str, args: &[&str]) -> Result<()> {
    let failed = |why: &str| Error::backend(NAME, format!("{program} {args:?}: {why}"));
    let out = tokio::process::Command::new(program).args(args).output().await;
    match out.map_err(|e| failed(&e.to_string()))? {
        out if out.status.success() => Ok(()),
        out => Err(failed(&String::from_utf8_lossy(&out.stderr))),
    }
}

/// Opens a transport to a host of this provider: its home, commands run as its user.
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
struct UserTransport(LocalTransport);

impl UserTransport {
    /// `cmd` as the host's user: `setpriv` switches to it, then exec's the command.
    fn as_user(&self, cmd: &Command) -> Command {
        let user = self.host().user.as_str();
        let ids = ["--reuid", user, "--regid", user, "--init-groups", "--", cmd.program()];
        let mut wrapped = Command::new("setpriv").args(ids).args(cmd.arg_list());
        wrapped = wrapped.env("USER", user).env("LOGNAME", user);
        for (key, value) in cmd.env_list() {
            wrapped = wrapped.env(key.as_str(), value.clone());
        }
        if let Some(dir) = cmd.working_dir() {
            wrapped = wrapped.cwd(dir);
        }
        if let Some(limit) = cmd.time_limit() {
            wrapped = wrapped.timeout(limit);
        }
        wrapped
    }
}

type Sink<'a> = &'a mut (dyn AsyncWrite + Send + Unpin);

#[async_trait]
impl Transport for UserTransport {
    fn host(&self) -> &Host {
        self.0.host()
    }
    async fn exec(&self, cmd: &Command, io: &ExecIo<'_>) -> Result<ExecOutput> {
        self.0.exec(&self.as_user(cmd), io).await
    }
    async fn exec_to(&self, cmd: &Command, sink: Sink<'_>, io: &ExecIo<'_>) -> Result<ExecOutput> {
        self.0.exec_to(&self.as_user(cmd), sink, io).await
    }
    /// Copies as root, then gives the copy to the user.
    async fn upload(&self, local: &Path, remote: &str) -> Result<()> {
        self.0.upload(local, remote).await?;
        let owner = format!("{0}:{0}", self.host().user);
        let path = self.0.resolve(remote).display().to_string();
        sys("chown", &["-R", &owner, &path]).await
    }
    async fn download(&self, remote: &str, local: &Path) -> Result<()> {
        self.0.download(remote, local).await
    }
    async fn download_tree(&self, remote: &str, sink: Sink<'_>, io: &ExecIo<'_>) -> Result<()> {
        self.0.download_tree(remote, sink, io).await
    }
}
