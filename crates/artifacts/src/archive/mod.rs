//! The streamed archiver (`backend = "streamed"`): one tar stream per host over one
//! channel, all hosts at once, unpacked and checked locally.

mod index;
pub(crate) mod remote;
pub(crate) mod stream;
pub(crate) mod unpack;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use gate_core::traits::{ArchiveReport, Archiver};
use gate_core::transport::ExitStatus;
use gate_core::{Error, HostIo, Result, StageContext, Transport};
use serde::Serialize;

use crate::config::StreamedArchiverConfig;
use crate::manifest::{Manifest, ManifestEntry};
use remote::Preflight;
use stream::{Codec, Streamed, stream};
use unpack::{Rules, Unpacked};

pub use index::write_index;

/// The registry name of the streamed archiver.
pub const STREAMED: &str = "streamed";

/// The file listing what was archived from each host (beside `manifest.json`).
pub const ARCHIVE_JSON: &str = "archive.json";
/// The manifest of the artifacts dir.
pub const MANIFEST_JSON: &str = "manifest.json";
/// The browsable index of the artifacts dir.
pub const INDEX_HTML: &str = "index.html";

/// Gathers the configured paths from every host into `artifacts/<host>/`.
#[derive(Debug, Clone)]
pub struct StreamedArchiver {
    config: StreamedArchiverConfig,
}

impl StreamedArchiver {
    /// An archiver for `config`.
    pub fn new(config: StreamedArchiverConfig) -> Self {
        Self { config }
    }
}

/// What came from one host.
#[derive(Debug, Default, Clone, Serialize)]
pub struct HostArchive {
    /// The host.
    pub host: String,
    /// Configured paths that do not exist there.
    pub missing: Vec<String>,
    /// Files the login user cannot read (not archived).
    pub unreadable: Vec<String>,
    /// Symbolic links (`path -> target`): listed, never followed nor created.
    pub links: Vec<String>,
    /// Files left out (excluded names, private keys, special files).
    pub excluded: Vec<String>,
    /// Why the copy stopped at the size limit, if it did.
    pub limit_hit: Option<String>,
    /// How the stream was compressed (`zstd`, `gzip`, `none`).
    pub compression: Option<String>,
    /// Warnings of tar on the host (its last lines), if it did not exit 0.
    pub warnings: Vec<String>,
    /// Why the host's archive is incomplete, if it failed.
    pub error: Option<String>,
    /// Files kept.
    pub files: u64,
    /// Bytes kept.
    pub bytes: u64,
    /// The files kept, for the manifest (paths relative to the host's folder).
    #[serde(skip)]
    pub entries: Vec<ManifestEntry>,
}

#[async_trait]
impl Archiver for StreamedArchiver {
    async fn archive(&self, cx: &StageContext) -> Result<ArchiveReport> {
        let outcomes = cx
            .on_hosts(&cx.transports, |transport, hio| async move {
                Ok(self.host(cx, transport, hio).await)
            })
            .await;
        let mut hosts = Vec::new();
        let mut failures = Vec::new();
        for outcome in outcomes {
            match outcome.result {
                Ok((archive, error)) => {
                    failures.extend(error);
                    hosts.push(archive);
                }
                Err(e) => {
                    hosts.push(HostArchive {
                        host: outcome.host,
                        error: Some(e.to_string()),
                        ..HostArchive::default()
                    });
                    failures.push(e);
                }
            }
        }
        let report = summarize(&hosts);
        if self.config.publish_logs.is_some() {
            crate::publish::logs::gather_gate_logs(cx)?;
        }
        self.write_outputs(cx, &hosts)?;
        if let Some(target) = &self.config.publish_logs {
            crate::publish::logs::publish_run_logs(cx, target).await?;
        }
        match failures.len() {
            0 => Ok(report),
            1 => Err(failures.remove(0)),
            _ => Err(Error::Hosts {
                total: cx.transports.len(),
                failures,
            }),
        }
    }
}

impl StreamedArchiver {
    /// Archives one host; the error (if any) comes beside what was kept.
    async fn host(
        &self,
        cx: &StageContext,
        transport: Arc<dyn Transport>,
        hio: HostIo,
    ) -> (HostArchive, Option<Error>) {
        let name = transport.host().name.clone();
        let mut archive = HostArchive {
            host: name.clone(),
            ..HostArchive::default()
        };
        if self.config.paths.is_empty() {
            return (archive, None);
        }
        let error = self.copy(cx, &transport, &hio, &mut archive).await.err();
        for line in archive
            .missing
            .iter()
            .map(|p| format!("{p} does not exist; skipped"))
            .chain(
                archive
                    .unreadable
                    .iter()
                    .map(|p| format!("{p} is unreadable; skipped")),
            )
            .chain(
                archive
                    .limit_hit
                    .iter()
                    .map(|m| format!("size limit reached: {m}")),
            )
        {
            hio.log.note(&format!("archive: {line}"));
            tracing::warn!("archive: {name}: {line}");
        }
        if let Some(e) = &error {
            archive.error = Some(e.to_string());
        }
        (archive, error)
    }

    async fn copy(
        &self,
        cx: &StageContext,
        transport: &Arc<dyn Transport>,
        hio: &HostIo,
        archive: &mut HostArchive,
    ) -> Result<()> {
        let host = transport.host().name.clone();
        let dest = cx.artifacts_subdir(&host)?;
        let look = transport
            .exec(&remote::preflight(&self.config.paths), &hio.io())
            .await?;
        let found = Preflight::parse(&look.stdout);
        let present: Vec<String> = self
            .config
            .paths
            .iter()
            .filter(|p| !found.missing.contains(p))
            .cloned()
            .collect();
        archive.missing = found.missing;
        archive.unreadable = found.unreadable;
        if present.is_empty() {
            return Ok(());
        }
        let excludes = self.config.excludes();
        let codec = Codec::choose(self.config.compression, found.zstd, &host)?;
        archive.compression = Some(codec.name().to_owned());
        let tar = remote::tar(&present, &excludes, codec);
        let rules = Rules {
            limit: self.config.max_host_bytes(),
            exclude: excludes,
        };
        let Streamed {
            sent: streamed,
            unpacked,
            unpack_error,
        } = stream(&**transport, &tar, &hio.io(), codec, dest, rules).await?;
        absorb(archive, unpacked);
        if archive.limit_hit.is_some() {
            // The stream was cut on purpose; what fit is kept.
            return Ok(());
        }
        let out = match (streamed, unpack_error) {
            // The host or the connection failed: that is the cause.
            (Err(e), _) if !matches!(e, Error::Host { .. }) => return Err(e),
            // No tar (or no compressor) there: then the stream is empty, and that is why.
            (Ok(out), _) if matches!(out.status, ExitStatus::Code(126 | 127)) => {
                return Err(Error::Command {
                    host,
                    command: tar.to_string(),
                    status: out.status.to_string(),
                    tail: out.tail,
                });
            }
            (_, Some(e)) => {
                return Err(Error::Host {
                    host,
                    message: format!("the archive stream broke off: {e}"),
                });
            }
            (streamed, None) => streamed?,
        };
        match out.status {
            ExitStatus::Code(0) => Ok(()),
            status => {
                archive.warnings.push(format!("tar {status}"));
                archive.warnings.extend(out.tail);
                Ok(())
            }
        }
    }

    /// Writes `archive.json`, `manifest.json` and `index.html`.
    fn write_outputs(&self, cx: &StageContext, hosts: &[HostArchive]) -> Result<()> {
        std::fs::create_dir_all(&cx.artifacts_dir)
            .map_err(|e| Error::io("creating", &cx.artifacts_dir, e))?;
        let summary = cx.artifacts_dir.join(ARCHIVE_JSON);
        std::fs::write(
            &summary,
            serde_json::to_vec_pretty(hosts).unwrap_or_default(),
        )
        .map_err(|e| Error::io("writing", &summary, e))?;
        let known: BTreeMap<String, ManifestEntry> = hosts
            .iter()
            .flat_map(|h| {
                h.entries.iter().map(move |e| {
                    let path = format!("{}/{}", h.host, e.path);
                    (path.clone(), ManifestEntry { path, ..e.clone() })
                })
            })
            .collect();
        let manifest = Manifest::of_tree(&cx.artifacts_dir, &[MANIFEST_JSON, INDEX_HTML], &known)?;
        manifest.write(&cx.artifacts_dir.join(MANIFEST_JSON))?;
        write_index(cx, hosts, &manifest)
    }
}

fn absorb(archive: &mut HostArchive, unpacked: Unpacked) {
    archive.files = unpacked.files.len() as u64;
    archive.bytes = unpacked.bytes;
    archive.entries = unpacked.files;
    archive.links = unpacked.links;
    archive.excluded = unpacked.excluded;
    archive.limit_hit = unpacked.limit_hit;
}

fn summarize(hosts: &[HostArchive]) -> ArchiveReport {
    let mut report = ArchiveReport::default();
    for host in hosts {
        report.files += host.files;
        report.bytes += host.bytes;
        report
            .missing
            .extend(host.missing.iter().map(|p| format!("{}:{p}", host.host)));
    }
    report
}
