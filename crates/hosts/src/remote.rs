//! Small operations on one host over any [`Transport`]: run a fixed script with a hard
//! deadline, resolve a path against the login user's `$HOME`, read and atomically write a
//! file, report a step's progress, retry.

use std::future::Future;
use std::time::Duration;

use gate_core::transport::ExecOutput;
use gate_core::{Command, Error, Event, HostIo, Result, Transport};

/// Extra time a transport gets past a command's own timeout before gate stops waiting.
const GRACE: Duration = Duration::from_secs(15);

/// Runs `cmd` on `transport`. The command's timeout is enforced twice: by the transport,
/// and by a deadline of its own (timeout + 15 s), so a transport that stops answering
/// cannot hold the stage. A non-zero exit is an outcome, not an error.
pub(crate) async fn exec(
    transport: &dyn Transport,
    hio: &HostIo,
    cmd: &Command,
) -> Result<ExecOutput> {
    let io = hio.io();
    let run = transport.exec(cmd, &io);
    match cmd.time_limit() {
        Some(limit) => tokio::time::timeout(limit + GRACE, run)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    host: transport.host().name.clone(),
                    command: cmd.to_string(),
                    after: limit + GRACE,
                    tail: Vec::new(),
                })
            }),
        None => run.await,
    }
}

/// Like [`exec`], failing with [`Error::Command`] (host, what, output tail) unless it
/// exits 0. `what` names the command in the error instead of the whole script.
pub(crate) async fn run(
    transport: &dyn Transport,
    hio: &HostIo,
    cmd: &Command,
    what: &str,
) -> Result<ExecOutput> {
    let out = exec(transport, hio, cmd).await?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(Error::Command {
            host: transport.host().name.clone(),
            command: what.to_owned(),
            status: out.status.to_string(),
            tail: out.tail,
        })
    }
}

/// A fixed bash script taking its values as positional arguments (`$1`, `$2`, …), never
/// pasted into the script text.
pub(crate) fn script<I, S>(text: &str, args: I, timeout: Duration) -> Command
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    Command::script(text)
        .arg("gate")
        .args(args)
        .timeout(timeout)
}

const PROBE: &str = r#"
p=$1
case $p in
  /*) ;;
  '~/'*) p=$HOME/${p#'~/'} ;;
  *) p=$HOME/$p ;;
esac
printf '%s\n' "$p"
if [ -e "$p" ]; then echo present; else echo absent; fi
"#;

/// A path on a host, resolved against the login user's `$HOME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemotePath {
    /// The absolute path.
    pub(crate) path: String,
    /// Whether something exists there.
    pub(crate) exists: bool,
}

/// Resolves `path` (absolute, `~/…` or relative to `$HOME`) on the host.
pub(crate) async fn resolve(
    transport: &dyn Transport,
    hio: &HostIo,
    path: &str,
    timeout: Duration,
) -> Result<RemotePath> {
    let out = run(
        transport,
        hio,
        &script(PROBE, [path], timeout),
        &format!("resolve {path}"),
    )
    .await?;
    let mut lines = out.stdout.lines();
    match (lines.next(), lines.next()) {
        (Some(path), Some(state)) if path.starts_with('/') => Ok(RemotePath {
            path: path.to_owned(),
            exists: state == "present",
        }),
        _ => Err(Error::Host {
            host: transport.host().name.clone(),
            message: format!(
                "cannot resolve `{path}`: unexpected output {:?}",
                out.stdout
            ),
        }),
    }
}

/// The text of the file at the absolute `path`, or `None` when there is none.
pub(crate) async fn read_file(
    transport: &dyn Transport,
    hio: &HostIo,
    path: &str,
    timeout: Duration,
) -> Result<Option<String>> {
    if !resolve(transport, hio, path, timeout).await?.exists {
        return Ok(None);
    }
    let dir = tempfile::tempdir().map_err(|e| Error::io("creating", std::env::temp_dir(), e))?;
    let local = dir.path().join("file");
    transport.download(path, &local).await?;
    let bytes = std::fs::read(&local).map_err(|e| Error::io("reading", &local, e))?;
    String::from_utf8(bytes).map(Some).map_err(|_| Error::Host {
        host: transport.host().name.clone(),
        message: format!("{path} is not UTF-8 text"),
    })
}

const INSTALL: &str = r#"
dst=$1 new=$2 mode=$3
chmod "$mode" -- "$new"
if [ -e "$dst" ]; then chown --reference="$dst" -- "$new" 2>/dev/null || true; fi
mv -f -- "$new" "$dst"
"#;

const MKDIR: &str = r#"
d=$(dirname -- "$1")
[ -d "$d" ] || mkdir -p -m 700 -- "$d"
"#;

/// Replaces the file at the absolute `path` with `text` and `mode` (octal, e.g. `600`):
/// uploaded beside it, then renamed over it, keeping its owner. A missing parent directory
/// is created with mode 700.
pub(crate) async fn write_file(
    transport: &dyn Transport,
    hio: &HostIo,
    path: &str,
    text: &str,
    mode: &str,
    timeout: Duration,
) -> Result<()> {
    run(
        transport,
        hio,
        &script(MKDIR, [path], timeout),
        &format!("create the directory of {path}"),
    )
    .await?;
    let dir = tempfile::tempdir().map_err(|e| Error::io("creating", std::env::temp_dir(), e))?;
    let local = dir.path().join("file");
    std::fs::write(&local, text).map_err(|e| Error::io("writing", &local, e))?;
    let staged = format!("{path}.gate-new");
    transport.upload(&local, &staged).await?;
    run(
        transport,
        hio,
        &script(INSTALL, [path, &staged, mode], timeout),
        &format!("install {path}"),
    )
    .await?;
    Ok(())
}

/// Emits a [`Event::HostStep`] for `step` on the host.
pub(crate) fn progress(transport: &dyn Transport, hio: &HostIo, step: &str, status: &str) {
    hio.events().emit(&Event::HostStep {
        host: transport.host().name.clone(),
        step: step.to_owned(),
        status: status.to_owned(),
    });
}

/// Runs `attempt` up to `attempts` times, `delay` apart, until it succeeds; each failure
/// goes to the host log. Cancellation is never retried.
pub(crate) async fn retry<T, F, Fut>(
    hio: &HostIo,
    what: &str,
    attempts: u32,
    delay: Duration,
    attempt: F,
) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut n = 1;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if e.is_cancelled() || n >= attempts.max(1) => return Err(e),
            Err(e) => {
                hio.log.note(&format!(
                    "{what}: attempt {n} of {attempts} failed, again in {}s: {e}",
                    delay.as_secs()
                ));
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = hio.cancel.cancelled() => return Err(Error::Cancelled),
                }
                n += 1;
            }
        }
    }
}
