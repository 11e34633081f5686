//! The command shell (one long-lived bash per host) against real sshd hosts: one shell for
//! many commands, output that looks like its marks, commands that read stdin or call
//! `exit`, timeouts that kill the job's process group, concurrent commands on one host, a
//! shell that dies, and a host without a usable bash (a channel per command instead).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use gate_core::transport::ExitStatus;
use gate_core::{Command, Error, ExecIo, TransportExt};
use gate_test_harness::{FleetHost, SshFleet};
use tokio_util::sync::CancellationToken;

mod common;
use common::{Io, Rig, connect, gone};

/// The shell's command line on the host, as `pgrep -x -f` matches it.
const SHELL: &str = "bash --noprofile --norc -s gate-shell";

/// The pids of gate's shells on `remote` (call it while no command runs: a job is a fork of
/// the shell and has its command line until it execs).
fn shells(remote: &FleetHost) -> Vec<u32> {
    let out = remote.exec(&format!("pgrep -x -f '{SHELL}'"));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|pid| pid.parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shell_runs_every_command_and_lookalike_marks_are_output() {
    let rig = Rig::start().await;
    let (t, io, remote) = (&rig.t, &rig.io, rig.remote());

    assert_eq!(
        t.run(&Command::new("echo").arg("first"), &io.io())
            .await
            .unwrap()
            .stdout,
        "first\n"
    );
    let shell = shells(remote);
    assert_eq!(shell.len(), 1, "one shell after the first command");

    // Marks of every kind, with made-up nonces and the old wrapper's, mid-line and at line
    // starts, on both streams, and output without a final newline.
    let lookalikes = "\u{1f}GATE-0000000000000000 END 1 0\n\u{1f}GATE_EXIT 0\nx\u{1f}GATE-";
    let out = t
        .exec(
            &Command::script("printf '%s' \"$L\"; printf '%s' \"$L\" >&2; exit 5")
                .env("L", lookalikes),
            &io.io(),
        )
        .await
        .unwrap();
    assert_eq!(out.status, ExitStatus::Code(5));
    assert_eq!(out.stdout, format!("{lookalikes}\n"));
    // The tail has stdout and stderr: every line twice, nothing else.
    assert_eq!(out.tail.len(), 6, "{:?}", out.tail);
    for line in lookalikes.lines() {
        assert_eq!(
            out.tail.iter().filter(|l| *l == line).count(),
            2,
            "{line:?}"
        );
    }

    for i in 0..30 {
        let out = t
            .run(&Command::new("echo").arg(i.to_string()), &io.io())
            .await
            .unwrap();
        assert_eq!(out.stdout, format!("{i}\n"));
    }
    // Large output in one go, then a command right after it.
    let out = t
        .run(&Command::new("seq").arg("100000"), &io.io())
        .await
        .unwrap();
    assert_eq!(out.stdout.lines().count(), 100_000);
    assert_eq!(out.stdout.lines().last(), Some("100000"));
    assert_eq!(
        t.run(&Command::new("echo").arg("next"), &io.io())
            .await
            .unwrap()
            .stdout,
        "next\n"
    );
    assert_eq!(shells(remote), shell, "the same shell ran every command");
    let logged = std::fs::read_to_string(rig.scratch.path().join("host.log")).unwrap();
    assert!(!logged.contains("no command shell"), "{logged}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_is_empty_and_exit_ends_only_its_own_command() {
    let rig = Rig::start().await;
    let (t, io, remote) = (&rig.t, &rig.io, rig.remote());
    t.run(&Command::new("true"), &io.io()).await.unwrap();
    let shell = shells(remote);

    // Readers of stdin get end-of-file at once and cannot eat the commands after them.
    let cat = t.exec(&Command::new("cat"), &io.io()).await.unwrap();
    assert_eq!((cat.status, cat.stdout.as_str()), (ExitStatus::Code(0), ""));
    let read = t
        .exec(
            &Command::script("read -r line; echo \"got $line\""),
            &io.io(),
        )
        .await
        .unwrap();
    assert_eq!(read.status, ExitStatus::Code(1), "read sees end-of-file");
    let head = t
        .run(&Command::new("head").args(["-c", "100"]), &io.io())
        .await
        .unwrap();
    assert_eq!(head.stdout, "");

    // `exit` and `exec` as the program end that command only.
    let exit = t
        .exec(&Command::new("exit").arg("7"), &io.io())
        .await
        .unwrap();
    assert_eq!(exit.status, ExitStatus::Code(7));
    let exec = t
        .exec(
            &Command::new("exec").args(["sh", "-c", "echo replaced; exit 4"]),
            &io.io(),
        )
        .await
        .unwrap();
    assert_eq!(
        (exec.status, exec.stdout.as_str()),
        (ExitStatus::Code(4), "replaced\n")
    );
    let script = t
        .exec(&Command::script("cd /; export X=1; exit 3"), &io.io())
        .await
        .unwrap();
    assert_eq!(script.status, ExitStatus::Code(3));
    // Nothing of the commands before reached this one.
    let after = t
        .run(&Command::script("echo \"$(pwd) ${X:-unset}\""), &io.io())
        .await
        .unwrap();
    assert_eq!(after.stdout, "/root unset\n");
    assert_eq!(shells(remote), shell, "the shell survived them all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_the_jobs_process_group_and_the_shell_goes_on() {
    let rig = Rig::start().await;
    let (t, io, remote) = (&rig.t, &rig.io, rig.remote());
    t.run(&Command::new("true"), &io.io()).await.unwrap();
    let shell = shells(remote);

    let started = Instant::now();
    let err = t
        .exec(
            &Command::script(
                "sleep 300 & echo $! > /tmp/child.pid; ps -o pgid= -p $$ > /tmp/job.pgid; \
                 echo before-the-kill; wait",
            )
            .timeout(Duration::from_millis(800)),
            &io.io(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    assert!(err.to_string().contains("before-the-kill"), "{err}");
    let child = remote.exec_ok("cat /tmp/child.pid").unwrap();
    assert!(
        gone(remote, child.trim()),
        "the backgrounded sleep survived"
    );
    let pgid = remote.exec_ok("cat /tmp/job.pgid").unwrap();
    assert!(
        !shell.contains(&pgid.trim().parse().unwrap()),
        "the job ran in the shell's own group"
    );

    // Cancelled the same way.
    let trigger = io.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        trigger.cancel();
    });
    let err = t
        .exec(
            &Command::script("echo $$ > /tmp/job.pid; sleep 300"),
            &io.io(),
        )
        .await
        .unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    let job = remote.exec_ok("cat /tmp/job.pid").unwrap();
    assert!(gone(remote, job.trim()), "the cancelled job survived");

    let fresh = Io::new(rig.scratch.path());
    assert_eq!(
        t.run(&Command::new("echo").arg("alive"), &fresh.io())
            .await
            .unwrap()
            .stdout,
        "alive\n"
    );
    assert_eq!(shells(remote), shell, "the same shell after both");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_on_one_host_each_get_their_own_output() {
    let rig = Rig::start().await;
    let (t, io) = (&rig.t, &rig.io);
    let runs = (0..8).map(|id| {
        let (t, log) = (t.clone(), io.log.clone());
        tokio::spawn(async move {
            let cancel = CancellationToken::new();
            let io = ExecIo {
                log: &log,
                cancel: &cancel,
            };
            let cmd = Command::script(
                "for i in $(seq 200); do echo \"$ID-$i\"; echo \"err-$ID\" >&2; done; exit $ID",
            )
            .env("ID", id.to_string());
            (id, t.exec(&cmd, &io).await.unwrap())
        })
    });
    for run in runs.collect::<Vec<_>>() {
        let (id, out) = run.await.unwrap();
        assert_eq!(out.status, ExitStatus::Code(id));
        let expected: String = (1..=200).map(|i| format!("{id}-{i}\n")).collect();
        assert_eq!(out.stdout, expected, "command {id}");
        assert!(
            out.tail
                .iter()
                .all(|l| l == &format!("err-{id}") || l.starts_with(&format!("{id}-"))),
            "command {id}: {:?}",
            out.tail
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_shell_is_replaced_by_the_next_command() {
    let rig = Rig::start().await;
    let (t, io, remote) = (&rig.t, &rig.io, rig.remote());
    t.run(&Command::new("true"), &io.io()).await.unwrap();

    // Killed while idle: the next command starts a new one and runs.
    let first = shells(remote);
    remote.exec_ok(&format!("kill -KILL {}", first[0])).unwrap();
    let out = t
        .run(&Command::new("echo").arg("again"), &io.io())
        .await
        .unwrap();
    assert_eq!(out.stdout, "again\n");
    let second = shells(remote);
    assert_eq!(second.len(), 1);
    assert_ne!(second, first);

    // Killed by the command it runs: that command's error names the host, the next one runs.
    let err = t
        .exec(
            &Command::script(format!("kill -KILL {}; echo after", second[0])),
            &io.io(),
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("fleet-1") && text.contains("command shell ended"),
        "{text}"
    );
    let out = t
        .run(&Command::new("echo").arg("once more"), &io.io())
        .await
        .unwrap();
    assert_eq!(out.stdout, "once more\n");
    let third = shells(remote);
    assert_eq!(third.len(), 1);
    assert!(!third.contains(&second[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bash_every_command_gets_its_own_channel() {
    let fleet = SshFleet::start(1).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let remote = &fleet.hosts()[0];
    // A `bash` first on sshd's PATH that cannot run: the shell does not start. The login
    // shell (/bin/bash, by its full path) still works.
    remote
        .exec_ok("printf '#!/bin/sh\\nexit 127\\n' > /usr/local/bin/bash && chmod +x /usr/local/bin/bash")
        .unwrap();
    let t = connect(&fleet, 0, scratch.path()).await;
    let io = Io::new(scratch.path());

    let nasty = "it's \"quoted\" $(id) ; \n second";
    for _ in 0..3 {
        let out = t
            .run(&Command::new("printf").args(["%s", nasty]), &io.io())
            .await
            .unwrap();
        assert_eq!(out.stdout, format!("{nasty}\n"));
    }
    let failed = t
        .exec(&Command::new("sh").args(["-c", "exit 6"]), &io.io())
        .await
        .unwrap();
    assert_eq!(failed.status, ExitStatus::Code(6));
    let err = t
        .exec(
            &Command::new("sh")
                .args(["-c", "echo $$ > /tmp/job.pid; sleep 300"])
                .timeout(Duration::from_millis(800)),
            &io.io(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    let job = remote.exec_ok("cat /tmp/job.pid").unwrap();
    assert!(gone(remote, job.trim()), "the timed-out command survived");
    let logged = std::fs::read_to_string(scratch.path().join("host.log")).unwrap();
    assert_eq!(
        logged.matches("no command shell").count(),
        1,
        "tried once: {logged}"
    );
    assert!(shells(remote).is_empty());
}
