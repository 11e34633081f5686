//! The deployment repository a deployer (`osa`, `rpco`) checks out on the primary and runs
//! its scripts from: the keys every such deployer has, checked once.

use std::collections::BTreeMap;
use std::time::Duration;

use gate_core::steps::check_env_name;
use gate_core::{BackendConfig, EnvValue, Result};

use crate::{Checkout, Version, parse_url, parse_version};

/// The repository keys of a deployer's config, as written.
#[derive(Debug, Clone, Copy)]
pub struct RepositoryKeys<'a> {
    /// `repo`: the git URL.
    pub repo: &'a str,
    /// `version`: what to deploy.
    pub version: &'a str,
    /// `upgrade_to`: what the upgrade moves to, if anything.
    pub upgrade_to: Option<&'a str>,
    /// `path`: where the checkout goes on the primary.
    pub path: &'a str,
    /// `config_dir`: the deployment config directory on the primary.
    pub config_dir: &'a str,
    /// `env`: environment for every step.
    pub env: &'a BTreeMap<String, EnvValue>,
    /// `timeout_secs`: the time limit of one step.
    pub timeout_secs: u64,
}

/// A checked deployment repository: its URL, versions, place on the primary and step limit.
#[derive(Debug, Clone)]
pub struct Repository {
    url: String,
    path: String,
    /// What to deploy.
    pub version: Version,
    /// What the upgrade moves to; `None` skips the upgrade stage.
    pub upgrade_to: Option<Version>,
    timeout: Duration,
}

impl Repository {
    /// Checks `keys` of `section`: versions, the URL, absolute paths, environment names.
    /// Errors name the section and the key.
    pub fn from_keys(section: &BackendConfig, keys: RepositoryKeys<'_>) -> Result<Self> {
        let version = parse_version(section, "version", keys.version)?;
        let upgrade_to = keys
            .upgrade_to
            .map(|v| parse_version(section, "upgrade_to", v))
            .transpose()?;
        parse_url(section, "repo", keys.repo)?;
        for (key, path) in [("path", keys.path), ("config_dir", keys.config_dir)] {
            if !path.starts_with('/') || path.chars().any(char::is_control) {
                return Err(section.error(key, format!("`{path}` is not an absolute path")));
            }
        }
        for name in keys.env.keys() {
            check_env_name(section, "env", name)?;
        }
        Ok(Self {
            url: keys.repo.to_owned(),
            path: keys.path.to_owned(),
            version,
            upgrade_to,
            timeout: Duration::from_secs(keys.timeout_secs),
        })
    }

    /// The time limit of one step.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The checkout of `version` at the repository's path.
    pub fn checkout(&self, version: &Version) -> Checkout {
        Checkout {
            dest: self.path.clone(),
            url: self.url.clone(),
            version: version.clone(),
            timeout: self.timeout,
        }
    }
}
