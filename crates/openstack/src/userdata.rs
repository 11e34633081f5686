//! The user data that makes root reachable from the first boot: a `#cloud-config` putting
//! the keys file's keys and the run's own key in root's `authorized_keys`, merged with the
//! user's own user data.

use serde_yaml_ng::{Mapping, Value};

/// User data giving root `keys` (OpenSSH public key lines). `extra`, the configured user
/// data, is merged: a `#cloud-config` document gets the root user added to its `users`
/// (keys appended when it already names root); anything else (a script, a MIME archive)
/// travels as the second part of a MIME multipart archive, after gate's cloud-config.
/// Fails with a message when `extra` claims to be cloud-config but is not a YAML mapping.
pub fn with_root_keys(keys: &[String], extra: Option<&str>) -> Result<String, String> {
    match extra {
        None => Ok(render(cloud_config(Mapping::new(), keys))),
        Some(extra) if extra.starts_with("#cloud-config") => {
            let parsed: Value = serde_yaml_ng::from_str(extra)
                .map_err(|e| format!("user_data is #cloud-config but not YAML: {e}"))?;
            let base = match parsed {
                Value::Mapping(map) => map,
                Value::Null => Mapping::new(),
                _ => return Err("user_data is #cloud-config but not a YAML mapping".into()),
            };
            Ok(render(cloud_config(base, keys)))
        }
        Some(extra) => Ok(multipart(
            &render(cloud_config(Mapping::new(), keys)),
            extra,
        )),
    }
}

fn cloud_config(mut config: Mapping, keys: &[String]) -> Mapping {
    let key_list = || Value::Sequence(keys.iter().cloned().map(Value::String).collect());
    config.insert("disable_root".into(), Value::Bool(false));
    let users = config
        .entry("users".into())
        .or_insert_with(|| Value::Sequence(vec!["default".into()]));
    if !users.is_sequence() {
        *users = Value::Sequence(vec!["default".into()]);
    }
    if let Value::Sequence(list) = users {
        let root = list
            .iter_mut()
            .find(|user| user.get("name").and_then(Value::as_str) == Some("root"));
        match root {
            Some(Value::Mapping(root)) => {
                let entry = root
                    .entry("ssh_authorized_keys".into())
                    .or_insert_with(|| Value::Sequence(Vec::new()));
                match entry {
                    Value::Sequence(existing) => {
                        existing.extend(keys.iter().cloned().map(Value::String));
                    }
                    other => *other = key_list(),
                }
            }
            _ => {
                let mut root = Mapping::new();
                root.insert("name".into(), "root".into());
                root.insert("ssh_authorized_keys".into(), key_list());
                list.push(Value::Mapping(root));
            }
        }
    }
    config
}

fn render(config: Mapping) -> String {
    let body = serde_yaml_ng::to_string(&Value::Mapping(config)).unwrap_or_default();
    format!("#cloud-config\n{body}")
}

fn multipart(cloud_config: &str, extra: &str) -> String {
    let boundary = "===============gate-user-data==";
    let kind = if extra.starts_with("#!") {
        "text/x-shellscript"
    } else if extra.starts_with("#include") {
        "text/x-include-url"
    } else if extra.starts_with("#cloud-boothook") {
        "text/cloud-boothook"
    } else {
        "text/plain"
    };
    format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n\
         --{boundary}\nContent-Type: text/cloud-config; charset=\"utf-8\"\n\
         Content-Disposition: attachment; filename=\"gate.cfg\"\n\n{cloud_config}\n\
         --{boundary}\nContent-Type: {kind}; charset=\"utf-8\"\n\
         Content-Disposition: attachment; filename=\"user-data\"\n\n{extra}\n\
         --{boundary}--\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBase run@gate";

    fn parse(text: &str) -> Value {
        assert!(text.starts_with("#cloud-config\n"), "{text}");
        serde_yaml_ng::from_str(text).unwrap()
    }

    fn root_keys(config: &Value) -> Vec<String> {
        config["users"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|u| u.get("name").and_then(Value::as_str) == Some("root"))
            .map(|root| {
                root["ssh_authorized_keys"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|k| k.as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn keys_go_to_root_and_root_login_is_allowed() {
        let config = parse(&with_root_keys(&[KEY.into()], None).unwrap());
        assert_eq!(root_keys(&config), [KEY]);
        assert_eq!(config["disable_root"], Value::Bool(false));
        assert_eq!(config["users"][0], Value::from("default"));
    }

    #[test]
    fn a_users_cloud_config_is_kept_and_its_root_entry_extended() {
        let extra = "#cloud-config\npackages: [git]\nusers:\n  - name: root\n    ssh_authorized_keys: [ssh-rsa AAAAB3old me]\n";
        let config = parse(&with_root_keys(&[KEY.into()], Some(extra)).unwrap());
        assert_eq!(config["packages"][0], Value::from("git"));
        assert_eq!(root_keys(&config), ["ssh-rsa AAAAB3old me", KEY]);
    }

    #[test]
    fn a_script_rides_along_in_a_multipart_archive() {
        let text = with_root_keys(&[KEY.into()], Some("#!/bin/sh\necho hi\n")).unwrap();
        assert!(text.starts_with("Content-Type: multipart/mixed"));
        assert!(text.contains("text/x-shellscript"));
        assert!(text.contains(KEY));
        assert!(text.contains("echo hi"));
    }

    #[test]
    fn a_key_with_yaml_specials_stays_one_string() {
        let odd = "ssh-ed25519 AAAAC3x a: b # c";
        let config = parse(&with_root_keys(&[odd.into()], None).unwrap());
        assert_eq!(root_keys(&config), [odd]);
    }

    #[test]
    fn cloud_config_that_is_not_a_mapping_is_refused() {
        let err = with_root_keys(&[KEY.into()], Some("#cloud-config\n- a\n")).unwrap_err();
        assert!(err.contains("not a YAML mapping"), "{err}");
    }
}
