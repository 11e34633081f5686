//! Where Tempest runs: a host reached by a transport, maybe a container on it. Every
//! command is a fixed bash script that gets the configured values as arguments (quoted by
//! [`Command`]), behind the container's exec prefix; files go in and out through the
//! host's staging directory and that prefix's standard input and output.

use std::path::Path;
use std::time::Duration;

use gate_core::{Command, Error, ExecIo, ExecOutput, Result, Transport, TransportExt};

/// Creates the directory `$1` (under the home unless absolute), private to its owner, and
/// prints its real path.
pub const MAKE_PRIVATE_DIR: &str =
    r#"umask 077 && mkdir -p -- "$1" && chmod 700 -- "$1" && cd -- "$1" && pwd -P"#;

/// Creates the directory `$1` and prints its real path (in the container, if any).
const RESOLVE_DIR: &str = r#"mkdir -p -- "$1" && cd -- "$1" && pwd -P"#;

/// On the host: runs `$2…` (the container prefix and a writer) with the file `$1` as its
/// standard input, then removes `$1`.
const FEED: &str = r#"src=$1
shift
rc=0
"$@" <"$src" || rc=$?
rm -f -- "$src"
exit "$rc""#;

/// In the place: writes standard input to the file `$1` (mode 0600, parents created).
const WRITE: &str = r#"umask 077 && mkdir -p -- "$(dirname -- "$1")" && cat >"$1""#;

/// On the host: runs `$2…` (the container prefix and a reader) with its standard output
/// in the file `$1`.
const DRAIN: &str = r#"dst=$1
shift
umask 077
"$@" >"$dst""#;

/// In the place: prints the file `$1`; exits 3 when there is none.
const READ: &str = r#"[ -f "$1" ] || exit 3
cat -- "$1""#;

/// The exit code of [`READ`] for a missing file.
const MISSING: i32 = 3;

/// A host, and the container prefix that commands run behind (empty: the host itself).
#[derive(Debug)]
pub struct Place<'a> {
    /// The host.
    pub transport: &'a dyn Transport,
    /// The container's exec prefix.
    pub prefix: Vec<String>,
    /// The host's log and the cancellation token.
    pub io: ExecIo<'a>,
    /// The host's private staging directory (absolute).
    pub staging: String,
}

impl Place<'_> {
    /// The host's name.
    pub fn host(&self) -> &str {
        &self.transport.host().name
    }

    /// `argv` behind the prefix, as a command of the host.
    pub fn command<I, S>(&self, argv: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut words = self
            .prefix
            .iter()
            .cloned()
            .chain(argv.into_iter().map(Into::into));
        let program = words.next().unwrap_or_default();
        Command::new(program).args(words)
    }

    /// `bash -c SCRIPT _ ARGS…` in the place.
    pub fn script<I, S>(&self, script: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let head = ["bash", "-c", script, "gate"].map(str::to_owned);
        self.command(head.into_iter().chain(args.into_iter().map(Into::into)))
    }

    /// Runs `cmd` to its end; a non-zero exit is an outcome, not an error.
    pub async fn exec(&self, cmd: &Command) -> Result<ExecOutput> {
        self.transport.exec(cmd, &self.io).await
    }

    /// Runs `cmd` and fails unless it exits 0.
    pub async fn run(&self, cmd: &Command) -> Result<ExecOutput> {
        self.transport.run(cmd, &self.io).await
    }

    /// Creates the directory `path` in the place and returns its absolute path.
    pub async fn resolve_dir(&self, path: &str) -> Result<String> {
        let out = self.run(&self.script(RESOLVE_DIR, [path])).await?;
        Ok(out.stdout.trim().to_owned())
    }

    /// Copies the local file `local` to `dest` in the place (mode 0600), through
    /// `staging/<name>` on the host.
    pub async fn put(&self, local: &Path, name: &str, dest: &str) -> Result<()> {
        let staged = format!("{}/{name}", self.staging);
        self.transport.upload(local, &staged).await?;
        let writer = self.script(WRITE, [dest]);
        let feed = Command::new("bash")
            .args(["-c", FEED, "gate", &staged])
            .arg(writer.program())
            .args(writer.arg_list().iter().cloned());
        self.run(&feed).await.map(drop)
    }

    /// Copies `src` in the place to the local file `local` through `staging/<name>` on the
    /// host; `false` when there is no such file.
    pub async fn get(&self, src: &str, name: &str, local: &Path) -> Result<bool> {
        let staged = format!("{}/{name}", self.staging);
        let reader = self.script(READ, [src]);
        let drain = Command::new("bash")
            .args(["-c", DRAIN, "gate", &staged])
            .arg(reader.program())
            .args(reader.arg_list().iter().cloned())
            .timeout(Duration::from_secs(600));
        let out = self.exec(&drain).await?;
        if out.status == gate_core::transport::ExitStatus::Code(MISSING) {
            return Ok(false);
        }
        if !out.status.success() {
            return Err(Error::Command {
                host: self.host().to_owned(),
                command: drain.to_string(),
                status: out.status.to_string(),
                tail: out.tail,
            });
        }
        self.transport.download(&staged, local).await?;
        let rm = Command::new("rm").args(["-f", "--", &staged]);
        self.run(&rm).await?;
        Ok(true)
    }
}
