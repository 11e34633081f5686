//! The `publish` stage's publishers, and what they share: taking the source directory,
//! its manifest, and the record of what was published.

pub mod logs;
pub mod repo_server;
pub mod s3;

use std::collections::BTreeMap;
use std::path::PathBuf;

use gate_core::{Error, Result, StageContext};
use serde::Serialize;

use crate::config::SourceHost;
use crate::manifest::Manifest;

/// The name of the manifest a publisher uploads last, beside the files.
pub const PUBLISHED_MANIFEST: &str = "gate-manifest.json";

/// The directory to publish, local: `source` itself, or a copy of it from the primary host
/// in the state dir.
pub async fn stage_source(
    cx: &StageContext,
    backend: &str,
    source: &str,
    on: SourceHost,
) -> Result<PathBuf> {
    let dir = match on {
        SourceHost::Local => PathBuf::from(source),
        SourceHost::Primary => {
            let staging = cx.state_dir.join("publish").join(backend);
            if staging.exists() {
                std::fs::remove_dir_all(&staging)
                    .map_err(|e| Error::io("removing", &staging, e))?;
            }
            let parent = cx.state_dir.join("publish");
            std::fs::create_dir_all(&parent).map_err(|e| Error::io("creating", &parent, e))?;
            cx.primary().download(source, &staging).await?;
            staging
        }
    };
    if !dir.is_dir() {
        return Err(Error::backend(
            backend,
            format!("the source `{source}` is not a directory"),
        ));
    }
    Ok(dir)
}

/// The manifest of `dir`.
pub async fn manifest_of(dir: PathBuf) -> Result<Manifest> {
    tokio::task::spawn_blocking(move || Manifest::of_tree(&dir, &[], &BTreeMap::new()))
        .await
        .map_err(|e| Error::backend("publish", format!("hashing failed: {e}")))?
}

/// What a publisher did: written to `artifacts/published-<backend>.json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Published {
    /// Where the files went.
    pub destination: String,
    /// Files uploaded by this run.
    pub uploaded: usize,
    /// Files that were already there with the same content.
    pub unchanged: usize,
    /// How expiry is applied, if any.
    pub expiry: Option<String>,
    /// The public URL of every file (and of the manifest, last).
    pub urls: Vec<String>,
}

impl Published {
    /// Writes the record to the artifacts dir and logs a summary.
    pub fn record(&self, cx: &StageContext, backend: &str) -> Result<()> {
        std::fs::create_dir_all(&cx.artifacts_dir)
            .map_err(|e| Error::io("creating", &cx.artifacts_dir, e))?;
        let path = cx.artifacts_dir.join(format!("published-{backend}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(self).unwrap_or_default())
            .map_err(|e| Error::io("writing", &path, e))?;
        tracing::info!(
            "{backend}: published {} files to {} ({} uploaded, {} unchanged); manifest at {}",
            self.uploaded + self.unchanged,
            self.destination,
            self.uploaded,
            self.unchanged,
            self.urls.last().map(String::as_str).unwrap_or("-")
        );
        Ok(())
    }
}
