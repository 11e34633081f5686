//! A fault-injecting HTTP proxy in front of one real API on 127.0.0.1, for the fault cases:
//! answers on a fixed schedule (every Nth request a 429 with `Retry-After`, or a 503), holds
//! matching requests until enough are in flight (to prove concurrency without timing), and
//! rewrites request bodies (e.g. a flavor too large for the compute host → a real
//! NoValidHost). It records what it saw.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};

/// What the proxy does to requests. Everything off by default (a plain proxy).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Every `n`-th request (counted from 1 over all requests) is answered with `status` and
    /// never reaches the API; with `retry_after`, a `Retry-After: <secs>` header is sent.
    pub every: Option<(u32, u16, Option<u32>)>,
    /// Requests with this method and a path ending so (e.g. `("POST", "/servers")`) wait
    /// until `count` of them are in flight (or `give_up` passed), then all go on; later ones
    /// go straight through.
    pub hold: Option<Hold>,
    /// In bodies of requests with this method and path suffix, replace `from` by `to`.
    pub rewrite: Option<Rewrite>,
}

/// See [`Faults::hold`].
#[derive(Debug, Clone)]
pub struct Hold {
    /// The method.
    pub method: String,
    /// The path suffix.
    pub path_suffix: String,
    /// How many must be in flight at once before any goes on.
    pub count: usize,
    /// The longest wait.
    pub give_up: Duration,
}

/// See [`Faults::rewrite`].
#[derive(Debug, Clone)]
pub struct Rewrite {
    /// The method.
    pub method: String,
    /// The path suffix.
    pub path_suffix: String,
    /// Text replaced …
    pub from: String,
    /// … by this.
    pub to: String,
}

/// One request the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The method.
    pub method: String,
    /// The path with query.
    pub path: String,
    /// The status the client got.
    pub status: u16,
    /// Whether the proxy answered it itself (a fault).
    pub injected: bool,
}

#[derive(Debug, Default)]
struct State {
    faults: Faults,
    count: u32,
    seen: Vec<Seen>,
    held_in_flight: usize,
    held_max: usize,
    released: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

/// The proxy; stops on drop.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// A proxy on a free 127.0.0.1 port in front of `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: SocketAddr) -> Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| HarnessError::Command {
            command: "binding the fault proxy".into(),
            detail: e.to_string(),
        })?;
        let addr = listener.local_addr().map_err(|e| HarnessError::Command {
            command: "the fault proxy's address".into(),
            detail: e.to_string(),
        })?;
        let shared = Arc::new(Shared::default());
        let accept = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = accept.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, upstream, &shared);
                });
            }
        });
        Ok(FaultProxy {
            addr,
            upstream,
            shared,
        })
    }

    /// `url` (an URL of the upstream) rewritten to go through the proxy.
    pub fn url_for(&self, url: &str) -> String {
        url.replace(&self.upstream.to_string(), &self.addr.to_string())
    }

    /// Replaces the faults (counting starts again).
    pub fn set_faults(&self, faults: Faults) {
        if let Ok(mut state) = self.shared.state.lock() {
            state.faults = faults;
            state.count = 0;
            state.held_in_flight = 0;
            state.held_max = 0;
            state.released = false;
        }
        self.shared.changed.notify_all();
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared
            .state
            .lock()
            .map(|s| s.seen.clone())
            .unwrap_or_default()
    }

    /// The most held requests that were in flight at once.
    pub fn held_max(&self) -> usize {
        self.shared.state.lock().map(|s| s.held_max).unwrap_or(0)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

struct Request {
    method: String,
    path: String,
    head: Vec<u8>,
    body: Vec<u8>,
}

fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut first = head.lines().next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or_default().to_owned();
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    // Forward every header but the connection's own and the length (recomputed).
    let mut forwarded = Vec::new();
    for (i, line) in head.split("\r\n").enumerate() {
        let lower = line.to_ascii_lowercase();
        if i == 0 || line.is_empty() {
            continue;
        }
        if lower.starts_with("connection:")
            || lower.starts_with("content-length:")
            || lower.starts_with("keep-alive:")
        {
            continue;
        }
        forwarded.extend_from_slice(line.as_bytes());
        forwarded.extend_from_slice(b"\r\n");
    }
    Ok(Some(Request {
        method,
        path,
        head: forwarded,
        body,
    }))
}

fn matches(method: &str, suffix: &str, request: &Request) -> bool {
    let path = request.path.split('?').next().unwrap_or_default();
    request.method == method && path.ends_with(suffix)
}

fn serve(mut client: TcpStream, upstream: SocketAddr, shared: &Shared) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(120)))?;
    let Some(mut request) = read_request(&mut client)? else {
        return Ok(());
    };
    let (injected, hold, rewrite) = {
        let mut state = shared
            .state
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        state.count += 1;
        let count = state.count;
        let injected = state
            .faults
            .every
            .filter(|(n, _, _)| *n > 0 && count % n == 0)
            .map(|(_, status, retry_after)| (status, retry_after));
        (
            injected,
            state.faults.hold.clone(),
            state.faults.rewrite.clone(),
        )
    };
    if let Some((status, retry_after)) = injected {
        let body = format!(
            "{{\"error\": {{\"code\": {status}, \"message\": \"injected by the fault proxy\"}}}}"
        );
        let mut answer = format!(
            "HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        if let Some(secs) = retry_after {
            answer.push_str(&format!("Retry-After: {secs}\r\n"));
        }
        answer.push_str("\r\n");
        answer.push_str(&body);
        record(shared, &request, status, true);
        return client.write_all(answer.as_bytes());
    }
    if let Some(rewrite) = rewrite.filter(|r| matches(&r.method, &r.path_suffix, &request)) {
        let text = String::from_utf8_lossy(&request.body).replace(&rewrite.from, &rewrite.to);
        request.body = text.into_bytes();
    }
    let held = hold.filter(|h| matches(&h.method, &h.path_suffix, &request));
    if let Some(hold) = &held {
        wait_for_company(shared, hold);
    }
    let answer = forward(&request, upstream);
    if held.is_some()
        && let Ok(mut state) = shared.state.lock()
    {
        state.held_in_flight = state.held_in_flight.saturating_sub(1);
    }
    let answer = answer?;
    let status = std::str::from_utf8(answer.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    record(shared, &request, status, false);
    client.write_all(&answer)
}

fn wait_for_company(shared: &Shared, hold: &Hold) {
    let deadline = Instant::now() + hold.give_up;
    let Ok(mut state) = shared.state.lock() else {
        return;
    };
    state.held_in_flight += 1;
    state.held_max = state.held_max.max(state.held_in_flight);
    if state.held_in_flight >= hold.count {
        state.released = true;
        shared.changed.notify_all();
    }
    while !state.released && !shared.stop.load(Ordering::SeqCst) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        state = match shared.changed.wait_timeout(state, left) {
            Ok((state, _)) => state,
            Err(_) => return,
        };
    }
}

fn forward(request: &Request, upstream: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut server = TcpStream::connect_timeout(&upstream, Duration::from_secs(5))?;
    server.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut out = format!("{} {} HTTP/1.1\r\n", request.method, request.path).into_bytes();
    out.extend_from_slice(&request.head);
    out.extend_from_slice(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            request.body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&request.body);
    server.write_all(&out)?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer)?;
    Ok(answer)
}

fn record(shared: &Shared, request: &Request, status: u16, injected: bool) {
    if let Ok(mut state) = shared.state.lock() {
        state.seen.push(Seen {
            method: request.method.clone(),
            path: request.path.clone(),
            status,
            injected,
        });
    }
}
