//! The settings OpenStack providers share, as the shared allocator and checks take them.
//!
//! Each provider keeps its whole section in one serde struct of its own (with
//! `deny_unknown_fields`: serde's `flatten` would switch that off, and would read the
//! flattened keys through a buffer that no longer turns the strings of `--set` and
//! `GATE__…` overrides into numbers) and hands these parts out by conversion, with its own
//! defaults filled in.

use std::time::Duration;

use crate::config::{CloudConfig, RetryConfig};

/// The keys every OpenStack provider section has, whatever it makes: which cloud, how API
/// calls are retried, how gate logs in to its hosts, what sweeps leave alone, and how
/// patiently it polls and deletes.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedConfig {
    /// The `clouds.yaml` entry (default `$OS_CLOUD`, else the `OS_*` variables).
    pub cloud: Option<String>,
    /// A `clouds.yaml` to read instead of searching the usual places.
    pub clouds_file: Option<std::path::PathBuf>,
    /// API retries.
    pub api: RetryConfig,
    /// The login user.
    pub user: String,
    /// The SSH port.
    pub port: u16,
    /// Labels for every host.
    pub labels: Vec<String>,
    /// Name patterns (`*` wildcards) `gate sweep` never touches.
    pub protected: Vec<String>,
    /// How often to poll, in seconds.
    pub poll_secs: f64,
    /// How long a delete may take, in seconds.
    pub delete_timeout_secs: f64,
}

impl SharedConfig {
    /// The cloud part (Keystone login and retries).
    pub fn cloud(&self) -> CloudConfig {
        CloudConfig {
            cloud: self.cloud.clone(),
            clouds_file: self.clouds_file.clone(),
            api: self.api.clone(),
        }
    }

    /// The host `name` at `address`, reached over SSH as `user` on `port`, with `labels`.
    pub fn host(&self, name: &str, address: String) -> gate_core::Host {
        gate_core::Host {
            name: name.to_owned(),
            address,
            port: self.port,
            user: self.user.clone(),
            labels: self.labels.clone(),
            transport: "ssh".into(),
            home: None,
        }
    }

    /// How often to poll.
    pub fn poll(&self) -> Duration {
        seconds(self.poll_secs)
    }

    /// How long a delete may take.
    pub fn delete_timeout(&self) -> Duration {
        seconds(self.delete_timeout_secs)
    }

    /// Checks what serde cannot: the retries and the seconds; the error names the key.
    pub fn check(&self) -> Result<(), (String, String)> {
        self.api.check()?;
        positive_secs(&[
            ("poll_secs", self.poll_secs),
            ("delete_timeout_secs", self.delete_timeout_secs),
        ])
    }
}

/// The keys of a provider that boots Nova servers (`pubcloud`; `onmetal` in Nova mode).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NovaServerConfig {
    /// The node name; servers are `<name>-1` … (default: the run id).
    pub name: Option<String>,
    /// Network names or ids; `["auto"]` (also when empty) or `["none"]`.
    pub networks: Vec<String>,
    /// The network whose address gate connects to (default: `accessIPv4`, a floating
    /// address, else the first IPv4).
    pub address_network: Option<String>,
    /// Security group names.
    pub security_groups: Vec<String>,
    /// A Nova keypair to add as well.
    pub key_name: Option<String>,
    /// An availability zone.
    pub availability_zone: Option<String>,
    /// Extra user data (a `#cloud-config` is merged; a script rides along).
    pub user_data: Option<String>,
    /// Regions tried after the provider's own regions failed.
    pub fallback_regions: Vec<String>,
    /// How many servers to create at once (default: the run's concurrency).
    pub concurrency: Option<usize>,
    /// How long a server may take to become ACTIVE, get an address and answer SSH, in
    /// seconds.
    pub boot_timeout_secs: f64,
}

impl NovaServerConfig {
    /// How long a server may take to be up.
    pub fn boot_timeout(&self) -> Duration {
        seconds(self.boot_timeout_secs)
    }

    /// Checks what serde cannot; the error names the key.
    pub fn check(&self) -> Result<(), (String, String)> {
        let special = self.networks.iter().any(|n| n == "auto" || n == "none");
        if special && self.networks.len() > 1 {
            return Err((
                "networks".into(),
                "\"auto\" and \"none\" stand alone; list network names or ids otherwise".into(),
            ));
        }
        if let Some(name) = &self.name
            && (name.is_empty() || name.len() > 60)
        {
            return Err(("name".into(), "must be 1 to 60 characters".into()));
        }
        self.check_common()
    }

    /// Checks the keys a provider may use without Nova too: `concurrency` and
    /// `boot_timeout_secs`.
    pub fn check_common(&self) -> Result<(), (String, String)> {
        if self.concurrency == Some(0) {
            return Err(("concurrency".into(), "must be at least 1".into()));
        }
        positive_secs(&[("boot_timeout_secs", self.boot_timeout_secs)])
    }

    /// The Nova-only keys that are set (for a mode without Nova to refuse), in the order
    /// of the reference.
    pub fn nova_keys_set(&self) -> Vec<&'static str> {
        [
            ("fallback_regions", !self.fallback_regions.is_empty()),
            ("name", self.name.is_some()),
            ("networks", !self.networks.is_empty()),
            ("address_network", self.address_network.is_some()),
            ("security_groups", !self.security_groups.is_empty()),
            ("key_name", self.key_name.is_some()),
            ("availability_zone", self.availability_zone.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }
}

/// `value` seconds as a duration (1 s for what is not a valid duration; checks refuse
/// those first).
pub fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::from_secs(1))
}

/// Refuses seconds that are not positive numbers.
fn positive_secs(values: &[(&str, f64)]) -> Result<(), (String, String)> {
    for (key, value) in values {
        if !value.is_finite() || *value <= 0.0 {
            return Err((
                (*key).into(),
                format!("must be a positive number of seconds, not {value}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> SharedConfig {
        SharedConfig {
            cloud: None,
            clouds_file: None,
            api: RetryConfig::default(),
            user: "root".into(),
            port: 22,
            labels: Vec::new(),
            protected: Vec::new(),
            poll_secs: 5.0,
            delete_timeout_secs: 300.0,
        }
    }

    #[test]
    fn checks_name_the_key() {
        shared().check().unwrap();
        let zero_poll = SharedConfig {
            poll_secs: 0.0,
            ..shared()
        };
        assert_eq!(zero_poll.check().unwrap_err().0, "poll_secs");
        let nova = NovaServerConfig {
            boot_timeout_secs: 900.0,
            ..NovaServerConfig::default()
        };
        nova.check().unwrap();
        let mixed = NovaServerConfig {
            networks: vec!["none".into(), "x".into()],
            ..nova.clone()
        };
        assert_eq!(mixed.check().unwrap_err().0, "networks");
        let zero = NovaServerConfig {
            concurrency: Some(0),
            ..nova.clone()
        };
        assert_eq!(zero.check().unwrap_err().0, "concurrency");
        assert_eq!(
            NovaServerConfig::default().check().unwrap_err().0,
            "boot_timeout_secs"
        );
        assert_eq!(nova.boot_timeout(), Duration::from_secs(900));
    }
}
