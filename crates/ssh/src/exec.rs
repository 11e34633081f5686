//! Running one command over an SSH channel: output streamed line by line to the host log
//! as it arrives, a timeout and cancellation that kill everything the command started, and a
//! lost connection told apart from a failing command.

use std::io::Read;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::time::Instant;

use gate_core::transport::{ExitStatus, OutputCollector, Stream};
use gate_core::{Command, Error, ExecOutput, HostLog, Result};
use ssh2::{Channel, Session};
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

/// Marks the line that reports the command's process group (stderr, first).
const PGID_MARK: &str = "\u{1f}GATE_PGID ";
/// Marks the line that reports the command's exit code (stderr, last).
const EXIT_MARK: &str = "\u{1f}GATE_EXIT ";

/// The command line for `cmd` on a host, with `home` as the default working directory.
///
/// sshd runs each command through the user's login shell, which it makes a session and
/// process group leader: everything the command starts is in the process group `$$` of
/// that shell. The line reports that group first and the exit code last (on stderr, marked),
/// so a timeout or cancel can kill the whole group and a lost connection cannot pass for an
/// exit code. It needs a POSIX login shell (sh, bash, dash, zsh), and runs the program
/// directly from it: no extra shell or `setsid` per command.
pub fn wrap(cmd: &Command, home: Option<&str>) -> String {
    let mut program = Command::new(cmd.program()).args(cmd.arg_list().iter().cloned());
    for (key, value) in cmd.env_list() {
        program = program.env(key.clone(), value.clone());
    }
    let body = format!(
        r#"{{ printf '\037GATE_PGID %s\n' "$$" >&2; {}; rc=$?; printf '\037GATE_EXIT %s\n' "$rc" >&2; exit "$rc"; }}"#,
        program.to_shell_line()
    );
    match working_dir(cmd, home) {
        Some(dir) => format!("cd {} && {body}", gate_core::shell_quote(&dir)),
        None => body,
    }
}

/// Where `cmd` runs: its directory (relative ones under `home`), else `home`, else wherever
/// sshd starts it (the user's home).
pub fn working_dir(cmd: &Command, home: Option<&str>) -> Option<String> {
    match (cmd.working_dir(), home) {
        (Some(dir), Some(home)) if !dir.starts_with('/') => Some(format!("{home}/{dir}")),
        (Some(dir), _) => Some(dir.to_owned()),
        (None, Some(home)) => Some(home.to_owned()),
        (None, None) => None,
    }
}

/// Kills process group `pgid` on the host through a channel of its own (the command's
/// channel is busy with the command). Leaves the session in blocking mode.
pub fn kill_group(session: &Session, pgid: u32) {
    session.set_blocking(true);
    if let Ok(mut killer) = session.channel_session() {
        let _ = killer.exec(&format!("kill -KILL -- -{pgid}"));
        let _ = killer.wait_close();
    }
}

/// Waits up to 100 ms for data on the session's socket.
pub fn wait_readable(socket: &TcpStream) {
    let mut fds = [nix::poll::PollFd::new(
        socket.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u8));
}

/// Splits a byte stream into lines.
#[derive(Default)]
pub struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    /// Takes bytes; calls `each` for every line completed.
    pub fn push(&mut self, bytes: &[u8], mut each: impl FnMut(&str)) {
        self.pending.extend_from_slice(bytes);
        while let Some(at) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=at).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]);
            each(line.trim_end_matches('\r'));
        }
    }

    /// Ends the stream: a last line without a newline is passed on too.
    pub fn finish(&mut self, each: impl FnMut(&str)) {
        if !self.pending.is_empty() {
            self.pending.push(b'\n');
            self.push(&[], each);
        }
    }
}

/// What the wrapper reported on stderr.
#[derive(Default)]
struct Marks {
    pgid: Option<u32>,
    exit_code: Option<i32>,
}

impl Marks {
    /// Takes the wrapper's marks out of a stderr line; passes the rest on.
    fn stderr_line(&mut self, line: &str, collector: &mut OutputCollector<'_>) {
        if let Some(rest) = line.strip_prefix(PGID_MARK) {
            self.pgid = rest.trim().parse().ok();
        } else if let Some((before, code)) = line.split_once(EXIT_MARK) {
            if !before.is_empty() {
                collector.push(Stream::Stderr, before);
            }
            self.exit_code = code.trim().parse().ok();
        } else {
            collector.push(Stream::Stderr, line);
        }
    }
}

/// Where stdout goes.
pub enum StdoutTo {
    /// Lines into the host log and the [`ExecOutput`].
    Log,
    /// Raw bytes to a channel (a tar stream).
    Bytes(Sender<Vec<u8>>),
}

/// One command in flight.
pub struct Run<'a> {
    /// The connected session (blocking mode on entry and on return).
    pub session: &'a Session,
    /// A handle on the session's socket, to wait for data.
    pub socket: &'a TcpStream,
    /// The host's name, for errors.
    pub host: &'a str,
    /// The command as shown (secrets masked).
    pub shown: String,
    /// The host log.
    pub log: &'a HostLog,
    /// Fires on interrupt.
    pub cancel: &'a CancellationToken,
    /// When to give up.
    pub deadline: Option<Instant>,
    /// The time limit, for the error message.
    pub limit: Option<std::time::Duration>,
}

/// Restores blocking mode when the non-blocking read loop ends, however it ends.
pub struct Blocking<'a>(pub &'a Session);

impl Drop for Blocking<'_> {
    fn drop(&mut self) {
        self.0.set_blocking(true);
    }
}

impl Run<'_> {
    fn lost(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Unreachable {
            host: self.host.to_owned(),
            message: format!(
                "the SSH connection failed while {what} `{}`: {e}",
                self.shown
            ),
        }
    }

    /// Kills the command's process group through a second channel, then closes `channel`.
    fn kill(&self, channel: &mut Channel, pgid: Option<u32>) {
        self.session.set_blocking(true);
        if let Some(pgid) = pgid {
            kill_group(self.session, pgid);
        }
        let _ = channel.close();
    }

    /// Runs `line` (the wrapped command line) to completion.
    pub fn run(&self, line: &str, mut stdout: StdoutTo) -> Result<ExecOutput> {
        let started = Instant::now();
        self.session.set_blocking(true);
        let mut channel = self
            .session
            .channel_session()
            .map_err(|e| self.lost("opening a channel for", e))?;
        channel.exec(line).map_err(|e| self.lost("starting", e))?;

        let mut collector = OutputCollector::new(self.log);
        let (mut out_lines, mut err_lines) = (Lines::default(), Lines::default());
        let mut marks = Marks::default();
        let mut buf = vec![0u8; 32 * 1024];

        {
            self.session.set_blocking(false);
            let _blocking = Blocking(self.session);
            loop {
                let mut progressed = false;
                match channel.read(&mut buf) {
                    Ok(0) => {}
                    Ok(n) => {
                        progressed = true;
                        match &mut stdout {
                            StdoutTo::Log => {
                                out_lines.push(&buf[..n], |l| collector.push(Stream::Stdout, l))
                            }
                            StdoutTo::Bytes(tx) => {
                                if tx.blocking_send(buf[..n].to_vec()).is_err() {
                                    self.kill(&mut channel, marks.pgid);
                                    return Err(Error::Cancelled);
                                }
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(self.lost("reading the output of", e)),
                }
                match channel.stderr().read(&mut buf) {
                    Ok(0) => {}
                    Ok(n) => {
                        progressed = true;
                        err_lines.push(&buf[..n], |l| marks.stderr_line(l, &mut collector));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(self.lost("reading the output of", e)),
                }
                if !progressed && channel.eof() {
                    break;
                }
                if self.cancel.is_cancelled() {
                    self.log.note("cancelled: killing the command");
                    self.kill(&mut channel, marks.pgid);
                    return Err(Error::Cancelled);
                }
                if self.deadline.is_some_and(|d| Instant::now() >= d) {
                    self.log.note("timed out: killing the command");
                    self.kill(&mut channel, marks.pgid);
                    return Err(Error::Timeout {
                        host: self.host.to_owned(),
                        command: self.shown.clone(),
                        after: self.limit.unwrap_or_default(),
                        tail: collector.tail(),
                    });
                }
                if !progressed {
                    let _ = self.session.keepalive_send();
                    wait_readable(self.socket);
                }
            }
        }
        out_lines.finish(|l| collector.push(Stream::Stdout, l));
        err_lines.finish(|l| marks.stderr_line(l, &mut collector));
        let _ = channel.wait_close();
        let status = match (marks.exit_code, marks.pgid) {
            (Some(code), _) => ExitStatus::Code(code),
            // The wrapper never started (no setsid or sh): the channel's own status says why.
            (None, None) => ExitStatus::Code(channel.exit_status().unwrap_or(-1)),
            (None, Some(_)) => {
                return Err(self.lost("running", "it ended without reporting an exit code"));
            }
        };
        self.log.note(&format!(
            "{status} after {:.1}s",
            started.elapsed().as_secs_f64()
        ));
        Ok(collector.finish(status, started.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_and_keep_the_last_partial_line() {
        let mut lines = Lines::default();
        let mut seen = Vec::new();
        lines.push(b"one\ntw", |l| seen.push(l.to_owned()));
        lines.push(b"o\r\nthr", |l| seen.push(l.to_owned()));
        lines.finish(|l| seen.push(l.to_owned()));
        assert_eq!(seen, ["one", "two", "thr"]);
    }

    #[test]
    fn the_wrapper_runs_the_program_verbatim_and_reports_its_exit_code() {
        let nasty = "a'b \"c\" $(id) `id` ; | & \n end";
        let cmd = Command::new("printf")
            .args(["%s|", nasty])
            .env("X", "1")
            .cwd("/tmp");
        let line = wrap(&cmd, None);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{nasty}|"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with(PGID_MARK), "{stderr:?}");
        assert!(stderr.contains(&format!("{EXIT_MARK}0")), "{stderr:?}");
        let failing = wrap(&Command::new("sh").args(["-c", "exit 7"]), Some("/tmp"));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&failing)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(7));
        assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("{EXIT_MARK}7")));
    }
}
