//! Feature flags: what each one adds to the AIO scenario, to the variables, and to the host
//! groups of a multi-node `openstack_user_config.yml`.

use serde::Deserialize;
use serde_yaml_ng::Value;

/// The feature flags the `osa` deployer knows; any other name is a config error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Features {
    /// Ceph for images, volumes and instance disks.
    #[serde(default)]
    pub ceph: bool,
    /// Swift object storage.
    #[serde(default)]
    pub swift: bool,
    /// Ironic bare-metal provisioning.
    #[serde(default)]
    pub ironic: bool,
    /// Tempest installed and run by the deployment.
    #[serde(default)]
    pub tempest: bool,
    /// Octavia load balancers.
    #[serde(default)]
    pub octavia: bool,
    /// Designate DNS.
    #[serde(default)]
    pub designate: bool,
    /// Manila shared file systems.
    #[serde(default)]
    pub manila: bool,
    /// Heat orchestration.
    #[serde(default)]
    pub heat: bool,
}

/// Where a feature's hosts come from in a multi-node deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The infrastructure hosts.
    Infra,
    /// The compute hosts.
    Compute,
    /// The storage hosts.
    Storage,
}

/// What one feature does.
#[derive(Debug)]
pub struct Effect {
    /// The flag's name.
    pub name: &'static str,
    /// Its token in the AIO scenario.
    pub scenario: &'static str,
    /// Variables it sets.
    pub variables: &'static [(&'static str, &'static str)],
    /// Host groups it adds, and which hosts go in them.
    pub groups: &'static [(&'static str, Role)],
}

const EFFECTS: &[Effect] = &[
    Effect {
        name: "ceph",
        scenario: "ceph",
        variables: &[
            ("glance_default_store", "rbd"),
            ("nova_libvirt_images_rbd_pool", "vms"),
        ],
        groups: &[
            ("ceph-mon_hosts", Role::Infra),
            ("ceph-osd_hosts", Role::Storage),
        ],
    },
    Effect {
        name: "swift",
        scenario: "swift",
        variables: &[("glance_default_store", "swift")],
        groups: &[
            ("swift-proxy_hosts", Role::Infra),
            ("swift_hosts", Role::Storage),
        ],
    },
    Effect {
        name: "ironic",
        scenario: "ironic",
        variables: &[("ironic_enabled_hardware_types", "ipmi")],
        groups: &[
            ("ironic-infra_hosts", Role::Infra),
            ("ironic-compute_hosts", Role::Compute),
        ],
    },
    Effect {
        name: "tempest",
        scenario: "",
        variables: &[("tempest_install", "true"), ("tempest_run", "true")],
        groups: &[],
    },
    Effect {
        name: "octavia",
        scenario: "octavia",
        variables: &[],
        groups: &[("octavia-infra_hosts", Role::Infra)],
    },
    Effect {
        name: "designate",
        scenario: "designate",
        variables: &[],
        groups: &[("dnsaas_hosts", Role::Infra)],
    },
    Effect {
        name: "manila",
        scenario: "manila",
        variables: &[],
        groups: &[
            ("manila-infra_hosts", Role::Infra),
            ("manila-data_hosts", Role::Storage),
        ],
    },
    Effect {
        name: "heat",
        scenario: "heat",
        variables: &[],
        groups: &[("orchestration_hosts", Role::Infra)],
    },
];

impl Features {
    fn on(&self, name: &str) -> bool {
        match name {
            "ceph" => self.ceph,
            "swift" => self.swift,
            "ironic" => self.ironic,
            "tempest" => self.tempest,
            "octavia" => self.octavia,
            "designate" => self.designate,
            "manila" => self.manila,
            "heat" => self.heat,
            _ => false,
        }
    }

    /// The effects of the flags that are on, in a fixed order.
    pub fn enabled(&self) -> impl Iterator<Item = &'static Effect> + '_ {
        EFFECTS.iter().filter(|e| self.on(e.name))
    }

    /// `base` with the scenario token of each flag that is on (`aio_lxc_ceph_swift`).
    pub fn scenario(&self, base: &str) -> String {
        let mut scenario = base.to_owned();
        for token in self.enabled().map(|e| e.scenario).filter(|t| !t.is_empty()) {
            scenario.push('_');
            scenario.push_str(token);
        }
        scenario
    }

    /// The variables of the flags that are on; where two set one variable, Ceph's store
    /// wins over Swift's (the earlier flag).
    pub fn variables(&self) -> Vec<(String, Value)> {
        let mut vars: Vec<(String, Value)> = Vec::new();
        for effect in self.enabled() {
            for (key, value) in effect.variables {
                if vars.iter().any(|(k, _)| k == key) {
                    continue;
                }
                let value = match *value {
                    "true" => Value::Bool(true),
                    "ipmi" => Value::Sequence(vec![Value::String("ipmi".into())]),
                    other => Value::String(other.into()),
                };
                vars.push(((*key).to_owned(), value));
            }
        }
        vars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scenario_gets_a_token_per_flag_in_a_fixed_order() {
        let f = Features {
            swift: true,
            ceph: true,
            tempest: true,
            ..Features::default()
        };
        assert_eq!(f.scenario("aio_lxc"), "aio_lxc_ceph_swift");
        let vars = f.variables();
        assert_eq!(
            vars[0],
            ("glance_default_store".into(), Value::String("rbd".into()))
        );
        assert!(
            vars.iter()
                .filter(|(k, _)| k == "glance_default_store")
                .count()
                == 1
        );
        assert!(vars.contains(&("tempest_run".into(), Value::Bool(true))));
    }
}
