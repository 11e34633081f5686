//! The text gate writes into a host's command shell: once to set it up, then once per
//! command. Every value in it is quoted with core's [`gate_core::shell_quote`]; it holds
//! secret environment values in clear, so it is written to the shell and never logged.
//!
//! A command runs as a background job of the shell: with job control on (`set -m`) bash
//! puts each job in a process group of its own, which a timeout or cancel kills as a whole.
//! The job is a subshell, so nothing it does (`cd`, `export`, `exit`, `exec`) reaches the
//! shell or the next command. Its stdin is `/dev/null`, so it cannot read the shell's input
//! (the next commands). The shell marks (see [`crate::marks`]) the start of each job on
//! stdout before it forks it (no start mark before the channel's end: the job never ran),
//! reports the job's process group on stderr, and its end on both streams, with the exit
//! code on stderr: once both end marks are in, the job's output on both streams is complete.

use gate_core::{Command, shell_quote};

/// The program the shell runs as, without startup files. The login shell started by sshd
/// `exec`s it, so the host's login shell may be anything that has `exec`.
pub const SHELL_LINE: &str = "exec bash --noprofile --norc -s gate-shell";

/// The mark prefix for a shell with `nonce`.
pub fn prefix(nonce: &str) -> String {
    format!("\x1fGATE-{nonce} ")
}

/// Sets the shell up: its own stderr goes to /dev/null (job notices such as "Killed" would
/// otherwise mix with a command's stderr), the real one is kept as fd 3 for the jobs and the
/// marks; job control on; the two functions that mark a job's start and report its end
/// (bash reads its input a byte at a time from a pipe: short job texts are cheaper). It
/// answers `READY` on both streams, or exits when job control is not available.
pub fn setup(nonce: &str) -> String {
    let mark = format!("\\037GATE-{nonce}");
    format!(
        "exec 3>&2 2>/dev/null; set -m; case $- in *m*) ;; *) exit 97;; esac\n\
         __gate_start() {{ printf '{mark} START %s\\n' \"$1\"; }}\n\
         __gate_end() {{ printf '{mark} PGID %s %s\\n' \"$1\" \"$!\" >&3; wait \"$!\"; \
         set -- \"$1\" \"$?\"; printf '{mark} END %s\\n' \"$1\"; \
         printf '{mark} END %s %s\\n' \"$1\" \"$2\" >&3; }}\n\
         printf '{mark} READY\\n'; printf '{mark} READY\\n' >&3\n"
    )
}

/// The text that runs `cmd` as job `seq` (in `home` unless the command names a directory):
/// the start mark, then the job in the background, then its end.
pub fn text(cmd: &Command, home: Option<&str>, seq: u64) -> String {
    format!(
        "__gate_start {seq}; {{ {}; }} </dev/null 2>&3 3>&- & __gate_end {seq}\n",
        body(cmd, home)
    )
}

/// `cd DIR && export K=V … && PROGRAM ARGS…`, every piece quoted.
fn body(cmd: &Command, home: Option<&str>) -> String {
    let mut line = String::new();
    if let Some(dir) = crate::exec::working_dir(cmd, home) {
        line.push_str("cd ");
        line.push_str(&shell_quote(&dir));
        line.push_str(" && ");
    }
    let env = cmd.env_list();
    let pairs = env
        .iter()
        .map(|(key, value)| shell_quote(&format!("{key}={}", value.expose())).into_owned());
    // `export` needs no extra process; `env` takes any name.
    let exported = env.iter().all(|(key, _)| exportable(key));
    if !env.is_empty() {
        line.push_str(if exported { "export" } else { "env" });
        for pair in pairs {
            line.push(' ');
            line.push_str(&pair);
        }
        line.push_str(if exported { " && " } else { " " });
    }
    line.push_str(&shell_quote(cmd.program()));
    for arg in cmd.arg_list() {
        line.push(' ');
        line.push_str(&shell_quote(arg));
    }
    line
}

/// Whether `export NAME=…` in the job's subshell means what `env NAME=… program` means: a
/// name, and not one of bash's own variables (read-only, dynamic, or changing how the
/// subshell parses or runs).
fn exportable(name: &str) -> bool {
    const BASH_OWN: &[&str] = &[
        "EUID",
        "UID",
        "PPID",
        "SHELLOPTS",
        "GROUPS",
        "FUNCNAME",
        "RANDOM",
        "SRANDOM",
        "SECONDS",
        "LINENO",
        "HISTCMD",
        "DIRSTACK",
        "EPOCHSECONDS",
        "EPOCHREALTIME",
        "OPTIND",
        "OPTARG",
        "OPTERR",
        "IFS",
        "PS4",
        "POSIXLY_CORRECT",
        "GLOBIGNORE",
    ];
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("BASH")
        && !name.starts_with("COMP_")
        && !BASH_OWN.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `setup` then `jobs` through a local bash, as the host's shell would.
    fn through_bash(jobs: &[String]) -> (String, String) {
        use std::io::Write;
        let mut child = std::process::Command::new("bash")
            .args(["--noprofile", "--norc", "-s"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(setup("n0").as_bytes()).unwrap();
        for job in jobs {
            stdin.write_all(job.as_bytes()).unwrap();
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn jobs_run_verbatim_in_their_own_group_and_report_their_exit_code() {
        let nasty = "a'b \"c\" $(id) `id` ; | & \n end } ; {";
        let printf = Command::new("printf")
            .args(["%s|%s|", nasty, "$X"])
            .env("X", nasty)
            .cwd("/tmp");
        let script =
            Command::script("printf '%s|%s|%s' \"$X\" \"$(pwd)\" \"$(ps -o pgid= -p $$)\"; exit 3")
                .env("X", nasty)
                .env("WEIRD-NAME", "1");
        let exit = Command::new("exit").arg("7");
        let reads = Command::new("cat");
        let jobs = [
            text(&printf, None, 1),
            text(&script, Some("/tmp"), 2),
            text(&exit, None, 3),
            text(&reads, None, 4),
            "echo after\n".to_owned(),
        ];
        assert!(
            jobs[1].contains("env 'X="),
            "a name bash cannot export: env"
        );
        assert!(jobs[0].contains("export 'X="));
        let (stdout, stderr) = through_bash(&jobs);
        let marks = "\u{1f}GATE-n0 ";
        assert!(
            stdout.starts_with(&format!(
                "{marks}READY\n{marks}START 1\n{nasty}|$X|{marks}END 1\n{marks}START 2\n"
            )),
            "{stdout:?}"
        );
        let second = stdout.split(&format!("{marks}START 2\n")).nth(1).unwrap();
        let (printed, rest) = second.split_once(&format!("{marks}END 2\n")).unwrap();
        let fields: Vec<&str> = printed.rsplitn(3, '|').collect();
        assert_eq!(fields[1..], ["/tmp", nasty], "{printed:?}");
        assert_eq!(
            rest,
            format!("{marks}START 3\n{marks}END 3\n{marks}START 4\n{marks}END 4\nafter\n")
        );
        // The job's group is its own (reported in PGID), not the shell's.
        let pgid_2 = stderr
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{marks}PGID 2 ")))
            .unwrap();
        assert_eq!(fields[0].trim(), pgid_2, "{stderr:?}");
        for (seq, code) in [(1, 0), (2, 3), (3, 7), (4, 0)] {
            assert!(
                stderr.contains(&format!("{marks}END {seq} {code}\n")),
                "{seq}: {stderr:?}"
            );
        }
    }

    #[test]
    fn only_plain_names_are_exported() {
        assert!(exportable("GATE_RUN_ID") && exportable("_x1") && exportable("PATH"));
        for name in [
            "",
            "1A",
            "A-B",
            "UID",
            "BASH_ENV",
            "SHELLOPTS",
            "IFS",
            "A B",
        ] {
            assert!(!exportable(name), "{name}");
        }
    }
}
