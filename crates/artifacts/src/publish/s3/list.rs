//! What a prefix holds: every object's size and ETag.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use gate_core::Result;
use s3::Bucket;
use tokio_util::sync::CancellationToken;

use super::client::failure;
use crate::retry::{Policy, retry};

/// Whether to ask for the ETag of objects the listing shows without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ETags {
    /// One HEAD per such object (some servers, s3s-fs among them, list no ETags).
    Fetch,
    /// Sizes (and whatever ETags the listing has) are enough.
    AsListed,
}

/// An object: its size and ETag (without quotes; empty when not known).
pub(crate) type Objects = BTreeMap<String, (u64, String)>;

/// The objects under `prefix`.
pub(crate) async fn list(
    bucket: &Bucket,
    prefix: &str,
    etags: ETags,
    policy: Policy,
    cancel: &CancellationToken,
) -> Result<Objects> {
    let pages = retry(policy, cancel, "listing the bucket", || async {
        bucket
            .list(prefix.to_owned(), None)
            .await
            .map_err(|e| failure(&format!("listing s3://{}/{prefix}", bucket.name()), e))
    })
    .await?;
    let mut objects: Objects = pages
        .into_iter()
        .flat_map(|page| page.contents)
        .map(|o| {
            let etag = unquote(&o.e_tag.unwrap_or_default()).to_owned();
            (o.key, (o.size, etag))
        })
        .collect();
    if etags == ETags::AsListed {
        return Ok(objects);
    }
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
            Ok((key, unquote(&etag).to_owned()))
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

/// An ETag without its quotes (also as XML writes them).
pub(crate) fn unquote(etag: &str) -> &str {
    etag.trim()
        .trim_start_matches("&quot;")
        .trim_end_matches("&quot;")
        .trim_matches('"')
}
