//! A tiny static file server over plain HTTP on 127.0.0.1.

use std::net::{SocketAddr, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::wire::{Answer, Listener, Request, percent_decode, reason};

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
    listener: Listener,
    requests: Arc<Mutex<Vec<String>>>,
}

impl StaticServer {
    /// Starts serving `dir`.
    pub fn start(dir: impl AsRef<Path>) -> Result<StaticServer> {
        let root = dir.as_ref().to_owned();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let listener = Listener::start("HTTP server", move |stream, _| {
            let _ = serve(&stream, &root, &seen);
        })?;
        Ok(StaticServer { listener, requests })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.listener.addr())
    }

    /// The URL of `path` (relative to the served directory).
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url(), path.trim_start_matches('/'))
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.listener.addr()
    }

    /// The request lines seen so far (`GET /path HTTP/1.1`), oldest first.
    pub fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .map(|seen| seen.clone())
            .unwrap_or_default()
    }
}

/// Answers one request on `stream`.
fn serve(stream: &TcpStream, root: &Path, requests: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let request = Request::read(stream)?;
    if let Ok(mut seen) = requests.lock() {
        seen.push(format!("{} {} HTTP/1.1", request.method, request.target));
    }
    let answer = match request.method.as_str() {
        "GET" | "HEAD" => resolve(root, &request.target),
        _ => status(405),
    };
    answer.write(stream, request.method == "HEAD")
}

/// `code` with its reason as a plain-text body.
fn status(code: u16) -> Answer {
    Answer::typed(
        code,
        "text/plain; charset=utf-8",
        format!("{code} {}\n", reason(code)),
    )
}

/// Maps a request target to an answer from `root`.
fn resolve(root: &Path, target: &str) -> Answer {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let Some(decoded) = percent_decode(path, false) else {
        return status(400);
    };
    let Some(relative) = safe_relative(&decoded) else {
        return status(400);
    };
    let full = root.join(relative);
    if full.is_dir() {
        if !decoded.ends_with('/') {
            return status(301).with("Location", format!("{path}/"));
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
    status(404)
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
        Ok(body) => Answer::typed(200, content_type(path), body),
        Err(_) => status(404),
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
    Answer::typed(200, "text/html; charset=utf-8", html)
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
        assert_eq!(percent_decode("/%2e%2e/x", false).as_deref(), Some("/../x"));
    }
}
