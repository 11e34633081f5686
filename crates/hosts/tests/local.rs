//! The `hosts` validator and the `steps` preparer on local hosts (directories on this
//! machine, each its own `$HOME`): everything that needs neither sshd nor a mirror.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use gate_core::junit::read_counts;
use gate_core::keys::{KeysFile, RunKeys};
use gate_core::testkit::LocalStage;
use gate_core::{BackendConfig, HostPreparer, HostValidator, Registry, Stage};

// Real ed25519 public keys (from `ssh-keygen -t ed25519`).
const ALICE: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHQ9bmWwIYG5vUmv8a9x4UHNdZ0zQ7yqTEG2+XyB4xXk alice@laptop";
const BOB: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA1BMgPW4mDaGAEIytSBnlLjvW2+SfGnGhYKaIxsksZc bob@desk";

fn registry() -> Registry {
    let mut registry = Registry::new();
    gate_hosts::register(&mut registry);
    registry
}

fn validator(toml: &str) -> std::sync::Arc<dyn HostValidator> {
    let section = BackendConfig::from_toml("validator", gate_hosts::VALIDATOR, toml).unwrap();
    registry().validator(&section).unwrap()
}

fn preparer(toml: &str) -> std::sync::Arc<dyn HostPreparer> {
    let section = BackendConfig::from_toml("preparer", gate_hosts::PREPARER, toml).unwrap();
    registry().preparer(&section).unwrap()
}

fn with_keys_file(stage: &mut LocalStage) {
    let text = format!("# team\n{ALICE}\n{BOB}\n");
    stage.cx.keys = RunKeys {
        keys_file: Some(KeysFile::parse("https://keys.example/team", text.as_bytes()).unwrap()),
        run_key: None,
    };
}

fn read(path: impl AsRef<std::path::Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

const CHECKS: &str = r#"
markers = [".leftover-of-an-earlier-deploy"]
commands = ["bash", "tar"]
disk = [{ path = ".", min_free = "1K" }]
"#;

#[tokio::test]
async fn validate_passes_on_clean_hosts_with_a_junit_case_per_host_and_check() {
    let mut stage = LocalStage::new(2, Stage::Validate).await;
    with_keys_file(&mut stage);
    for n in 1..=2 {
        std::fs::create_dir_all(stage.home(n).join(".ssh")).unwrap();
        // sshd applies the first line of a key: a later restricted repeat does not matter.
        let keys = format!("{ALICE}\n{BOB}\ncommand=\"echo hi\" {BOB}\n");
        std::fs::write(stage.home(n).join(".ssh/authorized_keys"), keys).unwrap();
    }
    // No cloud-init on this machine: that check is skipped, not failed.
    validator(CHECKS)
        .validate(&stage.cx)
        .await
        .unwrap_or_else(|e| {
            panic!("{e}");
        });
    let report = read_counts(&stage.cx.results_dir().join("validate.xml")).unwrap();
    // reachable, cloud-init, 1 marker, 2 commands, 1 disk, keys: 7 per host.
    assert_eq!(report.tests, 14, "{report:?}");
    assert_eq!((report.failures, report.errors), (0, 0));
    let xml = read(stage.cx.results_dir().join("validate.xml"));
    assert!(
        xml.contains("validate.host-2") && xml.contains("command: tar"),
        "{xml}"
    );
}

#[tokio::test]
async fn validate_fails_naming_every_host_and_check_and_still_writes_junit() {
    let mut stage = LocalStage::new(3, Stage::Validate).await;
    with_keys_file(&mut stage);
    for n in 1..=3 {
        std::fs::create_dir_all(stage.home(n).join(".ssh")).unwrap();
        std::fs::write(
            stage.home(n).join(".ssh/authorized_keys"),
            format!("{ALICE}\n{BOB}\n"),
        )
        .unwrap();
    }
    std::fs::write(stage.home(2).join(".leftover-of-an-earlier-deploy"), "x").unwrap();
    // Host 3's BOB key is present only behind a forced command: it cannot run anything.
    std::fs::write(
        stage.home(3).join(".ssh/authorized_keys"),
        format!("{ALICE}\ncommand=\"echo Please login as debian\" {BOB}\n"),
    )
    .unwrap();
    let toml = format!("{CHECKS}\ncommands = [\"bash\", \"gate-no-such-command\"]\n")
        .replace("commands = [\"bash\", \"tar\"]\n", "");
    let err = validator(&toml)
        .validate(&stage.cx)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("3 of 3 hosts failed"), "{err}");
    assert!(
        err.contains("host host-1: validate: command: gate-no-such-command: not found"),
        "{err}"
    );
    assert!(
        err.contains("clean: .leftover-of-an-earlier-deploy absent: present"),
        "{err}"
    );
    assert!(
        err.contains("bob@desk") && err.contains("forced command="),
        "{err}"
    );
    let report = read_counts(&stage.cx.results_dir().join("validate.xml")).unwrap();
    // 3 missing commands, 1 marker, 1 key.
    assert_eq!((report.tests, report.failures), (21, 5), "{report:?}");
}

#[tokio::test]
async fn validate_lists_every_unreachable_host_in_one_error() {
    let stage = LocalStage::new(3, Stage::Validate).await;
    // The hosts' directories are gone: nothing can run there any more.
    std::fs::remove_dir_all(stage.home(2)).unwrap();
    std::fs::remove_dir_all(stage.home(3)).unwrap();
    let err = validator("reach_timeout_secs = 5\nmarkers = []")
        .validate(&stage.cx)
        .await
        .unwrap_err();
    assert!(err.is_infrastructure(), "{err}");
    let text = err.to_string();
    assert!(text.contains("2 of 3 hosts failed"), "{text}");
    assert!(
        text.contains("host host-2: unreachable") && text.contains("host host-3: unreachable"),
        "{text}"
    );
    let report = read_counts(&stage.cx.results_dir().join("validate.xml")).unwrap();
    assert_eq!(report.errors, 2, "{report:?}");
}

#[tokio::test]
async fn validate_keys_require_a_keys_file_when_told_and_disk_limits_hold() {
    let stage = LocalStage::new(1, Stage::Validate).await;
    let err = validator("keys = \"require\"\nmarkers = []\ncloud_init = \"skip\"\ndisk = [{ path = \"/\", min_free = \"1000000T\" }]")
        .validate(&stage.cx)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("authorized keys: the run has no keys file"),
        "{err}"
    );
    assert!(
        err.contains("disk: 1000000T free at /: ") && err.contains("1000000T wanted"),
        "{err}"
    );
}

fn key_count(text: &str, key: &str) -> usize {
    let blob = key.split_whitespace().nth(1).unwrap();
    text.lines().filter(|l| l.contains(blob)).count()
}

#[tokio::test]
async fn authorized_keys_twice_gives_each_key_once_and_keeps_other_lines() {
    let mut stage = LocalStage::new(2, Stage::PrepareHosts).await;
    with_keys_file(&mut stage);
    std::fs::create_dir_all(stage.home(2).join(".ssh")).unwrap();
    std::fs::write(
        stage.home(2).join(".ssh/authorized_keys"),
        format!("# someone's own\n{BOB}\n{BOB} a duplicate\n"),
    )
    .unwrap();
    let p = preparer("[[steps]]\ntype = \"authorized-keys\"");
    p.prepare(&stage.cx).await.unwrap();
    let first: Vec<String> = (1..=2)
        .map(|n| read(stage.home(n).join(".ssh/authorized_keys")))
        .collect();
    p.prepare(&stage.cx).await.unwrap();
    for n in 1..=2 {
        let path = stage.home(n).join(".ssh/authorized_keys");
        let text = read(&path);
        assert_eq!(text, first[n - 1], "the second run changed host-{n}");
        assert_eq!(
            (key_count(&text, ALICE), key_count(&text, BOB)),
            (1, 1),
            "{text}"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert!(
        first[1].starts_with(&format!("# someone's own\n{BOB}\n")),
        "{}",
        first[1]
    );
    let mode = std::fs::metadata(stage.home(1).join(".ssh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "a new .ssh is private");
}

#[tokio::test]
async fn authorized_keys_without_any_key_fails_naming_the_step() {
    let stage = LocalStage::new(1, Stage::PrepareHosts).await;
    let err = preparer("[[steps]]\ntype = \"authorized-keys\"\nname = \"team keys\"")
        .prepare(&stage.cx)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("step 1/1 `team keys`") && err.contains("neither a keys file nor a run key"),
        "{err}"
    );
}

#[tokio::test]
async fn script_and_networking_steps_run_in_order_with_their_env_and_twice_safely() {
    let stage = LocalStage::new(3, Stage::PrepareHosts).await;
    let template = stage.dir.path().join("bridges.sh");
    std::fs::write(
        &template,
        "echo \"br-mgmt 10.0.0.$((10 + GATE_HOST_INDEX)) mtu $MTU on $GATE_HOST_ADDRESS\" > bridges.conf\n",
    )
    .unwrap();
    let toml = format!(
        r#"
        env = {{ REGION = "RegionOne" }}
        [[steps]]
        type = "script"
        script = 'echo "$REGION $GATE_STAGE" >> steps.log'
        [[steps]]
        type = "networking"
        file = "{}"
        env = {{ MTU = "9000" }}
        [[steps]]
        type = "script"
        name = "primary only"
        hosts = "primary"
        run = ["cp", "bridges.conf", "primary.conf"]
        "#,
        template.display()
    );
    let p = preparer(&toml);
    p.prepare(&stage.cx).await.unwrap();
    assert_eq!(
        read(stage.home(3).join("bridges.conf")),
        "br-mgmt 10.0.0.13 mtu 9000 on localhost\n"
    );
    assert_eq!(
        read(stage.home(1).join("primary.conf")),
        "br-mgmt 10.0.0.11 mtu 9000 on localhost\n"
    );
    assert!(!stage.home(2).join("primary.conf").exists());
    assert_eq!(
        read(stage.home(2).join("steps.log")),
        "RegionOne prepare-hosts\n"
    );
    p.prepare(&stage.cx).await.unwrap();
    assert_eq!(
        read(stage.home(3).join("bridges.conf")),
        "br-mgmt 10.0.0.13 mtu 9000 on localhost\n"
    );
}

#[tokio::test]
async fn a_failing_step_names_step_and_host_and_stops_the_sequence() {
    let stage = LocalStage::new(2, Stage::PrepareHosts).await;
    let err = preparer(
        r#"
        [[steps]]
        type = "networking"
        script = 'echo "no route on $GATE_HOST"; [ "$GATE_HOST_INDEX" = 1 ]'
        [[steps]]
        type = "script"
        run = ["touch", "never"]
        "#,
    )
    .prepare(&stage.cx)
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("step 1/2 `networking`") && err.contains("host host-2"),
        "{err}"
    );
    assert!(err.contains("no route on host-2"), "{err}");
    assert!(!stage.home(1).join("never").exists());
}

#[tokio::test]
async fn ssh_mesh_keys_known_hosts_and_config_are_set_up_once() {
    let stage = LocalStage::new(3, Stage::PrepareHosts).await;
    // Each local host gets a host key of its own where the step is told to look.
    let mut host_keys = Vec::new();
    for n in 1..=3 {
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "host key", "-f"])
            .arg(stage.home(n).join("host_key"))
            .status()
            .unwrap();
        assert!(out.success());
        host_keys.push(read(stage.home(n).join("host_key.pub")));
    }
    let p = preparer(
        r#"
        [[steps]]
        type = "ssh-mesh"
        host_key_files = ["host_key.pub", "/nonexistent/ssh_host_rsa_key.pub"]
        verify = false
        "#,
    );
    p.prepare(&stage.cx).await.unwrap();
    let private = stage.home(1).join(".ssh/id_ed25519");
    assert!(private.is_file(), "the key is made on the primary");
    assert_eq!(
        std::fs::metadata(&private).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for n in 2..=3 {
        assert!(
            !stage.home(n).join(".ssh/id_ed25519").exists(),
            "the private key stays on the primary"
        );
    }
    let public = read(stage.home(1).join(".ssh/id_ed25519.pub"));
    let snapshot = |files: &[&str]| -> Vec<String> {
        (1..=3)
            .flat_map(|n| files.iter().map(move |f| (n, *f)))
            .map(|(n, f)| std::fs::read_to_string(stage.home(n).join(f)).unwrap_or_default())
            .collect()
    };
    let files = [".ssh/authorized_keys", ".ssh/known_hosts", ".ssh/config"];
    let first = snapshot(&files);
    for n in 1..=3 {
        let keys = read(stage.home(n).join(".ssh/authorized_keys"));
        assert_eq!(key_count(&keys, &public), 1, "host-{n}: {keys}");
    }
    let known = read(stage.home(1).join(".ssh/known_hosts"));
    for key in &host_keys {
        let blob = key.split_whitespace().nth(1).unwrap();
        assert_eq!(
            known
                .matches(&format!("localhost ssh-ed25519 {blob}"))
                .count(),
            1,
            "{known}"
        );
    }
    let config = read(stage.home(1).join(".ssh/config"));
    assert!(
        config.contains("Host host-2\n    HostName localhost\n    Port 22\n    User gate\n"),
        "{config}"
    );

    p.prepare(&stage.cx).await.unwrap();
    assert_eq!(snapshot(&files), first, "a second run changes nothing");
    assert_eq!(
        read(stage.home(1).join(".ssh/id_ed25519.pub")),
        public,
        "the key is kept"
    );
}

#[tokio::test]
async fn packages_that_are_installed_already_need_no_network() {
    // bash and coreutils are installed on this Debian machine; with them all in place the
    // step must not run apt-get at all (no sources are reachable from here).
    let stage = LocalStage::new(1, Stage::PrepareHosts).await;
    let p = preparer(
        "[[steps]]\ntype = \"packages\"\nmanager = \"apt\"\npackages = [\"bash\", \"coreutils\"]\nretries = 1",
    );
    p.prepare(&stage.cx).await.unwrap();
    let log = read(stage.cx.logs_dir().join("host-1.log"));
    assert!(log.contains("every package is installed already"), "{log}");
    assert!(!log.contains("apt-get"), "{log}");
}

#[test]
fn config_errors_name_file_section_and_key() {
    let section = BackendConfig::from_toml(
        "preparer",
        gate_hosts::PREPARER,
        "[[steps]]\ntype = \"devices\"\n[[steps.loop]]\nname = \"cinder\"\nsize = \"2G\"\nfilesystem = \"zfs\"",
    )
    .unwrap();
    let err = registry().preparer(&section).unwrap_err().to_string();
    assert!(
        err.starts_with("<inline>: [preparer] steps[0].loop[0].filesystem: "),
        "{err}"
    );
    assert!(err.contains("zfs"), "{err}");
    let section = BackendConfig::from_toml("validator", gate_hosts::VALIDATOR, "keys = 3").unwrap();
    let err = registry().validator(&section).unwrap_err().to_string();
    assert!(err.starts_with("<inline>: [validator] keys:"), "{err}");
}

/// The example configs of docs/guide.md, as TOML blocks of the section `heading`.
fn guide_examples(heading: &str) -> Vec<String> {
    let guide = read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/guide.md"));
    let start = guide
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading} in the guide"));
    let section = &guide[start + heading.len()..];
    let section = &section[..section.find("\n### ").unwrap_or(section.len())];
    section
        .split("```toml\n")
        .skip(1)
        .map(|block| block[..block.find("```").unwrap()].to_owned())
        .collect()
}

/// `text` of a `[name]` section as the section's own table (the header, `backend` and the
/// `name.` prefix of sub-tables dropped).
fn section_body(text: &str, name: &str) -> String {
    text.lines()
        .filter(|l| l.trim() != format!("[{name}]") && !l.trim_start().starts_with("backend ="))
        .map(|l| {
            l.replace(&format!("[[{name}."), "[[")
                .replace(&format!("[{name}."), "[")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_guides_examples_build_both_backends() {
    let validators = guide_examples("### `[validator]` — `backend = \"hosts\"`");
    let preparers = guide_examples("### `[preparer]` — `backend = \"steps\"`");
    assert_eq!((validators.len(), preparers.len()), (1, 1));
    validator(&section_body(&validators[0], "validator"));
    let section = BackendConfig::from_toml(
        "preparer",
        gate_hosts::PREPARER,
        &section_body(&preparers[0], "preparer"),
    )
    .unwrap();
    let steps = gate_hosts::StepsPreparer::from_config(&section).unwrap();
    let names: Vec<_> = steps.steps().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "authorized-keys",
            "ssh-mesh",
            "packages",
            "ansible",
            "networking",
            "devices",
            "pip.conf for the deploy"
        ]
    );
}

#[tokio::test]
async fn a_secret_index_url_never_reaches_the_log_and_an_unreachable_index_is_named() {
    let stage = LocalStage::new(1, Stage::PrepareHosts).await;
    let venv = stage.dir.path().join("venv");
    let toml = format!(
        r#"
        [[steps]]
        type = "ansible"
        version = "2.17.14"
        venv = "{}"
        index_url = {{ secret = "http://gate:index-token-sentinel@127.0.0.1:9/simple/" }}
        retries = 1
        "#,
        venv.display()
    );
    let err = preparer(&toml)
        .prepare(&stage.cx)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("step 1/1 `ansible`") && err.contains("install ansible-core 2.17.14"),
        "{err}"
    );
    let log = read(stage.cx.logs_dir().join("host-1.log"));
    assert!(log.contains("GATE_INDEX_URL=***"), "{log}");
    assert!(
        !log.contains("index-token-sentinel") && !err.contains("index-token-sentinel"),
        "{log}"
    );
    assert!(
        venv.join("bin/python").exists(),
        "the venv was made before pip ran"
    );
}
