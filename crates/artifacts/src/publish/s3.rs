//! The `s3` publisher: parallel uploads (multipart for large files) with the `rust-s3`
//! crate, the replace rule, an expiry, and a check of every object against the manifest.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use gate_core::traits::ArtifactPublisher;
use gate_core::{Error, Result, StageContext};
use s3::Bucket;
use s3::error::S3Error;
use tokio_util::sync::CancellationToken;

use super::s3_client::{bucket, failure, short};
use super::{PUBLISHED_MANIFEST, Published, manifest_of, stage_source};
use crate::config::S3Config;
use crate::manifest::Manifest;
use crate::retry::{Policy, retry};

/// The registry name of the S3 publisher.
pub const S3: &str = "s3";

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

/// A file to upload, with the ETag S3 will give it.
#[derive(Debug, Clone)]
struct Upload {
    path: PathBuf,
    key: String,
    size: u64,
    /// The ETags S3 may report: the MD5 of the whole, and for multipart uploads the MD5
    /// of the parts' MD5s with the part count.
    etags: Vec<String>,
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
    let manifest = manifest_of(dir.to_owned()).await?;
    let part_size = config.part_size_mb.max(5) * 1024 * 1024;
    let threshold = config.multipart_threshold_mb.max(5) * 1024 * 1024;
    let all = etags_of(dir, &manifest, prefix, part_size, threshold).await?;

    let expiry = match expiry_days {
        Some(days) => Some(set_expiry(&bucket, prefix, days, policy, cancel).await),
        None => None,
    };
    let put_bucket = match (&expiry, expiry_days) {
        (Some(Expiry::PerObject), Some(days)) => with_expires(&bucket, days)?,
        _ => bucket.clone(),
    };

    let existing = list(&bucket, prefix, policy, cancel).await?;
    let mut conflicts = Vec::new();
    let mut todo = Vec::new();
    let mut unchanged = 0;
    for upload in all.iter().cloned() {
        match existing.get(&upload.key) {
            Some((size, etag)) if *size == upload.size && upload.etags.contains(etag) => {
                unchanged += 1;
            }
            Some(_) if !config.replace => conflicts.push(upload.key.clone()),
            _ => todo.push(upload),
        }
    }
    if !conflicts.is_empty() {
        return Err(Error::backend(
            S3,
            format!(
                "{} objects already exist in s3://{}/{prefix} with other content and `replace` is false: {}",
                conflicts.len(),
                config.bucket,
                conflicts
                    .iter()
                    .take(10)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }

    let uploaded = todo.len();
    let put_ref: &Bucket = &put_bucket;
    let results: Vec<Result<()>> =
        futures_util::stream::iter(todo.into_iter().map(|upload| async move {
            put_file(put_ref, &upload, part_size, threshold, policy, cancel).await
        }))
        .buffer_unordered(config.parallel.max(1))
        .collect()
        .await;
    for result in results {
        result?;
    }

    // Verify every object against the manifest before the manifest itself goes up.
    let now = list(&bucket, prefix, policy, cancel).await?;
    let mut wrong = Vec::new();
    for upload in &all {
        match now.get(&upload.key) {
            Some((size, etag)) if *size == upload.size && upload.etags.contains(etag) => {}
            Some((size, etag)) => wrong.push(format!(
                "{} ({size} bytes, ETag {etag}; expected {} bytes, {})",
                upload.key,
                upload.size,
                upload.etags.join(" or ")
            )),
            None => wrong.push(format!("{} (missing)", upload.key)),
        }
    }
    if !wrong.is_empty() {
        return Err(Error::backend(
            S3,
            format!(
                "the upload does not match the manifest: {}",
                wrong.join(", ")
            ),
        ));
    }
    let manifest_key = format!("{prefix}{PUBLISHED_MANIFEST}");
    let json = manifest.to_json();
    retry(policy, cancel, "uploading the manifest", || {
        let (bucket, key, json) = (&put_bucket, &manifest_key, &json);
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
    let mut urls: Vec<String> = all.iter().map(|u| format!("{base}/{}", u.key)).collect();
    urls.push(format!("{base}/{manifest_key}"));
    Ok(Published {
        destination: format!("s3://{}/{prefix}", config.bucket),
        uploaded,
        unchanged,
        expiry: expiry.map(|e| e.describe(expiry_days.unwrap_or_default())),
        urls,
    })
}

/// How objects expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// A lifecycle rule on the prefix deletes them.
    Lifecycle,
    /// The server has no lifecycle rules: each object carries an `Expires` time.
    PerObject,
}

impl Expiry {
    fn describe(self, days: u32) -> String {
        match self {
            Expiry::Lifecycle => format!("lifecycle rule: deleted after {days} days"),
            Expiry::PerObject => format!("Expires set {days} days ahead on each object"),
        }
    }
}

/// Adds (or updates) a lifecycle rule `gate:<prefix>` expiring the prefix after `days`,
/// keeping the bucket's other rules; falls back to per-object expiry where the server does
/// not support lifecycle rules.
async fn set_expiry(
    bucket: &Bucket,
    prefix: &str,
    days: u32,
    policy: Policy,
    cancel: &CancellationToken,
) -> Expiry {
    use s3::serde_types::{
        BucketLifecycleConfiguration, Expiration, LifecycleFilter, LifecycleRule,
    };
    let id = format!("gate:{prefix}");
    let mut rules = match bucket.get_bucket_lifecycle().await {
        Ok(current) => current.rules,
        Err(S3Error::HttpFailWithBody(404, _)) => Vec::new(),
        Err(e) => {
            tracing::info!(
                "s3: no lifecycle rules on this server ({}); expiry per object",
                short(&e)
            );
            return Expiry::PerObject;
        }
    };
    rules.retain(|r| r.id.as_deref() != Some(id.as_str()));
    rules.push(
        LifecycleRule::builder("Enabled")
            .id(&id)
            .filter(LifecycleFilter::new(
                None,
                None,
                None,
                Some(prefix.to_owned()),
                None,
            ))
            .expiration(Expiration::new(None, Some(days), None))
            .build(),
    );
    let config = BucketLifecycleConfiguration::new(rules);
    let put = retry(policy, cancel, "setting the lifecycle rule", || {
        let config = config.clone();
        async move {
            bucket
                .put_bucket_lifecycle(config)
                .await
                .map(|_| ())
                .map_err(|e| failure("setting the lifecycle rule", e))
        }
    })
    .await;
    match put {
        Ok(()) => Expiry::Lifecycle,
        Err(e) => {
            tracing::info!("s3: the lifecycle rule was refused ({e}); expiry per object");
            Expiry::PerObject
        }
    }
}

/// `bucket` sending an `Expires` header `days` ahead with every upload.
fn with_expires(bucket: &Bucket, days: u32) -> Result<Box<Bucket>> {
    let at = time::OffsetDateTime::now_utc() + time::Duration::days(i64::from(days));
    let value = at
        .format(&time::format_description::well_known::Rfc2822)
        .map_err(|e| Error::backend(S3, format!("formatting the expiry time: {e}")))?;
    let mut headers = http::HeaderMap::new();
    let value = value
        .replace("+0000", "GMT")
        .parse()
        .map_err(|e| Error::backend(S3, format!("the expiry header: {e}")))?;
    headers.insert("expires", value);
    bucket
        .with_extra_headers(headers)
        .map(Box::new)
        .map_err(|e| Error::backend(S3, format!("the expiry header: {e}")))
}

/// The objects under `prefix`: key → (size, ETag without quotes).
async fn list(
    bucket: &Bucket,
    prefix: &str,
    policy: Policy,
    cancel: &CancellationToken,
) -> Result<BTreeMap<String, (u64, String)>> {
    let pages = retry(policy, cancel, "listing the bucket", || async {
        bucket
            .list(prefix.to_owned(), None)
            .await
            .map_err(|e| failure(&format!("listing s3://{}/{prefix}", bucket.name()), e))
    })
    .await?;
    let mut objects: BTreeMap<String, (u64, String)> = pages
        .into_iter()
        .flat_map(|page| page.contents)
        .map(|o| {
            let etag = o.e_tag.unwrap_or_default().trim_matches('"').to_owned();
            (o.key, (o.size, etag))
        })
        .collect();
    // Some servers list no ETags: ask for each object's own.
    let blank: Vec<String> = objects
        .iter()
        .filter(|(_, (_, etag))| etag.is_empty())
        .map(|(key, _)| key.clone())
        .collect();
    let heads: Vec<Result<(String, String)>> =
        futures_util::stream::iter(blank.into_iter().map(|key| async move {
            let etag = retry(policy, cancel, "reading an object's ETag", || async {
                bucket
                    .head_object(&key)
                    .await
                    .map(|(head, _)| head.e_tag.unwrap_or_default())
                    .map_err(|e| failure(&format!("reading {key}"), e))
            })
            .await?;
            Ok((key, etag.trim_matches('"').to_owned()))
        }))
        .buffer_unordered(16)
        .collect()
        .await;
    for head in heads {
        let (key, etag) = head?;
        if let Some(entry) = objects.get_mut(&key) {
            entry.1 = etag;
        }
    }
    Ok(objects)
}

/// One file up: a single PUT, or a multipart upload of `part_size` parts from `threshold`
/// up (completed only when every part is in, so no reader ever sees part of it).
async fn put_file(
    bucket: &Bucket,
    upload: &Upload,
    part_size: u64,
    threshold: u64,
    policy: Policy,
    cancel: &CancellationToken,
) -> Result<()> {
    if cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    let key = &upload.key;
    let content_type = content_type(key);
    if upload.size < threshold {
        let data = read_range(&upload.path, 0, upload.size).await?;
        return retry(policy, cancel, &format!("uploading {key}"), || {
            let data = &data;
            async move {
                bucket
                    .put_object_with_content_type(key, data, content_type)
                    .await
                    .map(|_| ())
                    .map_err(|e| failure(&format!("uploading {key}"), e))
            }
        })
        .await;
    }
    let started = retry(
        policy,
        cancel,
        &format!("starting the upload of {key}"),
        || async {
            bucket
                .initiate_multipart_upload(key, content_type)
                .await
                .map_err(|e| failure(&format!("starting the upload of {key}"), e))
        },
    )
    .await?;
    let upload_id = started.upload_id;
    let parts = upload.size.div_ceil(part_size);
    let sent: Vec<Result<s3::serde_types::Part>> =
        futures_util::stream::iter((0..parts).map(|n| {
            let upload_id = &upload_id;
            async move {
                let offset = n * part_size;
                let len = part_size.min(upload.size - offset);
                let chunk = read_range(&upload.path, offset, len).await?;
                let number = (n + 1) as u32;
                retry(
                    policy,
                    cancel,
                    &format!("uploading part {number} of {key}"),
                    || {
                        let chunk = chunk.clone();
                        async move {
                            bucket
                                .put_multipart_chunk(chunk, key, number, upload_id, content_type)
                                .await
                                .map_err(|e| {
                                    failure(&format!("uploading part {number} of {key}"), e)
                                })
                        }
                    },
                )
                .await
            }
        }))
        .buffered(4)
        .collect()
        .await;
    let mut done = Vec::with_capacity(sent.len());
    for part in sent {
        match part {
            Ok(part) => done.push(part),
            Err(e) => {
                let _ = bucket.abort_upload(key, &upload_id).await;
                return Err(e);
            }
        }
    }
    let completed = retry(
        policy,
        cancel,
        &format!("completing the upload of {key}"),
        || {
            let done = done.clone();
            let upload_id = &upload_id;
            async move {
                bucket
                    .complete_multipart_upload(key, upload_id, done)
                    .await
                    .map(|_| ())
                    .map_err(|e| failure(&format!("completing the upload of {key}"), e))
            }
        },
    )
    .await;
    if completed.is_err() {
        let _ = bucket.abort_upload(key, &upload_id).await;
    }
    completed
}

async fn read_range(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path).map_err(|e| Error::io("reading", &path, e))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io("reading", &path, e))?;
        let mut buf = Vec::with_capacity(len as usize);
        file.take(len)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("reading", &path, e))?;
        Ok(buf)
    })
    .await
    .map_err(|e| Error::backend(S3, format!("reading failed: {e}")))?
}

/// The uploads of `manifest` with their expected ETags, computed on the blocking pool.
async fn etags_of(
    dir: &Path,
    manifest: &Manifest,
    prefix: &str,
    part_size: u64,
    threshold: u64,
) -> Result<Vec<Upload>> {
    let files: Vec<(PathBuf, String, u64)> = manifest
        .files
        .iter()
        .map(|f| (dir.join(&f.path), format!("{prefix}{}", f.path), f.size))
        .collect();
    let files = Arc::new(files);
    tokio::task::spawn_blocking(move || {
        files
            .iter()
            .map(|(path, key, size)| {
                Ok(Upload {
                    path: path.clone(),
                    key: key.clone(),
                    size: *size,
                    etags: etags(path, part_size, *size >= threshold)?,
                })
            })
            .collect()
    })
    .await
    .map_err(|e| Error::backend(S3, format!("hashing failed: {e}")))?
}

fn etags(path: &Path, part_size: u64, multipart: bool) -> Result<Vec<String>> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io("reading", path, e))?;
    let mut whole = md5::Context::new();
    let mut part = md5::Context::new();
    let mut part_digests = Vec::new();
    let mut in_part = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        let mut chunk = &buf[..n];
        whole.consume(chunk);
        while !chunk.is_empty() {
            let take = ((part_size - in_part) as usize).min(chunk.len());
            part.consume(&chunk[..take]);
            in_part += take as u64;
            chunk = &chunk[take..];
            if in_part == part_size {
                part_digests.extend_from_slice(
                    &std::mem::replace(&mut part, md5::Context::new())
                        .finalize()
                        .0,
                );
                in_part = 0;
            }
        }
    }
    let mut etags = vec![format!("{:x}", whole.finalize())];
    if multipart {
        let mut count = part_digests.len() / 16;
        if in_part > 0 {
            part_digests.extend_from_slice(&part.finalize().0);
            count += 1;
        }
        etags.push(format!("{:x}-{count}", md5::compute(&part_digests)));
    }
    Ok(etags)
}

fn content_type(key: &str) -> &'static str {
    let ext = key.rsplit('.').next().unwrap_or_default();
    match ext {
        "html" | "htm" => "text/html; charset=utf-8",
        "json" => "application/json",
        "xml" => "application/xml",
        "txt" | "log" | "conf" | "cfg" | "yml" | "yaml" | "ini" => "text/plain; charset=utf-8",
        "gz" | "tgz" => "application/gzip",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_etags_are_the_md5_of_part_md5s_with_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 11]).unwrap();
        let tags = etags(&path, 5, true).unwrap();
        let parts: Vec<u8> = [&[7u8; 5][..], &[7u8; 5][..], &[7u8; 1][..]]
            .iter()
            .flat_map(|p| md5::compute(p).0)
            .collect();
        assert_eq!(tags[0], format!("{:x}", md5::compute([7u8; 11])));
        assert_eq!(tags[1], format!("{:x}-3", md5::compute(&parts)));
        assert_eq!(normalize_prefix("/a/b"), "a/b/");
        assert_eq!(normalize_prefix(""), "");
    }
}
