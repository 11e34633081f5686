//! Allocation, cleanup, observation and sweep of local host directories.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use gate_core::ledger::Resource;
use gate_core::local::{LOCAL, LocalTransport};
use gate_core::{
    AllocateContext, BackendConfig, CleanContext, Cleaned, Cleaner, Command, Error, ExecIo, Host,
    HostOutcome, Inventory, LiveResource, Observed, ResourceAllocator, Result, RunId, SweepFilter,
    TransportExt, all_ok, bounded,
};

use crate::NAME;
use crate::config::{LocalConfig, MAX_HOSTS};

/// The file in a run directory that names the run owning it.
const MARKER: &str = ".gate-run-id";
/// Ledger kinds.
const RUN_DIR: &str = "directory";
const HOST_DIR: &str = "host";

/// The `local` provider.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    config: LocalConfig,
    root: PathBuf,
}

impl LocalProvider {
    /// A provider for `config` (checked: host count, name characters).
    pub fn new(config: LocalConfig) -> std::result::Result<Self, (String, String)> {
        if config.hosts == 0 || config.hosts > MAX_HOSTS {
            return Err((
                "hosts".into(),
                format!("must be between 1 and {MAX_HOSTS}, not {}", config.hosts),
            ));
        }
        if let Some(name) = &config.name {
            let ok = !name.is_empty()
                && name.len() <= 48
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                && !name.starts_with('.');
            if !ok {
                return Err((
                    "name".into(),
                    format!(
                        "`{name}` is not a usable host name (letters, digits, - _ . only; at most 48)"
                    ),
                ));
            }
        }
        let root = config.root.clone().unwrap_or_else(std::env::temp_dir);
        Ok(Self { config, root })
    }

    /// A provider from its config section.
    pub fn from_config(section: &BackendConfig) -> Result<Self> {
        let config: LocalConfig = section.parse()?;
        Self::new(config).map_err(|(key, message)| section.error(key, message))
    }

    fn absolute_root(&self) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.root).map_err(|e| Error::io("creating", &self.root, e))?;
        std::fs::canonicalize(&self.root).map_err(|e| Error::io("resolving", &self.root, e))
    }

    async fn create_host(
        &self,
        cx: &AllocateContext,
        run_dir: &Path,
        name: String,
    ) -> Result<Host> {
        if cx.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let spec = Resource::new(NAME, HOST_DIR, run_dir.display().to_string(), &name)
            .with_parent(cx.run_id.as_str());
        cx.ledger.intent(&spec).await?;
        let home = run_dir.join(&name);
        std::fs::create_dir(&home).map_err(|e| Error::io("creating", &home, e))?;
        cx.ledger
            .created(&spec, &home.display().to_string())
            .await?;
        let host = Host {
            name: name.clone(),
            address: "localhost".into(),
            port: 0,
            user: current_user(),
            labels: self.config.labels.clone(),
            transport: LOCAL.into(),
            home: Some(home.display().to_string()),
        };
        if let Some(script) = &self.config.setup {
            let log = cx.host_log(&name)?;
            let io = ExecIo {
                log: &log,
                cancel: &cx.cancel,
            };
            let transport = LocalTransport::new(host.clone())?;
            let setup = Command::script(script)
                .env("GATE_RUN_ID", cx.run_id.as_str())
                .env("GATE_HOST", name.as_str())
                .timeout(Duration::from_secs(self.config.setup_timeout_secs));
            transport.run(&setup, &io).await?;
        }
        // Wait until the host answers through the run's connector, as a real one would.
        cx.connector.connect(&host, &cx.cancel).await?;
        Ok(host)
    }
}

fn current_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "gate".into())
}

#[async_trait]
impl ResourceAllocator for LocalProvider {
    async fn allocate(&self, cx: &AllocateContext) -> Result<Inventory> {
        if cx.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let root = self.absolute_root()?;
        let run_dir = root.join(cx.run_id.as_str());
        let run_spec = Resource::new(
            NAME,
            RUN_DIR,
            root.display().to_string(),
            cx.run_id.as_str(),
        );
        cx.ledger.intent(&run_spec).await?;
        std::fs::create_dir(&run_dir).map_err(|e| Error::io("creating", &run_dir, e))?;
        let marker = run_dir.join(MARKER);
        std::fs::write(&marker, format!("{}\n", cx.run_id))
            .map_err(|e| Error::io("writing", &marker, e))?;
        cx.ledger
            .created(&run_spec, &run_dir.display().to_string())
            .await?;

        let prefix = self
            .config
            .name
            .clone()
            .unwrap_or_else(|| cx.run_id.to_string());
        let names: Vec<String> = (1..=self.config.hosts)
            .map(|i| format!("{prefix}-{i}"))
            .collect();
        let outcomes = bounded(names, cx.concurrency, |name| {
            let run_dir = &run_dir;
            async move {
                HostOutcome {
                    host: name.clone(),
                    result: self.create_host(cx, run_dir, name).await,
                }
            }
        })
        .await;
        if cx.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let hosts = all_ok(outcomes)?;
        Inventory::new(hosts).map_err(|e| Error::backend(NAME, e.to_string()))
    }
}

/// `path` if its last component is `name`; guards against cleaning anything else.
fn checked_path(resource: &LiveResource) -> Result<PathBuf> {
    let spec = &resource.spec;
    let path = match &resource.id {
        Some(id) => PathBuf::from(id),
        None => Path::new(&spec.scope).join(&spec.name),
    };
    let refuse = |why: &str| {
        Err(Error::backend(
            NAME,
            format!("refusing to remove {}: {why}", path.display()),
        ))
    };
    if path.file_name().and_then(|n| n.to_str()) != Some(spec.name.as_str()) {
        return refuse("its name is not the recorded name");
    }
    let run_dir = match spec.kind.as_str() {
        RUN_DIR => path.clone(),
        HOST_DIR => match path.parent() {
            Some(parent) => parent.to_owned(),
            None => return refuse("it has no run directory"),
        },
        other => return refuse(&format!("unknown kind `{other}`")),
    };
    // The exact name *and* the run id: the run directory is named after the run.
    if run_dir.file_name().and_then(|n| n.to_str()) != Some(resource.run_id.as_str()) {
        return refuse("it is not inside the run's own directory");
    }
    Ok(path)
}

/// Kills every process (that this user may signal) whose working directory is inside
/// `path`: what a host ran dies with the host, even when gate itself was killed.
fn kill_processes_under(path: &Path) {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    let me = std::process::id();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        if cwd.starts_with(path) {
            tracing::info!("killing pid {pid} left running in {}", path.display());
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn remove_dir(path: &Path) -> Result<Cleaned> {
    kill_processes_under(path);
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(Cleaned::Deleted),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Cleaned::Deleted),
        Err(e) => Err(Error::io("removing", path, e)),
    }
}

#[async_trait]
impl Cleaner for LocalProvider {
    async fn clean(&self, resource: &LiveResource, _: &CleanContext) -> Result<Cleaned> {
        let recorded = match &resource.id {
            Some(id) => PathBuf::from(id),
            None => Path::new(&resource.spec.scope).join(&resource.spec.name),
        };
        if std::fs::symlink_metadata(&recorded).is_err() {
            return Ok(Cleaned::Deleted);
        }
        let path = checked_path(resource)?;
        if resource.spec.kind == RUN_DIR
            && let Ok(owner) = std::fs::read_to_string(path.join(MARKER))
            && owner.trim() != resource.run_id.as_str()
        {
            return Err(Error::backend(
                NAME,
                format!(
                    "refusing to remove {}: it belongs to run {}",
                    path.display(),
                    owner.trim()
                ),
            ));
        }
        remove_dir(&path)
    }

    async fn observe(&self, run_id: &RunId, _: &CleanContext) -> Result<Vec<Observed>> {
        let run_dir = self.absolute_root()?.join(run_id.as_str());
        let mut found = Vec::new();
        if !run_dir.is_dir() {
            return Ok(found);
        }
        let root = self.absolute_root()?.display().to_string();
        found.push(Observed {
            kind: RUN_DIR.into(),
            scope: root,
            name: run_id.to_string(),
            id: run_dir.display().to_string(),
            run_id: Some(run_id.clone()),
        });
        let entries = std::fs::read_dir(&run_dir).map_err(|e| Error::io("listing", &run_dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("listing", &run_dir, e))?;
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                found.push(Observed {
                    kind: HOST_DIR.into(),
                    scope: run_dir.display().to_string(),
                    name: entry.file_name().to_string_lossy().into_owned(),
                    id: entry.path().display().to_string(),
                    run_id: Some(run_id.clone()),
                });
            }
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }

    async fn sweep(&self, filter: &SweepFilter, _: &CleanContext) -> Result<Vec<Observed>> {
        let root = self.absolute_root()?;
        let mut found = Vec::new();
        let entries = std::fs::read_dir(&root).map_err(|e| Error::io("listing", &root, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(owner) = std::fs::read_to_string(path.join(MARKER)) else {
                continue;
            };
            let Ok(run_id) = RunId::try_from(owner.trim().to_owned()) else {
                continue;
            };
            if entry.file_name().to_str() != Some(run_id.as_str())
                || filter
                    .run_id
                    .as_ref()
                    .is_some_and(|wanted| wanted != &run_id)
            {
                continue;
            }
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            if age < filter.older_than {
                continue;
            }
            if filter.delete {
                remove_dir(&path)?;
            }
            found.push(Observed {
                kind: RUN_DIR.into(),
                scope: root.display().to_string(),
                name: run_id.to_string(),
                id: path.display().to_string(),
                run_id: Some(run_id),
            });
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gate_core::testkit::{self, Subject};
    use std::sync::Arc;

    fn provider(root: &Path, hosts: usize, setup: Option<&str>) -> Arc<LocalProvider> {
        Arc::new(
            LocalProvider::new(LocalConfig {
                hosts,
                root: Some(root.to_owned()),
                setup: setup.map(str::to_owned),
                ..LocalConfig::default()
            })
            .unwrap(),
        )
    }

    fn local_clean_context() -> CleanContext {
        CleanContext::new(Arc::new(gate_core::local::LocalConnector))
    }

    fn subject(provider: Arc<LocalProvider>) -> Subject {
        Subject::new(
            provider.clone(),
            provider,
            Arc::new(gate_core::local::LocalConnector),
        )
    }

    #[tokio::test]
    async fn local_passes_the_conformance_checks() {
        let root = tempfile::tempdir().unwrap();
        let fast = subject(provider(
            root.path(),
            3,
            Some("mkdir -p etc && echo ok > etc/setup"),
        ));
        let inventory = testkit::allocate_then_cleanup_leaves_nothing(&fast).await;
        assert_eq!(inventory.len(), 3);
        assert!(inventory.primary().name.ends_with("-1"));
        testkit::cleanup_of_intent_only_entries_is_fine(&fast).await;

        // Slow setups so the cancel lands mid-allocation.
        let slow = subject(provider(root.path(), 3, Some("sleep 20")));
        testkit::cancelled_allocation_stops_and_is_recorded(&slow, Duration::from_millis(400))
            .await;
        let leftovers: Vec<_> = std::fs::read_dir(root.path()).unwrap().flatten().collect();
        assert!(leftovers.is_empty(), "left in the root: {leftovers:?}");
    }

    #[tokio::test]
    async fn bad_config_names_the_key() {
        let section = BackendConfig::from_toml("provider", NAME, "hosts = 0").unwrap();
        let err = LocalProvider::from_config(&section)
            .unwrap_err()
            .to_string();
        assert!(err.contains("[provider] hosts"), "{err}");
        let section = BackendConfig::from_toml("provider", NAME, "hostz = 2").unwrap();
        let err = LocalProvider::from_config(&section)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `hostz`"), "{err}");
        let section = BackendConfig::from_toml("provider", NAME, "name = \"../x\"").unwrap();
        let err = LocalProvider::from_config(&section)
            .unwrap_err()
            .to_string();
        assert!(err.contains("[provider] name"), "{err}");
    }

    #[tokio::test]
    async fn cleanup_refuses_paths_outside_the_run() {
        let run_id = RunId::generate();
        let outside = LiveResource {
            spec: Resource::new(NAME, HOST_DIR, "/etc", "passwd"),
            run_id: run_id.clone(),
            id: Some("/etc/passwd".into()),
            intent_at: None,
        };
        let root = tempfile::tempdir().unwrap();
        let err = provider(root.path(), 1, None)
            .clean(&outside, &local_clean_context())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("refusing"), "{err}");
        assert!(Path::new("/etc/passwd").exists());
    }

    #[tokio::test]
    async fn sweep_finds_old_run_directories_by_marker() {
        let root = tempfile::tempdir().unwrap();
        let p = subject(provider(root.path(), 1, None));
        let scratch = tempfile::tempdir().unwrap();
        let run_id = RunId::generate();
        let ledger =
            gate_core::Ledger::open(scratch.path().join("r.jsonl"), run_id.clone()).unwrap();
        let cx = AllocateContext {
            run_id: run_id.clone(),
            job: None,
            ledger,
            connector: p.connector.clone(),
            keys: Default::default(),
            cancel: Default::default(),
            events: Arc::new(gate_core::TracingEvents),
            logs_dir: scratch.path().join("logs"),
            concurrency: 2,
        };
        p.allocator.allocate(&cx).await.unwrap();
        std::fs::create_dir(root.path().join("not-gate")).unwrap();
        let filter = SweepFilter {
            older_than: Duration::ZERO,
            run_id: None,
            delete: true,
        };
        let swept = p
            .cleaner
            .sweep(&filter, &local_clean_context())
            .await
            .unwrap();
        assert_eq!(swept.len(), 1);
        assert_eq!(swept[0].name, run_id.as_str());
        assert!(
            p.cleaner
                .observe(&run_id, &local_clean_context())
                .await
                .unwrap()
                .is_empty()
        );
        assert!(root.path().join("not-gate").exists());
    }
}
