//! The S3 client of the `s3` publisher: the bucket handle with its credentials, and S3
//! errors as retryable or final failures that never show the secret.

use gate_core::{Error, Result, Secret};
use s3::Bucket;
use s3::error::S3Error;

use super::S3;
use crate::config::S3Config;
use crate::retry::Failure;

/// The bucket client for `config`: credentials from config, else the usual AWS variables
/// (registered as secrets, so they are masked wherever gate writes).
pub(crate) fn bucket(config: &S3Config) -> Result<Box<Bucket>> {
    let from_env = |var: &str| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Secret::new)
    };
    let access = config
        .access_key
        .clone()
        .or_else(|| from_env("AWS_ACCESS_KEY_ID"));
    let secret = config
        .secret_key
        .clone()
        .or_else(|| from_env("AWS_SECRET_ACCESS_KEY"));
    let token = config
        .session_token
        .clone()
        .or_else(|| from_env("AWS_SESSION_TOKEN"));
    let (Some(access), Some(secret)) = (access, secret) else {
        return Err(Error::backend(
            S3,
            "no credentials: set access_key and secret_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ));
    };
    let credentials = s3::creds::Credentials::new(
        Some(access.expose()),
        Some(secret.expose()),
        None,
        token.as_ref().map(Secret::expose),
        None,
    )
    .map_err(|e| Error::backend(S3, format!("credentials: {e}")))?;
    let region_name = config
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .unwrap_or_else(|| "us-east-1".to_owned());
    let region = match &config.endpoint {
        Some(endpoint) => s3::Region::Custom {
            region: region_name,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
        },
        None => region_name
            .parse()
            .map_err(|e| Error::backend(S3, format!("region `{region_name}`: {e}")))?,
    };
    let bucket = Bucket::new(&config.bucket, region, credentials)
        .map_err(|e| Error::backend(S3, format!("bucket `{}`: {}", config.bucket, short(&e))))?;
    Ok(if config.endpoint.is_some() {
        bucket.with_path_style()
    } else {
        bucket
    })
}

/// An S3 error as a try's failure: 5xx, 429 and network trouble are transient; the rest
/// (refused credentials, a missing bucket) is not. The message never holds the secret.
pub(crate) fn failure(what: &str, e: S3Error) -> Failure {
    let transient = match &e {
        S3Error::HttpFailWithBody(status, _) => *status >= 500 || *status == 429,
        S3Error::Reqwest(_) | S3Error::Io(_) => true,
        _ => false,
    };
    let message = match &e {
        S3Error::HttpFailWithBody(403, body) => format!(
            "{what}: the server refused the credentials (403{})",
            code_of(body).map(|c| format!(" {c}")).unwrap_or_default()
        ),
        _ => format!("{what}: {}", short(&e)),
    };
    let error = Error::backend(S3, gate_core::secret::redact(&message).into_owned());
    if transient {
        Failure::Transient(error)
    } else {
        Failure::Fatal(error)
    }
}

/// The `<Code>` of an S3 error body.
fn code_of(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + "<Code>".len();
    let end = body[start..].find("</Code>")? + start;
    Some(&body[start..end])
}

pub(crate) fn short(e: &S3Error) -> String {
    match e {
        S3Error::HttpFailWithBody(status, body) => match code_of(body) {
            Some(code) => format!("HTTP {status} {code}"),
            None => format!("HTTP {status}"),
        },
        other => other.to_string(),
    }
}
