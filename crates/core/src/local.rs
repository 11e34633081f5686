//! The local transport: a host that is a directory on this machine.
//!
//! Commands run as child processes with the host directory as their working directory and
//! `HOME`, in their own process group so a timeout or an interrupt kills everything they
//! started. Files move as plain copies.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncWrite, BufReader};
use tokio_util::sync::CancellationToken;

use crate::command::Command;
use crate::error::{Error, Result};
use crate::model::Host;
use crate::transport::{
    Connector, ExecIo, ExecOutput, ExitStatus, OutputCollector, Stream, Transport,
};

/// The registry name of the local transport.
pub const LOCAL: &str = "local";

/// A [`Transport`] for a host whose `home` is a local directory.
#[derive(Debug, Clone)]
pub struct LocalTransport {
    host: Host,
    home: PathBuf,
}

impl LocalTransport {
    /// A transport for `host`; its `home` must be set and exist.
    pub fn new(host: Host) -> Result<Self> {
        let home = host
            .home
            .clone()
            .map(PathBuf::from)
            .ok_or_else(|| Error::Unreachable {
                host: host.name.clone(),
                message: "a local host needs a home directory".into(),
            })?;
        if !home.is_dir() {
            return Err(Error::Unreachable {
                host: host.name.clone(),
                message: format!("home {} does not exist", home.display()),
            });
        }
        Ok(Self { host, home })
    }

    /// `remote` resolved against the host's home.
    pub fn resolve(&self, remote: &str) -> PathBuf {
        self.home.join(remote)
    }

    /// Starts `cmd` in the host directory, in a process group of its own.
    fn spawn(&self, cmd: &Command) -> Result<(tokio::process::Child, ProcessGroup)> {
        let mut child = tokio::process::Command::new(cmd.program());
        child
            .args(cmd.arg_list())
            .current_dir(self.resolve(cmd.working_dir().unwrap_or(".")))
            .env("HOME", &self.home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for (key, value) in cmd.env_list() {
            child.env(key, value.expose());
        }
        let child = child.spawn().map_err(|e| self.spawn_error(cmd, e))?;
        let group = ProcessGroup(child.id().map(|pid| nix::unistd::Pid::from_raw(pid as i32)));
        Ok((child, group))
    }

    fn spawn_error(&self, cmd: &Command, e: std::io::Error) -> Error {
        Error::Host {
            host: self.host.name.clone(),
            message: format!("cannot start `{cmd}`: {e}"),
        }
    }
}

#[async_trait]
impl Transport for LocalTransport {
    fn host(&self) -> &Host {
        &self.host
    }

    async fn exec(&self, cmd: &Command, io: &ExecIo<'_>) -> Result<ExecOutput> {
        io.log.note(&format!("$ {cmd}"));
        let started = Instant::now();
        let (mut child, group) = self.spawn(cmd)?;
        let kill_group = || group.kill();

        let mut out = child.stdout.take().map(|s| BufReader::new(s).lines());
        let mut err = child.stderr.take().map(|s| BufReader::new(s).lines());
        let mut collector = OutputCollector::new(io.log);
        let deadline = cmd.time_limit().map(|t| tokio::time::Instant::now() + t);
        let timeout = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(timeout);

        loop {
            tokio::select! {
                line = next_line(&mut out) => match line {
                    Some(line) => collector.push(Stream::Stdout, &line),
                    None => out = None,
                },
                line = next_line(&mut err) => match line {
                    Some(line) => collector.push(Stream::Stderr, &line),
                    None => err = None,
                },
                () = io.cancel.cancelled() => {
                    kill_group();
                    let _ = child.wait().await;
                    io.log.note("cancelled: killed the command");
                    return Err(Error::Cancelled);
                }
                () = &mut timeout => {
                    kill_group();
                    let _ = child.wait().await;
                    io.log.note("timed out: killed the command");
                    return Err(Error::Timeout {
                        host: self.host.name.clone(),
                        command: cmd.to_string(),
                        after: cmd.time_limit().unwrap_or_default(),
                        tail: collector.tail(),
                    });
                }
            }
            if out.is_none() && err.is_none() {
                break;
            }
        }
        let status = child.wait().await.map_err(|e| self.spawn_error(cmd, e))?;
        // The command is done; anything it left running in its group goes with it.
        kill_group();
        let status = exit_status(status);
        io.log.note(&format!(
            "{status} after {:.1}s",
            started.elapsed().as_secs_f64()
        ));
        Ok(collector.finish(status, started.elapsed()))
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<()> {
        let (from, to) = (local.to_owned(), self.resolve(remote));
        blocking(move || copy_tree(&from, &to)).await
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<()> {
        let (from, to) = (self.resolve(remote), local.to_owned());
        blocking(move || copy_tree(&from, &to)).await
    }

    async fn download_tree(
        &self,
        remote: &str,
        sink: &mut (dyn AsyncWrite + Send + Unpin),
        io: &ExecIo<'_>,
    ) -> Result<()> {
        let path = self.resolve(remote);
        let (parent, name) = match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => (parent.to_owned(), name.to_owned()),
            _ => {
                return Err(Error::Host {
                    host: self.host.name.clone(),
                    message: format!("cannot archive `{remote}`: not a named path"),
                });
            }
        };
        let mut child = tokio::process::Command::new("tar")
            .arg("-C")
            .arg(&parent)
            .arg("-cf")
            .arg("-")
            .arg("--")
            .arg(&name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| self.spawn_error(&Command::new("tar"), e))?;
        let mut stdout = child.stdout.take().ok_or_else(|| Error::Host {
            host: self.host.name.clone(),
            message: "tar gave no output stream".into(),
        })?;
        tokio::select! {
            copied = tokio::io::copy(&mut stdout, sink) => {
                copied.map_err(|e| Error::Host {
                    host: self.host.name.clone(),
                    message: format!("streaming `{remote}`: {e}"),
                })?;
            }
            () = io.cancel.cancelled() => return Err(Error::Cancelled),
        }
        let output = child.wait_with_output().await.map_err(|e| Error::Host {
            host: self.host.name.clone(),
            message: format!("tar: {e}"),
        })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(Error::Host {
                host: self.host.name.clone(),
                message: format!(
                    "tar of `{remote}` failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            })
        }
    }

    async fn exec_to(
        &self,
        cmd: &Command,
        sink: &mut (dyn AsyncWrite + Send + Unpin),
        io: &ExecIo<'_>,
    ) -> Result<ExecOutput> {
        io.log.note(&format!("$ {cmd} (output streamed)"));
        let started = Instant::now();
        let (mut child, group) = self.spawn(cmd)?;
        let kill_group = || group.kill();
        let mut stdout = child.stdout.take();
        let mut err = child.stderr.take().map(|s| BufReader::new(s).lines());
        let mut collector = OutputCollector::new(io.log);
        let copying = async {
            match stdout.as_mut() {
                Some(out) => tokio::io::copy(out, sink).await.map(|_| ()),
                None => Ok(()),
            }
        };
        tokio::pin!(copying);
        let mut copied = false;
        loop {
            tokio::select! {
                done = &mut copying, if !copied => {
                    copied = true;
                    if let Err(e) = done {
                        kill_group();
                        let _ = child.wait().await;
                        return Err(Error::Host {
                            host: self.host.name.clone(),
                            message: format!("streaming the output of `{cmd}`: {e}"),
                        });
                    }
                }
                line = next_line(&mut err) => match line {
                    Some(line) => collector.push(Stream::Stderr, &line),
                    None => err = None,
                },
                () = io.cancel.cancelled() => {
                    kill_group();
                    let _ = child.wait().await;
                    io.log.note("cancelled: killed the command");
                    return Err(Error::Cancelled);
                }
            }
            if copied && err.is_none() {
                break;
            }
        }
        let status = child.wait().await.map_err(|e| self.spawn_error(cmd, e))?;
        kill_group();
        let status = exit_status(status);
        io.log.note(&format!(
            "{status} after {:.1}s",
            started.elapsed().as_secs_f64()
        ));
        Ok(collector.finish(status, started.elapsed()))
    }
}

/// The process group of a started command: everything it started.
#[derive(Debug, Clone, Copy)]
struct ProcessGroup(Option<nix::unistd::Pid>);

impl ProcessGroup {
    /// SIGKILLs the whole group (a group already gone is fine).
    fn kill(self) {
        if let Some(group) = self.0 {
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// How a local process ended.
fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(code), _) => ExitStatus::Code(code),
        (None, Some(sig)) => ExitStatus::Signal(sig),
        (None, None) => ExitStatus::Code(-1),
    }
}

async fn next_line<R>(lines: &mut Option<tokio::io::Lines<R>>) -> Option<String>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    match lines {
        // A read error ends the stream like EOF: the exit status still tells the outcome.
        Some(lines) => lines.next_line().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

async fn blocking(f: impl FnOnce() -> Result<()> + Send + 'static) -> Result<()> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Backend {
            backend: LOCAL.into(),
            message: format!("copy task failed: {e}"),
        })?
}

/// Copies the file, symlink or directory `from` to `to`, creating parents; symbolic links
/// are recreated, never followed.
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(from).map_err(|e| Error::io("reading", from, e))?;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
    }
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(from).map_err(|e| Error::io("reading link", from, e))?;
        let _ = std::fs::remove_file(to);
        std::os::unix::fs::symlink(&target, to).map_err(|e| Error::io("linking", to, e))?;
    } else if meta.is_dir() {
        std::fs::create_dir_all(to).map_err(|e| Error::io("creating", to, e))?;
        let entries = std::fs::read_dir(from).map_err(|e| Error::io("listing", from, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("listing", from, e))?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else {
        std::fs::copy(from, to).map_err(|e| Error::io("copying", from, e))?;
    }
    Ok(())
}

/// Opens [`LocalTransport`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalConnector;

#[async_trait]
impl Connector for LocalConnector {
    async fn connect(&self, host: &Host, cancel: &CancellationToken) -> Result<Arc<dyn Transport>> {
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        Ok(Arc::new(LocalTransport::new(host.clone())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{HostLog, TransportExt};
    use std::time::Duration;

    fn transport(dir: &Path) -> LocalTransport {
        LocalTransport::new(Host {
            name: "h1".into(),
            address: "localhost".into(),
            port: 0,
            user: "me".into(),
            labels: vec![],
            transport: LOCAL.into(),
            home: Some(dir.display().to_string()),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn exec_streams_output_to_the_log_and_reports_status() {
        let dir = tempfile::tempdir().unwrap();
        let t = transport(dir.path());
        let log_path = dir.path().join("h1.log");
        let log = HostLog::open(&log_path, "h1", None).unwrap();
        let cancel = CancellationToken::new();
        let io = ExecIo {
            log: &log,
            cancel: &cancel,
        };
        let out = t
            .exec(
                &Command::script("echo out; echo err >&2; pwd; exit 3").env("A", "b"),
                &io,
            )
            .await
            .unwrap();
        assert_eq!(out.status, ExitStatus::Code(3));
        assert!(out.stdout.contains("out\n"));
        assert!(out.stdout.contains(&dir.path().display().to_string()));
        assert!(out.tail.iter().any(|l| l == "err"));
        let logged = std::fs::read_to_string(&log_path).unwrap();
        assert!(logged.contains("out") && logged.contains("err"), "{logged}");

        let failed = t.run(&Command::new("false"), &io).await.unwrap_err();
        assert!(failed.to_string().contains("host h1"), "{failed}");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let t = transport(dir.path());
        let log = HostLog::detached("h1", None);
        let cancel = CancellationToken::new();
        let io = ExecIo {
            log: &log,
            cancel: &cancel,
        };
        let cmd = Command::script("sleep 30 & echo $! > child.pid; wait")
            .timeout(Duration::from_millis(500));
        let err = t.exec(&cmd, &io).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        let pid = std::fs::read_to_string(dir.path().join("child.pid")).unwrap();
        let alive = || {
            Path::new(&format!("/proc/{}", pid.trim())).exists()
                && !std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
                    .unwrap_or_default()
                    .contains(" Z ")
        };
        // SIGKILL is delivered at once but takes effect when the process next runs: poll
        // (with a deadline far below the sleep's 30 s) rather than look once.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while alive() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(), "the backgrounded sleep survived the timeout");
    }

    #[tokio::test]
    async fn cancel_stops_a_running_command() {
        let dir = tempfile::tempdir().unwrap();
        let t = transport(dir.path());
        let log = HostLog::detached("h1", None);
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.cancel();
        });
        let io = ExecIo {
            log: &log,
            cancel: &cancel,
        };
        let err = t
            .exec(&Command::new("sleep").arg("30"), &io)
            .await
            .unwrap_err();
        assert!(err.is_cancelled());
    }

    #[tokio::test]
    async fn upload_and_download_copy_trees_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let t = transport(&home);
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/file.txt"), "hello").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
        t.upload(&src, "up/src").await.unwrap();
        assert_eq!(
            std::fs::read_to_string(home.join("up/src/sub/file.txt")).unwrap(),
            "hello"
        );
        let back = dir.path().join("back");
        t.download("up/src", &back).await.unwrap();
        assert!(
            std::fs::symlink_metadata(back.join("link"))
                .unwrap()
                .file_type()
                .is_symlink()
        );

        let mut tar = Vec::new();
        let log = HostLog::detached("h1", None);
        let cancel = CancellationToken::new();
        let io = ExecIo {
            log: &log,
            cancel: &cancel,
        };
        t.download_tree("up/src", &mut tar, &io).await.unwrap();
        assert!(
            tar.windows(b"src/sub/file.txt".len())
                .any(|w| w == b"src/sub/file.txt")
        );
    }
}
