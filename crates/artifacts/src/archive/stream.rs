//! One host's tar stream: `tar` on the host, compressed there, through one channel of the
//! transport, undone here and unpacked. zstd where both the host and this machine have it,
//! else gzip (or as configured).
//!
//! The unpacker reads the stream to its end, so the sender is never cut off while it
//! writes; it lets go early only when the size limit is hit or the stream is broken, and
//! then the sender's write error is expected and the unpacker's outcome is what counts.

use std::io::Read;
use std::process::{Child, ChildStdout, Stdio};
use std::sync::OnceLock;

use gate_core::{Command, Error, ExecIo, ExecOutput, Result, Transport};
use tokio::io::AsyncWrite;

use super::unpack::{self, Rules, Unpacked};
use crate::config::Compression;

/// How one stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// `zstd -1` (all the host's cores) there, `zstd -d` here.
    Zstd,
    /// `gzip -1` there, flate2 here.
    Gzip,
    /// Plain tar.
    None,
}

impl Codec {
    /// The codec for a host: `wanted`, with `auto` resolved by what the host and this
    /// machine have. Refuses `zstd` where a side lacks it.
    pub fn choose(wanted: Compression, host_has_zstd: bool, host: &str) -> Result<Codec> {
        match wanted {
            Compression::Auto if host_has_zstd && local_zstd() => Ok(Codec::Zstd),
            Compression::Auto | Compression::Gzip => Ok(Codec::Gzip),
            Compression::None => Ok(Codec::None),
            Compression::Zstd if !host_has_zstd => Err(Error::Host {
                host: host.to_owned(),
                message: "compression = \"zstd\" but the host has no `zstd` program".into(),
            }),
            Compression::Zstd if !local_zstd() => Err(Error::backend(
                super::STREAMED,
                "compression = \"zstd\" but this machine has no `zstd` program",
            )),
            Compression::Zstd => Ok(Codec::Zstd),
        }
    }

    /// The compressor tar runs on the host, if any.
    pub fn program(self) -> Option<&'static str> {
        match self {
            Codec::Zstd => Some("zstd -1 -T0 -q"),
            Codec::Gzip => Some("gzip -1"),
            Codec::None => None,
        }
    }

    /// Its name in `archive.json`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Zstd => "zstd",
            Codec::Gzip => "gzip",
            Codec::None => "none",
        }
    }
}

/// Whether this machine can run `zstd` (asked once).
fn local_zstd() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        std::process::Command::new("zstd")
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// What a stream gave: the host command's outcome, and what was unpacked (with the error
/// that stopped the unpacking, if any).
pub struct Streamed {
    pub sent: Result<ExecOutput>,
    pub unpacked: Unpacked,
    pub unpack_error: Option<Error>,
}

/// Runs `tar` (built for `codec`) on the host and unpacks its output into `rules`' place.
pub async fn stream(
    transport: &dyn Transport,
    tar: &Command,
    io: &ExecIo<'_>,
    codec: Codec,
    dest: std::path::PathBuf,
    rules: Rules,
) -> Result<Streamed> {
    let host = transport.host().name.clone();
    let joined = |e: tokio::task::JoinError| Error::Host {
        host: host.clone(),
        message: format!("the unpacking task failed: {e}"),
    };
    if codec == Codec::Zstd {
        let (unzstd, mut stdin, stdout) = Unzstd::start(&host)?;
        let unpacking = tokio::task::spawn_blocking(move || {
            let (unpacked, error) = unpack::unpack(stdout, &dest, &rules);
            let early = error.is_some() || unpacked.limit_hit.is_some();
            let finished = unzstd.finish(early);
            (unpacked, error.or(finished.err()))
        });
        let sending = async {
            let sent = transport.exec_to(tar, &mut stdin, io).await;
            // The end of the stream for zstd, which then ends the unpacker's input.
            drop(stdin);
            sent
        };
        let (sent, unpacking) = tokio::join!(sending, unpacking);
        let (unpacked, unpack_error) = unpacking.map_err(joined)?;
        return Ok(Streamed {
            sent,
            unpacked,
            unpack_error,
        });
    }
    let (mut writer, reader) = tokio::io::duplex(1 << 20);
    let reader = tokio_util::io::SyncIoBridge::new(reader);
    let unpacking = tokio::task::spawn_blocking(move || {
        let input: Box<dyn Read> = match codec {
            Codec::Gzip => Box::new(flate2::read::GzDecoder::new(reader)),
            Codec::Zstd | Codec::None => Box::new(reader),
        };
        unpack::unpack(input, &dest, &rules)
    });
    let sending = async {
        let sent = transport
            .exec_to(tar, &mut writer as &mut (dyn AsyncWrite + Send + Unpin), io)
            .await;
        drop(writer);
        sent
    };
    let (sent, unpacking) = tokio::join!(sending, unpacking);
    let (unpacked, unpack_error) = unpacking.map_err(joined)?;
    Ok(Streamed {
        sent,
        unpacked,
        unpack_error,
    })
}

/// The local `zstd -d` between the transport and the unpacker; killed and reaped when
/// dropped, whatever happened.
struct Unzstd {
    child: Child,
    host: String,
}

impl Unzstd {
    /// Starts it: its input (for the transport to write) and output (for the unpacker).
    fn start(host: &str) -> Result<(Self, tokio::process::ChildStdin, ChildStdout)> {
        let failed = |e: std::io::Error| Error::Host {
            host: host.to_owned(),
            message: format!("cannot start zstd here to unpack the archive: {e}"),
        };
        let child = std::process::Command::new("zstd")
            .args(["-d", "-c", "-q"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(failed)?;
        let mut this = Unzstd {
            host: host.to_owned(),
            child,
        };
        let (Some(stdin), Some(stdout)) = (this.child.stdin.take(), this.child.stdout.take())
        else {
            return Err(failed(std::io::Error::other("no pipes")));
        };
        let stdin = tokio::process::ChildStdin::from_std(stdin).map_err(failed)?;
        Ok((this, stdin, stdout))
    }

    /// Waits for it (killing it first when the unpacker let go `early`: its complaint about
    /// a closed output is then no news); a failure of its own is an error.
    fn finish(mut self, early: bool) -> Result<()> {
        if early {
            let _ = self.child.kill();
        }
        let status = self.child.wait().map_err(|e| Error::Host {
            host: self.host.clone(),
            message: format!("zstd: {e}"),
        })?;
        if early || status.success() {
            return Ok(());
        }
        let mut complaint = String::new();
        if let Some(stderr) = self.child.stderr.as_mut() {
            let _ = stderr.take(4096).read_to_string(&mut complaint);
        }
        Err(Error::Host {
            host: self.host.clone(),
            message: format!("zstd here {status}: {}", complaint.trim()),
        })
    }
}

impl Drop for Unzstd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
