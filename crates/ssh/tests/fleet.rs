//! gate-ssh against real sshd hosts (the tests/harness fleet): session reuse, verbatim
//! arguments, streaming, timeouts and cancellation that kill the remote processes, SFTP
//! trees, host key pinning, authentication errors, unreachable hosts, a killed sshd.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use gate_core::transport::ExitStatus;
use gate_core::{Command, Connector, Error, ExecIo, Host, TransportExt};
use gate_ssh::{SshConfig, SshConnector};
use gate_test_harness::SshFleet;

use tokio_util::sync::CancellationToken;

mod common;
use common::{Io, connect, connector, host};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_reuse_one_session_and_arguments_arrive_verbatim() {
    let fleet = SshFleet::start(1).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let t = connect(&fleet, 0, scratch.path()).await;
    let io = Io::new(scratch.path());

    let nasty = "it's \"quoted\" $(touch /tmp/pwned) `id`; rm -rf / | & \n second line\ttab";
    let out = t
        .run(&Command::new("printf").args(["%s", nasty]), &io.io())
        .await
        .unwrap();
    assert_eq!(out.stdout, format!("{nasty}\n"));
    assert!(!fleet.hosts()[0].exec("test -e /tmp/pwned").status.success());

    let out = t
        .run(
            &Command::script("echo \"$GREETING from $(pwd)\"; echo to-stderr >&2")
                .env("GREETING", "it's me")
                .cwd("/etc"),
            &io.io(),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, "it's me from /etc\n");
    assert!(out.tail.contains(&"to-stderr".to_owned()));
    let logged = std::fs::read_to_string(scratch.path().join("host.log")).unwrap();
    assert!(
        logged.contains("to-stderr") && !logged.contains("GATE_PGID"),
        "{logged}"
    );

    for i in 0..20 {
        let out = t
            .run(&Command::new("echo").arg(i.to_string()), &io.io())
            .await
            .unwrap();
        assert_eq!(out.stdout, format!("{i}\n"));
    }
    let accepted = fleet.hosts()[0]
        .sshd_log()
        .matches("Accepted publickey")
        .count();
    assert_eq!(
        accepted,
        1,
        "one session for every command: {}",
        fleet.hosts()[0].sshd_log()
    );

    let failed = t
        .exec(&Command::script("echo bad >&2; exit 3"), &io.io())
        .await
        .unwrap();
    assert_eq!(failed.status, ExitStatus::Code(3));
    let err = t
        .run(&Command::script("echo why >&2; exit 4"), &io.io())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("fleet-1") && text.contains("why") && text.contains("status 4"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_moves_trees_and_keeps_links_and_tar_streams_a_tree() {
    let fleet = SshFleet::start(1).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let t = connect(&fleet, 0, scratch.path()).await;
    let io = Io::new(scratch.path());

    let src = scratch.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/file.txt"), "hello").unwrap();
    std::fs::write(src.join("run.sh"), "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(
        src.join("run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/hostname", src.join("link")).unwrap();
    t.upload(&src, "/opt/deep/tree").await.unwrap();
    let remote = &fleet.hosts()[0];
    assert_eq!(
        remote.exec_ok("cat /opt/deep/tree/sub/file.txt").unwrap(),
        "hello"
    );
    assert_eq!(
        remote.exec_ok("/opt/deep/tree/run.sh").unwrap().trim(),
        "ran"
    );
    assert_eq!(
        remote
            .exec_ok("readlink /opt/deep/tree/link")
            .unwrap()
            .trim(),
        "/etc/hostname"
    );

    let back = scratch.path().join("back");
    t.download("/opt/deep/tree", &back).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(back.join("sub/file.txt")).unwrap(),
        "hello"
    );
    assert!(
        std::fs::symlink_metadata(back.join("link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    let mut tar = Vec::new();
    t.download_tree("/opt/deep/tree", &mut tar, &io.io())
        .await
        .unwrap();
    let listing = std::process::Command::new("tar")
        .args(["-tf", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&tar)?;
            child.wait_with_output()
        })
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains("tree/sub/file.txt") && listing.contains("tree/link"),
        "{listing}"
    );

    let missing = t
        .download("/no/such/path", &scratch.path().join("x"))
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("/no/such/path"), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_keys_are_pinned_on_first_use_and_a_changed_key_is_refused() {
    let fleet = SshFleet::start(1).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let known = scratch.path().join("known_hosts");
    let target = host(&fleet.hosts()[0]);
    let cancel = CancellationToken::new();

    connector(&fleet, &known)
        .connect(&target, &cancel)
        .await
        .unwrap();
    let pinned = std::fs::read_to_string(&known).unwrap();
    let key = fleet.hosts()[0].host_key();
    let key_blob = key.split_whitespace().nth(1).unwrap();
    assert!(pinned.contains(key_blob), "pinned: {pinned}\nkey: {key}");
    // Pinned: connecting again is fine and adds nothing.
    connector(&fleet, &known)
        .connect(&target, &cancel)
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&known).unwrap(), pinned);

    fleet.hosts()[0].regenerate_host_key().unwrap();
    let err = connector(&fleet, &known)
        .connect(&target, &cancel)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("changed"), "{err}");
    assert!(err.to_string().contains("fleet-1"), "{err}");

    // Strict: only keys already known.
    let strict_file = scratch.path().join("strict_known_hosts");
    let strict = |file: &Path| {
        SshConnector::new(SshConfig {
            strict: true,
            ..connector(&fleet, file).config().clone()
        })
    };
    std::fs::write(&strict_file, "").unwrap();
    let err = strict(&strict_file)
        .connect(&target, &cancel)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("strict"), "{err}");
    std::fs::write(&strict_file, fleet.known_hosts()).unwrap();
    strict(&strict_file)
        .connect(&target, &cancel)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_an_auth_error_naming_host_and_user() {
    let fleet = SshFleet::start(1).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let wrong = scratch.path().join("wrong");
    gate_core::keys::RunKey::generate(&wrong, "gate-wrongkey").unwrap();
    let connector = SshConnector::new(SshConfig {
        identities: vec![wrong.join("id_ed25519")],
        ..connector(&fleet, &scratch.path().join("known_hosts"))
            .config()
            .clone()
    });
    let err = connector
        .connect(&host(&fleet.hosts()[0]), &CancellationToken::new())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("fleet-1") && text.contains("`root`") && text.contains("authentication"),
        "{text}"
    );
    assert!(
        text.contains(&wrong.join("id_ed25519").display().to_string()),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_never_answers_is_unreachable_after_the_deadline() {
    let scratch = tempfile::tempdir().unwrap();
    let connector = SshConnector::new(SshConfig {
        agent: false,
        known_hosts: Some(scratch.path().join("known_hosts")),
        connect_timeout_secs: 2,
        poll_secs: 1,
        ..SshConfig::default()
    });
    // Nothing listens on port 1 of this loopback address.
    let silent = Host {
        name: "silent".into(),
        address: "127.0.0.1".into(),
        port: 1,
        user: "root".into(),
        labels: vec![],
        transport: gate_ssh::SSH.into(),
        home: None,
    };
    let started = std::time::Instant::now();
    let err = connector
        .connect(&silent, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(
        err.to_string().contains("silent") && err.to_string().contains("within 2s"),
        "{err}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it gave up before the deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshd_killed_mid_command_is_an_error_naming_the_host() {
    let fleet = SshFleet::start(1).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let t = connect(&fleet, 0, scratch.path()).await;
    let io = Io::new(scratch.path());
    let running = {
        let t = t.clone();
        let log = io.log.clone();
        tokio::spawn(async move {
            let cancel = CancellationToken::new();
            let io = ExecIo {
                log: &log,
                cancel: &cancel,
            };
            t.exec(&Command::script("touch /tmp/started; sleep 60"), &io)
                .await
        })
    };
    let remote = &fleet.hosts()[0];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !remote.exec("test -e /tmp/started").status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "the command never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    remote.kill_sshd().unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the command noticed the lost connection")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("fleet-1"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_negotiate_aes128_gcm_the_fastest_cipher_on_loopback() {
    let fleet = SshFleet::start(1).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let transport = connector(&fleet, &scratch.path().join("known_hosts"))
        .connect_ssh(&host(&fleet.hosts()[0]), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(transport.cipher(), "aes128-gcm@openssh.com");
    // The session works with it.
    let io = Io::new(scratch.path());
    let out = transport
        .run(&Command::new("echo").arg("over gcm"), &io.io())
        .await
        .unwrap();
    assert_eq!(out.stdout, "over gcm\n");
}
