//! Real git repositories served on loopback: a `git daemon` on 127.0.0.1 and a builder for
//! the repositories tests push to it (branches, tags, pull-request refs).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::error::{HarnessError, Result, io};
use crate::tools::{require, run};

/// A `git daemon` serving every repository under its directory, read-only, on
/// `git://127.0.0.1:PORT/NAME`. Stopped and removed on drop.
///
/// ```no_run
/// use gate_test_harness::{GitRepo, GitServer};
///
/// let server = GitServer::start()?;
/// let repo = GitRepo::create(&server, "project.git")?;
/// repo.write("README", "hello\n", false)?;
/// let sha = repo.commit("first")?;
/// repo.tag("1.0.0")?;
/// repo.push_ref("refs/pull/7/head")?; // a pull request, as GitHub serves it
/// repo.push()?;
/// assert_eq!(sha.len(), 40);
/// println!("git clone {}", server.url("project.git"));
/// # Ok::<(), gate_test_harness::HarnessError>(())
/// ```
#[derive(Debug)]
pub struct GitServer {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl GitServer {
    /// Starts the daemon on a free port of 127.0.0.1 and returns once it accepts
    /// connections. Needs `git` (with `git daemon`).
    pub fn start() -> Result<GitServer> {
        require("git", "git")?;
        let dir = tempfile::Builder::new()
            .prefix("gate-git-")
            .tempdir()
            .map_err(io("creating the git server directory"))?;
        std::fs::create_dir_all(dir.path().join("repos"))
            .map_err(io("creating the git server directory"))?;
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let mut child = Command::new("git")
                .arg("daemon")
                .args(["--reuseaddr", "--export-all", "--informative-errors"])
                .arg("--listen=127.0.0.1")
                .arg(format!("--port={port}"))
                .arg(format!(
                    "--base-path={}",
                    dir.path().join("repos").display()
                ))
                .arg(dir.path().join("repos"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(io("starting git daemon"))?;
            let deadline = Instant::now() + Duration::from_secs(10);
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            loop {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Ok(GitServer { child, port, dir });
                }
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!("git daemon exited with {status} (port {port} taken?)");
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = format!("git daemon did not listen on {addr}");
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Err(HarnessError::NotReady {
            host: "git daemon".into(),
            seconds: 10,
            detail: last,
        })
    }

    /// The URL of repository `name` (`git://127.0.0.1:PORT/name`).
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }

    /// The directory holding the served (bare) repositories.
    pub fn repos_dir(&self) -> PathBuf {
        self.dir.path().join("repos")
    }

    fn work_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("work").join(name)
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io("finding a free port"))?
        .port();
    Ok(port)
}

/// A working repository whose pushes go to a bare repository served by a [`GitServer`].
#[derive(Debug)]
pub struct GitRepo {
    work: PathBuf,
}

impl GitRepo {
    /// Creates the served bare repository `name` and a working repository for it.
    pub fn create(server: &GitServer, name: &str) -> Result<GitRepo> {
        let bare = server.repos_dir().join(name);
        run(Command::new("git")
            .args(["init", "--quiet", "--bare", "--initial-branch=master"])
            .arg(&bare))?;
        let work = server.work_dir(name);
        run(Command::new("git")
            .args(["init", "--quiet", "--initial-branch=master"])
            .arg(&work))?;
        run(Command::new("git")
            .arg("-C")
            .arg(&work)
            .args(["remote", "add", "origin"])
            .arg(&bare))?;
        let repo = GitRepo { work };
        Ok(repo)
    }

    /// The working directory.
    pub fn path(&self) -> &Path {
        &self.work
    }

    /// Runs `git ARGS` in the working repository; gives stdout.
    pub fn git(&self, args: &[&str]) -> Result<String> {
        let out = run(Command::new("git")
            .arg("-C")
            .arg(&self.work)
            .args([
                "-c",
                "user.name=gate tests",
                "-c",
                "user.email=tests@gate.invalid",
                "-c",
                "commit.gpgsign=false",
                "-c",
                "tag.gpgsign=false",
            ])
            .args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Writes `content` to `path` in the working tree (parents created).
    pub fn write(&self, path: &str, content: &str, executable: bool) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let file = self.work.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        std::fs::write(&file, content).map_err(io(format!("writing {}", file.display())))?;
        let mode = if executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))
            .map_err(io(format!("chmod {}", file.display())))
    }

    /// Removes `path` from the working tree.
    pub fn remove(&self, path: &str) -> Result<()> {
        self.git(&["rm", "-r", "--quiet", "--", path]).map(|_| ())
    }

    /// Commits everything and returns the new commit's id.
    pub fn commit(&self, message: &str) -> Result<String> {
        self.git(&["add", "--all"])?;
        self.git(&["commit", "--quiet", "--allow-empty", "-m", message])?;
        self.git(&["rev-parse", "HEAD"])
    }

    /// Switches to branch `name`, creating it at the current commit if needed.
    pub fn branch(&self, name: &str) -> Result<()> {
        self.git(&["checkout", "--quiet", "-B", name]).map(|_| ())
    }

    /// Tags the current commit (annotated, as releases are).
    pub fn tag(&self, name: &str) -> Result<()> {
        self.git(&["tag", "-a", "-m", name, name]).map(|_| ())
    }

    /// Pushes the current commit to `refname` of the served repository, e.g.
    /// `refs/pull/7/head`.
    pub fn push_ref(&self, refname: &str) -> Result<()> {
        self.git(&[
            "push",
            "--quiet",
            "--force",
            "origin",
            &format!("HEAD:{refname}"),
        ])
        .map(|_| ())
    }

    /// Pushes every branch and tag.
    pub fn push(&self) -> Result<()> {
        self.git(&["push", "--quiet", "--force", "--all", "origin"])?;
        self.git(&["push", "--quiet", "--force", "--tags", "origin"])
            .map(|_| ())
    }
}
