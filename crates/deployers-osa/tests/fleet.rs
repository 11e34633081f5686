//! The `osa` deployer over real SSH on fleet hosts, against a real git repository (served by
//! `git daemon` on loopback) laid out like openstack-ansible, whose scripts record their
//! argv, environment, working dir, version and the config files they see
//! (`gate_test_harness::deploy_repos`). Needs root, sshd and git.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{deployer, env, osa_repo, steps, yaml};
use gate_core::{Stage, StageOutcome};

#[tokio::test]
async fn aio_prepare_deploy_and_upgrade_run_the_exact_steps_with_env_and_layered_config() {
    let osa = osa_repo();
    let fs = common::fleet_stage(&[&[]]).await;
    let d = deployer(
        &osa,
        r#"
        version = "27.2.0"
        upgrade_to = "latest:27."
        features = { ceph = true, tempest = true }
        variables = { apply_security_hardening = true, nova_libvirt_images_rbd_pool = "mine", extra_list = ["a", "b"] }
        secret_variables = { keystone_auth_admin_password = { secret = "osa-fleet-sentinel" } }
        env = { ANSIBLE_SSH_RETRIES = "5", MY_VAR = "mine" }
        "#,
    );

    // prepare-deployment: the checkout, bootstrap-ansible, bootstrap-aio, then the config.
    assert_eq!(
        d.prepare_deployment(&fs.cx(Stage::PrepareDeployment))
            .await
            .unwrap(),
        StageOutcome::Done
    );
    let records = common::take_records(&fs, 1);
    assert_eq!(steps(&records), ["bootstrap-ansible", "bootstrap-aio"]);
    for r in &records {
        assert_eq!(r["cwd"], "/opt/openstack-ansible");
        assert_eq!(r["version"], "27.2.0");
        assert_eq!(env(r, "SCENARIO"), Some("aio_lxc_ceph"));
        assert_eq!(env(r, "MY_VAR"), Some("mine"));
    }
    let host = fs.host(1);
    let vars = yaml(
        &host
            .exec_ok("cat /etc/openstack_deploy/user_zzz_gate_variables.yml")
            .unwrap(),
    );
    // Layers: the AIO defaults, then the flags, then the user's own variables (last wins).
    assert_eq!(vars["apply_security_hardening"], true);
    assert_eq!(vars["install_method"], "source");
    assert_eq!(vars["bootstrap_host_data_disk_min_size"], 30);
    assert_eq!(vars["glance_default_store"], "rbd");
    assert_eq!(vars["nova_libvirt_images_rbd_pool"], "mine");
    assert_eq!(vars["tempest_run"], true);
    assert_eq!(vars["extra_list"], yaml("[a, b]"));
    let secrets_file = "/etc/openstack_deploy/user_zzz_gate_secrets.yml";
    let mode = host.exec_ok(&format!("stat -c %a {secrets_file}")).unwrap();
    assert_eq!(mode.trim(), "600");
    let secrets = yaml(&host.exec_ok(&format!("cat {secrets_file}")).unwrap());
    assert_eq!(
        secrets["keystone_auth_admin_password"],
        "osa-fleet-sentinel"
    );
    let head = host
        .exec_ok("git -C /opt/openstack-ansible rev-parse HEAD")
        .unwrap();
    assert_eq!(head.trim(), osa.commits["27.2.0"]);

    // deploy: the release's three playbooks from playbooks/, with the field's environment.
    let cpus: u32 = host.exec_ok("nproc").unwrap().trim().parse().unwrap();
    assert_eq!(
        d.deploy(&fs.cx(Stage::Deploy)).await.unwrap(),
        StageOutcome::Done
    );
    let records = common::take_records(&fs, 1);
    assert_eq!(
        steps(&records),
        [
            "openstack-ansible setup-hosts.yml",
            "openstack-ansible setup-infrastructure.yml",
            "openstack-ansible setup-openstack.yml"
        ]
    );
    for r in &records {
        assert_eq!(r["cwd"], "/opt/openstack-ansible/playbooks");
        assert_eq!(env(r, "ANSIBLE_FORCE_COLOR"), Some("true"));
        assert_eq!(env(r, "ANSIBLE_HOST_KEY_CHECKING"), Some("False"));
        let forks = cpus.min(10).to_string();
        assert_eq!(env(r, "ANSIBLE_FORKS"), Some(forks.as_str()));
        assert_eq!(
            env(r, "ANSIBLE_SSH_RETRIES"),
            Some("5"),
            "overridden by env"
        );
        // The playbooks see gate's variables beside the AIO bootstrap's own file.
        let files = r["files"].as_object().unwrap();
        assert!(
            files.contains_key("user_zzz_gate_variables.yml"),
            "{files:?}"
        );
        assert!(
            files["user_variables.yml"]
                .as_str()
                .unwrap()
                .contains("bootstrap-aio")
        );
    }

    // upgrade to the newest 27.x tag (27.10.0 sorts after 27.2.0), then the idempotency run.
    assert_eq!(
        d.upgrade(&fs.cx(Stage::Upgrade)).await.unwrap(),
        StageOutcome::Done
    );
    let records = common::take_records(&fs, 1);
    assert_eq!(
        steps(&records),
        [
            "run-upgrade",
            "openstack-ansible setup-hosts.yml",
            "openstack-ansible setup-infrastructure.yml",
            "openstack-ansible setup-openstack.yml"
        ]
    );
    for r in &records {
        assert_eq!(r["version"], "27.10.0");
    }
    assert_eq!(
        env(&records[0], "I_REALLY_KNOW_WHAT_I_AM_DOING"),
        Some("true")
    );
    assert_eq!(env(&records[0], "SCENARIO"), Some("aio_lxc_ceph"));
    let head = host
        .exec_ok("git -C /opt/openstack-ansible rev-parse HEAD")
        .unwrap();
    assert_eq!(head.trim(), osa.commits["27.10.0"]);
    // The step output went to the stage's host log, secrets masked.
    let log =
        std::fs::read_to_string(fs.cx(Stage::Upgrade).logs_dir().join("fleet-1.log")).unwrap();
    assert!(
        log.contains("run-upgrade: recorded at version 27.10.0"),
        "{log}"
    );
    assert!(!log.contains("osa-fleet-sentinel"));
}

#[tokio::test]
async fn versions_check_out_branches_tags_shas_pull_refs_and_the_latest_tag() {
    let osa = osa_repo();
    let fs = common::fleet_stage(&[&[]]).await;
    let short = osa.commits["26.5.0"][..12].to_owned();
    for (version, expect) in [
        ("stable/2023.2", "27.10.0"),
        ("27.2.0", "27.2.0"),
        (osa.commits["26.5.0"].as_str(), "26.5.0"),
        (short.as_str(), "26.5.0"),
        ("refs/pull/7/head", "pr-7"),
        ("refs/pull/7/merge", "pr-7-merge"),
        ("master", "29.0.0.dev"),
        ("latest", "28.0.0"), // not 28.0.0rc1, and not the untagged master
        ("latest:27.", "27.10.0"),
        ("latest:26.", "26.5.0"),
    ] {
        let d = deployer(&osa, &format!("version = \"{version}\"\n"));
        d.prepare_deployment(&fs.cx(Stage::PrepareDeployment))
            .await
            .unwrap_or_else(|e| panic!("{version}: {e}"));
        let checked_out = fs
            .host(1)
            .exec_ok("cat /opt/openstack-ansible/VERSION")
            .unwrap();
        assert_eq!(checked_out.trim(), expect, "version {version}");
        let head = fs
            .host(1)
            .exec_ok("git -C /opt/openstack-ansible rev-parse HEAD")
            .unwrap();
        assert_eq!(head.trim(), osa.commits[expect], "version {version}");
        common::take_records(&fs, 1);
    }
    for (version, says) in [
        ("no-such-branch", "no such branch, tag or commit"),
        ("latest:99.", "no tag starting with 99."),
    ] {
        let d = deployer(&osa, &format!("version = \"{version}\"\n"));
        let err = d
            .prepare_deployment(&fs.cx(Stage::PrepareDeployment))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("host fleet-1") && err.contains(says), "{err}");
    }
}

#[tokio::test]
async fn multi_node_writes_the_host_list_from_the_inventory_and_runs_the_collection_playbooks() {
    let osa = osa_repo();
    let fs = common::fleet_stage(&[&["infra"], &["compute"], &["compute", "storage"]]).await;
    let d = deployer(
        &osa,
        r#"
        version = "28.0.0"
        target = "multi-node"
        features = { swift = true }
        [user_config.global_overrides]
        external_lb_vip_address = "203.0.113.10"
        "#,
    );
    d.prepare_deployment(&fs.cx(Stage::PrepareDeployment))
        .await
        .unwrap();
    let records = common::take_records(&fs, 1);
    assert_eq!(
        steps(&records),
        [
            "bootstrap-ansible",
            "pw-token-gen --file /etc/openstack_deploy/user_secrets.yml"
        ]
    );
    assert!(env(&records[0], "SCENARIO").is_none());
    let files = records[0]["files"].as_object().unwrap();
    // The release's skeleton was copied, then gate's files written, before the bootstrap.
    assert!(
        files["user_variables.yml"]
            .as_str()
            .unwrap()
            .contains("the release's skeleton")
    );
    let uc = yaml(files["openstack_user_config.yml"].as_str().unwrap());
    let names = |group: &str| -> Vec<String> {
        uc[group]
            .as_mapping()
            .unwrap_or_else(|| panic!("no {group}"))
            .keys()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names("shared-infra_hosts"), ["fleet-1"]);
    assert_eq!(names("identity_hosts"), ["fleet-1"]);
    assert_eq!(names("compute_hosts"), ["fleet-2", "fleet-3"]);
    assert_eq!(names("storage_hosts"), ["fleet-3"]);
    assert_eq!(names("swift_hosts"), ["fleet-3"]);
    assert_eq!(names("swift-proxy_hosts"), ["fleet-1"]);
    assert_eq!(
        uc["compute_hosts"]["fleet-2"]["ip"],
        fs.host(2).address().as_str()
    );
    let global = &uc["global_overrides"];
    assert_eq!(
        global["internal_lb_vip_address"],
        fs.host(1).address().as_str()
    );
    assert_eq!(global["external_lb_vip_address"], "203.0.113.10");
    let vars = yaml(files["user_zzz_gate_variables.yml"].as_str().unwrap());
    assert_eq!(vars["haproxy_use_keepalived"], false);
    assert_eq!(vars["glance_default_store"], "swift");

    d.deploy(&fs.cx(Stage::Deploy)).await.unwrap();
    let records = common::take_records(&fs, 1);
    assert_eq!(
        steps(&records),
        [
            "openstack-ansible openstack.osa.setup_hosts",
            "openstack-ansible openstack.osa.setup_infrastructure",
            "openstack-ansible openstack.osa.setup_openstack"
        ]
    );
    assert_eq!(records[0]["cwd"], "/opt/openstack-ansible");
    // Nothing ran on the other hosts: everything goes through the primary.
    assert!(common::take_records(&fs, 2).is_empty());
}

#[tokio::test]
async fn a_failing_bootstrap_fails_prepare_with_the_host_the_step_and_its_output() {
    let osa = osa_repo();
    let fs = common::fleet_stage(&[&[]]).await;
    let d = deployer(&osa, "version = \"broken\"\n");
    let err = d
        .prepare_deployment(&fs.cx(Stage::PrepareDeployment))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("host fleet-1"), "{err}");
    assert!(err.contains("step `bootstrap-ansible`"), "{err}");
    assert!(
        err.contains("ERROR: could not install ansible-core: no matching distribution"),
        "{err}"
    );
    assert_eq!(steps(&common::take_records(&fs, 1)), ["bootstrap-ansible"]);
}
