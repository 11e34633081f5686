//! The `tempest` tester over SSH on real sshd fleet hosts:
//!
//! - a real Tempest, installed by the tester from a wheel mirror served on loopback
//!   (`scripts/tempest-wheels` fills it), configured by the tester and run against the real
//!   Keystone and Nova of tests/harness: its JUnit holds the real test ids with their
//!   outcomes (passes, and the skip Tempest decides from the tempest.conf it got), the
//!   artifacts hold tempest.conf with the password masked and no secret anywhere;
//! - a stand-in `tempest` that emits real subunit (python-subunit from the venv scripts/test
//!   builds, `GATE_SUBUNIT_VENV`): a crash part way (what ran, the unfinished test, and an
//!   error case with the exit status and the last output; not retried), failing tests
//!   (no error case, no retry), a flaky first attempt (one retry, the results of the
//!   second), a container exec prefix that every command and file goes through, and
//!   hostile config values that arrive verbatim with no shell running them.
//!
//! Needs root (the fleet), `scripts/tempest-wheels`, `scripts/openstack-env` and
//! target/subunit-venv.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use gate_core::{BackendConfig, Stage, Tester};
use gate_ssh::testkit::FleetStage;
use gate_test_harness::{Mirror, OpenStack};
use gate_testers::TempestTester;
use quick_xml::events::Event;

/// A test case of a JUnit file: class name, name, outcome (`passed`, `failure`, `error`,
/// `skipped`) and the text of its element.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Case {
    classname: String,
    name: String,
    outcome: String,
    message: String,
    text: String,
}

fn cases(path: &Path) -> Vec<Case> {
    let xml = std::fs::read_to_string(path).unwrap();
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut out: Vec<Case> = Vec::new();
    let mut in_outcome = false;
    loop {
        match reader.read_event().unwrap() {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => {
                let attr = |name: &[u8]| {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == name)
                        .map(|a| a.unescape_value().unwrap().into_owned())
                        .unwrap_or_default()
                };
                match e.name().as_ref() {
                    b"testcase" => out.push(Case {
                        classname: attr(b"classname"),
                        name: attr(b"name"),
                        outcome: "passed".into(),
                        message: String::new(),
                        text: String::new(),
                    }),
                    outcome @ (b"failure" | b"error" | b"skipped") => {
                        let case = out.last_mut().unwrap();
                        case.outcome = String::from_utf8_lossy(outcome).into_owned();
                        case.message = attr(b"message");
                        in_outcome = true;
                    }
                    _ => {}
                }
            }
            Event::Text(t) if in_outcome => {
                out.last_mut()
                    .unwrap()
                    .text
                    .push_str(&t.unescape().unwrap());
            }
            Event::CData(t) if in_outcome => {
                out.last_mut()
                    .unwrap()
                    .text
                    .push_str(&String::from_utf8_lossy(&t));
            }
            Event::End(e) if matches!(e.name().as_ref(), b"failure" | b"error" | b"skipped") => {
                in_outcome = false;
            }
            _ => {}
        }
    }
    out
}

fn tester(toml: &str) -> TempestTester {
    let section = BackendConfig::from_toml("tester", "tempest", toml).unwrap();
    TempestTester::from_config(&section).unwrap()
}

/// Every file under `dir`, with its bytes.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                out.push((path, bytes));
            }
        }
    }
    out
}

fn assert_nowhere(dir: &Path, secret: &str) {
    for (path, bytes) in files_under(dir) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "{} holds a secret",
            path.display()
        );
    }
}

// ---------------------------------------------------------------------------------------
// A real Tempest against the real Keystone and Nova.
// ---------------------------------------------------------------------------------------

/// The wheel cache scripts/tempest-wheels fills.
fn wheels() -> PathBuf {
    let dir = std::env::var_os("GATE_TEMPEST_WHEELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
            target.join("tempest-wheels")
        });
    assert!(
        dir.join(".complete").is_file(),
        "the Tempest wheel cache {} is empty: run scripts/tempest-wheels first",
        dir.display()
    );
    dir
}

const TOKEN_TEST: &str = "test_create_token[id-6f8e4436-fc96-4282-8122-e41df57197a9]";
const TOKENS_CLASS: &str = "tempest.api.identity.v3.test_tokens.TokensV3Test";
const FLAVORS_CLASS: &str = "tempest.api.compute.flavors.test_flavors.FlavorsV2TestJSON";
const LIST_FLAVORS: &str = "test_list_flavors[id-e36c0eaa-dff5-4082-ad1f-3f9a80aa3f59,smoke]";
const GET_FLAVOR: &str = "test_get_flavor[id-1f12046b-753d-40d2-abb6-d8eb8b30cb2f,smoke]";
const ACCESS_RULES: &str = "tempest.api.identity.v3.test_access_rules.AccessRulesV3Test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_tempest_from_the_mirror_runs_identity_and_compute_tests_against_real_keystone_and_nova()
 {
    let started = std::time::Instant::now();
    let wheels = wheels();
    let version = std::fs::read_to_string(wheels.join("pip/TEMPEST_VERSION")).unwrap();
    let mirror = Mirror::start(&wheels).unwrap();
    let cloud = tokio::task::spawn_blocking(OpenStack::shared)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the OpenStack services did not start: {e}"));
    let admin = cloud.admin();
    let stage = FleetStage::start(1, Stage::Test).await;

    let t = tester(&format!(
        r#"
include = [
    '^tempest\.api\.identity\.v3\.test_tokens\.TokensV3Test\.test_create_token\b',
    '^tempest\.api\.compute\.flavors\.test_flavors\.FlavorsV2TestJSON\.test_(list|get)_flavors?\[',
    '^tempest\.api\.identity\.v3\.test_access_rules\.',
]
concurrency = 2
region = "{region}"
image_ref = "{image}"
flavor_ref = "{flavor}"
services = {{ keystone = true, nova = true, glance = true, neutron = false, cinder = false, swift = false, horizon = false, heat = false }}
timeout_secs = 600

[install]
index_url = "{index}"
version = "{version}"
timeout_secs = 600

[auth]
url = "{auth_url}"
admin_username = "{user}"
admin_password = {{ secret = "{password}" }}
admin_project_name = "{project}"

[options.identity-feature-enabled]
access_rules = false
"#,
        region = cloud.region(),
        image = cloud.image_id(),
        flavor = cloud.flavor_id(),
        index = mirror.pip_index_url(),
        version = version.trim(),
        auth_url = cloud.auth_url(),
        user = admin.username(),
        password = admin.password(),
        project = admin.project_name(),
    ));
    let cx = stage.cx(Stage::Test);
    let report = t.test(&cx).await.unwrap();
    let results = cx.results_dir();
    let junit = results.join("tempest_results.xml");
    let got = cases(&junit);
    let log = std::fs::read_to_string(cx.logs_dir().join("fleet-1.log")).unwrap_or_default();
    let show = format!("{got:#?}\n{}", &log[log.len().saturating_sub(6000)..]);

    // Installed by the tester, from the mirror.
    let requests = mirror.server().requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET /pip/simple/tempest/")),
        "{requests:?}"
    );
    assert!(
        stage
            .host(1)
            .host_path("/opt/gate-tempest-venv/bin/tempest")
            .exists()
    );

    // The real test ids with their outcomes.
    let find = |classname: &str, name: &str| {
        got.iter()
            .find(|c| c.classname == classname && c.name == name)
            .unwrap_or_else(|| panic!("no {classname}.{name}:\n{show}"))
    };
    assert_eq!(find(TOKENS_CLASS, TOKEN_TEST).outcome, "passed", "{show}");
    assert_eq!(
        find(FLAVORS_CLASS, LIST_FLAVORS).outcome,
        "passed",
        "{show}"
    );
    assert_eq!(find(FLAVORS_CLASS, GET_FLAVOR).outcome, "passed", "{show}");
    // Access rules are off in the tempest.conf the tester wrote: Tempest skips the class.
    let skipped: Vec<&Case> = got
        .iter()
        .filter(|c| format!("{}.{}", c.classname, c.name).contains(ACCESS_RULES))
        .collect();
    assert!(!skipped.is_empty(), "{show}");
    for case in &skipped {
        assert_eq!(case.outcome, "skipped", "{show}");
        assert!(
            case.text.contains("access rules are not available"),
            "{show}"
        );
    }
    assert_eq!((report.failures, report.errors), (0, 0), "{show}");
    assert_eq!(report.tests, got.len() as u64);
    assert!(report.skipped >= 1, "{show}");

    // tempest.conf is in the artifacts with its password masked; no secret anywhere.
    let conf = std::fs::read_to_string(results.join("fleet-1/tempest/tempest.conf")).unwrap();
    assert!(conf.contains("admin_password = ***\n"), "{conf}");
    assert!(
        conf.contains(&format!("uri_v3 = {}\n", cloud.auth_url())),
        "{conf}"
    );
    assert!(results.join("fleet-1/tempest/tempest.subunit").is_file());
    assert_nowhere(&cx.artifacts_dir, admin.password());
    assert_nowhere(&cx.logs_dir(), admin.password());
    for case in &got {
        eprintln!("{} {}.{}", case.outcome, case.classname, case.name);
    }
    eprintln!("real tempest test took {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// A stand-in tempest that emits real subunit.
// ---------------------------------------------------------------------------------------

/// The virtualenv with python-subunit that scripts/test builds (fleet hosts see it).
fn subunit_venv() -> PathBuf {
    let venv = std::env::var_os("GATE_SUBUNIT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/subunit-venv"));
    assert!(
        venv.join("bin/python").exists(),
        "python-subunit is missing at {}: run scripts/test (it installs it) or set GATE_SUBUNIT_VENV",
        venv.display()
    );
    std::fs::canonicalize(venv).unwrap()
}

/// `tempest` as far as the tester uses it: `--version`, `init`, and `run --subunit`, which
/// writes real subunit v2 with python-subunit. Its mode (`crash`, `fail`, `flaky`, `pass`) is in
/// /root/stand-in/mode; every call's arguments are appended to /root/stand-in/calls (one
/// JSON list a line), `GATE_IN_CONTAINER` to /root/stand-in/container, and the config file
/// of a run is copied to /root/stand-in/tempest.conf.
const STAND_IN: &str = r#"
import datetime, json, os, shutil, signal, sys
import subunit

state = "/root/stand-in"
args = sys.argv[1:]
with open(os.path.join(state, "calls"), "a") as f:
    f.write(json.dumps(args) + "\n")
with open(os.path.join(state, "env"), "a") as f:
    f.write(json.dumps(os.environ.get("GATE_HOSTILE", "")) + "\n")
with open(os.path.join(state, "container"), "a") as f:
    f.write(os.environ.get("GATE_IN_CONTAINER", "-") + "\n")
if args == ["--version"]:
    print("tempest stand-in 0.1")
    sys.exit(0)
if args[0] == "init":
    ws = args[-1]
    for d in ("etc", "logs", ".stestr"):
        os.makedirs(os.path.join(ws, d), exist_ok=True)
    with open(os.path.join(ws, ".stestr.conf"), "w") as f:
        f.write("[DEFAULT]\ntest_path=./tempest/test_discover\n")
    sys.exit(0)

conf = args[args.index("--config-file") + 1]
shutil.copy(conf, os.path.join(state, "tempest.conf"))
with open(os.path.join(os.path.dirname(os.path.dirname(conf)), "logs", "tempest.log"), "a") as f:
    f.write("stand-in tempest log\n")
mode = open(os.path.join(state, "mode")).read().strip()
attempts_file = os.path.join(state, "attempts")
attempt = int(open(attempts_file).read()) + 1 if os.path.exists(attempts_file) else 1
with open(attempts_file, "w") as f:
    f.write(str(attempt))

out = subunit.StreamResultToBytes(sys.stdout.buffer)
now = lambda: datetime.datetime.now(datetime.timezone.utc)
C = "tempest.api.compute.servers.test_servers.ServersTestJSON."

def start(test_id):
    out.status(test_id=test_id, test_status="inprogress", timestamp=now())

def end(test_id, status, traceback=None):
    if traceback:
        out.status(test_id=test_id, file_name="traceback", file_bytes=traceback.encode(),
                   mime_type="text/x-traceback; charset=utf8", eof=True)
    out.status(test_id=test_id, test_status=status, timestamp=now())

def test(test_id, status, traceback=None):
    start(test_id)
    end(test_id, status, traceback)

if mode == "crash":
    test(C + "test_list_servers[id-1,smoke]", "success")
    test(C + "test_show_server[id-2]", "success")
    test(C + "test_reboot_server[id-3]", "fail", "Traceback (most recent call last):\nAssertionError: 500 != 200\n")
    start(C + "test_resize_server[id-4]")
    sys.stdout.buffer.flush()
    print("tempest worker 1: MemoryError in the middle of test_resize_server", file=sys.stderr)
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
elif mode == "fail":
    test(C + "test_list_servers[id-1,smoke]", "success")
    test(C + "test_reboot_server[id-3]", "fail", "Traceback (most recent call last):\nAssertionError: 500 != 200\n")
    sys.exit(1)
elif mode == "flaky" and attempt == 1:
    test(C + "test_list_servers[id-1,smoke]", "success")
    sys.stdout.buffer.flush()
    print("The test run didn't actually run any tests", file=sys.stderr)
    print("Race in testr accounting.", file=sys.stderr)
    sys.exit(1)
else:
    for name in ("test_list_servers[id-1,smoke]", "test_show_server[id-2]", "test_reboot_server[id-3]"):
        test(C + name, "success")
    sys.exit(0)
"#;

/// A one-host fleet with the stand-in installed as /usr/local/bin/tempest in `mode`.
async fn stand_in_fleet(mode: &str) -> FleetStage {
    let venv = subunit_venv();
    let stage = FleetStage::start(1, Stage::Test).await;
    let host = stage.host(1);
    host.exec_ok("mkdir -p /root/stand-in /usr/local/lib/gate-test")
        .unwrap();
    std::fs::write(
        host.host_path("/usr/local/lib/gate-test/tempest.py"),
        STAND_IN,
    )
    .unwrap();
    std::fs::write(host.host_path("/root/stand-in/mode"), mode).unwrap();
    std::fs::write(
        host.host_path("/usr/local/bin/tempest"),
        format!(
            "#!/bin/sh\nexec {} /usr/local/lib/gate-test/tempest.py \"$@\"\n",
            venv.join("bin/python").display()
        ),
    )
    .unwrap();
    host.exec_ok("chmod 755 /usr/local/bin/tempest").unwrap();
    stage
}

/// Every call of the stand-in: its arguments.
fn calls(stage: &FleetStage) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(stage.host(1).host_path("/root/stand-in/calls")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn runs(stage: &FleetStage) -> Vec<Vec<String>> {
    calls(stage)
        .into_iter()
        .filter(|c| c.first().map(String::as_str) == Some("run"))
        .collect()
}

const STAND_IN_CONFIG: &str = r#"
[install]
mode = "command"
command = "/usr/local/bin/tempest"

[auth]
url = "http://127.0.0.1:5000/v3"
admin_password = { secret = "stand-in-admin-password" }
"#;

const SERVERS: &str = "tempest.api.compute.servers.test_servers.ServersTestJSON";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_part_way_keeps_what_ran_and_adds_an_error_case_with_the_exit_and_output() {
    let stage = stand_in_fleet("crash").await;
    let t = tester(&format!("sets = [\"compute\"]\n{STAND_IN_CONFIG}"));
    let cx = stage.cx(Stage::Test);
    let report = t.test(&cx).await.unwrap();
    let got = cases(&cx.results_dir().join("tempest_results.xml"));
    let outcome = |name: &str| {
        got.iter()
            .find(|c| c.classname == SERVERS && c.name.starts_with(name))
            .unwrap_or_else(|| panic!("no {name}: {got:#?}"))
            .outcome
            .clone()
    };
    assert_eq!(outcome("test_list_servers"), "passed");
    assert_eq!(outcome("test_show_server"), "passed");
    assert_eq!(outcome("test_reboot_server"), "failure");
    // The test that ran when it died is there, unfinished.
    assert_eq!(outcome("test_resize_server"), "failure");
    let broke = got
        .iter()
        .find(|c| c.name == "tempest run")
        .unwrap_or_else(|| panic!("no error case: {got:#?}"));
    assert_eq!(broke.classname, "tempest.fleet-1");
    assert_eq!(broke.outcome, "error");
    assert!(
        broke
            .message
            .contains("exited with status 137 after 4 test(s), 1 of them unfinished"),
        "{broke:#?}"
    );
    assert!(
        broke
            .text
            .contains("MemoryError in the middle of test_resize_server"),
        "{broke:#?}"
    );
    assert_eq!(
        (report.tests, report.failures, report.errors),
        (5, 2, 1),
        "{got:#?}"
    );
    // No flaky pattern in its output: run once, not retried.
    assert_eq!(runs(&stage).len(), 1);
    let run = &runs(&stage)[0];
    assert!(
        run.windows(2)
            .any(|w| w == ["--regex", r"^tempest\.api\.compute\."]),
        "{run:?}"
    );
    assert!(run.contains(&"--subunit".to_owned()), "{run:?}");
    // What ran is kept too, and tempest's log with it.
    let dir = cx.results_dir().join("fleet-1/tempest");
    assert!(
        std::fs::metadata(dir.join("tempest.subunit"))
            .unwrap()
            .len()
            > 0
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("tempest.log")).unwrap(),
        "stand-in tempest log\n"
    );
    assert_nowhere(&cx.artifacts_dir, "stand-in-admin-password");
    assert_nowhere(&cx.logs_dir(), "stand-in-admin-password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_first_attempt_is_retried_once_and_the_second_attempt_counts() {
    let stage = stand_in_fleet("flaky").await;
    let t = tester(&format!("retries = 2\n{STAND_IN_CONFIG}"));
    let cx = stage.cx(Stage::Test);
    let report = t.test(&cx).await.unwrap();
    let got = cases(&cx.results_dir().join("tempest_results.xml"));
    assert_eq!(runs(&stage).len(), 2, "one retry, then it passed");
    assert_eq!(
        got.iter()
            .map(|c| (c.name.as_str(), c.outcome.as_str()))
            .collect::<Vec<_>>(),
        [
            ("test_list_servers[id-1,smoke]", "passed"),
            ("test_show_server[id-2]", "passed"),
            ("test_reboot_server[id-3]", "passed"),
        ]
    );
    assert_eq!((report.tests, report.failures, report.errors), (3, 0, 0));
    let dir = cx.results_dir().join("fleet-1/tempest");
    assert!(
        dir.join("attempt-1.subunit").is_file(),
        "the first stream is kept"
    );
    assert!(dir.join("tempest.subunit").is_file());
    let log = std::fs::read_to_string(cx.logs_dir().join("fleet-1.log")).unwrap();
    assert!(
        log.contains("tempest run 1 of 3 failed with `Race in testr accounting` in its output: running it again"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_config_values_reach_tempest_verbatim_and_no_shell_runs_them() {
    let stage = stand_in_fleet("pass").await;
    let include = r#"'; rm -rf / #"#;
    let exclude = r#"$(touch /tmp/pwned) `touch /tmp/pwned` "; touch /tmp/pwned; ""#;
    let workspace = r#"ws dir/it's "$(touch /tmp/pwned)""#;
    let password = r#"pa'ss"word $(touch /tmp/pwned) ;|&"#;
    let env = r#"a'b "c" $(touch /tmp/pwned) \ ; | &"#;
    let toml = format!(
        r#"
include = [{include:?}]
exclude = [{exclude:?}]
workspace = {workspace:?}
region = "Region'; touch /tmp/pwned; '"
env = {{ GATE_HOSTILE = {env:?} }}
[install]
mode = "command"
command = "/usr/local/bin/tempest"
[auth]
url = "http://127.0.0.1:5000/v3?a='b'&c=$(touch /tmp/pwned)"
admin_password = {{ secret = {password:?} }}
"#,
    );
    let t = tester(&toml);
    let cx = stage.cx(Stage::Test);
    let report = t.test(&cx).await.unwrap();
    assert_eq!((report.tests, report.failures, report.errors), (3, 0, 0));
    let runs = runs(&stage);
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert!(
        run.windows(2).any(|w| w[0] == "--regex" && w[1] == include),
        "{run:?}"
    );
    assert!(
        run.windows(2)
            .any(|w| w[0] == "--exclude-regex" && w[1] == exclude),
        "{run:?}"
    );
    // The workspace was made where it was asked for, under the home.
    let conf_path = &run[run.iter().position(|a| a == "--config-file").unwrap() + 1];
    assert_eq!(
        conf_path,
        &format!("/root/{workspace}/etc/tempest.conf"),
        "{run:?}"
    );
    let env_seen = std::fs::read_to_string(stage.host(1).host_path("/root/stand-in/env")).unwrap();
    assert!(
        env_seen
            .lines()
            .any(|l| serde_json::from_str::<String>(l).unwrap() == env),
        "{env_seen}"
    );
    // tempest.conf holds the values as oslo.config reads them back (`$$` is a `$`).
    let conf =
        std::fs::read_to_string(stage.host(1).host_path("/root/stand-in/tempest.conf")).unwrap();
    let oslo = |v: &str| v.replace('$', "$$");
    assert!(
        conf.contains(&format!("admin_password = {}\n", oslo(password))),
        "{conf}"
    );
    assert!(
        conf.contains(&format!(
            "uri_v3 = {}\n",
            oslo("http://127.0.0.1:5000/v3?a='b'&c=$(touch /tmp/pwned)")
        )),
        "{conf}"
    );
    assert!(
        conf.contains("region = Region'; touch /tmp/pwned; '\n"),
        "{conf}"
    );
    assert!(
        !stage.host(1).host_path("/tmp/pwned").exists(),
        "a shell ran a config value"
    );
    assert!(!Path::new("/tmp/pwned").exists());
    assert_nowhere(&cx.artifacts_dir, password);
    assert_nowhere(&cx.logs_dir(), password);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_container_every_command_and_file_goes_through_its_exec_prefix() {
    let stage = stand_in_fleet("pass").await;
    // An exec prefix that passes standard input and output through, as
    // `lxc-attach -n NAME --` and `docker exec -i NAME` do.
    let t = tester(&format!(
        "[container]\nexec = [\"env\", \"GATE_IN_CONTAINER=yes\"]\n{STAND_IN_CONFIG}"
    ));
    let cx = stage.cx(Stage::Test);
    let report = t.test(&cx).await.unwrap();
    assert_eq!((report.tests, report.failures, report.errors), (3, 0, 0));
    let host = stage.host(1);
    let seen = std::fs::read_to_string(host.host_path("/root/stand-in/container")).unwrap();
    assert_eq!(
        seen, "yes\nyes\nyes\n",
        "--version, init and run, all inside"
    );
    // The default workspace of a container, tempest.conf in it private to its owner.
    let ws = format!("/var/tmp/gate-tempest/{}", cx.run_id.as_str());
    let conf = host.host_path(format!("{ws}/etc/tempest.conf"));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&conf).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(&conf)
            .unwrap()
            .contains("admin_password = stand-in-admin-password\n")
    );
    // Nothing is left in the host's staging directory but the private directory itself.
    let staging = host.host_path(format!("/root/gate-results/{}/tempest", cx.run_id.as_str()));
    let left: Vec<_> = std::fs::read_dir(&staging)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&staging).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(
        std::fs::read_to_string(cx.results_dir().join("fleet-1/tempest/tempest.log")).unwrap(),
        "stand-in tempest log\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_tests_explain_a_failed_run_without_an_error_case_or_a_retry() {
    let stage = stand_in_fleet("fail").await;
    let t = tester(STAND_IN_CONFIG);
    let cx = stage.cx(Stage::Test);
    let report = t.test(&cx).await.unwrap();
    let got = cases(&cx.results_dir().join("tempest_results.xml"));
    assert_eq!(
        got.iter()
            .map(|c| (c.name.as_str(), c.outcome.as_str()))
            .collect::<Vec<_>>(),
        [
            ("test_list_servers[id-1,smoke]", "passed"),
            ("test_reboot_server[id-3]", "failure"),
        ]
    );
    assert!(
        got[1].text.contains("AssertionError: 500 != 200"),
        "{got:#?}"
    );
    assert_eq!((report.tests, report.failures, report.errors), (2, 1, 0));
    assert_eq!(runs(&stage).len(), 1, "a plain failure is not flaky");
    // Nothing selected: the smoke set.
    assert!(
        runs(&stage)[0]
            .windows(2)
            .any(|w| w == ["--regex", r"\[.*\bsmoke\b.*\]"]),
        "{:?}",
        runs(&stage)
    );
}
