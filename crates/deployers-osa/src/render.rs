//! The deployment config gate writes: the variables file in layers, and for multi-node the
//! host list of `openstack_user_config.yml`.

use std::collections::BTreeMap;

use gate_core::{Host, Inventory};
use serde_yaml_ng::{Mapping, Value};

use crate::config::{OsaConfig, TargetKind};
use crate::features::Role;

/// The infrastructure groups every multi-node deployment has.
const INFRA_GROUPS: &[&str] = &[
    "shared-infra_hosts",
    "repo-infra_hosts",
    "coordination_hosts",
    "os-infra_hosts",
    "identity_hosts",
    "network_hosts",
    "storage-infra_hosts",
    "haproxy_hosts",
    "dashboard_hosts",
];

fn string(s: &str) -> Value {
    Value::String(s.to_owned())
}

/// The built-in defaults of a target kind: the first layer.
pub fn defaults(kind: TargetKind) -> Vec<(String, Value)> {
    let mut vars = vec![
        ("apply_security_hardening".to_owned(), Value::Bool(false)),
        ("install_method".to_owned(), string("source")),
    ];
    match kind {
        TargetKind::Aio => vars.push(("bootstrap_host_data_disk_min_size".into(), 30.into())),
        TargetKind::MultiNode => {
            vars.push(("haproxy_use_keepalived".into(), Value::Bool(false)));
            vars.push(("openstack_service_publicuri_proto".into(), string("http")));
        }
    }
    vars
}

/// The variables file: the target kind's defaults, then the feature flags, then the user's
/// own variables; a later layer wins key by key.
pub fn variables(config: &OsaConfig) -> Mapping {
    let mut out = Mapping::new();
    let layers = defaults(config.target)
        .into_iter()
        .chain(config.features.variables())
        .chain(config.variables.clone());
    for (key, value) in layers {
        out.insert(Value::String(key), value);
    }
    out
}

/// The secret variables (values exposed: this is what the host needs).
pub fn secret_variables(config: &OsaConfig) -> Mapping {
    config
        .secret_variables
        .iter()
        .map(|(k, v)| (string(k), string(v.expose())))
        .collect()
}

/// The hosts of each role: hosts labelled `infra`, `compute`, `storage`; without any
/// `infra` label the primary, without `compute` every other host (the primary when alone),
/// without `storage` the compute hosts.
pub fn roles(inventory: &Inventory) -> BTreeMap<&'static str, Vec<&Host>> {
    let hosts = inventory.hosts();
    let labelled = |label: &str| -> Vec<&Host> {
        hosts
            .iter()
            .filter(|h| h.labels.iter().any(|l| l == label))
            .collect()
    };
    let mut infra = labelled("infra");
    if infra.is_empty() {
        infra = vec![inventory.primary()];
    }
    let mut compute = labelled("compute");
    if compute.is_empty() {
        compute = hosts.iter().skip(1).collect();
        if compute.is_empty() {
            compute = vec![inventory.primary()];
        }
    }
    let mut storage = labelled("storage");
    if storage.is_empty() {
        storage = compute.clone();
    }
    BTreeMap::from([("infra", infra), ("compute", compute), ("storage", storage)])
}

fn group(hosts: &[&Host]) -> Value {
    let mut map = Mapping::new();
    for host in hosts {
        let mut entry = Mapping::new();
        entry.insert(string("ip"), string(&host.address));
        map.insert(string(&host.name), Value::Mapping(entry));
    }
    Value::Mapping(map)
}

/// `openstack_user_config.yml` for a multi-node deployment of `inventory`, with the user's
/// `user_config` merged over it.
pub fn user_config(config: &OsaConfig, inventory: &Inventory) -> Mapping {
    let roles = roles(inventory);
    let by_role = |role: Role| match role {
        Role::Infra => &roles["infra"],
        Role::Compute => &roles["compute"],
        Role::Storage => &roles["storage"],
    };
    let vip = inventory.primary().address.clone();
    let mut out = Mapping::new();
    let mut cidr = Mapping::new();
    for (name, net) in [
        ("container", "172.29.236.0/22"),
        ("tunnel", "172.29.240.0/22"),
        ("storage", "172.29.244.0/22"),
    ] {
        cidr.insert(string(name), string(net));
    }
    out.insert(string("cidr_networks"), Value::Mapping(cidr));
    out.insert(string("used_ips"), Value::Sequence(Vec::new()));
    let mut global = Mapping::new();
    global.insert(string("internal_lb_vip_address"), string(&vip));
    global.insert(string("external_lb_vip_address"), string(&vip));
    global.insert(string("management_bridge"), string("br-mgmt"));
    out.insert(string("global_overrides"), Value::Mapping(global));
    for name in INFRA_GROUPS {
        out.insert(string(name), group(by_role(Role::Infra)));
    }
    out.insert(string("compute_hosts"), group(by_role(Role::Compute)));
    out.insert(string("storage_hosts"), group(by_role(Role::Storage)));
    for effect in config.features.enabled() {
        for (name, role) in effect.groups {
            out.insert(string(name), group(by_role(*role)));
        }
    }
    for (key, value) in &config.user_config {
        merge(&mut out, string(key), value.clone());
    }
    out
}

/// Merges `value` into `map[key]`: tables key by key, anything else replaces.
fn merge(map: &mut Mapping, key: Value, value: Value) {
    match (map.get_mut(&key), value) {
        (Some(Value::Mapping(existing)), Value::Mapping(new)) => {
            for (k, v) in new {
                merge(existing, k, v);
            }
        }
        (_, value) => {
            map.insert(key, value);
        }
    }
}

/// `map` as YAML text, with a header saying who wrote it.
pub fn to_yaml(map: &Mapping) -> String {
    let body = serde_yaml_ng::to_string(map).unwrap_or_default();
    format!("---\n# Written by gate (the `osa` deployer); changes are overwritten.\n{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use gate_core::BackendConfig;

    fn config(toml: &str) -> OsaConfig {
        BackendConfig::from_toml("deployer", "osa", toml)
            .unwrap()
            .parse()
            .unwrap()
    }

    fn host(name: &str, labels: &[&str]) -> Host {
        Host {
            name: name.into(),
            address: format!("10.0.0.{}", name.len()),
            port: 22,
            user: "root".into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            transport: "ssh".into(),
            home: None,
        }
    }

    #[test]
    fn variables_layer_defaults_then_flags_then_the_users_own() {
        let c = config(
            r#"
            features = { ceph = true }
            variables = { apply_security_hardening = true, nova_libvirt_images_rbd_pool = "mine", extra = [1, 2] }
            "#,
        );
        let vars = variables(&c);
        assert_eq!(vars["apply_security_hardening"], Value::Bool(true));
        assert_eq!(vars["install_method"], string("source"));
        assert_eq!(vars["glance_default_store"], string("rbd"));
        assert_eq!(vars["nova_libvirt_images_rbd_pool"], string("mine"));
        assert_eq!(vars["extra"], Value::Sequence(vec![1.into(), 2.into()]));
        let parsed: Mapping = serde_yaml_ng::from_str(&to_yaml(&vars)).unwrap();
        assert_eq!(parsed, vars);
    }

    #[test]
    fn labels_pick_roles_and_unlabelled_hosts_fall_back() {
        let inv = Inventory::new(vec![host("a", &[]), host("bb", &[]), host("ccc", &[])]).unwrap();
        let r = roles(&inv);
        assert_eq!(
            r["infra"].iter().map(|h| &h.name).collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(r["compute"].len(), 2);
        assert_eq!(r["storage"].len(), 2);
        let inv = Inventory::new(vec![
            host("a", &["infra"]),
            host("bb", &["infra", "storage"]),
            host("ccc", &["compute"]),
        ])
        .unwrap();
        let c = config(
            "target = \"multi-node\"\nfeatures = { swift = true }\n[user_config.global_overrides]\nmanagement_bridge = \"br-x\"\n",
        );
        let uc = user_config(&c, &inv);
        let names = |g: &str| -> Vec<String> {
            uc[g]
                .as_mapping()
                .unwrap()
                .keys()
                .map(|k| k.as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(names("identity_hosts"), ["a", "bb"]);
        assert_eq!(names("compute_hosts"), ["ccc"]);
        assert_eq!(names("swift_hosts"), ["bb"]);
        assert_eq!(uc["global_overrides"]["management_bridge"], string("br-x"));
        assert_eq!(
            uc["global_overrides"]["internal_lb_vip_address"],
            string("10.0.0.1")
        );
    }
}
