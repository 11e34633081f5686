//! The `s3` publisher: parallel uploads (multipart for large files) with the `rust-s3`
//! crate, the replace rule, an expiry, and a check of every object against the manifest.
//!
//! Each file is read once on its way up and the manifest's SHA-256 comes from the bytes
//! sent: a single PUT carries it as `x-amz-checksum-sha256` for the server to check, a
//! part is signed with its own SHA-256, which the server checks (see [`put`]). Only files
//! whose key already exists are hashed before anything is sent, to tell unchanged objects
//! from conflicts. A listing at the end shows every object there with its size (and its
//! ETag, where the server lists them) before the manifest goes up, last.

mod client;
mod digest;
mod expiry;
mod list;
mod put;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use gate_core::traits::ArtifactPublisher;
use gate_core::{Error, Result, StageContext};
use tokio_util::sync::CancellationToken;

use super::{PUBLISHED_MANIFEST, Published, stage_source};
use crate::config::S3Config;
use crate::manifest::{Manifest, ManifestEntry, walk};
use crate::retry::{Policy, retry};
use client::{bucket, failure};
use expiry::{Expiry, set_expiry, with_expires};
use list::{ETags, Objects, list};
use put::{Local, Plan, Sent, send};

/// The registry name of the S3 publisher.
pub const S3: &str = "s3";

/// Parts of one large file in flight at once.
const PARTS_AT_ONCE: usize = 4;

/// Publishes a directory to an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Publisher {
    config: S3Config,
}

impl S3Publisher {
    /// A publisher for `config` (which must name a `source`).
    pub fn new(config: S3Config) -> Self {
        Self { config }
    }
}

#[async_trait]
impl ArtifactPublisher for S3Publisher {
    async fn publish(&self, cx: &StageContext) -> Result<()> {
        let source = self
            .config
            .source
            .as_deref()
            .ok_or_else(|| Error::backend(S3, "no `source` to publish is configured"))?;
        let dir = stage_source(cx, S3, source, self.config.on).await?;
        let prefix = normalize_prefix(&self.config.prefix);
        let published = upload_dir(
            &self.config,
            &dir,
            &prefix,
            self.config.expiry_days,
            &cx.cancel,
        )
        .await?;
        published.record(cx, S3)
    }
}

/// `prefix` without a leading `/` and with a trailing one (empty stays empty).
pub fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}/")
    }
}

/// Uploads every file of `dir` under `prefix`, then the manifest; verifies every object.
pub async fn upload_dir(
    config: &S3Config,
    dir: &Path,
    prefix: &str,
    expiry_days: Option<u32>,
    cancel: &CancellationToken,
) -> Result<Published> {
    let bucket = bucket(config)?;
    let policy = Policy {
        tries: config.tries,
        backoff: Duration::from_millis(config.backoff_ms),
    };
    let plan = Plan {
        part_size: config.part_size_mb.max(5) * 1024 * 1024,
        threshold: config.multipart_threshold_mb.max(5) * 1024 * 1024,
        parts_at_once: PARTS_AT_ONCE,
        policy,
    };
    let files = local_files(dir, prefix).await?;

    let expiry = match expiry_days {
        Some(days) => Some(set_expiry(&bucket, prefix, days, policy, cancel).await),
        None => None,
    };
    let put_bucket = match (&expiry, expiry_days) {
        (Some(Expiry::PerObject), Some(days)) => with_expires(&bucket, days)?,
        _ => bucket.clone(),
    };

    let existing = list(&bucket, prefix, ETags::Fetch, policy, cancel).await?;
    let (unchanged, todo) =
        sort_out(config, &files, &existing, plan.part_size, plan.threshold).await?;

    // Each upload is a task of its own, so that the hashing of the request bodies spreads
    // over the runtime's threads; tasks still running when this returns early are aborted.
    let shared: Arc<s3::Bucket> = Arc::from(put_bucket);
    let sent: Vec<Sent> = futures_util::stream::iter(todo.iter().cloned().map(|file| {
        let (bucket, cancel) = (Arc::clone(&shared), cancel.clone());
        Aborting(tokio::spawn(async move {
            send(&bucket, &file, plan, &cancel).await
        }))
    }))
    .buffer_unordered(config.parallel.max(1))
    .map(|joined| {
        joined
            .map_err(|e| Error::backend(S3, format!("an upload task failed: {e}")))
            .and_then(|sent| sent)
    })
    .try_collect()
    .await?;

    // Every object is there, as sent (or as it was), before the manifest goes up.
    let mut expected: Vec<(ManifestEntry, String)> = unchanged;
    expected.extend(sent.into_iter().map(|s| (s.entry, s.etag)));
    expected.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    let now = list(&bucket, prefix, ETags::AsListed, policy, cancel).await?;
    verify(prefix, &expected, &now)?;
    let manifest = Manifest {
        files: expected.into_iter().map(|(entry, _)| entry).collect(),
    };
    let manifest_key = format!("{prefix}{PUBLISHED_MANIFEST}");
    let json = manifest.to_json();
    retry(policy, cancel, "uploading the manifest", || {
        let (bucket, key, json) = (&shared, &manifest_key, &json);
        async move {
            bucket
                .put_object_with_content_type(key, json, "application/json")
                .await
                .map(|_| ())
                .map_err(|e| failure(&format!("uploading {key}"), e))
        }
    })
    .await?;

    let base = match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => bucket.url(),
    };
    let mut urls: Vec<String> = manifest
        .files
        .iter()
        .map(|f| format!("{base}/{prefix}{}", f.path))
        .collect();
    urls.push(format!("{base}/{manifest_key}"));
    Ok(Published {
        destination: format!("s3://{}/{prefix}", config.bucket),
        uploaded: todo.len(),
        unchanged: manifest.files.len() - todo.len(),
        expiry: expiry.map(|e| e.describe(expiry_days.unwrap_or_default())),
        urls,
    })
}

/// Every regular file under `dir` (links are not followed), with its key and size.
async fn local_files(dir: &Path, prefix: &str) -> Result<Vec<Local>> {
    let (dir, prefix) = (dir.to_owned(), prefix.to_owned());
    tokio::task::spawn_blocking(move || {
        walk(&dir)?
            .into_iter()
            .map(|(relative, path)| {
                let size = std::fs::metadata(&path)
                    .map_err(|e| Error::io("reading", &path, e))?
                    .len();
                Ok(Local {
                    key: format!("{prefix}{relative}"),
                    relative,
                    path,
                    size,
                })
            })
            .collect()
    })
    .await
    .map_err(|e| Error::backend(S3, format!("listing the source failed: {e}")))?
}

/// Files whose key exists already: the same content is left alone (kept for the manifest
/// with its ETag), other content is a conflict unless `replace`. Returns those unchanged
/// and the files to send; refuses before anything is sent when there are conflicts.
async fn sort_out(
    config: &S3Config,
    files: &[Local],
    existing: &Objects,
    part_size: u64,
    threshold: u64,
) -> Result<(Vec<(ManifestEntry, String)>, Vec<Local>)> {
    let present: Vec<(Local, u64, String)> = files
        .iter()
        .filter_map(|f| {
            let (size, etag) = existing.get(&f.key)?;
            Some((f.clone(), *size, etag.clone()))
        })
        .collect();
    let checked: Vec<Result<(Local, ManifestEntry, bool, String)>> =
        futures_util::stream::iter(present.into_iter().map(|(file, size, etag)| async move {
            let (path, multipart) = (file.path.clone(), file.size >= threshold);
            let found =
                tokio::task::spawn_blocking(move || digest::digests(&path, part_size, multipart))
                    .await
                    .map_err(|e| Error::backend(S3, format!("hashing failed: {e}")))??;
            let same = found.size == size && found.etags.contains(&etag);
            let entry = ManifestEntry {
                path: file.relative.clone(),
                size: found.size,
                sha256: found.sha256,
            };
            Ok((file, entry, same, etag))
        }))
        .buffer_unordered(4)
        .collect()
        .await;
    let mut unchanged = Vec::new();
    let mut replaced = std::collections::BTreeSet::new();
    let mut conflicts = Vec::new();
    for result in checked {
        let (file, entry, same, etag) = result?;
        if same {
            unchanged.push((entry, etag));
        } else if config.replace {
            replaced.insert(file.key.clone());
        } else {
            conflicts.push(file.key.clone());
        }
    }
    if !conflicts.is_empty() {
        conflicts.sort();
        return Err(Error::backend(
            S3,
            format!(
                "{} objects already exist in s3://{}/{} with other content and `replace` is false: {}",
                conflicts.len(),
                config.bucket,
                normalize_prefix(&config.prefix),
                conflicts
                    .iter()
                    .take(10)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let todo = files
        .iter()
        .filter(|f| !existing.contains_key(&f.key) || replaced.contains(&f.key))
        .cloned()
        .collect();
    Ok((unchanged, todo))
}

/// Every expected object is listed with its size, and with its ETag where the listing
/// shows one.
fn verify(prefix: &str, expected: &[(ManifestEntry, String)], now: &Objects) -> Result<()> {
    let mut wrong = Vec::new();
    for (entry, etag) in expected {
        let key = format!("{prefix}{}", entry.path);
        match now.get(&key) {
            Some((size, listed))
                if *size == entry.size
                    && (listed.is_empty() || etag.is_empty() || listed == etag) => {}
            Some((size, listed)) => wrong.push(format!(
                "{key} ({size} bytes, ETag {listed}; expected {} bytes, ETag {etag})",
                entry.size
            )),
            None => wrong.push(format!("{key} (missing)")),
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(Error::backend(
            S3,
            format!(
                "the upload does not match the manifest: {}",
                wrong.join(", ")
            ),
        ))
    }
}

/// A spawned task, aborted when dropped before it is done.
struct Aborting<T>(tokio::task::JoinHandle<T>);

impl<T> Future for Aborting<T> {
    type Output = std::result::Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for Aborting<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
