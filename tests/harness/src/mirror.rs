//! The package mirror: apt and pip sources on loopback.

use std::path::{Path, PathBuf};

use crate::error::{HarnessError, Result};
use crate::http::StaticServer;

/// The file `scripts/fetch-mirror` writes last, once the cache is complete.
const COMPLETE: &str = ".complete";

/// The package mirror cache (filled by `scripts/fetch-mirror`) served over HTTP on
/// 127.0.0.1, for the `packages` and `ansible` preparer steps to install from:
///
/// - `apt/`: a flat apt repository (`Packages`, `Packages.gz`, `Release`) with a few tiny
///   real packages (`hello`, `sl`): [`apt_source`](Self::apt_source);
/// - `pip/simple/<project>/`: wheels of a pinned `ansible-core` and its dependencies as a
///   PEP 503 index: [`pip_index_url`](Self::pip_index_url).
///
/// ```no_run
/// let mirror = gate_test_harness::Mirror::start_cached()?;
/// // On a fleet host: echo "$line" > /etc/apt/sources.list.d/mirror.list
/// let line = mirror.apt_source(); // deb [trusted=yes] http://127.0.0.1:PORT/apt ./
/// let index = mirror.pip_index_url(); // http://127.0.0.1:PORT/pip/simple/
/// # Ok::<(), gate_test_harness::HarnessError>(())
/// ```
#[derive(Debug)]
pub struct Mirror {
    server: StaticServer,
    dir: PathBuf,
}

impl Mirror {
    /// Serves `dir` (a cache filled by `scripts/fetch-mirror`, or any directory).
    pub fn start(dir: impl AsRef<Path>) -> Result<Mirror> {
        Ok(Mirror {
            server: StaticServer::start(dir.as_ref())?,
            dir: dir.as_ref().to_owned(),
        })
    }

    /// Serves the cache at [`cache_dir`](Self::cache_dir); fails with
    /// [`HarnessError::MirrorNotFilled`] when `scripts/fetch-mirror` has not filled it.
    pub fn start_cached() -> Result<Mirror> {
        let dir = Mirror::cache_dir();
        if !dir.join(COMPLETE).is_file() {
            return Err(HarnessError::MirrorNotFilled { dir });
        }
        Mirror::start(dir)
    }

    /// Where `scripts/fetch-mirror` puts the cache: `GATE_MIRROR_DIR`, else
    /// `$CARGO_TARGET_DIR/mirror`, else `target/mirror` in the workspace.
    pub fn cache_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("GATE_MIRROR_DIR") {
            return PathBuf::from(dir);
        }
        if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
            return PathBuf::from(target).join("mirror");
        }
        // This crate lives in <workspace>/tests/harness.
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/mirror")
            .components()
            .collect()
    }

    /// The base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        self.server.base_url()
    }

    /// The served directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sources.list line of the flat apt repository (unsigned, hence `trusted=yes`).
    pub fn apt_source(&self) -> String {
        format!("deb [trusted=yes] {}/apt ./", self.url())
    }

    /// The pip index URL (`pip install --index-url …`).
    pub fn pip_index_url(&self) -> String {
        format!("{}/pip/simple/", self.url())
    }

    /// The pinned `ansible-core` version in the cache (from `pip/ANSIBLE_CORE_VERSION`).
    pub fn ansible_core_version(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("pip/ANSIBLE_CORE_VERSION"))
            .ok()
            .map(|v| v.trim().to_owned())
    }

    /// The underlying server (its request log, say).
    pub fn server(&self) -> &StaticServer {
        &self.server
    }
}
