//! gate-artifacts: the run's artifacts, gathered and shipped.
//!
//! - [`StreamedArchiver`] (`[archiver] backend = "streamed"`): one tar stream per host over
//!   one SSH channel, compressed on the host (zstd where the host and this machine have it,
//!   else gzip), all hosts at once, unpacked into `artifacts/<host>/` with a size limit per
//!   host, secrets left out (sshd host keys, private keys, `*secrets*.yml`) and
//!   known secret values masked; links are listed, never followed; missing and unreadable
//!   paths are listed, not fatal. Writes `artifacts/index.html`, `artifacts/manifest.json`
//!   (path, size, SHA-256) and `artifacts/archive.json`; with `publish_logs` it also
//!   uploads the lot to S3 with a 30-day expiry.
//! - [`RepoServerPublisher`] (`[publisher] backend = "repo-server"`): SFTP or rsync over
//!   SSH to a server whose host key is pinned; temporary names renamed into place (what an
//!   interrupted publish leaves under them is removed by the next); a lock per series,
//!   taken over by a rerun of the same run; `replace = false` refuses to overwrite.
//! - [`S3Publisher`] (`[publisher] backend = "s3"`): parallel and multipart uploads with
//!   `rust-s3`, each file read once and its SHA-256 checked by the server, an expiry, the
//!   same replace rule.
//!
//! Both publishers upload a manifest last, after checking every file against it, retry
//! transient failures with backoff, and record the public URLs in
//! `artifacts/published-<backend>.json`.
//!
//! ```toml
//! [archiver]
//! backend = "streamed"
//! paths = ["/var/log", "/etc/openstack_deploy", "/openstack/log"]
//! max_host_mb = 200
//!
//! [publisher]
//! backend = "s3"
//! source = "/var/www/repo"          # on the primary host
//! bucket = "gate-artifacts"
//! prefix = "series-a"
//! endpoint = "https://s3.example.com"
//! access_key = { env = "S3_KEY" }
//! secret_key = { env = "S3_SECRET" }
//! ```
//!
//! ```
//! let mut registry = gate_core::Registry::new();
//! gate_artifacts::register(&mut registry);
//! ```
#![deny(missing_docs)]

pub mod archive;
pub mod config;
pub mod manifest;
pub mod publish;
pub mod retry;

use std::sync::Arc;

use gate_core::Registry;

pub use archive::{STREAMED, StreamedArchiver};
pub use config::{RepoServerConfig, S3Config, StreamedArchiverConfig};
pub use manifest::{Manifest, ManifestEntry};
pub use publish::repo_server::{REPO_SERVER, RepoServerPublisher};
pub use publish::s3::{S3, S3Publisher};

/// Registers the `streamed` archiver and the `repo-server` and `s3` publishers.
pub fn register(registry: &mut Registry) {
    registry.add_archiver(STREAMED, |section| {
        let config: StreamedArchiverConfig = section.parse()?;
        if let Some(logs) = &config.publish_logs
            && logs.source.is_some()
        {
            return Err(section.error(
                "publish_logs.source",
                "publish_logs publishes the artifacts dir; remove `source`",
            ));
        }
        Ok(Arc::new(StreamedArchiver::new(config)))
    });
    registry.add_publisher(REPO_SERVER, |section| {
        let config: RepoServerConfig = section.parse()?;
        if config.series.is_empty() || config.series.contains('/') || config.series.starts_with('.')
        {
            return Err(section.error(
                "series",
                "must be a plain name (no `/`, not starting with `.`)",
            ));
        }
        Ok(Arc::new(RepoServerPublisher::new(config)))
    });
    registry.add_publisher(S3, |section| {
        let config: S3Config = section.parse()?;
        if config.source.is_none() {
            return Err(section.error("source", "required: the directory to publish"));
        }
        if config.part_size_mb < 5 {
            return Err(section.error("part_size_mb", "S3 parts are at least 5 MB"));
        }
        Ok(Arc::new(S3Publisher::new(config)))
    });
}
