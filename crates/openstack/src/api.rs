//! API calls through the authenticated session, retried with backoff on 5xx, 429 (honouring
//! `Retry-After`) and connection errors; quota errors are told apart and never retried.

use std::fmt;
use std::time::Duration;

use openstack::session::Session;
use osauth::services::ServiceType;
use osauth::{ApiVersion, ErrorKind};
use reqwest::Method;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::auth;
use crate::config::{CloudConfig, RetryConfig};
use crate::error::{Error, Result};

/// The compute microversion every call asks for: `networks: "none"`/`"auto"` (2.37).
pub const COMPUTE_MICROVERSION: ApiVersion = ApiVersion(2, 37);

/// The bare-metal microversion every Ironic call asks for: a JSON config drive (1.56).
pub const BAREMETAL_MICROVERSION: ApiVersion = ApiVersion(1, 56);

/// The OpenStack services gate calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Nova.
    Compute,
    /// Glance.
    Image,
    /// Heat.
    Orchestration,
    /// Ironic.
    Baremetal,
    /// Neutron.
    Network,
    /// Cinder (v3): catalog type `block-storage`, else `volumev3`. Its catalog endpoint
    /// must name the version (`…/v3` or `…/v3/<project>`), as Heat's does: no discovery.
    BlockStorage,
}

impl Service {
    /// The catalog type.
    pub fn catalog_type(self) -> &'static str {
        match self {
            Service::Compute => "compute",
            Service::Image => "image",
            Service::Orchestration => "orchestration",
            Service::Baremetal => "baremetal",
            Service::Network => "network",
            Service::BlockStorage => "block-storage",
        }
    }
}

/// A catalog type looked up as written, without version discovery: block storage (whose
/// endpoints carry the version and often the project) and [`Api::has_service`].
#[derive(Debug, Clone, Copy)]
struct CatalogType(&'static str);

impl ServiceType for CatalogType {
    fn catalog_type(&self) -> &'static str {
        self.0
    }

    fn version_discovery_supported(&self) -> bool {
        false
    }
}

/// The catalog types of block storage, in the order they are tried.
const BLOCK_STORAGE_TYPES: [&str; 2] = ["block-storage", "volumev3"];

/// Heat: its catalog endpoint already names the version and project
/// (`…/v1/<project>`), so no version discovery.
#[derive(Debug, Clone, Copy)]
struct Orchestration;

impl ServiceType for Orchestration {
    fn catalog_type(&self) -> &'static str {
        "orchestration"
    }

    fn version_discovery_supported(&self) -> bool {
        false
    }
}

/// A logged-in cloud, every region reachable through [`Cloud::region`].
#[derive(Clone)]
pub struct Cloud {
    session: Session,
    /// One session per region, so each discovers its endpoints once.
    regions: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Session>>>,
    source: String,
    default_region: Option<String>,
    retry: RetryConfig,
}

impl fmt::Debug for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cloud")
            .field("source", &self.source)
            .field("default_region", &self.default_region)
            .finish_non_exhaustive()
    }
}

impl Cloud {
    /// Logs in (a `clouds.yaml` entry or `OS_*`); wrong credentials fail here with
    /// [`Error::Auth`].
    pub async fn connect(config: &CloudConfig) -> Result<Cloud> {
        config
            .api
            .check()
            .map_err(|(key, message)| Error::Config(format!("{key}: {message}")))?;
        let login = auth::login(config).await?;
        Ok(Cloud {
            session: login.session,
            regions: Default::default(),
            source: login.source,
            default_region: login.region,
            retry: config.api.clone(),
        })
    }

    /// A service reached at `endpoint` directly, without Keystone (a standalone Ironic, say):
    /// no authentication, or HTTP basic with `basic` (user, password). Every service type
    /// goes to `endpoint`.
    pub async fn standalone(
        endpoint: &str,
        basic: Option<(&str, &str)>,
        retry: &RetryConfig,
    ) -> Result<Cloud> {
        retry
            .check()
            .map_err(|(key, message)| Error::Config(format!("{key}: {message}")))?;
        let bad_url = |e: osauth::Error| Error::Config(format!("endpoint {endpoint}: {e}"));
        let session = match basic {
            None => Session::new(osauth::NoAuth::new(endpoint).map_err(bad_url)?).await,
            Some((user, password)) => {
                Session::new(osauth::BasicAuth::new(endpoint, user, password).map_err(bad_url)?)
                    .await
            }
        }
        .map_err(|e| Error::Auth {
            cloud: endpoint.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Cloud {
            session,
            regions: Default::default(),
            source: endpoint.to_owned(),
            default_region: None,
            retry: retry.clone(),
        })
    }

    /// Where the credentials came from (`cloud `x` (path)` or the environment), for messages.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The region of the credentials (`region_name`, `OS_REGION_NAME`), if any.
    pub fn default_region(&self) -> Option<&str> {
        self.default_region.as_deref()
    }

    /// Calls into `region` (`None`: the credentials' default), cancelled by `cancel`.
    pub fn region(&self, region: Option<&str>, cancel: &CancellationToken) -> Api {
        let name = region.or(self.default_region.as_deref());
        let session = match name {
            None => self.session.clone(),
            Some(name) => match self.regions.lock() {
                Ok(mut regions) => regions
                    .entry(name.to_owned())
                    .or_insert_with(|| {
                        let mut session = self.session.clone();
                        session.set_region(name);
                        session
                    })
                    .clone(),
                Err(_) => {
                    let mut session = self.session.clone();
                    session.set_region(name);
                    session
                }
            },
        };
        Api {
            session,
            region: name.unwrap_or("default region").to_owned(),
            retry: self.retry.clone(),
            cancel: cancel.clone(),
        }
    }
}

/// A cloud logged in to on first use, then shared: what a backend holds.
pub struct LazyCloud {
    config: CloudConfig,
    cloud: tokio::sync::OnceCell<Cloud>,
}

impl fmt::Debug for LazyCloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyCloud")
            .field("cloud", &self.config.cloud)
            .field("clouds_file", &self.config.clouds_file)
            .finish_non_exhaustive()
    }
}

impl LazyCloud {
    /// Not logged in yet.
    pub fn new(config: CloudConfig) -> Self {
        Self {
            config,
            cloud: tokio::sync::OnceCell::new(),
        }
    }

    /// The logged-in cloud (logs in on first use; a failed login is tried again next time).
    pub async fn get(&self) -> Result<&Cloud> {
        self.cloud
            .get_or_try_init(|| async { Cloud::connect(&self.config).await })
            .await
    }

    /// Calls into `region` (`None`: the credentials' own), cancelled by `cancel`.
    pub async fn region(&self, region: Option<&str>, cancel: &CancellationToken) -> Result<Api> {
        Ok(self.get().await?.region(region, cancel))
    }
}

/// Calls into one region of a cloud.
#[derive(Clone)]
pub struct Api {
    session: Session,
    region: String,
    retry: RetryConfig,
    cancel: CancellationToken,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// An answer with a 2xx status.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: u16,
    /// The JSON body (`Null` when empty).
    pub body: Value,
    /// The `Location` header, when sent.
    pub location: Option<String>,
}

/// A failed attempt: the error, and whether (and when) another attempt may help.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: Error,
    /// 5xx, 429 or a connection error: worth another try.
    pub transient: bool,
    /// The server's `Retry-After`.
    pub retry_after: Option<Duration>,
}

/// One request: method, service, path (segments joined by `/`), query and JSON body.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// The service.
    pub service: Service,
    /// The path below the service's endpoint, e.g. `servers/detail`.
    pub path: &'a str,
    /// Query parameters.
    pub query: &'a [(&'a str, &'a str)],
    /// The JSON body.
    pub body: Option<&'a Value>,
}

impl<'a> Request<'a> {
    /// A request without query or body.
    pub fn new(method: Method, service: Service, path: &'a str) -> Self {
        Self {
            method,
            service,
            path,
            query: &[],
            body: None,
        }
    }

    /// With query parameters.
    pub fn query(mut self, query: &'a [(&'a str, &'a str)]) -> Self {
        self.query = query;
        self
    }

    /// With a JSON body.
    pub fn body(mut self, body: &'a Value) -> Self {
        self.body = Some(body);
        self
    }
}

impl Api {
    /// The region these calls go to.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The retry settings.
    pub fn retry(&self) -> &RetryConfig {
        &self.retry
    }

    /// The same calls under another cancellation token (cleanup runs with one that never
    /// fires).
    pub fn with_cancel(mut self, cancel: &CancellationToken) -> Api {
        self.cancel = cancel.clone();
        self
    }

    /// Sleeps `wait`, or returns [`Error::Cancelled`] when the calls are cancelled first.
    pub async fn sleep(&self, wait: Duration) -> Result<()> {
        tokio::select! {
            () = tokio::time::sleep(wait) => Ok(()),
            () = self.cancel.cancelled() => Err(Error::Cancelled),
        }
    }

    /// The cancellation token of these calls.
    pub fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }

    /// `GET path` → the JSON body.
    pub async fn get(&self, service: Service, path: &str, query: &[(&str, &str)]) -> Result<Value> {
        let request = Request::new(Method::GET, service, path).query(query);
        Ok(self.call(&request).await?.body)
    }

    /// `POST path` with `body` → the JSON body.
    pub async fn post(&self, service: Service, path: &str, body: &Value) -> Result<Value> {
        let request = Request::new(Method::POST, service, path).body(body);
        Ok(self.call(&request).await?.body)
    }

    /// `DELETE path`; a 404 counts as done (`false`), else `true`.
    pub async fn delete(&self, service: Service, path: &str) -> Result<bool> {
        match self
            .call(&Request::new(Method::DELETE, service, path))
            .await
        {
            Ok(_) => Ok(true),
            Err(error) if error.is_not_found() => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Sends `request`, retrying transient failures as configured.
    pub async fn call(&self, request: &Request<'_>) -> Result<Reply> {
        let mut attempt = 0;
        loop {
            match self.send_once(request).await {
                Ok(reply) => return Ok(reply),
                Err(failure) if failure.transient && attempt + 1 < self.retry.tries => {
                    self.pause(attempt, &failure).await?;
                    attempt += 1;
                }
                Err(failure) if failure.transient => {
                    return Err(with_tries(failure.error, self.retry.tries));
                }
                Err(failure) => return Err(failure.error),
            }
        }
    }

    /// Waits before attempt `attempt + 1` after `failure` (logged), or returns
    /// [`Error::Cancelled`].
    pub async fn pause(&self, attempt: u32, failure: &Failure) -> Result<()> {
        let wait = self.retry.delay(attempt, failure.retry_after);
        tracing::warn!(
            region = %self.region,
            "{} — try {} of {} in {:.1}s",
            failure.error,
            attempt + 2,
            self.retry.tries,
            wait.as_secs_f64()
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => Ok(()),
            () = self.cancel.cancelled() => Err(Error::Cancelled),
        }
    }

    /// Whether the catalog has an endpoint of `service` in this region (for
    /// [`Service::BlockStorage`]: `block-storage` or `volumev3`). Only the catalog is read;
    /// a failed token refresh is an error.
    pub async fn has_service(&self, service: Service) -> Result<bool> {
        let types: &[&'static str] = match service {
            Service::BlockStorage => &BLOCK_STORAGE_TYPES,
            other => &[other.catalog_type()],
        };
        for kind in types {
            let path: [&str; 0] = [];
            match self.session.get_endpoint(CatalogType(kind), path).await {
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == ErrorKind::EndpointNotFound => {}
                Err(e) => {
                    return Err(Error::Api {
                        region: self.region.clone(),
                        method: "GET".into(),
                        service: (*kind).to_owned(),
                        path: "(catalog)".into(),
                        status: None,
                        message: e.to_string(),
                    });
                }
            }
        }
        Ok(false)
    }

    /// Sends `request` once.
    pub async fn send_once(&self, request: &Request<'_>) -> Result<Reply, Failure> {
        if self.cancel.is_cancelled() {
            return Err(Failure {
                error: Error::Cancelled,
                transient: false,
                retry_after: None,
            });
        }
        let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
        let method = request.method.clone();
        let session = &self.session;
        let sent = match request.service {
            Service::Compute => {
                let builder = session
                    .request(osauth::services::COMPUTE, method, &segments)
                    .api_version(COMPUTE_MICROVERSION);
                self.finish(builder, request).await
            }
            Service::Image => {
                let builder = session.request(osauth::services::IMAGE, method, &segments);
                self.finish(builder, request).await
            }
            Service::Orchestration => {
                let builder = session.request(Orchestration, method, &segments);
                self.finish(builder, request).await
            }
            Service::Baremetal => {
                let builder = session
                    .request(osauth::services::BAREMETAL, method, &segments)
                    .api_version(BAREMETAL_MICROVERSION);
                self.finish(builder, request).await
            }
            Service::Network => {
                let builder = session.request(osauth::services::NETWORK, method, &segments);
                self.finish(builder, request).await
            }
            Service::BlockStorage => {
                let [first, fallback] = BLOCK_STORAGE_TYPES.map(CatalogType);
                let builder = session.request(first, method.clone(), &segments);
                match self.finish(builder, request).await {
                    Err(e) if e.kind() == ErrorKind::EndpointNotFound => {
                        let builder = session.request(fallback, method, &segments);
                        self.finish(builder, request).await
                    }
                    other => other,
                }
            }
        };
        let response = sent.map_err(|error| Failure {
            transient: transient_kind(error.kind()),
            error: self.failure(request, None, error.to_string()),
            retry_after: None,
        })?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let location = header("location");
        let retry_after = header("retry-after").as_deref().and_then(retry_after);
        let text = response.text().await.map_err(|error| Failure {
            error: self.failure(
                request,
                Some(status),
                format!("reading the answer: {error}"),
            ),
            transient: true,
            retry_after: None,
        })?;
        if (200..300).contains(&status) {
            let body = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).map_err(|error| Failure {
                    error: self.failure(
                        request,
                        Some(status),
                        format!("the answer is not JSON: {error}"),
                    ),
                    transient: false,
                    retry_after: None,
                })?
            };
            return Ok(Reply {
                status,
                body,
                location,
            });
        }
        let message = fault_message(&text);
        if is_quota(status, &message) {
            return Err(Failure {
                error: Error::Quota {
                    region: self.region.clone(),
                    message,
                },
                transient: false,
                retry_after: None,
            });
        }
        Err(Failure {
            transient: status == 429 || (500..600).contains(&status) && status != 501,
            error: self.failure(request, Some(status), message),
            retry_after,
        })
    }

    async fn finish<S: ServiceType + Send>(
        &self,
        builder: osauth::ServiceRequestBuilder<S>,
        request: &Request<'_>,
    ) -> Result<reqwest::Response, osauth::Error> {
        let mut builder = builder.timeout(self.retry.request_timeout());
        if !request.query.is_empty() {
            builder = builder.query(request.query);
        }
        if let Some(body) = request.body {
            builder = builder.json(body);
        }
        builder.send_unchecked().await
    }

    fn failure(&self, request: &Request<'_>, status: Option<u16>, message: String) -> Error {
        Error::Api {
            region: self.region.clone(),
            method: request.method.to_string(),
            service: request.service.catalog_type().to_owned(),
            path: request.path.to_owned(),
            status,
            message,
        }
    }
}

fn with_tries(error: Error, tries: u32) -> Error {
    match error {
        Error::Api {
            region,
            method,
            service,
            path,
            status,
            message,
        } => Error::Api {
            region,
            method,
            service,
            path,
            status,
            message: format!("{message} (gave up after {tries} tries)"),
        },
        other => other,
    }
}

/// The string `key` of a JSON object, `None` when it is missing, not a string or empty (the
/// APIs write `""` or `null` for "none").
pub(crate) fn text_field(value: &Value, key: &str) -> Option<String> {
    value[key]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The fault message of an OpenStack error body: `{"<fault>": {"message": …}}` (Nova,
/// Glance), `{"error": {"message": …}}` (Keystone, Heat), `{"error_message": …}` (Ironic),
/// else the text itself, shortened.
pub fn fault_message(text: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let from_json = parsed.as_ref().and_then(|body| {
        if let Some(message) = body["error_message"].as_str() {
            let inner: Option<Value> = serde_json::from_str(message).ok();
            return Some(
                inner
                    .and_then(|v| v["faultstring"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| message.to_owned()),
            );
        }
        let object = body.as_object()?;
        object.values().find_map(|inner| {
            let message = inner.get("message")?.as_str()?;
            Some(message.to_owned())
        })
    });
    let message = from_json.unwrap_or_else(|| text.trim().to_owned());
    let mut short: String = message.chars().take(500).collect();
    if short.len() < message.len() {
        short.push('…');
    }
    short
}

/// Whether a refusal is a quota error (Nova: 403 "Quota exceeded …", older: 413;
/// Neutron: 409 `OverQuota` "Quota exceeded for resources: …").
pub fn is_quota(status: u16, message: &str) -> bool {
    matches!(status, 403 | 409 | 413) && message.to_ascii_lowercase().contains("quota")
}

/// How long a `Retry-After` header asks to wait: delta-seconds (`120`) or an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, zero once it has passed); `None` for anything else.
pub fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // IMF-fixdate, the form HTTP servers send, is RFC 2822 with the zone `GMT`.
    let date = value.strip_suffix(" GMT")?;
    let rfc2822 = time::format_description::well_known::Rfc2822;
    let at = time::OffsetDateTime::parse(&format!("{date} +0000"), &rfc2822).ok()?;
    let ahead = at - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(ahead).unwrap_or(Duration::ZERO))
}

/// Whether an osauth error (raised before the request itself was answered: token refresh,
/// endpoint discovery, the connection) is worth another try. osauth hides the status, and
/// folds 429 into `InvalidInput`, so everything but a refusal or a missing endpoint is.
pub(crate) fn transient_kind(kind: ErrorKind) -> bool {
    !matches!(
        kind,
        ErrorKind::AuthenticationFailed
            | ErrorKind::AccessDenied
            | ErrorKind::EndpointNotFound
            | ErrorKind::InvalidConfig
            | ErrorKind::IncompatibleApiVersion
    )
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use super::*;

    /// An HTTP server on 127.0.0.1 that answers its first request 429 (with `Retry-After:
    /// <secs>` when given) and every later one 200, noting when each request arrived.
    fn throttling_server(retry_after: Option<u32>) -> (String, Arc<Mutex<Vec<Instant>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let seen = arrivals.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let first = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(Instant::now());
                    seen.len() == 1
                };
                let answer = match (first, retry_after) {
                    (false, _) => "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                                   Content-Length: 2\r\nConnection: close\r\n\r\n{}"
                        .to_owned(),
                    (true, header) => format!(
                        "HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n{}Connection: close\r\n\r\n",
                        header
                            .map(|secs| format!("Retry-After: {secs}\r\n"))
                            .unwrap_or_default()
                    ),
                };
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        (url, arrivals)
    }

    /// The time between the first (429) and the second request of a call to a server
    /// answering as [`throttling_server`] does.
    async fn gap_after_429(retry_after: Option<u32>) -> Duration {
        let (url, arrivals) = throttling_server(retry_after);
        let retry = RetryConfig {
            tries: 3,
            first_delay_secs: 0.05,
            max_delay_secs: 10.0,
            ..RetryConfig::default()
        };
        let cloud = Cloud::standalone(&url, None, &retry).await.unwrap();
        let api = cloud.region(None, &CancellationToken::new());
        api.get(Service::Orchestration, "stacks", &[])
            .await
            .unwrap();
        let arrivals = arrivals.lock().unwrap().clone();
        assert_eq!(arrivals.len(), 2, "one 429, then the retry");
        arrivals[1] - arrivals[0]
    }

    #[tokio::test]
    async fn a_429_is_retried_no_sooner_than_its_retry_after() {
        let gap = gap_after_429(Some(2)).await;
        assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
        // Without the header the first backoff step (0.05 s) applies: the 2 s above came
        // from the header.
        let gap = gap_after_429(None).await;
        assert!(gap < Duration::from_secs(1), "retried after {gap:?}");
    }

    #[test]
    fn retry_after_takes_delta_seconds_and_http_dates() {
        assert_eq!(retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(retry_after("0"), Some(Duration::ZERO));
        // An HTTP-date in the past: no wait.
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        // One a minute ahead: about a minute.
        let ahead = time::OffsetDateTime::now_utc() + Duration::from_secs(60);
        let rfc2822 = ahead
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap();
        let header = rfc2822.replace(" +0000", " GMT");
        let wait = retry_after(&header).unwrap();
        assert!(
            wait > Duration::from_secs(55) && wait <= Duration::from_secs(60),
            "{header}: {wait:?}"
        );
        assert_eq!(retry_after("-1"), None);
        assert_eq!(retry_after("soon"), None);
    }
}
