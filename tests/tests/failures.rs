//! Failures, interrupts, bad config and secrets: archive and cleanup still run, the exit
//! code says what failed, nothing is left, nothing secret is written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use gate_tests::{Workspace, text};

/// A two-host pipeline whose deploy step runs `deploy` (bash) on every host.
fn pipeline(deploy: &str) -> String {
    format!(
        r#"
[provider]
backend = "local"
hosts = 2

[deployer]
backend = "script"
hosts = "all"

[[deployer.deploy]]
name = "deploy"
script = '''
{deploy}
'''

[tester]
backend = "command"
[[tester.tests]]
run = ["true"]

[archiver]
paths = ["logs"]
"#
    )
}

fn assert_nothing_left(ws: &Workspace) {
    assert!(ws.live().is_empty(), "live ledger entries: {:?}", ws.live());
    assert!(ws.observe(&ws.run_id()).is_empty());
    assert!(ws.leftovers().is_empty(), "left: {:?}", ws.leftovers());
}

#[test]
fn a_failing_deploy_exits_1_after_archive_and_cleanup() {
    let ws = Workspace::new();
    ws.config(&pipeline(
        "mkdir -p logs; echo \"deploying on $GATE_HOST\" | tee logs/deploy.log\n[ \"$GATE_HOST\" != \"$GATE_PRIMARY\" ] || { echo 'the playbook broke' >&2; exit 7; }",
    ));
    let out = ws.run(&["run", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(ws.stage_status("deploy"), "failed");
    assert_eq!(ws.stage_status("test"), "skipped");
    assert_eq!(ws.stage_status("upgrade"), "skipped");
    assert_eq!(ws.stage_status("archive"), "passed");
    assert_eq!(ws.stage_status("cleanup"), "passed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let primary = format!("{}-1", ws.run_id());
    assert!(
        stderr.contains(&format!("host {primary}")),
        "the failure names the host: {stderr}"
    );
    assert!(
        stderr.contains("the playbook broke"),
        "the failure shows the output tail: {stderr}"
    );
    // archive ran: each host's logs made it out before cleanup removed the hosts
    for n in 1..=2 {
        let log = ws
            .artifacts()
            .join(format!("{}-{n}/logs/deploy.log", ws.run_id()));
        assert!(log.exists(), "{} missing", log.display());
    }
    let causes = &ws.run_json()["causes"];
    assert_eq!(causes[0]["kind"], "product", "{causes:#}");
    assert_nothing_left(&ws);
}

#[test]
fn a_failing_allocation_exits_3_and_frees_what_was_made() {
    let ws = Workspace::new();
    let config = pipeline("true").replace(
        "hosts = 2\n",
        "hosts = 3\nsetup = '[ \"$GATE_HOST\" != \"${GATE_RUN_ID}-3\" ] || exit 5'\n",
    );
    ws.config(&config);
    let out = ws.run(&["run", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(ws.stage_status("allocate"), "failed");
    assert_eq!(ws.stage_status("deploy"), "skipped");
    assert_eq!(ws.stage_status("archive"), "skipped");
    assert_eq!(ws.stage_status("cleanup"), "passed");
    assert_nothing_left(&ws);
}

/// Waits until `path` exists (a step reached a point), up to 30 s.
fn wait_for(path: impl Fn() -> Option<PathBuf>) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = path() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out after 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The first host's `started` marker under the workspace's hosts root.
fn started_marker(ws: &Workspace) -> Option<PathBuf> {
    let run_dir = std::fs::read_dir(ws.tmp()).ok()?.flatten().next()?.path();
    std::fs::read_dir(run_dir)
        .ok()?
        .flatten()
        .map(|e| e.path().join("started"))
        .find(|p| p.exists())
}

/// Starts a run whose deploy sleeps, and waits until the deploy script runs; returns the
/// gate process and the script's pid.
fn run_until_deploy_sleeps(ws: &Workspace) -> (std::process::Child, i32) {
    ws.config(&pipeline("echo $$ > deploy.pid; touch started; sleep 60"));
    let child = ws
        .gate()
        .args(["run", "-c", "gate.toml"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let marker = wait_for(|| started_marker(ws));
    let pid = std::fs::read_to_string(marker.with_file_name("deploy.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (child, pid)
}

fn interrupted_during_deploy(signal: nix::sys::signal::Signal, expected: i32) {
    let ws = Workspace::new();
    let (mut child, pid) = run_until_deploy_sleeps(&ws);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(expected), "{status:?}");
    assert_eq!(ws.stage_status("deploy"), "cancelled");
    assert_eq!(ws.stage_status("test"), "skipped");
    assert_eq!(ws.stage_status("archive"), "passed");
    assert_eq!(ws.stage_status("cleanup"), "passed");
    assert_eq!(ws.run_json()["causes"][0]["kind"], "interrupted");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the deploy script (pid {pid}) outlived the interrupt"
    );
    assert_nothing_left(&ws);
}

#[test]
fn sigterm_during_deploy_cleans_up_and_exits_143() {
    interrupted_during_deploy(nix::sys::signal::Signal::SIGTERM, 143);
}

#[test]
fn sigint_during_deploy_cleans_up_and_exits_130() {
    interrupted_during_deploy(nix::sys::signal::Signal::SIGINT, 130);
}

#[test]
fn kill_9_during_deploy_then_gate_cleanup_leaves_nothing() {
    let ws = Workspace::new();
    let (mut child, pid) = run_until_deploy_sleeps(&ws);
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    assert!(
        !ws.live().is_empty(),
        "the crash should have left live resources"
    );
    let script = format!("/proc/{pid}");
    assert!(
        std::path::Path::new(&script).exists(),
        "the deploy script runs in its own process group and should outlive gate's kill -9"
    );
    let out = ws.run(&["cleanup", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_nothing_left(&ws);
    wait_for(|| (!std::path::Path::new(&script).exists()).then(PathBuf::new));
}

const SENTINEL: &str = "sentinel-inline-7f3a9c";
const ENV_SENTINEL: &str = "sentinel-from-env-41d2e8";

#[test]
fn secrets_appear_only_masked_in_output_logs_state_and_artifacts() {
    let ws = Workspace::new();
    ws.config(&format!(
        r#"
[provider]
hosts = 2

[deployer]
backend = "script"
hosts = "all"
env = {{ TOKEN = {{ secret = "{SENTINEL}" }}, FROM_ENV = {{ env = "GATE_TEST_SECRET" }} }}

[[deployer.deploy]]
script = '''
echo "token=$TOKEN env=$FROM_ENV"
echo "stderr token=$TOKEN" >&2
mkdir -p logs
echo "file token=$TOKEN env=$FROM_ENV" > logs/secret.txt
'''

[tester]
backend = "command"
env = {{ TOKEN = {{ secret = "{SENTINEL}" }} }}
[[tester.tests]]
name = "prints the token and fails"
script = 'echo "test sees $TOKEN"; exit 1'

[archiver]
paths = ["logs"]
"#
    ));
    let out = ws
        .gate()
        .args(["-v", "run", "-c", "gate.toml"])
        .env("GATE_TEST_SECRET", ENV_SENTINEL)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the failing test fails the run: {}",
        text(&out)
    );
    let shown = text(&out);
    assert!(
        shown.contains("token=*** env=***"),
        "streamed output is masked: {shown}"
    );
    let mut checked = 0;
    for root in [ws.state(), ws.artifacts()] {
        for file in Workspace::files_under(&root) {
            let bytes = std::fs::read(root.join(&file)).unwrap();
            let content = String::from_utf8_lossy(&bytes);
            for secret in [SENTINEL, ENV_SENTINEL] {
                assert!(
                    !content.contains(secret),
                    "{} holds a secret in clear",
                    file.display()
                );
            }
            checked += 1;
        }
    }
    for secret in [SENTINEL, ENV_SENTINEL] {
        assert!(
            !shown.contains(secret),
            "stdout/stderr hold a secret: {shown}"
        );
    }
    assert!(checked > 10, "too few files checked: {checked}");
    let archived = std::fs::read_to_string(
        ws.artifacts()
            .join(format!("{}-1/logs/secret.txt", ws.run_id())),
    )
    .unwrap();
    assert_eq!(archived, "file token=*** env=***\n");
    let junit = std::fs::read_to_string(ws.artifacts().join("results/command.xml")).unwrap();
    assert!(junit.contains("test sees ***"), "{junit}");
}

#[test]
fn bad_config_exits_2_naming_the_file_and_key() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "[provider]\nbackend = \"local\"\nhostz = 3\n",
            &[],
            &["gate.toml: [provider]", "unknown field `hostz`"],
        ),
        (
            "[provider]\nhosts = \"many\"\n",
            &[],
            &["gate.toml: [provider] hosts"],
        ),
        (
            "[provider]\nbackend = \"nope\"\n",
            &[],
            &[
                "gate.toml: [provider] backend: unknown provider `nope`",
                "known: heat, local, ",
            ],
        ),
        (
            "[deployer]\nbackend = \"script\"\ntimeout_secs = \"soon\"\n",
            &[],
            &["gate.toml: [deployer] timeout_secs"],
        ),
        (
            "[deployer]\nbackend = \"script\"\n[[deployer.deploy]]\nname = \"x\"\n",
            &[],
            &["gate.toml: [deployer] deploy[0]", "needs `run` or `script`"],
        ),
        (
            "[provder]\nhosts = 1\n",
            &[],
            &["gate.toml: [provder]: unknown section"],
        ),
        ("[provider]\nhosts = [\n", &[], &["gate.toml"]),
        ("", &["--set", "provider.hosts"], &["KEY=VALUE"]),
        ("", &["--set", "provider.hosts=lots"], &["[provider] hosts"]),
        (
            "[run]\nconcurrency = 0\n",
            &[],
            &["gate.toml: [run] concurrency"],
        ),
    ];
    for (toml, extra, expected) in cases {
        let ws = Workspace::new();
        ws.config(toml);
        for command in ["run", "plan"] {
            let mut args = vec![command, "-c", "gate.toml"];
            args.extend_from_slice(extra);
            let out = ws.run(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{toml:?} {extra:?}: {}",
                text(&out)
            );
            for want in *expected {
                assert!(stderr.contains(want), "{toml:?}: `{want}` not in: {stderr}");
            }
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
        assert!(ws.leftovers().is_empty());
        assert!(
            !ws.state().join("run.json").exists(),
            "a bad config must not start a run"
        );
    }
    let ws = Workspace::new();
    let out = ws.run(&["run", "-c", "does-not-exist.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does-not-exist.toml"));
    let out = ws.run(&["run", "--from", "deploy-all"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown stage `deploy-all`"));
}

#[test]
fn keep_holds_the_hosts_and_a_new_run_refuses_until_cleanup() {
    let ws = Workspace::new();
    ws.config(&pipeline("true"));
    let out = ws.run(&["run", "-c", "gate.toml", "--keep"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(ws.stage_status("cleanup"), "skipped");
    assert_eq!(ws.run_json()["kept"], true);
    let kept = ws.run_id();
    assert_eq!(ws.observe(&kept).len(), 3, "run dir and two hosts stay");

    let status = ws.run(&["status", "-c", "gate.toml"]);
    let listing = String::from_utf8_lossy(&status.stdout);
    assert!(listing.contains("live resources: 3"), "{listing}");

    let again = ws.run(&["run", "-c", "gate.toml"]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("gate cleanup"));

    let changed = ws.run(&["cleanup", "-c", "gate.toml", "--set", "provider.hosts=5"]);
    assert_eq!(
        changed.status.code(),
        Some(2),
        "a different config is refused: {}",
        text(&changed)
    );
    assert!(String::from_utf8_lossy(&changed.stderr).contains("differs"));

    let out = ws.run(&["cleanup", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(ws.observe(&kept).is_empty());
    let again = ws.run(&["cleanup", "-c", "gate.toml"]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "cleanup is idempotent: {}",
        text(&again)
    );

    let out = ws.run(&["run", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_nothing_left(&ws);
}
