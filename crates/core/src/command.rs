//! Commands as a program and arguments, and the one function that quotes them for a shell.
//!
//! No config value is ever pasted into a shell string: a [`Command`] keeps its program,
//! arguments and environment apart, a transport that needs one command line (SSH) builds it
//! with [`Command::to_shell_line`], which quotes every piece with [`shell_quote`].

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::{MASK, Secret};

/// `s` quoted for a POSIX shell: unchanged when it has only safe characters, else wrapped in
/// single quotes with embedded single quotes written as `'\''`.
pub fn shell_quote(s: &str) -> Cow<'_, str> {
    let safe = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b':' | b'=' | b'@' | b',' | b'+'
                )
        });
    if safe {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!("'{}'", s.replace('\'', r"'\''")))
    }
}

/// The value of an environment variable of a command: plain, or a secret that is masked
/// wherever the command is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EnvValue {
    /// A value that may be shown.
    Plain(String),
    /// A value that is never shown.
    Secret(Secret),
}

impl EnvValue {
    /// The value to hand to the process.
    pub fn expose(&self) -> &str {
        match self {
            EnvValue::Plain(s) => s,
            EnvValue::Secret(s) => s.expose(),
        }
    }

    /// The value as it may be shown.
    pub fn shown(&self) -> &str {
        match self {
            EnvValue::Plain(s) => s,
            EnvValue::Secret(_) => MASK,
        }
    }
}

impl From<&str> for EnvValue {
    fn from(s: &str) -> Self {
        EnvValue::Plain(s.to_owned())
    }
}

impl From<String> for EnvValue {
    fn from(s: String) -> Self {
        EnvValue::Plain(s)
    }
}

impl From<Secret> for EnvValue {
    fn from(s: Secret) -> Self {
        EnvValue::Secret(s)
    }
}

/// A program with arguments, environment, working directory and timeout, to run on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    program: String,
    args: Vec<String>,
    env: Vec<(String, EnvValue)>,
    cwd: Option<String>,
    timeout: Option<Duration>,
}

impl Command {
    /// A command running `program` (looked up on the host's `PATH`).
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            timeout: None,
        }
    }

    /// `bash -euo pipefail -c SCRIPT`: a script the user wrote as shell. Values for it go
    /// through [`Command::env`], never into the script text.
    pub fn script(script: impl Into<String>) -> Self {
        Self::new("bash")
            .args(["-euo", "pipefail", "-c"])
            .arg(script)
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<EnvValue>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs in `dir` (relative to the host's home unless absolute).
    pub fn cwd(mut self, dir: impl Into<String>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Kills the command after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The program.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// The arguments.
    pub fn arg_list(&self) -> &[String] {
        &self.args
    }

    /// The environment variables set for it.
    pub fn env_list(&self) -> &[(String, EnvValue)] {
        &self.env
    }

    /// The working directory, if set.
    pub fn working_dir(&self) -> Option<&str> {
        self.cwd.as_deref()
    }

    /// The timeout, if set.
    pub fn time_limit(&self) -> Option<Duration> {
        self.timeout
    }

    /// The whole command as one shell line (`cd DIR && env K=V PROGRAM ARGS…`), every piece
    /// quoted. It holds secret values in clear: hand it to a transport, never to a log.
    pub fn to_shell_line(&self) -> String {
        self.render(EnvValue::expose)
    }

    fn render(&self, value: fn(&EnvValue) -> &str) -> String {
        let mut line = String::new();
        if let Some(cwd) = &self.cwd {
            line.push_str("cd ");
            line.push_str(&shell_quote(cwd));
            line.push_str(" && ");
        }
        if !self.env.is_empty() {
            line.push_str("env");
            for (key, val) in &self.env {
                line.push(' ');
                line.push_str(&shell_quote(&format!("{key}={}", value(val))));
            }
            line.push(' ');
        }
        line.push_str(&shell_quote(&self.program));
        for arg in &self.args {
            line.push(' ');
            line.push_str(&shell_quote(arg));
        }
        line
    }
}

/// Shows the command as a quoted line with secret values masked (for logs and errors).
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::secret::redact(&self.render(EnvValue::shown)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_safe_words_and_wraps_the_rest() {
        assert_eq!(shell_quote("abc-1.2/x"), "abc-1.2/x");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn quoted_line_round_trips_through_a_real_shell() {
        let nasty = "a'b \"c\" $HOME `id` \\ ; | & \n end";
        let cmd = Command::new("printf")
            .args(["%s|%s", nasty])
            .env("X", nasty)
            .arg("");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd.to_shell_line())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{nasty}|"));
    }

    #[test]
    fn display_masks_secret_env_values() {
        let cmd = Command::new("deploy").env("TOKEN", Secret::new("display-mask-sentinel"));
        assert_eq!(cmd.to_string(), "env 'TOKEN=***' deploy");
        assert!(cmd.to_shell_line().contains("display-mask-sentinel"));
    }
}
