//! Waiting for an SSH server's banner.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One attempt: connects to `addr` and reads the server's identification line. Returns the
/// line (`SSH-2.0-OpenSSH_…`) when the server answered with one.
pub(crate) fn try_banner(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 255 {
        match stream.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) => line.push(byte[0]),
            _ => return None,
        }
    }
    let line = String::from_utf8_lossy(&line).trim_end().to_owned();
    line.starts_with("SSH-").then_some(line)
}
