//! The run as people see it: `artifacts/report.html` rendered in a real headless Chromium
//! (after a success, a failed deploy, failing tests and an interrupt), the `--json` event
//! stream against `run.json`, plain output without control codes, `gate status`, and the
//! completions and man page generated from the CLI definition.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gate_tests::{Workspace, repo_root, text};

fn example() -> String {
    repo_root()
        .join("examples/local.toml")
        .display()
        .to_string()
}

/// A two-host pipeline whose deploy step runs `deploy` (bash) on every host and whose
/// tests are `tests` (TOML `[[tester.tests]]` tables).
fn pipeline(deploy: &str, tests: &str) -> String {
    format!(
        r#"
[provider]
backend = "local"
hosts = 2

[deployer]
backend = "script"
hosts = "all"
env = {{ TOKEN = {{ secret = "{SECRET}" }} }}

[[deployer.deploy]]
name = "deploy"
script = '''
{deploy}
'''

[tester]
backend = "command"
suite = "smoke"
hosts = "all"
{tests}

[archiver]
paths = ["logs"]
"#
    )
}

const SECRET: &str = "report-secret-5d81c0";

const PASSING_TESTS: &str = r#"
[[tester.tests]]
name = "answers"
run = ["true"]
"#;

/// Runs `chromium` headless on a `file://` page with an empty profile, killing it after
/// 90 s; returns stdout.
fn chromium(page: &Path, action: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.display());
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(action)
        .arg(&url)
        .env("HOME", profile.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `chromium` ({e}): install it (`apt-get install chromium`) or run scripts/test, which does")
        });
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish {action:?} on {url} within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "chromium {action:?} on {url}: {status:?}");
    reader.join().unwrap()
}

/// The report of the run in `ws`: checked to be self-contained, screenshotted (a real PNG
/// of the window's size), and returned as Chromium's DOM.
fn render_report(ws: &Workspace, name: &str) -> String {
    let page = ws.artifacts().join("report.html");
    let html = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
    for fetch in ["<script", "<link", "src=", "url(", "@import", "://"] {
        assert!(
            !html.contains(fetch),
            "the report must not fetch anything (`{fetch}`)"
        );
    }
    assert!(!html.contains(SECRET), "the report holds a secret in clear");

    let shot = ws.path().join(format!("{name}.png"));
    chromium(
        &page,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000".into(),
        ],
    );
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name}: not a PNG");
    let size = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!(
        (size(16), size(20)),
        (1280, 2000),
        "{name}: screenshot size"
    );
    if let Ok(dir) = std::env::var("GATE_TEST_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&shot, Path::new(&dir).join(format!("{name}.png"))).unwrap();
    }

    let dom = chromium(&page, &["--dump-dom".into()]);
    assert!(dom.contains("id=\"timeline\""), "{name}: no DOM: {dom}");
    dom
}

/// Checks the DOM has one stage row per stage of run.json, with its status.
fn assert_stage_rows(ws: &Workspace, dom: &str) {
    let run = ws.run_json();
    let stages = run["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 11, "every stage is recorded: {run:#}");
    for record in stages {
        let (stage, status) = (
            record["stage"].as_str().unwrap(),
            record["status"].as_str().unwrap(),
        );
        let row = format!("id=\"stage-{stage}\" data-stage=\"{stage}\" data-status=\"{status}\"");
        assert_eq!(dom.matches(&row).count(), 1, "row `{row}` in the DOM");
    }
    assert_eq!(dom.matches("class=\"stage-row").count(), 11);
}

/// The `data-…` counts of the test-counts box, and the big numbers shown in it.
fn assert_test_counts(dom: &str, tests: u32, failed: u32) {
    let counts = format!(
        "id=\"test-counts\" data-tests=\"{tests}\" data-passed=\"{}\" data-failures=\"{failed}\"",
        tests - failed
    );
    assert!(dom.contains(&counts), "`{counts}` in the DOM");
    assert!(dom.contains(&format!("id=\"tests-total\">{tests}<")));
    assert!(dom.contains(&format!("id=\"tests-failed\">{failed}<")));
}

fn assert_nothing_left(ws: &Workspace) {
    assert!(ws.live().is_empty(), "live ledger entries: {:?}", ws.live());
    assert!(ws.observe(&ws.run_id()).is_empty());
    assert!(ws.leftovers().is_empty(), "left: {:?}", ws.leftovers());
}

#[test]
fn report_of_a_successful_run_shows_every_stage_host_bars_tests_and_the_ledger() {
    let ws = Workspace::new();
    let out = ws.run(&["run", "-c", &example()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dom = render_report(&ws, "success");
    let run_id = ws.run_id();

    assert!(dom.contains(&format!("id=\"run-id\">{run_id}<")));
    assert!(dom.contains(&format!(
        "id=\"config-digest\">{}<",
        ws.run_json()["config_digest"].as_str().unwrap()
    )));
    assert!(dom.contains("class=\"verdict v-passed\" data-exit-code=\"0\""));
    assert!(!dom.contains("id=\"failure\""), "no failure section");
    assert_stage_rows(&ws, &dom);
    assert!(dom.contains("data-stage=\"cleanup\" data-status=\"passed\""));
    // a bar per host for each fan-out stage: 3 hosts × prepare-deployment, deploy, test, upgrade
    for stage in ["prepare-deployment", "deploy", "test", "upgrade"] {
        for n in 1..=3 {
            let row =
                format!("data-stage=\"{stage}\" data-host=\"{run_id}-{n}\" data-status=\"ok\"");
            assert!(dom.contains(&row), "host row `{row}`");
        }
    }
    assert_test_counts(&dom, 7, 0);
    assert!(dom.contains("href=\"results/local-smoke.xml\""));
    assert!(dom.contains(&format!("href=\"logs/deploy/{run_id}-1.log\"")));
    // the ledger: 1 directory + 3 hosts, created and deleted, with their ids
    assert!(dom.contains("id=\"ledger-summary\" data-live=\"0\">4 created, 4 deleted"));
    assert_eq!(dom.matches("class=\"op-created\"").count(), 4);
    assert_eq!(dom.matches("class=\"op-deleted\"").count(), 4);
    for n in 1..=3 {
        assert!(dom.contains(&format!("class=\"host\" data-host=\"{run_id}-{n}\"")));
    }
    assert_nothing_left(&ws);
}

#[test]
fn report_of_a_failed_deploy_starts_with_the_failing_hosts_output() {
    let ws = Workspace::new();
    ws.config(&pipeline(
        "mkdir -p logs; echo \"deploying with token=$TOKEN\"\n\
         [ \"$GATE_HOST\" != \"$GATE_PRIMARY\" ] || { echo 'the <playbook> broke & stopped' >&2; exit 7; }",
        PASSING_TESTS,
    ));
    let out = ws.run(&["run", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let dom = render_report(&ws, "failed-deploy");
    let primary = format!("{}-1", ws.run_id());

    assert!(dom.contains("class=\"verdict v-failed\" data-exit-code=\"1\""));
    assert_stage_rows(&ws, &dom);
    assert!(dom.contains("data-stage=\"deploy\" data-status=\"failed\""));
    assert!(dom.contains("data-stage=\"cleanup\" data-status=\"passed\""));
    // the failure comes first: before the timeline, naming the stage, with the tail of the
    // failing host's log (escaped, secrets masked) and a link to the whole log
    let failure = dom
        .find("<section id=\"failure\" class=\"failure\" data-stage=\"deploy\">")
        .expect("a failure section for deploy");
    assert!(failure < dom.find("id=\"timeline\"").unwrap());
    let section = &dom[failure..dom[failure..].find("</section>").unwrap() + failure];
    assert!(
        section.contains("the &lt;playbook&gt; broke &amp; stopped"),
        "{section}"
    );
    assert!(section.contains("token=***"), "{section}");
    assert!(section.contains(&format!("href=\"logs/deploy/{primary}.log\"")));
    assert!(
        !section.contains(&format!("href=\"logs/deploy/{}-2.log\"", ws.run_id())),
        "only the failing host's tail: {section}"
    );
    assert!(dom.contains(&format!(
        "data-stage=\"deploy\" data-host=\"{primary}\" data-status=\"failed\""
    )));
    assert!(dom.contains("id=\"no-tests\""), "tests never ran");
    assert!(dom.contains("data-live=\"0\""));
    assert_nothing_left(&ws);
}

#[test]
fn report_of_failing_tests_counts_them_and_lists_each_failure_with_its_message() {
    let ws = Workspace::new();
    ws.config(&pipeline(
        "true",
        r#"
[[tester.tests]]
name = "answers"
run = ["true"]

[[tester.tests]]
name = "primary is not broken"
script = '[ "$GATE_HOST" != "$GATE_PRIMARY" ] || { echo "expected 200, got 503" >&2; exit 1; }'
"#,
    ));
    let out = ws.run(&["run", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let dom = render_report(&ws, "failing-tests");

    assert_stage_rows(&ws, &dom);
    assert!(dom.contains("<section id=\"failure\" class=\"failure\" data-stage=\"test\">"));
    // 2 tests × 2 hosts, one failure on the primary
    assert_test_counts(&dom, 4, 1);
    assert_eq!(dom.matches("class=\"test-failure\"").count(), 1);
    let failures = &dom[dom.find("id=\"test-failures\"").unwrap()..];
    let failures = &failures[..failures.find("</table>").unwrap()];
    assert!(failures.contains("primary is not broken"), "{failures}");
    assert!(
        failures.contains("expected 200, got 503"),
        "the failure's output: {failures}"
    );
    assert!(dom.contains("id=\"slowest-tests\""));
    assert!(dom.contains("href=\"results/smoke.xml\""));
    assert_nothing_left(&ws);
}

/// Waits until `found` returns something, up to 30 s.
fn wait_for(found: impl Fn() -> Option<PathBuf>) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(path) = found() {
            return path;
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

#[test]
fn report_of_an_interrupted_run_shows_the_cancelled_stage_and_cleanups_outcome() {
    let ws = Workspace::new();
    ws.config(&pipeline(
        "echo \"waiting on $GATE_HOST\"; touch started; sleep 60",
        PASSING_TESTS,
    ));
    let mut child = ws
        .gate()
        .args(["run", "-c", "gate.toml"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(|| started_marker(&ws));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(143));
    let dom = render_report(&ws, "interrupted");

    assert!(dom.contains("class=\"verdict v-interrupted\" data-exit-code=\"143\""));
    assert_stage_rows(&ws, &dom);
    assert!(dom.contains("data-stage=\"deploy\" data-status=\"cancelled\""));
    assert!(dom.contains("data-stage=\"test\" data-status=\"skipped\""));
    assert!(dom.contains("data-stage=\"archive\" data-status=\"passed\""));
    assert!(dom.contains("data-stage=\"cleanup\" data-status=\"passed\""));
    assert!(
        dom.contains(
            "<section id=\"failure\" class=\"failure interrupted\" data-stage=\"deploy\">"
        )
    );
    assert!(
        dom.contains("waiting on"),
        "the interrupted step's output tail"
    );
    // each host's interrupted step is drawn as cancelled
    for n in 1..=2 {
        let row = format!(
            "data-stage=\"deploy\" data-host=\"{}-{n}\" data-status=\"cancelled\"",
            ws.run_id()
        );
        assert!(dom.contains(&row), "`{row}` in the DOM");
    }
    // written after cleanup: the ledger shows every resource deleted
    assert!(dom.contains("data-live=\"0\">3 created, 3 deleted"));
    assert_nothing_left(&ws);
}

#[test]
fn json_events_parse_line_by_line_and_their_stage_events_match_run_json() {
    let ws = Workspace::new();
    let out = ws.run(&["run", "--json", "-c", &example()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let kind = |e: &serde_json::Value| e["event"].as_str().unwrap().to_owned();
    let count = |k: &str| events.iter().filter(|e| kind(e) == k).count();

    let run = ws.run_json();
    let started: Vec<_> = run["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["started_at"].is_string())
        .collect();
    let stage_started: Vec<_> = events
        .iter()
        .filter(|e| kind(e) == "stage-started")
        .map(|e| e["stage"].clone())
        .collect();
    let stage_finished: Vec<_> = events
        .iter()
        .filter(|e| kind(e) == "stage-finished")
        .map(|e| {
            (
                e["stage"].clone(),
                e["status"].clone(),
                e["duration_ms"].clone(),
            )
        })
        .collect();
    let recorded: Vec<_> = started
        .iter()
        .map(|r| {
            (
                r["stage"].clone(),
                r["status"].clone(),
                r["duration_ms"].clone(),
            )
        })
        .collect();
    assert_eq!(
        stage_finished, recorded,
        "stage-finished events vs run.json"
    );
    let recorded_names: Vec<_> = recorded.iter().map(|r| r.0.clone()).collect();
    assert_eq!(stage_started, recorded_names);
    assert_eq!(started.len(), 7, "the example runs 7 configured stages");

    // 3 hosts × (the hooks prepare/run, deploy/pre, deploy/run, deploy/post, upgrade/run,
    // upgrade/post) + 7 tests, each started and ended
    assert_eq!(count("host-step"), 2 * (3 * 6 + 7));
    assert_eq!(count("resource-created"), 4);
    assert_eq!(count("resource-deleted"), 4);
    let counts = events.iter().find(|e| kind(e) == "test-counts").unwrap();
    assert_eq!(
        (counts["tests"].as_u64(), counts["failures"].as_u64()),
        (Some(7), Some(0))
    );
    assert_eq!(count("output"), 0, "command output only with -v");
    let last = events.last().unwrap();
    assert_eq!(kind(last), "run-finished");
    assert_eq!(last["run_id"], run["run_id"]);
    assert_eq!(last["exit_code"], 0);
    assert_eq!(last["stages"].as_array().unwrap().len(), 11);
    for text in [&stdout, &String::from_utf8_lossy(&out.stderr).into_owned()] {
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text}");
    }
    assert_nothing_left(&ws);
}

#[test]
fn output_without_a_terminal_is_plain_lines_with_no_control_codes() {
    let ws = Workspace::new();
    ws.config(&pipeline("echo deployed", PASSING_TESTS));
    let out = ws.run(&["run", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    for bad in ['\u{1b}', '\r', '\u{8}'] {
        assert!(!stderr.contains(bad), "control code {bad:?} in: {stderr}");
    }
    assert!(stderr.contains("==> deploy") && stderr.contains("<== deploy: passed"));
    assert!(stderr.contains("STAGE") && stderr.contains("report: artifacts/report.html"));
    assert!(out.stdout.is_empty(), "progress goes to stderr");
}

#[test]
fn status_shows_stages_hosts_and_live_resources_as_tables_and_as_json() {
    let ws = Workspace::new();
    ws.config(&pipeline("true", PASSING_TESTS));
    let out = ws.run(&["run", "-c", "gate.toml", "--keep"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run_id = ws.run_id();

    let status = ws.run(&["status", "-c", "gate.toml"]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let listing = String::from_utf8(status.stdout).unwrap();
    for want in [
        format!("run {run_id}"),
        "STAGE".into(),
        "HOST".into(),
        format!("{run_id}-1  primary"),
        "test: answers (ok)".into(),
        "live resources: 3".into(),
        "BACKEND".into(),
        "report: artifacts/report.html".into(),
    ] {
        assert!(listing.contains(&want), "`{want}` in:\n{listing}");
    }
    let deploy = listing
        .lines()
        .find(|l| l.trim_start().starts_with("deploy "))
        .unwrap();
    assert!(
        deploy.contains("passed") && deploy.contains("script"),
        "{deploy}"
    );

    let json = ws.run(&["status", "-c", "gate.toml", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["run"]["run_id"], run_id.as_str());
    assert_eq!(value["inventory"]["hosts"].as_array().unwrap().len(), 2);
    assert_eq!(value["live_resources"].as_array().unwrap().len(), 3);
    assert_eq!(value["host_steps"][0]["step"], "answers");
    assert!(value["report"].is_string());

    let cleanup = ws.run(&["cleanup", "-c", "gate.toml"]);
    assert_eq!(cleanup.status.code(), Some(0), "{}", text(&cleanup));
    let after = ws.run(&["status", "-c", "gate.toml"]);
    assert!(String::from_utf8_lossy(&after.stdout).contains("live resources: 0"));
    // the report is written again after `gate cleanup`, showing the resources deleted
    let report = std::fs::read_to_string(ws.artifacts().join("report.html")).unwrap();
    assert!(report.contains("data-live=\"0\">3 created, 3 deleted"));
    assert_nothing_left(&ws);
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definition() {
    let ws = Workspace::new();
    for (shell, marker) in [
        ("bash", "_gate()"),
        ("zsh", "#compdef gate"),
        ("fish", "complete -c gate"),
    ] {
        let out = ws.run(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {script}");
        for sub in ["run", "cleanup", "status", "json"] {
            assert!(script.contains(sub), "{shell} completes `{sub}`");
        }
    }
    let out = ws.run(&["man"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH gate 1"),
        "{page}"
    );
    assert!(
        page.contains("gate\\-run") || page.contains("gate-run"),
        "{page}"
    );

    let dir = ws.path().join("man");
    let out = ws.run(&["man", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for page in [
        "gate.1",
        "gate-run.1",
        "gate-status.1",
        "gate-completions.1",
    ] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
}
