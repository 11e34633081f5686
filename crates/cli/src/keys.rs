//! Fetching the keys file once per run: from `file://` (or a plain path), `http://` or
//! `https://` (with an optional extra CA), checked before anything is applied.

use std::path::Path;
use std::time::Duration;

use gate_core::keys::KeysFile;

/// The largest keys file accepted.
const LIMIT: usize = 1 << 20;

/// Why the keys file could not be had.
#[derive(Debug)]
pub enum KeysError {
    /// It could not be fetched (network, HTTP status, missing file).
    Fetch(String),
    /// It was fetched but is not a valid keys file.
    Invalid(String),
}

/// Fetches and checks the keys file at `url`; the error names the URL (and the line).
pub async fn fetch(url: &str, ca: Option<&Path>) -> Result<KeysFile, KeysError> {
    let bytes = if let Some(path) = url.strip_prefix("file://") {
        read_file(path).map_err(KeysError::Fetch)?
    } else if url.starts_with("https://") || url.starts_with("http://") {
        download(url, ca).await.map_err(KeysError::Fetch)?
    } else if url.contains("://") {
        return Err(KeysError::Invalid(format!(
            "keys file {url}: only https://, http:// and file:// are supported"
        )));
    } else {
        read_file(url).map_err(KeysError::Fetch)?
    };
    if bytes.len() > LIMIT {
        return Err(KeysError::Invalid(format!(
            "keys file {url}: larger than {LIMIT} bytes"
        )));
    }
    KeysFile::parse(url, &bytes).map_err(|e| KeysError::Invalid(e.to_string()))
}

fn read_file(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("keys file {path}: {e}"))
}

async fn download(url: &str, ca: Option<&Path>) -> Result<Vec<u8>, String> {
    let mut client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).map_err(|e| format!("keys CA {}: {e}", ca.display()))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| format!("keys CA {}: not a PEM certificate: {e}", ca.display()))?;
        client = client.add_root_certificate(cert);
    }
    let client = client
        .build()
        .map_err(|e| format!("keys file {url}: {e}"))?;
    let mut last = String::new();
    for attempt in 1..=3u32 {
        match client.get(url).send().await {
            Ok(response) if response.status().is_success() => {
                return response
                    .bytes()
                    .await
                    .map(|b| b.to_vec())
                    .map_err(|e| format!("keys file {url}: {e}"));
            }
            Ok(response) if response.status().is_server_error() => {
                last = format!("HTTP {}", response.status());
            }
            Ok(response) => return Err(format!("keys file {url}: HTTP {}", response.status())),
            Err(e) if e.is_connect() || e.is_timeout() => last = error_chain(&e),
            Err(e) => return Err(format!("keys file {url}: {}", error_chain(&e))),
        }
        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
    }
    Err(format!("keys file {url}: {last} (after 3 tries)"))
}

/// An error with its causes, so a TLS failure says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
