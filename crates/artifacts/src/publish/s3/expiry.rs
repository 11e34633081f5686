//! Expiry of published objects: a lifecycle rule on the prefix where the server keeps
//! them, else an `Expires` time on every object.

use gate_core::{Error, Result};
use s3::Bucket;
use s3::error::S3Error;
use tokio_util::sync::CancellationToken;

use super::S3;
use super::client::{failure, short};
use crate::retry::{Policy, retry};

/// How objects expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// A lifecycle rule on the prefix deletes them.
    Lifecycle,
    /// The server has no lifecycle rules: each object carries an `Expires` time.
    PerObject,
}

impl Expiry {
    pub(crate) fn describe(self, days: u32) -> String {
        match self {
            Expiry::Lifecycle => format!("lifecycle rule: deleted after {days} days"),
            Expiry::PerObject => format!("Expires set {days} days ahead on each object"),
        }
    }
}

/// Adds (or updates) a lifecycle rule `gate:<prefix>` expiring the prefix after `days`,
/// keeping the bucket's other rules; falls back to per-object expiry where the server does
/// not support lifecycle rules.
pub(crate) async fn set_expiry(
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
pub(crate) fn with_expires(bucket: &Bucket, days: u32) -> Result<Box<Bucket>> {
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
