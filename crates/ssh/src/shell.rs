//! A host's command shell: one bash, started once on one channel of the host's session and
//! fed every command as a job (see [`crate::job`]), instead of a channel and a login shell
//! per command. A command then costs the host one fork (plus the program's exec) and the
//! client one write: no channel to open, no login shell to start.
//!
//! Each command's output is streamed to the host log line by line as it arrives, stdout and
//! stderr apart; the shell's marks (see [`crate::marks`]) tell where it ends and how. A
//! timeout or cancel kills the job's process group, then reads on to the job's end mark so
//! the shell is ready for the next command. A shell that ends (killed, or the session lost)
//! is dropped: the next command starts a new one.

use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use gate_core::transport::{ExitStatus, OutputCollector, Stream};
use gate_core::{Command, Error, ExecOutput, HostLog, Result};
use ssh2::{Channel, Session};
use tokio_util::sync::CancellationToken;

use crate::exec::{Blocking, Lines, kill_group, wait_readable};
use crate::job;
use crate::marks::{Piece, Scanner};

/// How long a new shell may take to answer (the login shell's startup files run first).
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a killed job may take to report its end before the shell is given up.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What a shell needs from the connection and the caller.
pub struct Ctx<'a> {
    /// The host's session.
    pub session: &'a Session,
    /// A handle on the session's socket, to wait for data.
    pub socket: &'a TcpStream,
    /// The host's name, for errors.
    pub host: &'a str,
    /// The host log.
    pub log: &'a HostLog,
    /// Fires on interrupt.
    pub cancel: &'a CancellationToken,
}

/// The result of trying to start a shell.
pub enum Opened {
    /// Ready for commands.
    Ready(Shell),
    /// The host offers no usable shell (no bash, no job control, no answer): why.
    Unavailable(String),
}

/// One command for [`Shell::run`].
pub struct Job<'a> {
    /// The command.
    pub cmd: &'a Command,
    /// The host's home, for relative working directories.
    pub home: Option<&'a str>,
    /// The command as shown (secrets masked).
    pub shown: &'a str,
    /// When to give up.
    pub deadline: Option<Instant>,
    /// The time limit, for the error message.
    pub limit: Option<Duration>,
}

/// A running shell on a host.
pub struct Shell {
    channel: Channel,
    seq: u64,
    out: Scanner,
    err: Scanner,
    dead: bool,
}

/// Why a command stopped early.
#[derive(Clone, Copy)]
enum Stop {
    Cancelled,
    TimedOut,
}

/// What one command has shown so far.
struct Progress<'a> {
    collector: OutputCollector<'a>,
    out_lines: Lines,
    err_lines: Lines,
    started: bool,
    pgid: Option<u32>,
    code: Option<i32>,
    out_done: bool,
}

fn lost(host: &str, what: &str, shown: &str, e: impl std::fmt::Display) -> Error {
    Error::Unreachable {
        host: host.to_owned(),
        message: format!("the SSH connection failed while {what} `{shown}`: {e}"),
    }
}

/// A value no command on the host can guess (it never sees it).
fn nonce() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

impl Shell {
    /// Starts a shell on a new channel of the session. An error means the session itself
    /// failed; a host that cannot run the shell is [`Opened::Unavailable`].
    pub fn open(cx: &Ctx<'_>) -> Result<Opened> {
        let nonce = nonce();
        let prefix = job::prefix(&nonce);
        cx.session.set_blocking(true);
        let mut channel = cx
            .session
            .channel_session()
            .map_err(|e| lost(cx.host, "opening a channel for", "the command shell", e))?;
        if let Err(e) = channel.exec(job::SHELL_LINE) {
            return Ok(Opened::Unavailable(format!("starting bash: {e}")));
        }
        if let Err(e) = channel.write_all(job::setup(&nonce).as_bytes()) {
            return Ok(Opened::Unavailable(format!("setting bash up: {e}")));
        }
        let mut shell = Shell {
            channel,
            seq: 0,
            out: Scanner::new(prefix.as_bytes()),
            err: Scanner::new(prefix.as_bytes()),
            dead: false,
        };
        let deadline = Instant::now() + OPEN_TIMEOUT;
        let (mut out_ready, mut err_ready) = (false, false);
        cx.session.set_blocking(false);
        let _blocking = Blocking(cx.session);
        loop {
            let progressed = shell
                .pump()
                .map_err(|e| lost(cx.host, "starting", "the command shell", e))?;
            // Whatever comes before READY is the login shell's own output: not a command's.
            while !out_ready && let Some(piece) = shell.out.next_piece() {
                out_ready = piece == Piece::Mark("READY".into());
            }
            while !err_ready && let Some(piece) = shell.err.next_piece() {
                err_ready = piece == Piece::Mark("READY".into());
            }
            if out_ready && err_ready {
                return Ok(Opened::Ready(shell));
            }
            if !progressed && shell.channel.eof() {
                return Ok(Opened::Unavailable(
                    "it ended at once: no `bash` on the PATH, or no job control".into(),
                ));
            }
            if cx.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            if Instant::now() >= deadline {
                return Ok(Opened::Unavailable(format!(
                    "no answer within {}s",
                    OPEN_TIMEOUT.as_secs()
                )));
            }
            if !progressed {
                wait_readable(cx.socket);
            }
        }
    }

    /// Whether the shell has ended (or was given up): it must not be used again.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Reads what is there from both streams into the scanners; whether anything came.
    fn pump(&mut self) -> std::io::Result<bool> {
        let mut buf = [0u8; 32 * 1024];
        let mut progressed = false;
        for stderr in [false, true] {
            let read = if stderr {
                self.channel.stderr().read(&mut buf)
            } else {
                self.channel.read(&mut buf)
            };
            match read {
                Ok(0) => {}
                Ok(n) => {
                    let scanner = if stderr { &mut self.err } else { &mut self.out };
                    scanner.feed(&buf[..n]);
                    progressed = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(progressed)
    }

    /// Gives the shell up.
    fn give_up(&mut self) {
        self.dead = true;
        self.out.clear();
        self.err.clear();
        let _ = self.channel.close();
    }

    /// Runs `job` to completion. `Ok(None)`: the shell had ended before it took the job, so
    /// nothing ran (start a new shell and try again).
    pub fn run(&mut self, cx: &Ctx<'_>, job: &Job<'_>) -> Result<Option<ExecOutput>> {
        let started = Instant::now();
        let host = cx.host;
        {
            // Read what is pending so an end the session already reported is seen.
            cx.session.set_blocking(false);
            let _blocking = Blocking(cx.session);
            if let Err(e) = self.pump() {
                self.give_up();
                return Err(lost(host, "starting", job.shown, e));
            }
            if self.channel.eof() {
                self.give_up();
                return Ok(None);
            }
        }
        self.seq += 1;
        let text = job::text(job.cmd, job.home, self.seq);
        if let Err(e) = self.channel.write_all(text.as_bytes()) {
            self.give_up();
            return Err(lost(host, "starting", job.shown, e));
        }
        let mut progress = Progress {
            collector: OutputCollector::new(cx.log),
            out_lines: Lines::default(),
            err_lines: Lines::default(),
            started: false,
            pgid: None,
            code: None,
            out_done: false,
        };
        let mut stopping: Option<(Stop, Instant)> = None;
        let mut killed = false;
        cx.session.set_blocking(false);
        let _blocking = Blocking(cx.session);
        loop {
            let progressed = match self.pump() {
                Ok(progressed) => progressed,
                Err(e) => {
                    self.give_up();
                    return Err(lost(host, "reading the output of", job.shown, e));
                }
            };
            self.take_pieces(&mut progress);
            if progress.out_done && progress.code.is_some() {
                break;
            }
            if !progressed && self.channel.eof() {
                self.give_up();
                if let Some((stop, _)) = stopping {
                    return Err(stopped(stop, host, job, &progress));
                }
                if !progress.started {
                    // It ended before it took the job: nothing ran.
                    return Ok(None);
                }
                return Err(Error::Host {
                    host: host.to_owned(),
                    message: format!(
                        "the command shell ended while `{}` ran (killed?); the next command \
                         starts a new one",
                        job.shown
                    ),
                });
            }
            if stopping.is_none() {
                if cx.cancel.is_cancelled() {
                    cx.log.note("cancelled: killing the command");
                    stopping = Some((Stop::Cancelled, Instant::now() + DRAIN_TIMEOUT));
                } else if job.deadline.is_some_and(|d| Instant::now() >= d) {
                    cx.log.note("timed out: killing the command");
                    stopping = Some((Stop::TimedOut, Instant::now() + DRAIN_TIMEOUT));
                }
            }
            if let Some((stop, drain_until)) = stopping {
                if !killed && let Some(pgid) = progress.pgid {
                    kill_group(cx.session, pgid);
                    cx.session.set_blocking(false);
                    killed = true;
                }
                if Instant::now() >= drain_until {
                    // The job would not end: this shell cannot take another command.
                    self.give_up();
                    return Err(stopped(stop, host, job, &progress));
                }
            }
            if !progressed {
                let _ = cx.session.keepalive_send();
                wait_readable(cx.socket);
            }
        }
        if let Some((stop, _)) = stopping {
            return Err(stopped(stop, host, job, &progress));
        }
        let status = ExitStatus::Code(progress.code.unwrap_or(-1));
        cx.log.note(&format!(
            "{status} after {:.1}s",
            started.elapsed().as_secs_f64()
        ));
        Ok(Some(progress.collector.finish(status, started.elapsed())))
    }

    /// Passes the job's output on and takes its marks, up to its end mark on each stream
    /// (what follows stays for the next command).
    fn take_pieces(&mut self, p: &mut Progress<'_>) {
        let seq = self.seq;
        while !p.out_done
            && let Some(piece) = self.out.next_piece()
        {
            match piece {
                Piece::Data(bytes) => {
                    let collector = &mut p.collector;
                    p.out_lines
                        .push(&bytes, |l| collector.push(Stream::Stdout, l));
                }
                Piece::Mark(mark) => match parse_mark(&mark, seq) {
                    Some(("START", _)) => p.started = true,
                    Some(("END", _)) => {
                        let collector = &mut p.collector;
                        p.out_lines.finish(|l| collector.push(Stream::Stdout, l));
                        p.out_done = true;
                    }
                    _ => {}
                },
            }
        }
        while p.code.is_none()
            && let Some(piece) = self.err.next_piece()
        {
            match piece {
                Piece::Data(bytes) => {
                    let collector = &mut p.collector;
                    p.err_lines
                        .push(&bytes, |l| collector.push(Stream::Stderr, l));
                }
                Piece::Mark(mark) => match parse_mark(&mark, seq) {
                    Some(("PGID", value)) => p.pgid = value.parse().ok(),
                    Some(("END", value)) => {
                        let collector = &mut p.collector;
                        p.err_lines.finish(|l| collector.push(Stream::Stderr, l));
                        p.code = Some(value.parse().unwrap_or(-1));
                    }
                    _ => {}
                },
            }
        }
    }
}

/// `KIND SEQ [VALUE]` for job `seq`: (kind, value or "").
fn parse_mark(mark: &str, seq: u64) -> Option<(&str, &str)> {
    let mut parts = mark.splitn(3, ' ');
    let (kind, of) = (parts.next()?, parts.next()?);
    (of.parse::<u64>().ok()? == seq).then_some((kind, parts.next().unwrap_or("")))
}

/// The error for a command stopped by `stop`, with the output seen so far.
fn stopped(stop: Stop, host: &str, job: &Job<'_>, p: &Progress<'_>) -> Error {
    match stop {
        Stop::Cancelled => Error::Cancelled,
        Stop::TimedOut => Error::Timeout {
            host: host.to_owned(),
            command: job.shown.to_owned(),
            after: job.limit.unwrap_or_default(),
            tail: p.collector.tail(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_of_other_jobs_are_not_this_ones() {
        assert_eq!(parse_mark("END 4 0", 4), Some(("END", "0")));
        assert_eq!(parse_mark("PGID 4 123", 4), Some(("PGID", "123")));
        assert_eq!(parse_mark("END 3 0", 4), None);
        assert_eq!(parse_mark("START 4", 4), Some(("START", "")));
        assert_eq!(parse_mark("READY", 4), None);
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce(), nonce());
        assert_eq!(nonce().len(), 16);
    }
}
