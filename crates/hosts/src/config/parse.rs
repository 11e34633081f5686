//! Parsing one `[[preparer.steps]]` entry: its `type` picks the settings struct, and
//! every error names the step and key.

use std::time::Duration;

use gate_core::steps::{Hosts, Step, check_env_name};
use gate_core::{BackendConfig, Result};
use serde::de::DeserializeOwned;

use super::{
    AnsibleStep, DevicesStep, Filesystem, NetworkingStep, PackagesStep, PrepStep, STEP_TYPES,
    StepKind,
};

/// `value` deserialized as `T`; errors name `at` and the key inside it.
fn parse_at<T: DeserializeOwned>(
    section: &BackendConfig,
    at: &str,
    value: config::Value,
) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let key = if inner == "." || inner.is_empty() {
            at.to_owned()
        } else {
            format!("{at}.{inner}")
        };
        section.error(key, e.into_inner().to_string())
    })
}

pub(super) fn step(
    section: &BackendConfig,
    at: &str,
    value: config::Value,
    default_timeout: Duration,
) -> Result<PrepStep> {
    let mut table = value
        .into_table()
        .map_err(|_| section.error(at, "must be a table with a `type`"))?;
    let known = STEP_TYPES.join(", ");
    let kind = table
        .remove("type")
        .ok_or_else(|| section.error(at, format!("needs a `type`: one of {known}")))?
        .into_string()
        .map_err(|_| section.error(format!("{at}.type"), "must be a string"))?;
    if kind == "script" {
        let step: Step = parse_at(section, at, config::Value::new(None, table))?;
        gate_core::steps::check_step(section, at, &step)?;
        return Ok(PrepStep {
            name: step.name.clone().unwrap_or_else(|| step.display_name(0)),
            hosts: step.hosts.unwrap_or(Hosts::All),
            timeout: step
                .timeout_secs
                .map(Duration::from_secs)
                .unwrap_or(default_timeout),
            kind: StepKind::Script(step),
        });
    }
    let mut take = |key: &str| table.remove(key).map(|v| (format!("{at}.{key}"), v));
    let name: Option<String> = take("name")
        .map(|(k, v)| parse_at(section, &k, v))
        .transpose()?;
    let hosts: Option<(String, Hosts)> = take("hosts")
        .map(|(k, v)| parse_at(section, &k, v).map(|h| (k, h)))
        .transpose()?;
    let timeout: Option<u64> = take("timeout_secs")
        .map(|(k, v)| parse_at(section, &k, v))
        .transpose()?;
    let rest = config::Value::new(None, table);
    let (kind, default_hosts) = match kind.as_str() {
        "authorized-keys" => (
            StepKind::AuthorizedKeys(parse_at(section, at, rest)?),
            Hosts::All,
        ),
        "ssh-mesh" => {
            if let Some((key, _)) = hosts {
                return Err(section.error(key, "ssh-mesh always covers every host"));
            }
            (StepKind::SshMesh(parse_at(section, at, rest)?), Hosts::All)
        }
        "packages" => {
            let step: PackagesStep = parse_at(section, at, rest)?;
            check_words(section, &format!("{at}.packages"), &step.packages)?;
            check_retries(section, at, step.retries)?;
            (StepKind::Packages(step), Hosts::All)
        }
        "ansible" => {
            let step: AnsibleStep = parse_at(section, at, rest)?;
            check_ansible(section, at, &step)?;
            (StepKind::Ansible(step), Hosts::Primary)
        }
        "networking" => {
            let step: NetworkingStep = parse_at(section, at, rest)?;
            match (&step.script, &step.file) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => return Err(section.error(at, "give exactly one of `script` and `file`")),
            }
            for name in step.env.keys() {
                check_env_name(section, &format!("{at}.env"), name)?;
            }
            (StepKind::Networking(step), Hosts::All)
        }
        "devices" => {
            let step: DevicesStep = parse_at(section, at, rest)?;
            check_devices(section, at, &step)?;
            (StepKind::Devices(step), Hosts::All)
        }
        other => {
            return Err(section.error(
                format!("{at}.type"),
                format!("unknown step type `{other}`; known: {known}"),
            ));
        }
    };
    Ok(PrepStep {
        name: name.unwrap_or(kind_name(&kind).to_owned()),
        hosts: hosts.map(|(_, h)| h).unwrap_or(default_hosts),
        timeout: timeout.map(Duration::from_secs).unwrap_or(default_timeout),
        kind,
    })
}

fn kind_name(kind: &StepKind) -> &'static str {
    match kind {
        StepKind::AuthorizedKeys(_) => "authorized-keys",
        StepKind::SshMesh(_) => "ssh-mesh",
        StepKind::Packages(_) => "packages",
        StepKind::Ansible(_) => "ansible",
        StepKind::Networking(_) => "networking",
        StepKind::Devices(_) => "devices",
        StepKind::Script(_) => "script",
    }
}

/// A non-empty list of single words that cannot be taken for options.
fn check_words(section: &BackendConfig, key: &str, words: &[String]) -> Result<()> {
    if words.is_empty() {
        return Err(section.error(key, "needs at least one entry"));
    }
    for (i, word) in words.iter().enumerate() {
        if word.is_empty() || word.starts_with('-') || word.contains(char::is_whitespace) {
            return Err(section.error(
                format!("{key}[{i}]"),
                format!("`{word}` is not a package name"),
            ));
        }
    }
    Ok(())
}

fn check_retries(section: &BackendConfig, at: &str, retries: u32) -> Result<()> {
    if retries == 0 {
        return Err(section.error(format!("{at}.retries"), "must be at least 1"));
    }
    Ok(())
}

fn check_ansible(section: &BackendConfig, at: &str, step: &AnsibleStep) -> Result<()> {
    let pinned = !step.version.is_empty()
        && step
            .version
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
        && step
            .version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '!' | '-'));
    if !pinned {
        return Err(section.error(
            format!("{at}.version"),
            format!("`{}` is not an exact version such as 2.17.7", step.version),
        ));
    }
    if !step.venv.starts_with('/') {
        return Err(section.error(format!("{at}.venv"), "must be an absolute path"));
    }
    for (i, req) in step.extra.iter().enumerate() {
        if req.is_empty() || req.starts_with('-') {
            return Err(section.error(
                format!("{at}.extra[{i}]"),
                format!("`{req}` is not a requirement"),
            ));
        }
    }
    check_retries(section, at, step.retries)
}

fn check_devices(section: &BackendConfig, at: &str, step: &DevicesStep) -> Result<()> {
    if step.loops.is_empty() && step.devices.is_empty() {
        return Err(section.error(at, "needs at least one `loop` or `device`"));
    }
    if !step.dir.starts_with('/') {
        return Err(section.error(format!("{at}.dir"), "must be an absolute path"));
    }
    let label_ok = |fs: Filesystem, label: &Option<String>, key: String| match label {
        Some(label) if fs == Filesystem::None => Err(section.error(
            key,
            format!("label `{label}` needs a `filesystem` to carry it"),
        )),
        Some(label)
            if label.is_empty()
                || label.len() > fs.max_label()
                || !label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
        {
            Err(section.error(
                key,
                format!(
                    "`{label}`: use 1 to {} letters, digits, `-`, `_` or `.`",
                    fs.max_label()
                ),
            ))
        }
        _ => Ok(()),
    };
    for (i, dev) in step.loops.iter().enumerate() {
        let key = format!("{at}.loop[{i}]");
        let name_ok = !dev.name.is_empty()
            && dev
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(section.error(
                format!("{key}.name"),
                format!("`{}`: use letters, digits, `-` and `_`", dev.name),
            ));
        }
        if step.loops[..i].iter().any(|d| d.name == dev.name) {
            return Err(section.error(format!("{key}.name"), format!("`{}` twice", dev.name)));
        }
        if dev.size.bytes() < 1 << 20 {
            return Err(section.error(format!("{key}.size"), "must be at least 1M"));
        }
        let label = dev
            .label
            .clone()
            .or_else(|| (dev.filesystem != Filesystem::None).then(|| dev.name.clone()));
        label_ok(dev.filesystem, &label, format!("{key}.label"))?;
    }
    for (i, dev) in step.devices.iter().enumerate() {
        let key = format!("{at}.device[{i}]");
        if !dev.path.starts_with("/dev/") || dev.path.contains("..") {
            return Err(section.error(
                format!("{key}.path"),
                format!("`{}` is not under /dev/", dev.path),
            ));
        }
        label_ok(dev.filesystem, &dev.label, format!("{key}.label"))?;
    }
    Ok(())
}
