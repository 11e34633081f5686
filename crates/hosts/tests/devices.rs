//! The `devices` step on a local host: real loop devices (this needs root and `losetup`,
//! as CI has). Every loop device a test makes is detached, and its file removed, when the
//! test ends, also when it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use gate_core::testkit::LocalStage;
use gate_core::{BackendConfig, HostPreparer, Registry, Stage};

fn preparer(toml: &str) -> std::sync::Arc<dyn HostPreparer> {
    let mut registry = Registry::new();
    gate_hosts::register(&mut registry);
    let section = BackendConfig::from_toml("preparer", gate_hosts::PREPARER, toml).unwrap();
    registry.preparer(&section).unwrap()
}

fn sh(script: &str, args: &[&str]) -> String {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script, "sh"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn need_root() {
    let uid = sh("id -u", &[]);
    assert_eq!(
        uid, "0",
        "the devices tests need root (losetup, mkfs): run them as root, as CI does"
    );
}

/// Detaches every loop device backed by a file under `dir` when dropped.
struct LoopGuard(PathBuf);

impl LoopGuard {
    fn devices(&self) -> Vec<String> {
        let listing = Command::new("losetup")
            .args(["--list", "--noheadings", "--output", "NAME,BACK-FILE"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let dir = self.0.display().to_string();
        listing
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, file)| file.trim().starts_with(&dir))
            .map(|(dev, _)| dev.trim().to_owned())
            .collect()
    }
}

impl Drop for LoopGuard {
    fn drop(&mut self) {
        for dev in self.devices() {
            let _ = Command::new("losetup").args(["-d", &dev]).status();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn attached(file: &Path) -> Vec<String> {
    sh(
        "losetup --list --noheadings --output NAME --associated \"$1\"",
        &[&file.display().to_string()],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

fn blkid(dev: &str, tag: &str) -> String {
    sh("blkid -p -o value -s \"$2\" -- \"$1\" || true", &[dev, tag])
}

#[tokio::test]
async fn loop_devices_are_made_once_with_their_file_systems_and_a_second_run_is_a_no_op() {
    need_root();
    let stage = LocalStage::new(1, Stage::PrepareHosts).await;
    let dir = stage.dir.path().join("devices");
    let guard = LoopGuard(dir.clone());
    let p = preparer(&format!(
        r#"
        [[steps]]
        type = "devices"
        dir = "{}"
        loop = [
          {{ name = "cinder", size = "16M" }},
          {{ name = "swift1", size = "32M", filesystem = "ext4" }},
        ]
        "#,
        dir.display()
    ));
    p.prepare(&stage.cx).await.unwrap();
    let manifest = std::fs::read_to_string(dir.join("devices.tsv")).unwrap();
    let cinder = attached(&dir.join("cinder.img"));
    let swift = attached(&dir.join("swift1.img"));
    assert_eq!((cinder.len(), swift.len()), (1, 1), "one device per file");
    assert_eq!(
        std::fs::metadata(dir.join("swift1.img")).unwrap().len(),
        32 << 20
    );
    assert_eq!(blkid(&swift[0], "TYPE"), "ext4");
    assert_eq!(
        blkid(&swift[0], "LABEL"),
        "swift1",
        "the label defaults to the name"
    );
    assert_eq!(blkid(&cinder[0], "TYPE"), "", "cinder's device stays raw");
    assert_eq!(
        manifest,
        format!(
            "cinder\t{}\t{}\tnone\t\nswift1\t{}\t{}\text4\tswift1\n",
            cinder[0],
            16 << 20,
            swift[0],
            32 << 20
        )
    );
    let uuid = blkid(&swift[0], "UUID");

    p.prepare(&stage.cx).await.unwrap();
    assert_eq!(
        attached(&dir.join("cinder.img")),
        cinder,
        "no second device"
    );
    assert_eq!(attached(&dir.join("swift1.img")), swift, "no second device");
    assert_eq!(
        blkid(&swift[0], "UUID"),
        uuid,
        "the file system was not made again"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("devices.tsv")).unwrap(),
        manifest
    );

    // Resizing is refused, not done silently.
    let resized = preparer(&format!(
        "[[steps]]\ntype = \"devices\"\ndir = \"{}\"\nloop = [{{ name = \"cinder\", size = \"32M\" }}]",
        dir.display()
    ));
    let err = resized.prepare(&stage.cx).await.unwrap_err().to_string();
    assert!(
        err.contains("exists with 16777216 bytes, but 33554432 are configured"),
        "{err}"
    );
    drop(guard);
    assert!(attached(&dir.join("cinder.img")).is_empty());
}

#[tokio::test]
async fn a_named_device_with_a_file_system_is_left_alone_unless_wipe_says_so() {
    need_root();
    let stage = LocalStage::new(1, Stage::PrepareHosts).await;
    let dir = stage.dir.path().join("disks");
    std::fs::create_dir_all(&dir).unwrap();
    let guard = LoopGuard(dir.clone());
    // A "physical" disk that already holds someone's file system.
    let file = dir.join("disk.img");
    let disk = sh(
        "truncate -s 32M \"$1\" && losetup --find --show \"$1\"",
        &[&file.display().to_string()],
    );
    sh("mkfs.ext4 -q -F -L precious \"$1\"", &[&disk]);
    let config = |wipe: bool| {
        format!(
            r#"
            [[steps]]
            type = "devices"
            dir = "{}"
            device = [{{ path = "{disk}", filesystem = "ext4", label = "ceph-0", wipe = {wipe} }}]
            "#,
            stage.dir.path().join("state-devices").display()
        )
    };
    let err = preparer(&config(false))
        .prepare(&stage.cx)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "{disk} carries a file system (ext4); not touching it"
        )),
        "{err}"
    );
    assert_eq!(blkid(&disk, "LABEL"), "precious", "untouched");

    let wiping = preparer(&config(true));
    wiping.prepare(&stage.cx).await.unwrap();
    assert_eq!(blkid(&disk, "LABEL"), "ceph-0");
    let uuid = blkid(&disk, "UUID");
    // Run again with wipe = true: the device is as configured already, so it is kept.
    wiping.prepare(&stage.cx).await.unwrap();
    assert_eq!(
        blkid(&disk, "UUID"),
        uuid,
        "a prepared device is not wiped again"
    );
    drop(guard);
}
