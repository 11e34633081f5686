//! A tiny static file server over plain HTTP on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Result, io};

/// Serves a directory over HTTP/1.1 on 127.0.0.1 (an ephemeral port): `GET` and `HEAD`,
/// `Content-Length` on every answer, 404 for what is missing, 400 for paths that try to
/// leave the directory, a 301 to add the `/` of a directory, then its `index.html` or a
/// generated listing of links (enough for apt's flat repositories and pip's `--index-url`
/// and `--find-links`). One request per connection. Stops on drop.
///
/// ```no_run
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("keys"), "ssh-ed25519 AAAA… ci")?;
/// let server = gate_test_harness::StaticServer::start(dir.path())?;
/// let keys_url = server.url("keys"); // http://127.0.0.1:PORT/keys
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct StaticServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl StaticServer {
    /// Starts serving `dir`.
    pub fn start(dir: impl AsRef<Path>) -> Result<StaticServer> {
        let root = dir.as_ref().to_owned();
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(io("binding an HTTP server on 127.0.0.1"))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading the HTTP server's port"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, requests) = (stop.clone(), requests.clone());
            std::thread::Builder::new()
                .name(format!("http-{}", addr.port()))
                .spawn(move || accept_loop(&listener, &root, &stop, &requests))
                .map_err(io("starting the HTTP server thread"))?
        };
        Ok(StaticServer {
            addr,
            stop,
            requests,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of `path` (relative to the served directory).
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url(), path.trim_start_matches('/'))
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The request lines seen so far (`GET /path HTTP/1.1`), oldest first.
    pub fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .map(|seen| seen.clone())
            .unwrap_or_default()
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept call up.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    root: &Path,
    stop: &AtomicBool,
    requests: &Arc<Mutex<Vec<String>>>,
) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let (root, requests) = (root.to_owned(), requests.clone());
        let _ = std::thread::Builder::new()
            .name("http-conn".into())
            .spawn(move || {
                let _ = serve(stream, &root, &requests);
            });
    }
}

/// Answers one request on `stream`.
fn serve(stream: TcpStream, root: &Path, requests: &Mutex<Vec<String>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the headers.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 && header.len() < 64 * 1024 {
        header.clear();
    }
    let request_line = request_line.trim_end().to_owned();
    if let Ok(mut seen) = requests.lock() {
        seen.push(request_line.clone());
    }
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let answer = match method {
        "GET" | "HEAD" => resolve(root, target),
        _ => Answer::status(405, "Method Not Allowed"),
    };
    answer.write(stream, method == "HEAD")
}

/// What to send back.
struct Answer {
    code: u16,
    reason: &'static str,
    content_type: &'static str,
    location: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn status(code: u16, reason: &'static str) -> Answer {
        Answer {
            code,
            reason,
            content_type: "text/plain; charset=utf-8",
            location: None,
            body: format!("{code} {reason}\n").into_bytes(),
        }
    }

    fn write(self, mut stream: TcpStream, head_only: bool) -> std::io::Result<()> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.code,
            self.reason,
            self.content_type,
            self.body.len()
        );
        if let Some(location) = &self.location {
            head.push_str(&format!("Location: {location}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        if !head_only {
            stream.write_all(&self.body)?;
        }
        stream.flush()
    }
}

/// Maps a request target to an answer from `root`.
fn resolve(root: &Path, target: &str) -> Answer {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let Some(decoded) = percent_decode(path) else {
        return Answer::status(400, "Bad Request");
    };
    let Some(relative) = safe_relative(&decoded) else {
        return Answer::status(400, "Bad Request");
    };
    let full = root.join(relative);
    if full.is_dir() {
        if !decoded.ends_with('/') {
            let mut answer = Answer::status(301, "Moved Permanently");
            answer.location = Some(format!("{path}/"));
            return answer;
        }
        let index = full.join("index.html");
        if index.is_file() {
            return file(&index);
        }
        return listing(&full, &decoded);
    }
    if full.is_file() {
        return file(&full);
    }
    Answer::status(404, "Not Found")
}

/// The relative path inside the served directory, or `None` when `decoded` would leave it.
fn safe_relative(decoded: &str) -> Option<PathBuf> {
    if !decoded.starts_with('/') || decoded.contains('\0') {
        return None;
    }
    let mut relative = PathBuf::new();
    for component in Path::new(decoded.trim_start_matches('/')).components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(relative)
}

fn file(path: &Path) -> Answer {
    match std::fs::read(path) {
        Ok(body) => Answer {
            code: 200,
            reason: "OK",
            content_type: content_type(path),
            location: None,
            body,
        },
        Err(_) => Answer::status(404, "Not Found"),
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("txt" | "pub" | "asc") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        Some("gz") => "application/gzip",
        Some("whl" | "zip") => "application/zip",
        Some("deb") => "application/vnd.debian.binary-package",
        _ => "application/octet-stream",
    }
}

/// An HTML page of links to a directory's entries (directories end with `/`).
fn listing(dir: &Path, url_path: &str) -> Answer {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if entry.path().is_dir() {
                        name + "/"
                    } else {
                        name
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut html = format!("<!DOCTYPE html>\n<html><head><title>{url_path}</title></head><body>\n");
    for name in names {
        html.push_str(&format!("<a href=\"{name}\">{name}</a><br/>\n"));
    }
    html.push_str("</body></html>\n");
    Answer {
        code: 200,
        reason: "OK",
        content_type: "text/html; charset=utf-8",
        location: None,
        body: html.into_bytes(),
    }
}

/// Decodes `%XX` escapes; `None` for a malformed escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_directory_are_refused() {
        assert_eq!(safe_relative("/a/b"), Some(PathBuf::from("a/b")));
        assert_eq!(safe_relative("/"), Some(PathBuf::new()));
        assert_eq!(safe_relative("/a/../../etc/passwd"), None);
        assert_eq!(safe_relative("/.."), None);
        assert_eq!(safe_relative("relative"), None);
        assert_eq!(percent_decode("/%2e%2e/x").as_deref(), Some("/../x"));
        assert_eq!(percent_decode("/%zz"), None);
    }
}
