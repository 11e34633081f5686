//! The shared test harness of gate's end-to-end tests (see tests/README.md).
//!
//! [`Workspace`] is a scratch directory to run the real `gate` binary in: its own config,
//! state dir, artifacts dir and `TMPDIR` (where the `local` provider puts hosts), so every
//! test sees only what it made and checks that nothing is left.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gate_core::ledger::{LiveResource, Replay};
use gate_core::{Cleaner, Observed, RunId};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The `gate` CLI as built for these tests (`gate-e2e`, gate-cli's own main). Cargo builds
/// it next to the test binaries before running integration tests.
pub fn gate_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    let bin = profile_dir.join("gate-e2e");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with cargo",
        bin.display()
    );
    bin
}

/// A scratch place to run `gate` in.
#[derive(Debug)]
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("gate-e2e")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where the `local` provider puts hosts in this workspace (its `TMPDIR`).
    pub fn tmp(&self) -> PathBuf {
        self.path().join("tmp")
    }

    pub fn state(&self) -> PathBuf {
        self.path().join(".gate")
    }

    pub fn artifacts(&self) -> PathBuf {
        self.path().join("artifacts")
    }

    /// Writes `gate.toml` and returns its path.
    pub fn config(&self, toml: &str) -> PathBuf {
        let path = self.path().join("gate.toml");
        std::fs::write(&path, toml).unwrap();
        path
    }

    /// A `gate` command running in this workspace.
    pub fn gate(&self) -> Command {
        let mut cmd = Command::new(gate_binary());
        cmd.current_dir(self.path())
            .env("TMPDIR", self.tmp())
            .env_remove("RUST_LOG")
            .env_remove("JOB_NAME")
            .env_remove("BUILD_NUMBER")
            .env_remove(gate_core::ledger::CRASH_POINT_ENV);
        for (key, _) in std::env::vars() {
            if key.starts_with("GATE__") {
                cmd.env_remove(key);
            }
        }
        cmd
    }

    /// Runs `gate ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.gate().args(args).output().unwrap()
    }

    pub fn run_json(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.state().join("run.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    pub fn run_id(&self) -> RunId {
        RunId::try_from(self.run_json()["run_id"].as_str().unwrap().to_owned()).unwrap()
    }

    /// The status of `stage` in run.json.
    pub fn stage_status(&self, stage: &str) -> String {
        self.run_json()["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["stage"] == stage)
            .map(|r| r["status"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| "absent".into())
    }

    pub fn live(&self) -> Vec<LiveResource> {
        Replay::read(&self.state().join("resources.jsonl"))
            .unwrap()
            .live()
    }

    /// What the `local` provider really has for `run_id` in this workspace.
    pub fn observe(&self, run_id: &RunId) -> Vec<Observed> {
        let provider =
            gate_providers_local::LocalProvider::new(gate_providers_local::LocalConfig {
                root: Some(self.tmp()),
                ..Default::default()
            })
            .unwrap();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(provider.observe(
                run_id,
                &gate_core::CleanContext::new(std::sync::Arc::new(
                    gate_core::local::LocalConnector,
                )),
            ))
            .unwrap()
    }

    /// Everything left in the hosts' root.
    pub fn leftovers(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.tmp())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    /// Every file under `dir`, as paths relative to it.
    pub fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() && !path.is_symlink() {
                    stack.push(path);
                } else {
                    out.push(path.strip_prefix(dir).unwrap().to_owned());
                }
            }
        }
        out.sort();
        out
    }
}

/// The config lines that make `fleet` a run's lab hosts: `[transport.ssh]` with the fleet's
/// key and short waits, and the `static` provider listing every host. Append the rest.
pub fn static_lab_config(fleet: &gate_test_harness::SshFleet) -> String {
    let mut config = format!(
        "[transport.ssh]\nidentities = [\"{}\"]\nagent = false\nconnect_timeout_secs = 30\npoll_secs = 1\n\n[provider]\nbackend = \"static\"\n",
        fleet.client_key().display()
    );
    for host in fleet.hosts() {
        config.push_str(&format!(
            "[[provider.hosts]]\nname = \"{}\"\naddress = \"{}\"\nport = {}\n",
            host.name(),
            host.address(),
            host.port()
        ));
    }
    config
}

/// stdout and stderr of `output` as one string, for messages.
pub fn text(output: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
