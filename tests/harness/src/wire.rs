//! Just enough HTTP/1.1 for the harness's own servers (the static file server and the API
//! simulators): a listener with a thread per connection, one request per connection, and
//! answers that always carry `Content-Length` and `Connection: close`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Result, io};

/// How long a connection may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest body read; the rest is ignored.
const MAX_BODY: usize = 1 << 20;

/// A server on 127.0.0.1 (an ephemeral port) handing each connection to `serve` on a
/// thread of its own. Stops accepting on drop.
#[derive(Debug)]
pub(crate) struct Listener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Binds and starts accepting; `what` names the server in errors and thread names.
    /// `serve` gets the connection and the stop flag (set when the listener is dropped),
    /// which long-lived connections watch.
    pub(crate) fn start(
        what: &str,
        serve: impl Fn(TcpStream, &AtomicBool) + Send + Sync + 'static,
    ) -> Result<Listener> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(io(&format!("binding the {what} on 127.0.0.1")))?;
        let addr = listener
            .local_addr()
            .map_err(io(&format!("reading the {what}'s port")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let serve = Arc::new(serve);
        let thread = {
            let stop = stop.clone();
            let name = what.replace(' ', "-");
            std::thread::Builder::new()
                .name(format!("{name}-{}", addr.port()))
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(stream) = stream else { continue };
                        let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
                        let (serve, stop) = (serve.clone(), stop.clone());
                        let _ = std::thread::Builder::new()
                            .name(format!("{name}-conn"))
                            .spawn(move || serve(stream, &stop));
                    }
                })
                .map_err(io(&format!("starting the {what} thread")))?
        };
        Ok(Listener {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept call up.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One parsed request.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// The target as sent, query included.
    pub(crate) target: String,
    /// The path, percent-decoded (malformed escapes kept as they are), without the query.
    pub(crate) path: String,
    /// The raw query.
    pub(crate) query: String,
    /// Header names in lower case.
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    /// Reads the request line, up to 100 headers and a `Content-Length` body.
    pub(crate) fn read(stream: &TcpStream) -> std::io::Result<Request> {
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let without_fragment = target.split('#').next().unwrap_or_default();
        let (path, query) = without_fragment
            .split_once('?')
            .unwrap_or((without_fragment, ""));
        let mut headers = BTreeMap::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0
                || header.trim().is_empty()
                || headers.len() > 100
            {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length.min(MAX_BODY)];
        reader.read_exact(&mut body)?;
        Ok(Request {
            method,
            path: percent_decode(path, false).unwrap_or_else(|| path.to_owned()),
            query: query.to_owned(),
            target,
            headers,
            body,
        })
    }

    /// A header's value (`name` in lower case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The body as an `application/x-www-form-urlencoded` form (malformed pairs dropped).
    pub(crate) fn form(&self) -> BTreeMap<String, String> {
        pairs(&String::from_utf8_lossy(&self.body))
    }

    /// The query's `key=value` pairs, decoded (malformed pairs dropped).
    pub(crate) fn query_pairs(&self) -> BTreeMap<String, String> {
        pairs(&self.query)
    }
}

fn pairs(text: &str) -> BTreeMap<String, String> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(k, true)?, percent_decode(v, true)?))
        })
        .collect()
}

/// What to send back.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    /// `status` with no body.
    pub(crate) fn empty(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `status` with `value` as its JSON body.
    pub(crate) fn json(status: u16, value: &serde_json::Value) -> Answer {
        Answer::empty(status)
            .with("Content-Type", "application/json;charset=utf-8")
            .body(value.to_string())
    }

    /// `status` with `body` of `content_type`.
    pub(crate) fn typed(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Answer {
        Answer::empty(status)
            .with("Content-Type", content_type)
            .body(body)
    }

    /// The answer with one more header.
    pub(crate) fn with(mut self, name: &'static str, value: impl Into<String>) -> Answer {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Answer {
        self.body = body.into();
        self
    }

    /// Writes the answer (without its body for a `HEAD`); the connection then closes.
    pub(crate) fn write(&self, mut stream: &TcpStream, head_only: bool) -> std::io::Result<()> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.body.len()
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        if !head_only {
            stream.write_all(&self.body)?;
        }
        stream.flush()
    }
}

/// The reason phrase of `status`.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Decodes `%XX` (and `+` as a space in forms); `None` for a malformed escape or bytes
/// that are not UTF-8.
pub(crate) fn percent_decode(text: &str, form: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if form => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode_and_malformed_ones_are_refused() {
        assert_eq!(percent_decode("a%20b+c", false).as_deref(), Some("a b+c"));
        assert_eq!(percent_decode("a%20b+c", true).as_deref(), Some("a b c"));
        assert_eq!(percent_decode("%zz", false), None);
        assert_eq!(percent_decode("%4", false), None);
        assert_eq!(percent_decode("%ff", false), None);
    }
}
