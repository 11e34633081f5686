//! The `command` and `ceph` testers in whole `gate run`s over SSH on real sshd lab hosts
//! (the tests/harness fleet, `static` provider): result files collected from every host,
//! a broken JUnit file kept beside a valid error report, and a Ceph functional suite (a
//! stand-in script on one host) whose JUnit arrives checked and whose arguments reach it
//! verbatim, never through a shell.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gate_core::junit::read_counts;
use gate_test_harness::SshFleet;
use gate_tests::{Workspace, static_lab_config, text};

/// Every host writes a JUnit file and a log; fleet-3 also writes a truncated JUnit file, and
/// fleet-1's JUnit lives under an absolute path.
const COMMAND_TESTER: &str = r#"
[tester]
backend = "command"
suite = "fleet"
hosts = "all"
junit = ["results/*.xml", "/var/log/unit/**/*.xml"]
files = ["/var/log/unit/*.log"]

[[tester.tests]]
name = "unit tests"
script = '''
mkdir -p results /var/log/unit/nested
echo "unit tests ran on $(hostname)" > /var/log/unit/run.log
printf '<testsuite name="unit" tests="2"><testcase classname="unit" name="ok"/><testcase classname="unit" name="%s"><failure message="bad">trace</failure></testcase></testsuite>' "fails-on-$(hostname)" > results/unit.xml
if [ "$(hostname)" = fleet-1 ]; then
    printf '<testsuite name="deep"><testcase name="deep-ok"/></testsuite>' > /var/log/unit/nested/deep.xml
fi
if [ "$(hostname)" = fleet-3 ]; then
    printf '<testsuite name="cut"><testcase name="a"><failure message="tru' > results/cut.xml
fi
'''
"#;

#[test]
fn the_command_tester_collects_junit_and_files_from_every_host_and_keeps_broken_junit() {
    let fleet = SshFleet::start(3).unwrap();
    let ws = Workspace::new();
    ws.config(&format!("{}\n{COMMAND_TESTER}", static_lab_config(&fleet)));
    let out = ws.run(&["run", "-c", "gate.toml"]);
    // The collected failures fail the test stage: the product failed.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(ws.stage_status("test"), "failed");
    let results = ws.artifacts().join("results");
    for host in fleet.hosts() {
        let name = host.name();
        let unit = results.join(format!("{name}-unit.xml"));
        let counts = read_counts(&unit).unwrap();
        assert_eq!((counts.tests, counts.failures), (2, 1), "{name}");
        let xml = std::fs::read_to_string(&unit).unwrap();
        assert!(
            xml.contains(&format!("fails-on-{name}")),
            "from its own host: {xml}"
        );
        assert_eq!(
            std::fs::read_to_string(results.join(name).join("run.log")).unwrap(),
            format!("unit tests ran on {name}\n")
        );
    }
    // The file under an absolute path, found by `**`, came from fleet-1 only.
    assert_eq!(
        read_counts(&results.join("fleet-1-deep.xml"))
            .unwrap()
            .tests,
        1
    );
    assert!(!results.join("fleet-2-deep.xml").exists());
    // fleet-3's truncated file: kept byte for byte, and a valid error report names it.
    assert_eq!(
        std::fs::read_to_string(results.join("fleet-3-cut-broken.xml")).unwrap(),
        r#"<testsuite name="cut"><testcase name="a"><failure message="tru"#
    );
    let report = results.join("fleet-3-cut.xml");
    let counts = read_counts(&report).unwrap();
    assert_eq!((counts.tests, counts.errors), (1, 1));
    let xml = std::fs::read_to_string(&report).unwrap();
    assert!(
        xml.contains("fleet-3-cut.xml is not valid JUnit XML"),
        "{xml}"
    );
    assert!(xml.contains("fleet-3-cut-broken.xml"), "{xml}");
    // The tester's own suite: one case per host.
    let own = read_counts(&results.join("fleet.xml")).unwrap();
    assert_eq!((own.tests, own.failures, own.errors), (3, 0, 0));
    assert!(ws.leftovers().is_empty(), "{:?}", ws.leftovers());
}

/// A stand-in for a Ceph functional suite (ceph-ansible's `py.test … tests/functional`):
/// it writes pytest-style JUnit into `GATE_RESULTS_DIR`, records the arguments it got, and
/// fails one test.
const STAND_IN_SUITE: &str = r#"#!/usr/bin/env bash
set -euo pipefail
mkdir -p "$GATE_RESULTS_DIR/reports"
printf '%s\n' "$@" > "$GATE_RESULTS_DIR/argv.txt"
pwd > "$GATE_RESULTS_DIR/cwd.txt"
cat > "$GATE_RESULTS_DIR/reports/functional.xml" <<XML
<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="3">
<testcase classname="tests.functional.test_osds.TestOSDs" name="test_osds_are_all_collocated[$(hostname)]" time="0.12"/>
<testcase classname="tests.functional.test_mons.TestMons" name="test_mon_quorum" time="0.30"><failure message="AssertionError: 1 != 3">assert 1 == 3</failure></testcase>
<testcase classname="tests.functional.test_rgw.TestRGW" name="test_rgw_is_up" time="0.00"><skipped message="no rgw"/></testcase>
</testsuite></testsuites>
XML
echo "1 failed, 1 passed, 1 skipped"
exit 1
"#;

#[test]
fn the_ceph_tester_runs_the_suite_on_its_host_and_publishes_checked_junit() {
    let fleet = SshFleet::start(2).unwrap();
    let suite_host = &fleet.hosts()[1];
    suite_host
        .exec_ok("mkdir -p /root/ceph-ansible/tests/functional")
        .unwrap();
    std::fs::write(
        suite_host.host_path("/root/ceph-ansible/run-functional"),
        STAND_IN_SUITE,
    )
    .unwrap();
    suite_host
        .exec_ok("chmod +x /root/ceph-ansible/run-functional")
        .unwrap();
    let ws = Workspace::new();
    let hostile = "rbd; touch /tmp/pwned $(touch /tmp/pwned2) `touch /tmp/pwned3`";
    ws.config(&format!(
        r#"{lab}
[tester]
backend = "ceph"
host = "fleet-2"
cwd = "ceph-ansible"
run = ["./run-functional", "--pool", "{hostile}", "tests/functional"]
files = ["argv.txt", "cwd.txt"]
"#,
        lab = static_lab_config(&fleet)
    ));
    let out = ws.run(&["run", "-c", "gate.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let results = ws.artifacts().join("results");
    // The suite's JUnit, from the host it ran on, found under a subdirectory.
    let junit = results.join("fleet-2-functional.xml");
    let counts = read_counts(&junit).unwrap();
    assert_eq!((counts.tests, counts.failures, counts.skipped), (3, 1, 1));
    assert!(
        std::fs::read_to_string(&junit)
            .unwrap()
            .contains("test_osds_are_all_collocated[fleet-2]")
    );
    assert!(!results.join("fleet-1-functional.xml").exists());
    // Its run explained by its own failures: a passing case that says so.
    let own = std::fs::read_to_string(results.join("ceph.xml")).unwrap();
    let own_counts = read_counts(&results.join("ceph.xml")).unwrap();
    assert_eq!(
        (own_counts.tests, own_counts.failures, own_counts.errors),
        (1, 0, 0)
    );
    assert!(
        own.contains("The suite exited with status 1; its 1 failing case(s) are in its JUnit"),
        "{own}"
    );
    // Its arguments arrived verbatim, and nothing in them ran.
    assert_eq!(
        std::fs::read_to_string(results.join("fleet-2/ceph/argv.txt")).unwrap(),
        format!("--pool\n{hostile}\ntests/functional\n")
    );
    assert_eq!(
        std::fs::read_to_string(results.join("fleet-2/ceph/cwd.txt")).unwrap(),
        "/root/ceph-ansible\n"
    );
    for marker in ["/tmp/pwned", "/tmp/pwned2", "/tmp/pwned3"] {
        assert!(!suite_host.host_path(marker).exists(), "{marker}");
    }
    // Its results directory on the host is the run's own.
    let run_id = ws.run_id().to_string();
    assert!(
        suite_host
            .host_path(format!(
                "/root/gate-results/{run_id}/ceph/reports/functional.xml"
            ))
            .is_file()
    );
}
