//! The HTTP side: one client per API, the token in its header (marked sensitive, never in
//! a message), JSON in and out, and retries with backoff on 5xx, 429 (honouring
//! `Retry-After`) and connection errors.

use std::future::Future;
use std::time::Duration;

use gate_core::{Error, Result, Secret};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::NAME;
use super::config::RetrySettings;
use super::plan::Plan;

/// An answer that was not a transient failure (any 2xx, 3xx or 4xx but 429).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    /// Whether the status is 2xx.
    pub(crate) fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON.
    pub(crate) fn json(&self, what: &str) -> Result<serde_json::Value, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| ApiError::Failed {
            what: what.to_owned(),
            message: format!("the answer is not JSON: {e}"),
        })
    }
}

/// Why a call failed.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// The API said no (after retries, for transient statuses).
    Status {
        what: String,
        status: u16,
        body: String,
        tries: u32,
    },
    /// No usable answer (connection, timeout, unreadable answer), after retries.
    Failed { what: String, message: String },
    /// The run was interrupted.
    Cancelled,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Status {
                what,
                status,
                body,
                tries,
            } => {
                let hint = match status {
                    401 => " (the token is wrong or expired: check [agent] token)",
                    403 => " (the token's user may not do this)",
                    _ => "",
                };
                write!(f, "{what}: HTTP {status}{hint}")?;
                if *tries > 1 {
                    write!(f, " after {tries} tries")?;
                }
                if !body.is_empty() {
                    write!(f, ": {body}")?;
                }
                Ok(())
            }
            ApiError::Failed { what, message } => write!(f, "{what}: {message}"),
            ApiError::Cancelled => write!(f, "interrupted"),
        }
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Cancelled => Error::Cancelled,
            other => Error::backend(
                NAME,
                gate_core::secret::redact(&other.to_string()).into_owned(),
            ),
        }
    }
}

/// One try's failure, with whether trying again may help.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: ApiError,
    pub(crate) transient: bool,
    pub(crate) retry_after: Option<Duration>,
}

/// A client of one monitoring API.
#[derive(Debug, Clone)]
pub(crate) struct MonitoringApi {
    base: String,
    origin: String,
    http: reqwest::Client,
    token: Option<Secret>,
    token_header: HeaderName,
    token_prefix: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    retry: RetrySettings,
}

impl MonitoringApi {
    pub(crate) fn new(plan: &Plan) -> Result<Self> {
        let config = &plan.config;
        let timeout = config.api.request_timeout();
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            // A redirect could take the token elsewhere; statuses are read as they come.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &config.ca {
            let pem = std::fs::read(ca).map_err(|e| Error::io("reading", ca, e))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| Error::backend(NAME, format!("{}: {e}", ca.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| Error::backend(NAME, format!("building the HTTP client: {e}")))?;
        let origin = reqwest::Url::parse(&plan.base)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        Ok(Self {
            base: plan.base.clone(),
            origin,
            http,
            token: config.token.clone(),
            token_header: plan.token_header.clone(),
            token_prefix: config.token_prefix.clone(),
            headers: plan.headers.clone(),
            retry: config.api.clone(),
        })
    }

    /// The API's base URL, ending in `/`.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The absolute URL of `path` (relative to the base).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path.trim_start_matches('/'))
    }

    /// Whether `url` is on the API's own host (the token may be sent there).
    pub(crate) fn same_origin(&self, url: &str) -> bool {
        reqwest::Url::parse(url).is_ok_and(|u| u.origin().ascii_serialization() == self.origin)
    }

    /// The retry settings.
    pub(crate) fn retry(&self) -> &RetrySettings {
        &self.retry
    }

    /// One try, no retries.
    pub(crate) async fn attempt(
        &self,
        what: &str,
        method: Method,
        url: &str,
        body: Option<&[u8]>,
    ) -> Result<Answer, Failure> {
        let mut request = self
            .http
            .request(method, url)
            .header(reqwest::header::ACCEPT, "application/json");
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some(token) = &self.token {
            let mut value =
                HeaderValue::from_str(&format!("{}{}", self.token_prefix, token.expose()))
                    .map_err(|_| Failure {
                        error: ApiError::Failed {
                            what: what.to_owned(),
                            message: "the token cannot be sent in an HTTP header".into(),
                        },
                        transient: false,
                        retry_after: None,
                    })?;
            value.set_sensitive(true);
            request = request.header(&self.token_header, value);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let failed = |message: String| Failure {
            error: ApiError::Failed {
                what: what.to_owned(),
                message,
            },
            transient: true,
            retry_after: None,
        };
        let response = request.send().await.map_err(|e| failed(error_chain(&e)))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| failed(error_chain(&e)))?
            .to_vec();
        if status == 429 || status >= 500 {
            let retry_after = headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(Failure {
                error: status_error(what, status, &body, 1),
                transient: true,
                retry_after,
            });
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Waits before try `attempt + 2`; `false` when the run was interrupted meanwhile.
    pub(crate) async fn pause<C, F>(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        cancelled: &C,
    ) -> bool
    where
        C: Fn() -> F,
        F: Future<Output = ()>,
    {
        let wait = self.retry.delay(attempt, retry_after);
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = cancelled() => false,
        }
    }

    /// A call retried as configured; `note` hears about each retry.
    pub(crate) async fn call<C, F>(
        &self,
        what: &str,
        method: Method,
        url: &str,
        body: Option<&[u8]>,
        cancelled: &C,
        note: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Answer, ApiError>
    where
        C: Fn() -> F,
        F: Future<Output = ()>,
    {
        let tries = self.retry.tries.max(1);
        let mut attempt = 0;
        loop {
            match self.attempt(what, method.clone(), url, body).await {
                Ok(answer) => return Ok(answer),
                Err(failure) if !failure.transient || attempt + 1 >= tries => {
                    return Err(with_tries(failure.error, attempt + 1));
                }
                Err(failure) => {
                    note(&format!(
                        "try {} of {tries} failed, trying again: {}",
                        attempt + 1,
                        failure.error
                    ));
                    if !self.pause(attempt, failure.retry_after, cancelled).await {
                        return Err(ApiError::Cancelled);
                    }
                    attempt += 1;
                }
            }
        }
    }
}

/// `error` saying how many tries it took.
pub(crate) fn with_tries(error: ApiError, tries: u32) -> ApiError {
    match error {
        ApiError::Status {
            what, status, body, ..
        } => ApiError::Status {
            what,
            status,
            body,
            tries,
        },
        ApiError::Failed { what, message } if tries > 1 => ApiError::Failed {
            what,
            message: format!("{message} (after {tries} tries)"),
        },
        other => other,
    }
}

/// An error for an answer with `status`, holding the start of its body (a Rackspace
/// fault's `message` and `details` when it is one).
pub(crate) fn status_error(what: &str, status: u16, body: &[u8], tries: u32) -> ApiError {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(fault) if fault.get("message").is_some() => {
            [&fault["type"], &fault["message"], &fault["details"]]
                .iter()
                .filter_map(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(": ")
        }
        _ => String::from_utf8_lossy(body)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default()
            .to_owned(),
    };
    ApiError::Status {
        what: what.to_owned(),
        status,
        body: text.chars().take(300).collect(),
        tries,
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
