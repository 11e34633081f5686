//! The settings every OpenStack backend shares: which cloud, and how API calls are retried.

use std::time::Duration;

use serde::Deserialize;

/// Which cloud to talk to, and how patiently. Backends flatten it into their section:
///
/// ```toml
/// cloud = "rackspace"        # a clouds.yaml entry; default: $OS_CLOUD, else the OS_* variables
/// [provider.api]
/// tries = 10                 # attempts per call on 5xx, 429 and connection errors
/// max_delay_secs = 30        # waits grow 1 s, 2 s, 4 s … up to this (429 Retry-After wins)
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CloudConfig {
    /// The `clouds.yaml` entry (searched in `$OS_CLIENT_CONFIG_FILE`, `./clouds.yaml`,
    /// `~/.config/openstack/clouds.yaml`, `/etc/openstack/clouds.yaml`). Default: `$OS_CLOUD`;
    /// without either, the `OS_*` environment variables.
    #[serde(default)]
    pub cloud: Option<String>,
    /// A `clouds.yaml` to read instead of searching for one.
    #[serde(default)]
    pub clouds_file: Option<std::path::PathBuf>,
    /// Retries of API calls.
    #[serde(default)]
    pub api: RetryConfig,
}

/// How API calls are retried on 5xx, 429 and connection errors. Quota errors and other
/// 4xx answers are never retried.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per call, the first included (default 10, as the field used).
    #[serde(default = "default_tries")]
    pub tries: u32,
    /// The first wait, in seconds (default 1); each next one doubles.
    #[serde(default = "default_first_delay")]
    pub first_delay_secs: f64,
    /// The longest wait between two attempts, in seconds (default 30); a `Retry-After`
    /// longer than this is cut to it.
    #[serde(default = "default_max_delay")]
    pub max_delay_secs: f64,
    /// How long one HTTP request may take, in seconds (default 120).
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            tries: default_tries(),
            first_delay_secs: default_first_delay(),
            max_delay_secs: default_max_delay(),
            request_timeout_secs: default_request_timeout(),
        }
    }
}

impl RetryConfig {
    /// The wait before attempt `attempt + 1` (0-based `attempt` just failed), given the
    /// server's `Retry-After` when it sent one.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let max = secs(self.max_delay_secs);
        if let Some(asked) = retry_after {
            return asked.min(max);
        }
        let grown = self.first_delay_secs * 2f64.powi(attempt.min(30) as i32);
        secs(grown).min(max)
    }

    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        secs(self.request_timeout_secs)
    }

    /// Checks the values; `key` prefixes the names in the message.
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.tries == 0 {
            return Err(("api.tries".into(), "must be at least 1".into()));
        }
        for (key, value) in [
            ("api.first_delay_secs", self.first_delay_secs),
            ("api.max_delay_secs", self.max_delay_secs),
            ("api.request_timeout_secs", self.request_timeout_secs),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err((
                    key.into(),
                    format!("must be a number of seconds ≥ 0, not {value}"),
                ));
            }
        }
        Ok(())
    }
}

fn secs(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::ZERO)
}

fn default_tries() -> u32 {
    10
}
fn default_first_delay() -> f64 {
    1.0
}
fn default_max_delay() -> f64 {
    30.0
}
fn default_request_timeout() -> f64 {
    120.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_retry_after_wins_below_it() {
        let retry = RetryConfig::default();
        assert_eq!(retry.delay(0, None), Duration::from_secs(1));
        assert_eq!(retry.delay(3, None), Duration::from_secs(8));
        assert_eq!(retry.delay(9, None), Duration::from_secs(30));
        assert_eq!(
            retry.delay(0, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            retry.delay(0, Some(Duration::from_secs(700))),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn zero_tries_and_negative_waits_are_refused() {
        let zero = RetryConfig {
            tries: 0,
            ..RetryConfig::default()
        };
        assert_eq!(zero.check().unwrap_err().0, "api.tries");
        let negative = RetryConfig {
            max_delay_secs: -1.0,
            ..RetryConfig::default()
        };
        assert_eq!(negative.check().unwrap_err().0, "api.max_delay_secs");
    }
}
