//! The archiver's `publish_logs` setting: the run's artifacts dir (hosts' files, results,
//! gate's logs, `index.html`, `manifest.json`) to S3 under `<prefix>/<run id>/`, expiring
//! after 30 days unless configured otherwise.

use gate_core::{Error, Result, StageContext};

use super::s3::{normalize_prefix, upload_dir};
use crate::config::S3Config;

/// Days the published logs live when `expiry_days` is not set.
pub const LOGS_EXPIRY_DAYS: u32 = 30;

/// Copies gate's own logs so far into `artifacts/logs/`, secrets masked (the run's final
/// summary copies them again with the later stages).
pub fn gather_gate_logs(cx: &StageContext) -> Result<()> {
    let logs = cx.state_dir.join("logs");
    if logs.is_dir() {
        let target = cx.artifacts_dir.join("logs");
        gate_core::local::copy_tree(&logs, &target)?;
        gate_core::archive::redact_tree(&target)?;
    }
    Ok(())
}

/// Uploads the artifacts dir; the index page's URL is logged and recorded in
/// `artifacts/published-logs.json`.
pub async fn publish_run_logs(cx: &StageContext, config: &S3Config) -> Result<()> {
    if config.source.is_some() {
        return Err(Error::backend(
            "archive",
            "publish_logs publishes the artifacts dir: `source` has no place there",
        ));
    }
    let prefix = format!("{}{}/", normalize_prefix(&config.prefix), cx.run_id);
    let days = config.expiry_days.unwrap_or(LOGS_EXPIRY_DAYS);
    let published = upload_dir(config, &cx.artifacts_dir, &prefix, Some(days), &cx.cancel)
        .await
        .map_err(|e| Error::backend("archive", format!("publishing the run's logs: {e}")))?;
    if let Some(index) = published
        .urls
        .iter()
        .find(|u| u.ends_with(&format!("/{}", crate::archive::INDEX_HTML)))
    {
        tracing::info!("archive: the run's logs are at {index}");
    }
    published.record(cx, "logs")
}
