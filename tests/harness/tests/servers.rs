//! The plain HTTP server, the package mirror and the HTTPS server with a test CA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use gate_test_harness::{HttpsServer, Mirror, SshFleet, StaticServer};

fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl runs")
}

#[test]
fn static_server_serves_files_404s_and_refuses_traversal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/keys"), "ssh-ed25519 AAAA ci\n").unwrap();
    let server = StaticServer::start(dir.path()).unwrap();

    let ok = curl(&["--fail", &server.url("sub/keys")]);
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(ok.stdout, b"ssh-ed25519 AAAA ci\n");

    let code = |args: &[&str]| {
        let out = curl(
            &[
                &["--output", "/dev/null", "--write-out", "%{http_code}"],
                args,
            ]
            .concat(),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(code(&[&server.url("missing")]), "404");
    assert_eq!(
        code(&["--path-as-is", &server.url("sub/../../etc/passwd")]),
        "400"
    );
    assert_eq!(
        code(&["--path-as-is", &server.url("%2e%2e/etc/passwd")]),
        "400"
    );
    assert_eq!(
        code(&["--request", "DELETE", &server.url("sub/keys")]),
        "405"
    );
    assert_eq!(code(&[&server.url("sub")]), "301");
    let listing = curl(&["--fail", &server.url("sub/")]);
    assert!(String::from_utf8_lossy(&listing.stdout).contains("href=\"keys\""));
    let head = curl(&["--head", &server.url("sub/keys")]);
    assert!(String::from_utf8_lossy(&head.stdout).contains("Content-Length: 20"));
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.starts_with("GET /sub/keys "))
    );
}

#[test]
fn https_server_is_trusted_with_its_ca_and_refused_without() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keys"), "ssh-ed25519 AAAA ci\n").unwrap();
    let server = HttpsServer::start(dir.path()).unwrap();
    let ca = server.ca_cert_path();

    let trusted = curl(&[
        "--fail",
        "--cacert",
        ca.to_str().unwrap(),
        &server.url("keys"),
    ]);
    assert!(trusted.status.success(), "{trusted:?}");
    assert_eq!(trusted.stdout, b"ssh-ed25519 AAAA ci\n");

    let untrusted = curl(&["--fail", &server.url("keys")]);
    assert!(!untrusted.status.success());
    assert_eq!(
        untrusted.status.code(),
        Some(60),
        "curl's 'peer certificate not trusted'"
    );

    let by_name = server.url("keys").replace("127.0.0.1", "localhost");
    let trusted = curl(&["--fail", "--cacert", ca.to_str().unwrap(), &by_name]);
    assert!(trusted.status.success(), "{trusted:?}");
}

#[test]
fn mirror_serves_the_apt_repository_and_pip_index() {
    let mirror = Mirror::start_cached().expect("run scripts/fetch-mirror first");
    let packages = curl(&["--fail", &format!("{}/apt/Packages", mirror.url())]);
    let packages = String::from_utf8_lossy(&packages.stdout);
    assert!(packages.contains("Package: hello"), "{packages}");
    let version = mirror.ansible_core_version().unwrap();
    let index = curl(&[
        "--fail",
        &format!("{}ansible-core/", mirror.pip_index_url()),
    ]);
    let index = String::from_utf8_lossy(&index.stdout);
    assert!(
        index.contains(&format!("ansible_core-{version}-")),
        "{index}"
    );
    let missing = curl(&["--fail", &format!("{}/apt/nothing.deb", mirror.url())]);
    assert_eq!(
        missing.status.code(),
        Some(22),
        "404 makes curl --fail exit 22"
    );
}

#[test]
fn package_installed_from_the_mirror_on_one_host_is_absent_elsewhere() {
    let mirror = Mirror::start_cached().expect("run scripts/fetch-mirror first");
    let fleet = SshFleet::start(2).unwrap();
    let (one, two) = (&fleet.hosts()[0], &fleet.hosts()[1]);
    let install = format!(
        "set -e
         rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*
         echo '{}' > /etc/apt/sources.list.d/gate-mirror.list
         apt-get update -qq
         DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hello >/dev/null
         hello",
        mirror.apt_source()
    );
    let output = one.exec(&install);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "Hello, world!"
    );
    assert!(
        mirror
            .server()
            .requests()
            .iter()
            .any(|r| r.contains("hello_"))
    );
    assert!(!two.exec("command -v hello").status.success());
    assert!(!two.exec("dpkg -s hello").status.success());
    assert!(!std::path::Path::new("/usr/bin/hello").exists());
}

#[test]
fn pip_resolves_ansible_core_from_the_mirror_alone() {
    let mirror = Mirror::start_cached().expect("run scripts/fetch-mirror first");
    let version = mirror.ansible_core_version().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let output = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--no-cache-dir", "--only-binary=:all:", "--index-url"])
        .arg(mirror.pip_index_url())
        .arg("--dest")
        .arg(dest.path())
        .arg(format!("ansible-core=={version}"))
        .env("PIP_CONFIG_FILE", "/dev/null")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let wheels = std::fs::read_dir(dest.path()).unwrap().count();
    assert!(
        wheels >= 5,
        "ansible-core and its dependencies: {wheels} wheels"
    );
}
