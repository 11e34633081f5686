//! One file up to S3, read once: the bytes sent are the bytes hashed for the manifest.
//!
//! A file below the multipart threshold goes up in one PUT to a URL presigned by rust-s3
//! (sent with rust-s3's own HTTP client) carrying the file's SHA-256 as a signed
//! `x-amz-checksum-sha256`: the server refuses an object that does not match the manifest,
//! and nothing is hashed twice (rust-s3's `put_object` would hash every body again, SHA-256
//! and MD5, on the client). A large file goes up in parts with rust-s3 (each part signed
//! with its SHA-256, which the server checks) and appears only when every part is in.

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt, TryStreamExt};
use gate_core::{Error, Result};
use s3::Bucket;
use s3::error::S3Error;
use s3::serde_types::Part;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::S3;
use super::client::failure;
use super::digest::base64;
use super::list::unquote;
use crate::manifest::{ManifestEntry, hex};
use crate::retry::{Failure, Policy, retry};

/// How long a presigned upload URL is valid, in seconds (it is used at once).
const PRESIGNED_SECS: u32 = 900;

/// A local file and the key it goes to.
#[derive(Debug, Clone)]
pub(crate) struct Local {
    pub path: PathBuf,
    /// The path relative to the published directory (the manifest's name for it).
    pub relative: String,
    pub key: String,
    /// Its size when listed (the bytes read are what counts).
    pub size: u64,
}

/// How files go up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub part_size: u64,
    /// Files from this size up go in parts.
    pub threshold: u64,
    /// Parts of one file in flight at once.
    pub parts_at_once: usize,
    pub policy: Policy,
}

/// A file that is up: its manifest entry and the ETag the server gave it.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub entry: ManifestEntry,
    pub etag: String,
}

/// Uploads `file`, hashing it on the way.
pub(crate) async fn send(
    bucket: &Bucket,
    file: &Local,
    plan: Plan,
    cancel: &CancellationToken,
) -> Result<Sent> {
    if cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    if file.size < plan.threshold {
        single(bucket, file, plan.policy, cancel).await
    } else {
        multipart(bucket, file, plan, cancel).await
    }
}

/// One PUT; each try reads (and hashes) the file again, so no copy of it is held between
/// tries and the checksum sent is always that of the bytes sent.
async fn single(
    bucket: &Bucket,
    file: &Local,
    policy: Policy,
    cancel: &CancellationToken,
) -> Result<Sent> {
    let key = file.key.as_str();
    let what = format!("uploading {key}");
    retry(policy, cancel, &what, || async {
        let path = file.path.clone();
        let (data, sha) = blocking(move || {
            let data = std::fs::read(&path).map_err(|e| Error::io("reading", &path, e))?;
            let sha = Sha256::digest(&data);
            Ok((data, sha))
        })
        .await
        .map_err(Failure::Fatal)?;
        let size = data.len() as u64;
        let etag = put_checked(bucket, key, data, &sha, &what).await?;
        Ok(Sent {
            entry: ManifestEntry {
                path: file.relative.clone(),
                size,
                sha256: hex(&sha),
            },
            etag,
        })
    })
    .await
}

/// PUTs `data` to `key` through a presigned URL, with `sha256` (its SHA-256) as the signed
/// `x-amz-checksum-sha256`; returns the object's ETag.
async fn put_checked(
    bucket: &Bucket,
    key: &str,
    data: Vec<u8>,
    sha256: &[u8],
    what: &str,
) -> std::result::Result<String, Failure> {
    let header = |value: &str| {
        http::HeaderValue::from_str(value)
            .map_err(|e| Failure::Fatal(Error::backend(S3, format!("a header of {key}: {e}"))))
    };
    let mut signed = http::HeaderMap::new();
    signed.insert("x-amz-checksum-sha256", header(&base64(sha256))?);
    // The bucket's own extra headers (an `Expires`) go along, unsigned.
    let mut headers = bucket.extra_headers.clone();
    headers.extend(signed.clone());
    headers.insert(http::header::CONTENT_TYPE, header(content_type(key))?);
    let url = bucket
        .presign_put(key, PRESIGNED_SECS, Some(signed), None)
        .await
        .map_err(|e| failure(what, e))?;
    // Errors are shown without the URL: it holds the access key id.
    let response = bucket
        .http_client()
        .put(url)
        .headers(headers)
        .body(data)
        .send()
        .await
        .map_err(|e| failure(what, S3Error::Reqwest(e.without_url())))?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        let body = response.text().await.unwrap_or_default();
        return Err(failure(what, S3Error::HttpFailWithBody(status, body)));
    }
    Ok(response
        .headers()
        .get(http::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(|v| unquote(v).to_owned())
        .unwrap_or_default())
}

async fn multipart(
    bucket: &Bucket,
    file: &Local,
    plan: Plan,
    cancel: &CancellationToken,
) -> Result<Sent> {
    let key = file.key.as_str();
    let content_type = content_type(key);
    let started = retry(
        plan.policy,
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
    let upload_id = started.upload_id.as_str();
    let (parts, sha) = match send_parts(bucket, file, plan, upload_id, cancel).await {
        Ok(sent) => sent,
        Err(e) => {
            let _ = bucket.abort_upload(key, upload_id).await;
            return Err(e);
        }
    };
    let completed = retry(
        plan.policy,
        cancel,
        &format!("completing the upload of {key}"),
        || {
            let parts = parts.clone();
            async move {
                bucket
                    .complete_multipart_upload(key, upload_id, parts)
                    .await
                    .map(|response| etag_in(response.as_str().unwrap_or_default()))
                    .map_err(|e| failure(&format!("completing the upload of {key}"), e))
            }
        },
    )
    .await;
    match completed {
        Ok(etag) => Ok(Sent {
            entry: ManifestEntry {
                path: file.relative.clone(),
                size: file.size,
                sha256: sha,
            },
            etag,
        }),
        Err(e) => {
            let _ = bucket.abort_upload(key, upload_id).await;
            Err(e)
        }
    }
}

/// The file read in order, part after part, into one SHA-256.
struct PartReader {
    file: std::fs::File,
    sha: Sha256,
}

/// Sends every part (`parts_at_once` in flight; read and hashed one after the other);
/// returns them with the file's SHA-256.
async fn send_parts(
    bucket: &Bucket,
    file: &Local,
    plan: Plan,
    upload_id: &str,
    cancel: &CancellationToken,
) -> Result<(Vec<Part>, String)> {
    let key = file.key.as_str();
    let opened =
        std::fs::File::open(&file.path).map_err(|e| Error::io("reading", &file.path, e))?;
    let reader = Arc::new(Mutex::new(PartReader {
        file: opened,
        sha: Sha256::new(),
    }));
    let count = file.size.div_ceil(plan.part_size);
    let parts: Vec<Part> = futures_util::stream::iter(0..count)
        .then(|n| {
            let reader = Arc::clone(&reader);
            let path = file.path.clone();
            let len = plan.part_size.min(file.size - n * plan.part_size);
            async move {
                let chunk = blocking(move || {
                    let mut reader = reader
                        .lock()
                        .map_err(|_| Error::backend(S3, "a part reader failed"))?;
                    let mut chunk = Vec::with_capacity(len as usize);
                    (&mut reader.file)
                        .take(len)
                        .read_to_end(&mut chunk)
                        .map_err(|e| Error::io("reading", &path, e))?;
                    if chunk.len() as u64 != len {
                        return Err(Error::backend(
                            S3,
                            format!("{} changed while it was published", path.display()),
                        ));
                    }
                    reader.sha.update(&chunk);
                    Ok(chunk)
                })
                .await?;
                Ok::<_, Error>((n, chunk))
            }
        })
        .map_ok(|(n, chunk)| async move {
            let number = (n + 1) as u32;
            let what = format!("uploading part {number} of {key}");
            retry(plan.policy, cancel, &what, || {
                let chunk = chunk.clone();
                let what = what.as_str();
                async move {
                    bucket
                        .put_multipart_chunk(chunk, key, number, upload_id, content_type(key))
                        .await
                        .map_err(|e| failure(what, e))
                }
            })
            .await
        })
        .try_buffered(plan.parts_at_once.max(1))
        .try_collect()
        .await?;
    let sha = {
        let mut reader = reader
            .lock()
            .map_err(|_| Error::backend(S3, "a part reader failed"))?;
        hex(&std::mem::take(&mut reader.sha).finalize())
    };
    Ok((parts, sha))
}

/// The `<ETag>` of a CompleteMultipartUpload answer.
fn etag_in(xml: &str) -> String {
    let Some(start) = xml.find("<ETag>").map(|at| at + "<ETag>".len()) else {
        return String::new();
    };
    let end = xml[start..]
        .find("</ETag>")
        .map_or(xml.len(), |at| at + start);
    unquote(&xml[start..end]).to_owned()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::backend(S3, format!("reading failed: {e}")))?
}

pub(crate) fn content_type(key: &str) -> &'static str {
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
    use gate_test_harness::S3Server;

    fn bucket_on(s3: &S3Server, secret: &str) -> Box<Bucket> {
        let toml = format!(
            "bucket = \"bkt\"\nendpoint = \"{}\"\naccess_key = {{ secret = \"{}\" }}\nsecret_key = {{ secret = \"{secret}\" }}\n",
            s3.endpoint(),
            s3.access_key()
        );
        let config: crate::config::S3Config =
            gate_core::BackendConfig::from_toml("publisher", "s3", &toml)
                .unwrap()
                .parse()
                .unwrap();
        super::super::client::bucket(&config).unwrap()
    }

    fn message(failure: Failure) -> (bool, String) {
        match failure {
            Failure::Fatal(e) => (true, e.to_string()),
            Failure::Transient(e) => (false, e.to_string()),
        }
    }

    #[tokio::test]
    async fn the_server_refuses_a_body_that_is_not_the_checksummed_one() {
        let s3 = S3Server::start("AKIDPUTTEST", "put-test-secret-31d").unwrap();
        s3.create_bucket("bkt").unwrap();
        let bucket = bucket_on(&s3, "put-test-secret-31d");
        let refused = put_checked(
            &bucket,
            "k.log",
            b"hello\n".to_vec(),
            &Sha256::digest(b"other"),
            "up",
        )
        .await
        .unwrap_err();
        let (fatal, shown) = message(refused);
        // (s3s-fs writes the object before it compares; S3 itself keeps nothing. Either
        // way the publish stops here, before its manifest.)
        assert!(fatal && shown.contains("BadDigest"), "{shown}");
        let etag = put_checked(
            &bucket,
            "k.log",
            b"hello\n".to_vec(),
            &Sha256::digest(b"hello\n"),
            "up",
        )
        .await
        .unwrap();
        assert_eq!(etag, format!("{:x}", md5::compute(b"hello\n")));
        assert_eq!(
            std::fs::read(s3.object_path("bkt", "k.log")).unwrap(),
            b"hello\n"
        );
    }

    #[tokio::test]
    async fn a_presigned_upload_with_a_wrong_secret_fails_without_showing_keys() {
        let s3 = S3Server::start("AKIDPUTTEST2", "put-test-secret-77a").unwrap();
        s3.create_bucket("bkt").unwrap();
        let bucket = bucket_on(&s3, "wrong-put-secret-0e2");
        let refused = put_checked(
            &bucket,
            "k",
            b"x".to_vec(),
            &Sha256::digest(b"x"),
            "uploading k",
        )
        .await
        .unwrap_err();
        let (fatal, shown) = message(refused);
        assert!(
            fatal && shown.contains("refused the credentials (403"),
            "{shown}"
        );
        for secret in [
            "wrong-put-secret-0e2",
            "put-test-secret-77a",
            "AKIDPUTTEST2",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn the_etag_of_a_completed_upload_is_read_without_quotes() {
        let xml = "<CompleteMultipartUploadResult><Key>k</Key><ETag>&quot;abc-3&quot;</ETag></CompleteMultipartUploadResult>";
        assert_eq!(etag_in(xml), "abc-3");
        assert_eq!(etag_in("<ETag>\"d41d\"</ETag>"), "d41d");
        assert_eq!(etag_in("<x/>"), "");
    }
}
