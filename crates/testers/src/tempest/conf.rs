//! tempest.conf from the tester's config: rendered with its secrets for the host, and
//! with them masked for the artifacts.

use gate_core::secret::MASK;
use gate_core::{BackendConfig, Result};

use super::config::TempestConfig;

/// One value of tempest.conf.
#[derive(Clone)]
struct Value {
    text: String,
    secret: bool,
}

/// tempest.conf as ordered sections of ordered keys. `Debug` shows no value.
#[derive(Clone, Default)]
pub struct TempestConf {
    sections: Vec<(String, Vec<(String, Value)>)>,
}

impl std::fmt::Debug for TempestConf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.sections.iter().map(|(s, _)| s.as_str()).collect();
        f.debug_struct("TempestConf")
            .field("sections", &names)
            .finish_non_exhaustive()
    }
}

impl TempestConf {
    /// Sets `[section] key` (replacing an earlier value).
    fn set(&mut self, section: &str, key: &str, text: impl Into<String>, secret: bool) {
        let value = Value {
            text: text.into(),
            secret,
        };
        if secret && value.text.contains('$') {
            // The file holds it as oslo.config escapes it: mask that form too.
            gate_core::secret::register(&value.text.replace('$', "$$"));
        }
        let keys = match self.sections.iter_mut().position(|(s, _)| s == section) {
            Some(i) => &mut self.sections[i].1,
            None => {
                self.sections.push((section.to_owned(), Vec::new()));
                let last = self.sections.len() - 1;
                &mut self.sections[last].1
            }
        };
        match keys.iter_mut().find(|(k, _)| k == key) {
            Some((_, old)) => *old = value,
            None => keys.push((key.to_owned(), value)),
        }
    }

    /// The value of `[section] key` as written (secrets in clear), if set.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections
            .iter()
            .find(|(s, _)| s == section)
            .and_then(|(_, keys)| keys.iter().find(|(k, _)| k == key))
            .map(|(_, v)| v.text.as_str())
    }

    /// The file for Tempest: secrets in clear. Never log it.
    pub fn render(&self) -> String {
        self.render_with(false)
    }

    /// The file for people: every secret value is `***`.
    pub fn render_masked(&self) -> String {
        self.render_with(true)
    }

    fn render_with(&self, mask: bool) -> String {
        let mut out = String::from("# Written by gate's tempest tester.\n");
        for (section, keys) in &self.sections {
            out.push_str(&format!("\n[{section}]\n"));
            for (key, value) in keys {
                let text = if mask && value.secret {
                    MASK.to_owned()
                } else {
                    // oslo.config substitutes `$name`; `$$` is a literal `$`.
                    value.text.replace('$', "$$")
                };
                out.push_str(&format!("{key} = {text}\n"));
            }
        }
        out
    }
}

/// The paths in the workspace that tempest.conf names.
#[derive(Debug, Clone)]
pub struct Paths<'a> {
    /// The workspace directory (absolute where it runs).
    pub workspace: &'a str,
    /// The accounts file in the workspace, when there is one.
    pub accounts: Option<&'a str>,
}

/// tempest.conf for `config`, the workspace at `paths`.
pub fn build(config: &TempestConfig, paths: &Paths<'_>) -> TempestConf {
    let mut conf = TempestConf::default();
    let ws = paths.workspace;
    conf.set("DEFAULT", "debug", config.debug.to_string(), false);
    conf.set("DEFAULT", "log_dir", format!("{ws}/logs"), false);
    conf.set("DEFAULT", "log_file", "tempest.log", false);
    conf.set(
        "oslo_concurrency",
        "lock_path",
        format!("{ws}/tempest_lock"),
        false,
    );

    let auth = &config.auth;
    match paths.accounts {
        Some(accounts) => {
            conf.set("auth", "use_dynamic_credentials", "false", false);
            conf.set("auth", "test_accounts_file", accounts, false);
        }
        None => conf.set("auth", "use_dynamic_credentials", "true", false),
    }
    if let Some(password) = &auth.admin_password {
        conf.set("auth", "admin_username", &auth.admin_username, false);
        conf.set("auth", "admin_password", password.expose(), true);
        conf.set(
            "auth",
            "admin_project_name",
            &auth.admin_project_name,
            false,
        );
        conf.set("auth", "admin_domain_name", &auth.admin_domain_name, false);
    }
    let neutron = config.services.get("neutron").copied().unwrap_or(true);
    conf.set(
        "auth",
        "create_isolated_networks",
        neutron.to_string(),
        false,
    );

    conf.set("identity", "uri_v3", &auth.url, false);
    conf.set("identity", "auth_version", "v3", false);
    conf.set("identity", "region", &config.region, false);
    conf.set("identity", "v3_endpoint_type", &auth.interface, false);
    conf.set(
        "identity",
        "disable_ssl_certificate_validation",
        auth.insecure.to_string(),
        false,
    );
    if let Some(ca) = &auth.ca_certificates_file {
        conf.set("identity", "ca_certificates_file", ca, false);
    }
    conf.set("identity-feature-enabled", "api_v2", "false", false);

    for (key, value) in [
        ("image_ref", &config.image_ref),
        ("image_ref_alt", &config.image_ref_alt),
        ("flavor_ref", &config.flavor_ref),
        ("flavor_ref_alt", &config.flavor_ref_alt),
    ] {
        if let Some(value) = value {
            conf.set("compute", key, value, false);
        }
    }
    for (service, available) in &config.services {
        conf.set("service_available", service, available.to_string(), false);
    }
    for (section, keys) in &config.options {
        for (key, value) in keys {
            let (text, secret) = value.text();
            conf.set(section, key, text, secret);
        }
    }
    conf
}

/// Checks what goes into tempest.conf: no value, key or section may break the file's
/// lines (a newline would smuggle in settings of its own).
pub fn check(section: &BackendConfig, config: &TempestConfig) -> Result<()> {
    let one_line = |key: &str, value: &str| {
        if value.contains(['\n', '\r']) {
            Err(section.error(key.to_owned(), "must be one line"))
        } else {
            Ok(())
        }
    };
    let auth = &config.auth;
    one_line("auth.url", &auth.url)?;
    one_line("auth.admin_username", &auth.admin_username)?;
    if let Some(password) = &auth.admin_password {
        one_line("auth.admin_password", password.expose())?;
    }
    one_line("auth.admin_project_name", &auth.admin_project_name)?;
    one_line("auth.admin_domain_name", &auth.admin_domain_name)?;
    one_line("auth.interface", &auth.interface)?;
    if let Some(ca) = &auth.ca_certificates_file {
        one_line("auth.ca_certificates_file", ca)?;
    }
    one_line("region", &config.region)?;
    for (key, value) in [
        ("image_ref", &config.image_ref),
        ("image_ref_alt", &config.image_ref_alt),
        ("flavor_ref", &config.flavor_ref),
        ("flavor_ref_alt", &config.flavor_ref_alt),
    ] {
        if let Some(value) = value {
            one_line(key, value)?;
        }
    }
    let name_ok = |name: &str| {
        !name.is_empty()
            && name.trim() == name
            && !name.contains(['\n', '\r', '[', ']', '=', '#', ';'])
    };
    for service in config.services.keys() {
        if !name_ok(service) {
            return Err(section.error(
                format!("services.{service}"),
                "not a tempest.conf option name",
            ));
        }
    }
    for (name, keys) in &config.options {
        if !name_ok(name) {
            return Err(section.error(format!("options.{name}"), "not a tempest.conf section name"));
        }
        for (key, value) in keys {
            let at = format!("options.{name}.{key}");
            if !name_ok(key) {
                return Err(section.error(at, "not a tempest.conf option name"));
            }
            one_line(&at, &value.text().0)?;
        }
    }
    if auth.admin_password.is_none() && auth.accounts_file.is_none() {
        return Err(section.error(
            "auth",
            "give `admin_password` (dynamic credentials) or `accounts_file` (preprovisioned)",
        ));
    }
    Ok(())
}

/// Registers the `password:` values of an accounts file (Tempest's `accounts.yaml`) as
/// secrets, so they are masked wherever gate writes text.
pub fn register_account_passwords(text: &str) {
    for line in text.lines() {
        let line = line.trim_start().trim_start_matches("- ").trim_start();
        if let Some(rest) = line.strip_prefix("password:") {
            let value = rest.trim().trim_matches(|c| c == '\'' || c == '"');
            if !value.is_empty() {
                gate_core::secret::register(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tempest::config::TempestConfig;

    fn config(toml: &str) -> TempestConfig {
        BackendConfig::from_toml("tester", "tempest", toml)
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn the_conf_has_the_cloud_and_overrides_win() {
        let c = config(
            r#"
region = "R2"
flavor_ref = "42"
services = { nova = true, neutron = false }
[auth]
url = "http://127.0.0.1:5000/v3"
admin_password = "conf-render-sentinel-$HOME"
[options.compute-feature-enabled]
resize = false
[options.identity]
region = "R3"
[options.validation]
image_ssh_password = { secret = "conf-option-secret-sentinel" }
[options.compute]
hosts = ["a", 2]
"#,
        );
        let conf = build(
            &c,
            &Paths {
                workspace: "/w",
                accounts: None,
            },
        );
        assert_eq!(conf.get("identity", "region"), Some("R3"));
        assert_eq!(conf.get("compute", "flavor_ref"), Some("42"));
        assert_eq!(conf.get("compute", "hosts"), Some("a,2"));
        assert_eq!(conf.get("auth", "create_isolated_networks"), Some("false"));
        assert_eq!(conf.get("service_available", "neutron"), Some("false"));
        let text = conf.render();
        assert!(
            text.contains("admin_password = conf-render-sentinel-$$HOME\n"),
            "{text}"
        );
        assert!(text.contains("[compute-feature-enabled]\nresize = false\n"));
        assert!(text.contains("lock_path = /w/tempest_lock\n"));
        let masked = conf.render_masked();
        assert!(!masked.contains("sentinel"), "{masked}");
        assert_eq!(
            gate_core::secret::redact(&text),
            masked,
            "the escaped form is masked too"
        );
        assert!(masked.contains("admin_password = ***\n"), "{masked}");
        assert!(masked.contains("image_ssh_password = ***\n"), "{masked}");
        assert!(!format!("{conf:?}").contains("sentinel"));
    }

    #[test]
    fn accounts_turn_dynamic_credentials_off_and_their_passwords_are_masked() {
        let c = config("[auth]\nurl = \"http://k/v3\"\naccounts_file = \"a.yaml\"");
        let conf = build(
            &c,
            &Paths {
                workspace: "/w",
                accounts: Some("/w/etc/accounts.yaml"),
            },
        );
        assert_eq!(conf.get("auth", "use_dynamic_credentials"), Some("false"));
        assert_eq!(
            conf.get("auth", "test_accounts_file"),
            Some("/w/etc/accounts.yaml")
        );
        assert_eq!(conf.get("auth", "admin_password"), None);
        register_account_passwords(
            "- username: u1\n  project_name: p\n  password: 'accounts-pw-sentinel'\n",
        );
        assert_eq!(
            gate_core::secret::redact("x accounts-pw-sentinel y"),
            "x *** y"
        );
    }
}
