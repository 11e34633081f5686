//! The plain archiver: copies configured paths from every host into
//! `artifacts/<host>/` through the transport, masking known secret values in what it copied.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Deserialize;

use crate::context::StageContext;
use crate::error::{Error, Result};
use crate::fanout::all_ok;
use crate::traits::{ArchiveReport, Archiver};
use crate::transport::TransportExt;

/// The registry name of the plain archiver.
pub const PLAIN: &str = "plain";

/// `[archiver]` with `backend = "plain"`: copies through the transport, uncapped (the CLI
/// defaults to the streamed archiver of gate-artifacts).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainArchiverConfig {
    /// Paths on each host to copy (absolute, or relative to the host's home). Default: none,
    /// which archives only gate's own logs and the results.
    #[serde(default)]
    pub paths: Vec<String>,
}

/// Copies [`PlainArchiverConfig::paths`] from every host.
#[derive(Debug, Clone)]
pub struct PlainArchiver {
    config: PlainArchiverConfig,
}

impl PlainArchiver {
    /// An archiver for `config`.
    pub fn new(config: PlainArchiverConfig) -> Self {
        Self { config }
    }
}

/// `remote` as a relative path under a host's artifact folder (`/var/log` → `var/log`).
fn local_name(remote: &str) -> PathBuf {
    remote
        .split('/')
        .filter(|part| !part.is_empty() && *part != "." && *part != "..")
        .collect()
}

#[async_trait]
impl Archiver for PlainArchiver {
    async fn archive(&self, cx: &StageContext) -> Result<ArchiveReport> {
        let reports = cx
            .on_hosts(&cx.transports, |transport, hio| async move {
                let host = transport.host().name.clone();
                let into = cx.artifacts_subdir(&host)?;
                let mut report = ArchiveReport::default();
                for remote in &self.config.paths {
                    let exists = transport
                        .exec(
                            &crate::Command::new("test").arg("-e").arg(remote),
                            &hio.io(),
                        )
                        .await?;
                    if !exists.status.success() {
                        report.missing.push(format!("{host}:{remote}"));
                        continue;
                    }
                    let target = into.join(local_name(remote));
                    transport.download(remote, &target).await?;
                    let (files, bytes) = redact_tree(&target)?;
                    report.files += files;
                    report.bytes += bytes;
                }
                // Make sure the host is still answering after the copies.
                transport
                    .run(&crate::Command::new("true"), &hio.io())
                    .await?;
                Ok(report)
            })
            .await;
        let mut total = ArchiveReport::default();
        for report in all_ok(reports)? {
            total.files += report.files;
            total.bytes += report.bytes;
            total.missing.extend(report.missing);
        }
        for missing in &total.missing {
            tracing::warn!("archive: {missing} does not exist; skipped");
        }
        Ok(total)
    }
}

/// Masks known secret values in every regular file under `path` (never following links);
/// returns the number of files and bytes.
pub fn redact_tree(path: &Path) -> Result<(u64, u64)> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io("reading", path, e))?;
    if meta.is_dir() {
        let mut totals = (0, 0);
        for entry in std::fs::read_dir(path).map_err(|e| Error::io("listing", path, e))? {
            let entry = entry.map_err(|e| Error::io("listing", path, e))?;
            let (files, bytes) = redact_tree(&entry.path())?;
            totals = (totals.0 + files, totals.1 + bytes);
        }
        Ok(totals)
    } else if meta.is_file() {
        let content = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
        if let Some(masked) = crate::secret::redact_bytes(&content) {
            std::fs::write(path, &masked).map_err(|e| Error::io("writing", path, e))?;
        }
        Ok((1, meta.len()))
    } else {
        Ok((0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names_never_escape_the_host_folder() {
        assert_eq!(local_name("/var/log"), PathBuf::from("var/log"));
        assert_eq!(local_name("../../etc/passwd"), PathBuf::from("etc/passwd"));
        assert_eq!(local_name("logs/./x"), PathBuf::from("logs/x"));
    }
}
