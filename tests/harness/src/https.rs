//! Files over HTTPS on 127.0.0.1, with a CA made for the test.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::error::{HarnessError, Result, io};
use crate::tools::{require, run};

/// Serves a directory over HTTPS on 127.0.0.1 (an ephemeral port) with `openssl s_server
/// -WWW`, under a server certificate for `127.0.0.1` and `localhost` signed by a CA made
/// for this server alone. A client trusts it only with [`ca_cert_path`](Self::ca_cert_path)
/// (`curl --cacert`); without it the handshake fails. Answers are HTTP/1.0 and one request
/// is served at a time. Stops on drop.
///
/// ```no_run
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("keys"), "ssh-ed25519 AAAA… ci")?;
/// let server = gate_test_harness::HttpsServer::start(dir.path())?;
/// let (url, ca) = (server.url("keys"), server.ca_cert_path()); // https://127.0.0.1:PORT/keys
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct HttpsServer {
    addr: SocketAddr,
    child: Child,
    pki: TempDir,
}

impl HttpsServer {
    /// Makes the CA and the server certificate, then starts serving `dir`.
    pub fn start(dir: impl AsRef<Path>) -> Result<HttpsServer> {
        require("openssl", "openssl")?;
        let pki = tempfile::Builder::new()
            .prefix("gate-https-")
            .tempdir()
            .map_err(io("creating a directory for the test CA"))?;
        make_pki(pki.path())?;
        let log = pki.path().join("s_server.log");
        let stderr = std::fs::File::create(&log).map_err(io("creating the s_server log"))?;
        let mut child = Command::new("openssl")
            .args(["s_server", "-WWW", "-accept", "127.0.0.1:0"])
            .arg("-cert")
            .arg(pki.path().join("server.pem"))
            .arg("-key")
            .arg(pki.path().join("server.key"))
            .current_dir(dir.as_ref())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(io("starting openssl s_server"))?;
        let addr = match read_accept_line(&mut child) {
            Ok(addr) => addr,
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HarnessError::Command {
                    command: "openssl s_server".into(),
                    detail: format!(
                        "{error}: {}",
                        std::fs::read_to_string(&log).unwrap_or_default().trim()
                    ),
                });
            }
        };
        let server = HttpsServer { addr, child, pki };
        server.wait_listening()?;
        Ok(server)
    }

    /// `https://127.0.0.1:PORT/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PEM file of the CA that signed the server's certificate.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.pki.path().join("ca.pem")
    }

    fn wait_listening(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                return Err(HarnessError::NotReady {
                    host: format!("openssl s_server on {}", self.addr),
                    seconds: 10,
                    detail: "not accepting connections".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `ACCEPT 127.0.0.1:PORT` from s_server's stdout.
fn read_accept_line(child: &mut Child) -> Result<SocketAddr> {
    let stdout = child.stdout.take().ok_or_else(|| HarnessError::Command {
        command: "openssl s_server".into(),
        detail: "no stdout".into(),
    })?;
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .map_err(io("reading openssl s_server's output"))?;
        if read == 0 {
            return Err(HarnessError::Command {
                command: "openssl s_server".into(),
                detail: "exited before it listened".into(),
            });
        }
        if let Some(addr) = line.trim().strip_prefix("ACCEPT ") {
            // Keep draining stdout so s_server never blocks writing to it.
            std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
            return addr.parse().map_err(|_| HarnessError::Command {
                command: "openssl s_server".into(),
                detail: format!("unexpected ACCEPT line {line:?}"),
            });
        }
    }
}

/// Makes `ca.pem`/`ca.key` and `server.pem`/`server.key` (P-256, valid 2 days,
/// subjectAltName 127.0.0.1 and localhost) in `dir`.
fn make_pki(dir: &Path) -> Result<()> {
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .map_err(io("writing the server certificate's extensions"))?;
    let openssl = || {
        let mut command = Command::new("openssl");
        command.current_dir(dir);
        command
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(openssl()
        .args(["req", "-x509"])
        .args(ec)
        .args(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"])
        .args(["-subj", "/CN=gate test CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]))?;
    run(openssl()
        .arg("req")
        .args(ec)
        .args(["-keyout", "server.key", "-out", "server.csr"])
        .args(["-subj", "/CN=127.0.0.1"]))?;
    run(openssl()
        .args([
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
        ])
        .args([
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
        ])
        .arg(&ext))?;
    Ok(())
}
