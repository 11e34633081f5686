//! The `selenium` tester in a whole `gate run` over SSH on a real sshd lab host: a tiny
//! pytest + Selenium suite drives Debian's headless `chromium` through `chromium-driver`
//! against a page served on loopback, offline (`SE_OFFLINE=true`, the driver path given);
//! its JUnit and the screenshot of its failing test arrive in the artifacts.
//!
//! Needs root (the fleet), `chromium`, `chromium-driver`, and python `selenium` + `pytest`
//! in the virtualenv scripts/test builds (`target/selenium-venv`, or `GATE_SELENIUM_VENV`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use gate_core::junit::read_counts;
use gate_test_harness::{SshFleet, StaticServer};
use gate_tests::{Workspace, repo_root, static_lab_config, text};

/// The virtualenv with selenium and pytest (fleet hosts see the machine's files).
fn venv() -> PathBuf {
    let venv = std::env::var_os("GATE_SELENIUM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/selenium-venv"));
    assert!(
        venv.join("bin/python").exists() && venv.join("bin/pytest").exists(),
        "selenium and pytest are missing at {}: run scripts/test (it installs them) or set GATE_SELENIUM_VENV",
        venv.display()
    );
    for binary in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            std::path::Path::new(binary).exists(),
            "{binary} is missing: run scripts/test as root (it installs chromium and chromium-driver)"
        );
    }
    venv
}

const PAGE: &str = r#"<!doctype html>
<html><head><title>gate selenium page</title></head>
<body><h1 id="greeting">served on loopback</h1></body></html>
"#;

/// The suite's fixtures: a browser from the tester's environment, a screenshot for every
/// failing test.
const CONFTEST: &str = r#"
import os
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ["GATE_SELENIUM_BROWSER"]
    for flag in os.environ["GATE_SELENIUM_BROWSER_ARGS"].split():
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(os.environ["GATE_SELENIUM_DRIVER"]))
    yield driver
    driver.quit()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    driver = item.funcargs.get("browser") if hasattr(item, "funcargs") else None
    if report.when == "call" and report.failed and driver is not None:
        driver.save_screenshot(os.path.join(os.environ["GATE_SCREENSHOTS_DIR"], item.name + ".png"))
"#;

const TESTS: &str = r#"
import os
from selenium.webdriver.common.by import By

URL = os.environ["GATE_SELENIUM_URL"]


def test_page_has_its_title_and_greeting(browser):
    browser.get(URL)
    assert browser.title == "gate selenium page"
    assert browser.find_element(By.ID, "greeting").text == "served on loopback"


def test_login_form_is_there(browser):
    browser.get(URL)
    assert browser.find_elements(By.ID, "login"), "no login form on " + URL
"#;

#[test]
fn a_real_selenium_suite_runs_headless_chromium_over_ssh_and_its_results_arrive() {
    let venv = venv();
    let fleet = SshFleet::start(1).unwrap();
    let host = &fleet.hosts()[0];
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), PAGE).unwrap();
    let server = StaticServer::start(www.path()).unwrap();
    host.exec_ok("mkdir -p /root/ui-tests").unwrap();
    std::fs::write(host.host_path("/root/ui-tests/conftest.py"), CONFTEST).unwrap();
    std::fs::write(host.host_path("/root/ui-tests/test_page.py"), TESTS).unwrap();

    let ws = Workspace::new();
    ws.config(&format!(
        r#"{lab}
[tester]
backend = "selenium"
url = "{url}"
python = "{python}"
cwd = "ui-tests"
tests = ["test_page.py"]
browser_args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1024,700"]
timeout_secs = 300
"#,
        lab = static_lab_config(&fleet),
        url = server.url("index.html"),
        python = venv.join("bin/python").display(),
    ));
    let out = ws.run(&["run", "-c", "gate.toml"]);
    // One UI test fails on purpose: the product failed.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // The browser really fetched the page from the loopback server.
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.starts_with("GET /index.html ")),
        "{:?}",
        server.requests()
    );
    let results = ws.artifacts().join("results");
    let junit = results.join("fleet-1-selenium.xml");
    let counts = read_counts(&junit).unwrap();
    assert_eq!(
        (counts.tests, counts.failures, counts.errors),
        (2, 1, 0),
        "{}",
        std::fs::read_to_string(&junit).unwrap()
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("test_page_has_its_title_and_greeting"),
        "{xml}"
    );
    assert!(xml.contains("no login form on http://127.0.0.1:"), "{xml}");
    // The failing test's screenshot: a PNG as wide as the window the flags asked for.
    let shot =
        std::fs::read(results.join("fleet-1/screenshots/test_login_form_is_there.png")).unwrap();
    assert_eq!(&shot[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&shot[12..16], b"IHDR");
    let width = u32::from_be_bytes([shot[16], shot[17], shot[18], shot[19]]);
    assert_eq!(width, 1024);
    // The run itself is explained by that failure.
    let own = read_counts(&results.join("selenium.xml")).unwrap();
    assert_eq!((own.tests, own.failures, own.errors), (1, 0, 0));
}
