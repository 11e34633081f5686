//! Running the external programs the harness relies on.

use std::path::Path;
use std::process::{Command, Output};

use crate::error::{HarnessError, Result};

/// Fails with [`HarnessError::MissingTool`] unless `program` (an absolute path or a name on
/// `PATH`) exists.
pub(crate) fn require(program: &str, package: &str) -> Result<()> {
    let found = if program.starts_with('/') {
        Path::new(program).exists()
    } else {
        std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
            .unwrap_or(false)
    };
    if found {
        Ok(())
    } else {
        Err(HarnessError::MissingTool {
            program: program.to_owned(),
            package: package.to_owned(),
        })
    }
}

/// Runs `command` to completion and fails unless it exits with 0.
pub(crate) fn run(command: &mut Command) -> Result<Output> {
    let shown = format!("{command:?}");
    let output = command.output().map_err(|source| HarnessError::Io {
        what: format!("running {shown}"),
        source,
    })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(HarnessError::Command {
            command: shown,
            detail: describe(&output),
        })
    }
}

/// Exit status and output of a finished command, for an error message.
pub(crate) fn describe(output: &Output) -> String {
    format!(
        "{}; stdout: {}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    )
}

/// Whether this process runs as root (the owner of `/proc/self` is the effective user).
pub(crate) fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|meta| meta.uid() == 0)
        .unwrap_or(false)
}
