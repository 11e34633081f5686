//! The simulated agent side: the stand-in agent's connection that keeps an inbound node
//! online, and the SSH banner check that brings an SSH-launched node online.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::http::{page, send};
use super::{SimRequest, State, lock};

/// Applies `never_online`, and lets an offline SSH-launched node go online when its host
/// answers with an SSH banner (the first thing Jenkins' SSH launcher reads).
pub(super) fn probe_ssh(state: &Mutex<State>, name: &str) {
    let target = {
        let mut state = lock(state);
        let never = state.never_online.clone();
        let Some(node) = state.nodes.get_mut(name) else {
            return;
        };
        if let Some(cause) = never {
            node.online = false;
            node.offline_cause = cause;
            return;
        }
        match &node.ssh {
            Some((host, port, _)) if !node.online => (host.clone(), *port),
            _ => return,
        }
    };
    let outcome = ssh_banner(&target.0, target.1);
    let mut state = lock(state);
    if let Some(node) = state.nodes.get_mut(name) {
        match outcome {
            Ok(()) => {
                node.online = true;
                node.offline_cause.clear();
            }
            Err(cause) => node.offline_cause = cause,
        }
    }
}

fn ssh_banner(host: &str, port: u16) -> std::result::Result<(), String> {
    use std::net::ToSocketAddrs;
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("java.net.UnknownHostException: {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("java.net.UnknownHostException: {host}"))?;
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("java.net.ConnectException: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("java.io.IOException: {e}"))?;
    if line.starts_with("SSH-2.0") {
        Ok(())
    } else {
        Err(format!(
            "java.io.IOException: not an SSH server: {}",
            line.trim()
        ))
    }
}

/// The stand-in agent's connection: with the node's secret the node is online until the
/// connection closes, the node is deleted, or a test changes its state.
pub(super) fn agent_connection(
    stream: &TcpStream,
    state: &Mutex<State>,
    stop: &AtomicBool,
    name: &str,
    secret: Option<&str>,
) {
    let generation = {
        let mut state = lock(state);
        let refused = match state.nodes.get(name) {
            None => Some((404, "Not Found")),
            Some(node) if Some(node.secret.as_str()) != secret => {
                Some((403, "the agent's secret is wrong"))
            }
            Some(_) if state.never_online.is_some() => Some((403, "the controller refuses agents")),
            Some(_) => None,
        };
        state.requests.push(SimRequest {
            method: "POST".into(),
            path: format!("/gate-sim/agent/{name}"),
            status: refused.map_or(200, |(status, _)| status),
        });
        if let Some((status, text)) = refused {
            drop(state);
            send(page(status, text), stream);
            return;
        }
        let generation = state.generations.entry(name.to_owned()).or_default();
        *generation += 1;
        let generation = *generation;
        if let Some(node) = state.nodes.get_mut(name) {
            node.online = true;
            node.offline_cause.clear();
        }
        generation
    };
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nconnected\n";
    let mut writer = stream;
    let _ = std::io::Write::write_all(&mut writer, head.as_bytes());
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut reader = stream;
    let mut buf = [0u8; 256];
    let reason = loop {
        if stop.load(Ordering::SeqCst) {
            break "the controller stopped";
        }
        match reader.read(&mut buf) {
            Ok(0) => break "Connection was broken: EOF",
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break "Connection was broken: reset",
        }
        if lock(state).generations.get(name) != Some(&generation) {
            break "";
        }
    };
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let mut state = lock(state);
    if state.generations.get(name) == Some(&generation)
        && let Some(node) = state.nodes.get_mut(name)
    {
        node.online = false;
        node.offline_cause = reason.to_owned();
    }
}
