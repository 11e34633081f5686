//! A small synchronous HTTP/1.1 client for the services on 127.0.0.1 (plain HTTP, JSON),
//! and an authenticated session on top of it. Synchronous and runtime-free, so it works
//! from plain tests, from `#[tokio::test]`s and from the join thread alike.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::error::{HarnessError, Result};

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body (chunked encoding already undone).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The body as JSON (`Null` when empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as text, for error messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request to an `http://127.0.0.1:PORT/…` URL and reads the whole answer.
pub(crate) fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> Result<HttpResponse> {
    let failed = |detail: String| HarnessError::Command {
        command: format!("{method} {url}"),
        detail,
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| failed("only http:// URLs are supported".into()))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority
        .parse()
        .map_err(|_| failed(format!("{authority} is not an IP address and port")))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|error| failed(format!("connecting: {error}")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|error| failed(error.to_string()))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
         Accept: application/json\r\nUser-Agent: gate-test-harness\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let payload = match body {
        Some((content_type, bytes)) => {
            head.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                bytes.len()
            ));
            bytes
        }
        None if matches!(method, "POST" | "PUT" | "PATCH") => {
            head.push_str("Content-Length: 0\r\n");
            &[][..]
        }
        None => &[][..],
    };
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(payload))
        .map_err(|error| failed(format!("sending: {error}")))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|error| failed(format!("reading: {error}")))?;
    parse(&raw).ok_or_else(|| {
        failed(format!(
            "not an HTTP answer: {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        ))
    })
}

/// Parses a whole HTTP/1.1 answer.
fn parse(raw: &[u8]) -> Option<HttpResponse> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}

/// Undoes chunked transfer encoding.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// A Keystone token and the service catalog that came with it.
#[derive(Clone)]
pub struct ApiSession {
    token: String,
    catalog: Vec<(String, String, String)>,
    project_id: String,
}

impl std::fmt::Debug for ApiSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSession")
            .field("token", &"***")
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

impl ApiSession {
    /// Authenticates with a password, scoped to a project (user and project in
    /// `domain`), and keeps the token and the public endpoints. A refusal is an error
    /// with Keystone's status and answer (never the password).
    pub fn authenticate(
        auth_url: &str,
        user: &str,
        password: &str,
        project: &str,
        domain: &str,
    ) -> Result<ApiSession> {
        let body = serde_json::json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"name": domain}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"name": domain}}}
        }});
        let url = format!("{}/auth/tokens", auth_url.trim_end_matches('/'));
        let answer = request(
            "POST",
            &url,
            &[],
            Some(("application/json", body.to_string().as_bytes())),
        )?;
        if answer.status != 201 {
            return Err(HarnessError::Command {
                command: format!("POST {url} (user {user}, project {project})"),
                detail: format!("HTTP {}: {}", answer.status, answer.text()),
            });
        }
        let token = answer
            .header("x-subject-token")
            .ok_or_else(|| HarnessError::Command {
                command: format!("POST {url}"),
                detail: "no X-Subject-Token in Keystone's answer".into(),
            })?
            .to_owned();
        let json = answer.json();
        let mut catalog = Vec::new();
        for service in json["token"]["catalog"].as_array().into_iter().flatten() {
            let kind = service["type"].as_str().unwrap_or_default();
            for endpoint in service["endpoints"].as_array().into_iter().flatten() {
                catalog.push((
                    kind.to_owned(),
                    endpoint["interface"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    endpoint["url"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        Ok(ApiSession {
            token,
            catalog,
            project_id: json["token"]["project"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        })
    }

    /// The token (for an `X-Auth-Token` header).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The id of the project the token is scoped to.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// The public endpoint of a service type (`compute`, `image`, `orchestration`,
    /// `identity`, `placement`, `network`), from the token's catalog.
    pub fn endpoint(&self, service_type: &str) -> Result<String> {
        self.catalog
            .iter()
            .find(|(kind, interface, _)| kind == service_type && interface == "public")
            .map(|(_, _, url)| url.trim_end_matches('/').to_owned())
            .ok_or_else(|| HarnessError::Command {
                command: format!("catalog lookup of {service_type}"),
                detail: "no public endpoint in the token's catalog".into(),
            })
    }

    /// Sends a request to `path` under a service's endpoint, with the token, a JSON body
    /// if given, and the newest compute microversion Nova 34 supports for `compute`.
    pub fn call(
        &self,
        method: &str,
        service_type: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<HttpResponse> {
        let url = format!("{}{}", self.endpoint(service_type)?, path);
        let text = body.map(Value::to_string);
        let mut headers = vec![("X-Auth-Token", self.token.as_str())];
        if service_type == "compute" {
            headers.push(("OpenStack-API-Version", "compute 2.96"));
        }
        request(
            method,
            &url,
            &headers,
            text.as_deref()
                .map(|text| ("application/json", text.as_bytes())),
        )
    }

    /// Like [`call`](Self::call), but fails unless the status is 2xx; gives the JSON body.
    pub fn call_ok(
        &self,
        method: &str,
        service_type: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let answer = self.call(method, service_type, path, body)?;
        if (200..300).contains(&answer.status) {
            Ok(answer.json())
        } else {
            Err(HarnessError::Command {
                command: format!("{method} {service_type} {path}"),
                detail: format!("HTTP {}: {}", answer.status, answer.text()),
            })
        }
    }

    /// `GET` that must succeed; the JSON body.
    pub fn get(&self, service_type: &str, path: &str) -> Result<Value> {
        self.call_ok("GET", service_type, path, None)
    }

    /// `POST` of a JSON body that must succeed; the JSON answer.
    pub fn post(&self, service_type: &str, path: &str, body: &Value) -> Result<Value> {
        self.call_ok("POST", service_type, path, Some(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked_and_plain_answers() {
        let plain = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!((plain.status, plain.body.as_slice()), (200, &b"{}"[..]));
        let chunked = parse(
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n\
              3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.status, 201);
        assert_eq!(chunked.header("x-a"), Some("b"));
        assert_eq!(chunked.json()["a"], 1);
    }
}
