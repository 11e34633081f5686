//! The `repo-server` publisher: a directory to `<dir>/<series>/` on a server reached over
//! SSH with its host key pinned. Files go up under temporary names and are renamed into
//! place; a lock directory on the server keeps two runs from publishing one series at once.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gate_core::traits::ArtifactPublisher;
use gate_core::transport::{Connector, HostLog};
use gate_core::{Command, Error, ExecIo, Host, Result, StageContext, Transport, TransportExt};
use gate_ssh::{SshConfig, SshConnector};

use super::{PUBLISHED_MANIFEST, Published, manifest_of, stage_source};
use crate::config::{Method, RepoServerConfig};
use crate::manifest::Manifest;
use crate::retry::{Failure, Policy, retry};

/// The registry name of the repo-server publisher.
pub const REPO_SERVER: &str = "repo-server";

/// The prefix of files on their way up; never seen by readers of the series, removed by
/// the next publisher of the series.
const TMP_PREFIX: &str = ".gate-tmp-";

/// Takes the lock `$2` (a directory) in `$1`, recording owner `$3`; a lock held by the same
/// run (`$5`, the first word of the owner: a publish of this run that died and is run
/// again) or older than `$4` minutes is taken over. Prints `locked` or `held<TAB>owner`.
const LOCK: &str = r#"mkdir -p -- "$1" || exit 1
if mkdir -- "$2" 2>/dev/null; then printf '%s\n' "$3" > "$2/owner"; echo locked; exit 0; fi
holder=$(cat -- "$2/owner" 2>/dev/null)
if [ "${holder%% *}" = "$5" ] || [ -n "$(find "$2" -maxdepth 0 -mmin +"$4" 2>/dev/null)" ]; then
    rm -rf -- "$2" && mkdir -- "$2" && printf '%s\n' "$3" > "$2/owner" && echo locked && exit 0
fi
printf 'held\t%s\n' "$holder""#;

/// Removes the lock `$1` if `$2` still owns it.
const UNLOCK: &str = r#"[ "$(cat -- "$1/owner" 2>/dev/null)" = "$2" ] && rm -rf -- "$1"; exit 0"#;

/// Lists `sha256  ./path` of every file under `$1` (none if it does not exist), after
/// removing what an interrupted publisher left under temporary names (files, and rsync's
/// scratch directories with what they hold).
const LIST: &str = r#"cd -- "$1" 2>/dev/null || exit 0
find . -name '.gate-tmp-*' \( -type f -o -type d \) -prune -exec rm -rf -- {} +
find . -type f -exec sha256sum -- {} +"#;

/// Renames each pair of arguments (temporary name, final name) into place.
const RENAME: &str = r#"while [ "$#" -ge 2 ]; do mv -f -- "$1" "$2" || exit 1; shift 2; done"#;

/// Publishes a directory to a repo server.
#[derive(Debug, Clone)]
pub struct RepoServerPublisher {
    config: RepoServerConfig,
}

impl RepoServerPublisher {
    /// A publisher for `config`.
    pub fn new(config: RepoServerConfig) -> Self {
        Self { config }
    }

    fn series_dir(&self) -> String {
        format!(
            "{}/{}",
            self.config.dir.trim_end_matches('/'),
            self.config.series
        )
    }

    fn lock_dir(&self) -> (String, String) {
        let locks = format!("{}/.gate-locks", self.config.dir.trim_end_matches('/'));
        let lock = format!("{locks}/{}", self.config.series);
        (locks, lock)
    }

    async fn connect(&self, cx: &StageContext) -> Result<Arc<dyn Transport>> {
        let ssh = SshConfig {
            identities: vec![self.config.key.clone()],
            agent: false,
            run_key: None,
            known_hosts: Some(self.config.known_hosts.clone()),
            strict: true,
            connect_timeout_secs: self.config.connect_timeout_secs,
            poll_secs: 1,
            ..SshConfig::default()
        };
        let host = Host {
            name: REPO_SERVER.into(),
            address: self.config.host.clone(),
            port: self.config.port,
            user: self.config.user.clone(),
            labels: Vec::new(),
            transport: gate_ssh::SSH.into(),
            home: None,
        };
        SshConnector::new(ssh).connect(&host, &cx.cancel).await
    }
}

#[async_trait]
impl ArtifactPublisher for RepoServerPublisher {
    async fn publish(&self, cx: &StageContext) -> Result<()> {
        let policy = Policy {
            tries: self.config.tries,
            backoff: Duration::from_millis(self.config.backoff_ms),
        };
        let dir = stage_source(cx, REPO_SERVER, &self.config.source, self.config.on).await?;
        let manifest = manifest_of(dir.clone()).await?;
        let server = retry(
            policy,
            &cx.cancel,
            "connecting to the repo server",
            || async {
                self.connect(cx).await.map_err(|e| match e {
                    // A wrong host key or refused login will not change on its own.
                    Error::Unreachable { .. } | Error::Cancelled => Failure::from(e),
                    other => Failure::Fatal(other),
                })
            },
        )
        .await?;
        let log = cx.host_log(REPO_SERVER)?;
        let io = ExecIo {
            log: &log,
            cancel: &cx.cancel,
        };
        let owner = format!("{} {}", cx.run_id, gate_core::time::now_rfc3339());
        self.lock(&*server, &owner, policy, &io).await?;
        let published = self
            .publish_locked(cx, &*server, &dir, &manifest, policy, &log)
            .await;
        let (_, lock) = self.lock_dir();
        let unlocked = server
            .run(
                &Command::new("sh")
                    .arg("-c")
                    .arg(UNLOCK)
                    .arg("gate-unlock")
                    .arg(lock)
                    .arg(&owner),
                &io,
            )
            .await;
        let published = published?;
        unlocked?;
        published.record(cx, REPO_SERVER)
    }
}

impl RepoServerPublisher {
    async fn lock(
        &self,
        server: &dyn Transport,
        owner: &str,
        policy: Policy,
        io: &ExecIo<'_>,
    ) -> Result<()> {
        let (locks, lock) = self.lock_dir();
        let minutes = self.config.stale_lock_secs.div_ceil(60).max(1).to_string();
        let run_id = owner.split(' ').next().unwrap_or_default().to_owned();
        let cmd = Command::new("sh")
            .arg("-c")
            .arg(LOCK)
            .arg("gate-lock")
            .args([locks, lock, owner.to_owned(), minutes, run_id]);
        retry(policy, io.cancel, "locking the series", || async {
            let out = server.run(&cmd, io).await?;
            if out.stdout.trim() == "locked" {
                Ok(())
            } else {
                let holder = out
                    .stdout
                    .trim()
                    .trim_start_matches("held")
                    .trim()
                    .to_owned();
                Err(Failure::Transient(Error::backend(
                    REPO_SERVER,
                    format!(
                        "series `{}` is being published by another run ({holder})",
                        self.config.series
                    ),
                )))
            }
        })
        .await
    }

    async fn publish_locked(
        &self,
        cx: &StageContext,
        server: &dyn Transport,
        dir: &Path,
        manifest: &Manifest,
        policy: Policy,
        log: &HostLog,
    ) -> Result<Published> {
        let io = ExecIo {
            log,
            cancel: &cx.cancel,
        };
        let series = self.series_dir();
        let existing = self.list(server, &series, policy, &io).await?;
        let mut conflicts = Vec::new();
        let mut todo = Vec::new();
        let mut unchanged = 0;
        for file in &manifest.files {
            match existing.get(&file.path) {
                Some(sha) if *sha == file.sha256 => unchanged += 1,
                Some(_) if !self.config.replace => conflicts.push(file.path.clone()),
                _ => todo.push(file.clone()),
            }
        }
        if !conflicts.is_empty() {
            return Err(Error::backend(
                REPO_SERVER,
                format!(
                    "{} files already exist in {}:{series} with other content and `replace` is false: {}",
                    conflicts.len(),
                    self.config.host,
                    conflicts
                        .iter()
                        .take(10)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let tmp = |path: &str| -> String {
            let (parent, name) = match path.rsplit_once('/') {
                Some((parent, name)) => (format!("{parent}/"), name),
                None => (String::new(), path),
            };
            format!("{series}/{parent}{TMP_PREFIX}{}-{name}", cx.run_id)
        };
        match self.config.method {
            Method::Sftp => {
                for file in &todo {
                    let local = dir.join(&file.path);
                    let remote = tmp(&file.path);
                    retry(
                        policy,
                        &cx.cancel,
                        &format!("uploading {}", file.path),
                        || async { server.upload(&local, &remote).await.map_err(Failure::from) },
                    )
                    .await?;
                }
                let mut pairs = Vec::with_capacity(todo.len() * 2);
                for file in &todo {
                    pairs.push(tmp(&file.path));
                    pairs.push(format!("{series}/{}", file.path));
                }
                for batch in pairs.chunks(1000) {
                    let cmd = Command::new("sh")
                        .arg("-c")
                        .arg(RENAME)
                        .arg("gate-rename")
                        .args(batch.iter().cloned());
                    retry(policy, &cx.cancel, "renaming into place", || async {
                        server
                            .run(&cmd, &io)
                            .await
                            .map(|_| ())
                            .map_err(Failure::from)
                    })
                    .await?;
                }
            }
            Method::Rsync => {
                if !todo.is_empty() {
                    // rsync's own temporary files go to a scratch directory with gate's
                    // prefix, so those of a killed transfer are removed by the next listing.
                    let scratch = format!("{series}/{TMP_PREFIX}{}-rsync", cx.run_id);
                    let mkdir = Command::new("mkdir").args(["-p", "--"]).arg(&scratch);
                    retry(policy, &cx.cancel, "rsync", || async {
                        server.run(&mkdir, &io).await?;
                        self.rsync(dir, &series, &scratch, log)
                            .await
                            .map_err(Failure::from)
                    })
                    .await?;
                }
            }
        }
        // Verify every file against the manifest, then put the manifest up last.
        let now = self.list(server, &series, policy, &io).await?;
        let wrong: Vec<String> = manifest
            .files
            .iter()
            .filter(|f| now.get(&f.path) != Some(&f.sha256))
            .map(|f| f.path.clone())
            .collect();
        if !wrong.is_empty() {
            return Err(Error::backend(
                REPO_SERVER,
                format!(
                    "the upload does not match the manifest: {}",
                    wrong
                        .iter()
                        .take(10)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let staging = cx.state_dir.join("publish");
        std::fs::create_dir_all(&staging).map_err(|e| Error::io("creating", &staging, e))?;
        let manifest_path = staging.join(PUBLISHED_MANIFEST);
        manifest.write(&manifest_path)?;
        let manifest_tmp = tmp(PUBLISHED_MANIFEST);
        let manifest_final = format!("{series}/{PUBLISHED_MANIFEST}");
        retry(policy, &cx.cancel, "uploading the manifest", || async {
            server.upload(&manifest_path, &manifest_tmp).await?;
            server
                .run(
                    &Command::new("mv")
                        .args(["-f", "--"])
                        .arg(&manifest_tmp)
                        .arg(&manifest_final),
                    &io,
                )
                .await
                .map(|_| ())
                .map_err(Failure::from)
        })
        .await?;
        let base = match &self.config.public_url {
            Some(url) => format!("{}/{}", url.trim_end_matches('/'), self.config.series),
            None => format!("{}:{series}", self.config.host),
        };
        let mut urls: Vec<String> = manifest
            .files
            .iter()
            .map(|f| format!("{base}/{}", f.path))
            .collect();
        urls.push(format!("{base}/{PUBLISHED_MANIFEST}"));
        Ok(Published {
            destination: format!("{}:{series}", self.config.host),
            uploaded: todo.len(),
            unchanged,
            expiry: None,
            urls,
        })
    }

    /// `sha256` of every file under `series` by relative path.
    async fn list(
        &self,
        server: &dyn Transport,
        series: &str,
        policy: Policy,
        io: &ExecIo<'_>,
    ) -> Result<BTreeMap<String, String>> {
        let cmd = Command::new("sh")
            .arg("-c")
            .arg(LIST)
            .arg("gate-list")
            .arg(series);
        let out = retry(policy, io.cancel, "listing the series", || async {
            server.run(&cmd, io).await.map_err(Failure::from)
        })
        .await?;
        Ok(out
            .stdout
            .lines()
            .filter_map(|line| {
                let (sha, path) = line.split_once("  ")?;
                Some((path.trim_start_matches("./").to_owned(), sha.to_owned()))
            })
            .filter(|(path, _)| !path.is_empty())
            .collect())
    }

    /// `rsync -a` of `dir` into `series` over `ssh` with the pinned host key: rsync writes
    /// each file in `scratch` (on the server, beside the series) and renames it into place.
    async fn rsync(&self, dir: &Path, series: &str, scratch: &str, log: &HostLog) -> Result<()> {
        let ssh = [
            "ssh".to_owned(),
            "-i".into(),
            gate_core::shell_quote(&self.config.key.display().to_string()).into_owned(),
            "-p".into(),
            self.config.port.to_string(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            format!(
                "UserKnownHostsFile={}",
                gate_core::shell_quote(&self.config.known_hosts.display().to_string())
            ),
        ]
        .join(" ");
        let source = format!("{}/", dir.display());
        let target = format!("{}@{}:{series}/", self.config.user, self.config.host);
        let temp_dir = format!("--temp-dir={scratch}");
        log.note(&format!(
            "$ rsync -a --mkpath {temp_dir} -e '{ssh}' {source} {target}"
        ));
        let out = tokio::process::Command::new("rsync")
            .args(["-a", "--mkpath", "--protect-args"])
            .arg(&temp_dir)
            .arg("-e")
            .arg(&ssh)
            .arg(&source)
            .arg(&target)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| Error::backend(REPO_SERVER, format!("cannot run rsync: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::backend(
                REPO_SERVER,
                format!(
                    "rsync to {} {}: {}",
                    self.config.host,
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ))
        }
    }
}
