//! Config parsing: defaults, and errors that name the step and key.

use super::*;
use crate::size::Size;
use gate_core::steps::Hosts;

fn preparer(toml: &str) -> Result<PreparerConfig> {
    PreparerConfig::from_section(&BackendConfig::from_toml("preparer", "steps", toml)?)
}

#[test]
fn steps_parse_in_order_with_their_defaults() {
    let config = preparer(
        r#"
        timeout_secs = 99
        [[steps]]
        type = "authorized-keys"
        [[steps]]
        type = "ansible"
        version = "2.17.7"
        find_links = "http://127.0.0.1:8000/wheels/"
        [[steps]]
        type = "devices"
        [[steps.loop]]
        name = "cinder"
        size = "2G"
        [[steps]]
        type = "script"
        name = "hello"
        script = "echo hi"
        timeout_secs = 5
        "#,
    )
    .unwrap();
    let names: Vec<_> = config.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["authorized-keys", "ansible", "devices", "hello"]);
    assert_eq!(config.steps[0].timeout, Duration::from_secs(99));
    assert_eq!(config.steps[1].hosts, Hosts::Primary);
    assert_eq!(config.steps[3].timeout, Duration::from_secs(5));
    let StepKind::Devices(devices) = &config.steps[2].kind else {
        panic!("{:?}", config.steps[2]);
    };
    assert_eq!(devices.loops[0].size, Size(2 << 30));
    assert_eq!(devices.dir, "/var/lib/gate/devices");
}

#[test]
fn errors_name_the_step_and_key() {
    for (toml, key) in [
        ("", "[preparer] steps: needs at least one step"),
        (
            "[[steps]]\nname = \"x\"",
            "[preparer] steps[0]: needs a `type`",
        ),
        (
            "[[steps]]\ntype = \"nope\"",
            "[preparer] steps[0].type: unknown step type `nope`",
        ),
        (
            "[[steps]]\ntype = \"authorized-keys\"\n[[steps]]\ntype = \"packages\"\npackages = [\"git\"]\nretries = \"x\"",
            "[preparer] steps[1].retries",
        ),
        (
            "[[steps]]\ntype = \"packages\"\npackages = [\"git\"]\nfoo = 1",
            "[preparer] steps[0].foo: unknown field `foo`",
        ),
        (
            "[[steps]]\ntype = \"packages\"\npackages = [\"-y\"]",
            "[preparer] steps[0].packages[0]",
        ),
        (
            "[[steps]]\ntype = \"ssh-mesh\"\nhosts = \"primary\"",
            "[preparer] steps[0].hosts",
        ),
        (
            "[[steps]]\ntype = \"ansible\"\nversion = \">=2.15\"",
            "[preparer] steps[0].version",
        ),
        (
            "[[steps]]\ntype = \"devices\"\nloop = [{ name = \"a b\", size = \"1G\" }]",
            "[preparer] steps[0].loop[0].name",
        ),
        (
            "[[steps]]\ntype = \"devices\"\nloop = [{ name = \"a\", size = \"lots\" }]",
            "[preparer] steps[0].loop[0].size",
        ),
        (
            "[[steps]]\ntype = \"devices\"\ndevice = [{ path = \"/tmp/x\" }]",
            "[preparer] steps[0].device[0].path",
        ),
        (
            "[[steps]]\ntype = \"devices\"\nloop = [{ name = \"a\", size = \"1G\", filesystem = \"xfs\", label = \"much-too-long-label\" }]",
            "[preparer] steps[0].loop[0].label",
        ),
        (
            "[[steps]]\ntype = \"networking\"",
            "[preparer] steps[0]: give exactly one",
        ),
        (
            "[[steps]]\ntype = \"script\"\nscript = \"x\"\nbogus = 1",
            "[preparer] steps[0].bogus: unknown field `bogus`",
        ),
        (
            "[[steps]]\ntype = \"script\"\nname = \"x\"",
            "[preparer] steps[0]: needs `run` or `script`",
        ),
        (
            "env = { \"A-B\" = \"x\" }\n[[steps]]\ntype = \"authorized-keys\"",
            "[preparer] env",
        ),
    ] {
        let err = preparer(toml).unwrap_err().to_string();
        assert!(err.starts_with("<inline>: "), "{err}");
        assert!(err.contains(key), "{toml}\n=> {err}\nwanted {key}");
    }
}

#[test]
fn validator_defaults_and_errors() {
    let parse = |toml: &str| {
        ValidatorConfig::from_section(&BackendConfig::from_toml("validator", "hosts", toml)?)
    };
    let config = parse("").unwrap();
    assert_eq!(config.markers, ["/etc/openstack_deploy"]);
    assert_eq!(config.keys, Check::Auto);
    assert_eq!(config.reach_timeout_secs, 30);
    for (toml, key) in [
        ("commands = [\"\"]", "[validator] commands[0]"),
        (
            "disk = [{ path = \"/\", min_free = \"ten\" }]",
            "[validator] disk[0].min_free",
        ),
        ("cloud_init = \"maybe\"", "[validator] cloud_init"),
        ("colour = 1", "unknown field `colour`"),
    ] {
        let err = parse(toml).unwrap_err().to_string();
        assert!(err.contains(key), "{toml} => {err}");
    }
}
