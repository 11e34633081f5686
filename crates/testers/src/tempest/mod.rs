//! The `tempest` tester: installs Tempest on one host (into a virtualenv from a pip index
//! such as a CI mirror, or uses one that is there, on the host or in a container on it),
//! writes its workspace and tempest.conf for the cloud under test, runs a selection of its
//! tests, retries the whole run when it fails in a known flaky way, and converts the
//! subunit stream into `results/tempest_results.xml` — also when Tempest crashes part way:
//! then the file holds what ran plus an error case saying what broke (how it ended, the
//! last lines of its output).
//!
//! What it leaves under `artifacts/results/`: `tempest_results.xml` (checked like every
//! JUnit file), and in `<host>/tempest/`: `tempest.conf` with every secret masked,
//! `tempest.subunit` (the stream of the run that counts), `attempt-N.subunit` (streams of
//! retried runs) and `tempest.log` (Tempest's own log, secrets masked). A stream that holds
//! a known secret is not kept.
//!
//! ```toml
//! [tester]
//! backend = "tempest"
//! sets = ["smoke"]
//! exclude = ['test_rebuild_server']
//! concurrency = 4
//! flavor_ref = "1"
//! image_ref = "3c5f…"
//! services = { nova = true, neutron = true, cinder = false }
//!
//! [tester.install]
//! index_url = "http://mirror.ci.example:8080/pip/simple/"
//! version = "47.0.0"
//!
//! [tester.auth]
//! url = "https://172.29.236.100:5000/v3"
//! admin_password = { env = "OS_ADMIN_PASSWORD" }
//! ```

mod conf;
mod config;
mod remote;
mod results;
mod run;

pub use conf::TempestConf;
pub use config::{
    Auth, ConfScalar, ConfValue, Container, ContainerKind, DEFAULT_FLAKY_PATTERNS, DEFAULT_VENV,
    DEFAULT_VERSION, Install, InstallMode, SETS, TempestConfig,
};

use std::path::Path;

use async_trait::async_trait;
use gate_core::steps::check_env_name;
use gate_core::{
    BackendConfig, Command, EnvValue, Error, Event, ExecIo, Result, Secret, StageContext,
    TestReport, Tester, Transport,
};

use crate::collect::error_case;
use crate::suite::pick_host;
use crate::validate::write_checked;
use remote::{MAKE_PRIVATE_DIR, Place};

/// The registry name of the tester.
pub const NAME: &str = "tempest";

/// The JUnit file under `artifacts/results/`.
pub const RESULTS_FILE: &str = "tempest_results.xml";

/// The JUnit suite name.
const SUITE: &str = "tempest";

/// Installs, configures and runs Tempest, and publishes its results.
#[derive(Debug, Clone)]
pub struct TempestTester {
    config: TempestConfig,
    /// The accounts file's text (a secret: it holds passwords).
    accounts: Option<Secret>,
}

impl TempestTester {
    /// A tester from its config section; the accounts file, if any, is read here.
    pub fn from_config(section: &BackendConfig) -> Result<Self> {
        let config: TempestConfig = section.parse()?;
        conf::check(section, &config)?;
        let url = &config.auth.url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(section.error("auth.url", "must be an http:// or https:// URL"));
        }
        if let Some(set) = config
            .sets
            .iter()
            .find(|s| !SETS.iter().any(|(name, _)| name == s))
        {
            let known: Vec<&str> = SETS.iter().map(|(name, _)| *name).collect();
            return Err(section.error(
                "sets",
                format!("unknown test set `{set}`; known: {}", known.join(", ")),
            ));
        }
        for name in config.env.keys() {
            check_env_name(section, "env", name)?;
        }
        if config.concurrency == Some(0) {
            return Err(section.error("concurrency", "must be at least 1"));
        }
        config::check_install(section, &config.install)?;
        if let Some(container) = &config.container {
            config::check_container(section, container)?;
        }
        for (key, value) in [
            ("workspace", &config.workspace),
            ("include_file", &config.include_file),
            ("exclude_file", &config.exclude_file),
            ("load_list", &config.load_list),
        ] {
            if value.as_deref().is_some_and(str::is_empty) {
                return Err(section.error(key, "is empty"));
            }
        }
        let accounts = match &config.auth.accounts_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    section.error("auth.accounts_file", format!("reading {path}: {e}"))
                })?;
                conf::register_account_passwords(&text);
                Some(Secret::new(text))
            }
        };
        Ok(Self { config, accounts })
    }

    /// The settings.
    pub fn config(&self) -> &TempestConfig {
        &self.config
    }
}

/// A step that failed before Tempest's results existed: its name and the error.
type Failed = (&'static str, Error);

#[async_trait]
impl Tester for TempestTester {
    async fn test(&self, cx: &StageContext) -> Result<TestReport> {
        let path = cx.results_dir().join(RESULTS_FILE);
        let transport = match pick_host(cx, self.config.host.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                return write_checked(&path, SUITE, &[error_case(SUITE, "tempest".into(), &e)]);
            }
        };
        let classname = format!("{SUITE}.{}", transport.host().name);
        match self.run_on(cx, transport.as_ref(), &classname, &path).await {
            Ok(report) => Ok(report),
            Err((step, e)) => {
                let report =
                    write_checked(&path, SUITE, &[error_case(&classname, step.into(), &e)])?;
                if e.is_cancelled() { Err(e) } else { Ok(report) }
            }
        }
    }
}

impl TempestTester {
    /// Everything on the chosen host; an error names the step that failed.
    async fn run_on(
        &self,
        cx: &StageContext,
        transport: &dyn Transport,
        classname: &str,
        path: &Path,
    ) -> Result<TestReport, Failed> {
        let c = &self.config;
        let host = transport.host().name.clone();
        let log = cx.host_log(&host).map_err(|e| ("tempest", e))?;
        let io = ExecIo {
            log: &log,
            cancel: &cx.cancel,
        };
        let setup = "configure tempest";
        let relative = format!("gate-results/{}/tempest", cx.run_id.as_str());
        let made = Command::new("bash").args(["-c", MAKE_PRIVATE_DIR, "gate", &relative]);
        let staging = place_run(transport, &made, &io)
            .await
            .map_err(|e| (setup, e))?;
        let place = Place {
            transport,
            prefix: c
                .container
                .as_ref()
                .map(Container::prefix)
                .unwrap_or_default(),
            io,
            staging: staging.trim().to_owned(),
        };
        let artifacts = cx
            .artifacts_subdir(Path::new("results").join(&host).join("tempest"))
            .map_err(|e| (setup, e))?;

        let step = |status: &str, name: &str| Event::HostStep {
            host: host.clone(),
            step: name.to_owned(),
            status: status.to_owned(),
        };
        cx.events.emit(&step("started", "tempest install"));
        let installed = place.run(&run::install(&place, c)).await;
        cx.events.emit(&step(
            if installed.is_ok() { "ok" } else { "failed" },
            "tempest install",
        ));
        installed.map_err(|e| ("install tempest", e))?;

        let ws = self.workspace(cx, &place.staging);
        let ws = place.resolve_dir(&ws).await.map_err(|e| (setup, e))?;
        place
            .run(&run::init(&place, c, &ws))
            .await
            .map_err(|e| (setup, e))?;
        let conf_path = format!("{ws}/etc/tempest.conf");
        self.write_conf(&place, &ws, &conf_path, &artifacts)
            .await
            .map_err(|e| (setup, e))?;

        let last = self
            .attempts(cx, &place, &ws, &conf_path, &artifacts, &step)
            .await
            .map_err(|e| ("tempest run", e))?;
        let report = results::publish(&place, &last, classname, path, &artifacts)
            .map_err(|e| ("tempest results", e))?;

        let tempest_log = artifacts.join("tempest.log");
        match place
            .get(
                &format!("{ws}/logs/tempest.log"),
                "tempest.log",
                &tempest_log,
            )
            .await
        {
            Ok(true) => results::mask_file(&tempest_log),
            Ok(false) => log.note(&format!("tempest left no log in {ws}/logs")),
            Err(e) if e.is_cancelled() => return Err(("tempest log", e)),
            Err(e) => log.note(&format!("collecting tempest.log: {e}")),
        }
        Ok(report)
    }

    /// The workspace path: configured, or the default (see [`TempestConfig::workspace`]).
    fn workspace(&self, cx: &StageContext, staging: &str) -> String {
        match (&self.config.workspace, &self.config.container) {
            (Some(ws), _) => ws.clone(),
            (None, None) => format!("{staging}/workspace"),
            (None, Some(_)) => format!("/var/tmp/gate-tempest/{}", cx.run_id.as_str()),
        }
    }

    /// tempest.conf (and the accounts file) into the workspace; the masked copy into the
    /// artifacts.
    async fn write_conf(
        &self,
        place: &Place<'_>,
        ws: &str,
        conf_path: &str,
        artifacts: &Path,
    ) -> Result<()> {
        let accounts_path = format!("{ws}/etc/accounts.yaml");
        if let Some(accounts) = &self.accounts {
            put_text(place, accounts.expose(), "accounts.yaml", &accounts_path).await?;
        }
        let conf = conf::build(
            &self.config,
            &conf::Paths {
                workspace: ws,
                accounts: self.accounts.as_ref().map(|_| accounts_path.as_str()),
            },
        );
        put_text(place, &conf.render(), "tempest.conf", conf_path).await?;
        let masked = artifacts.join("tempest.conf");
        std::fs::write(&masked, conf.render_masked()).map_err(|e| Error::io("writing", &masked, e))
    }

    /// Runs Tempest until a run does not fail in a flaky way or the retries are spent.
    async fn attempts(
        &self,
        cx: &StageContext,
        place: &Place<'_>,
        ws: &str,
        conf_path: &str,
        artifacts: &Path,
        step: &(dyn Fn(&str, &str) -> Event + Sync),
    ) -> Result<results::FinalRun> {
        let c = &self.config;
        let env: Vec<(String, EnvValue)> =
            c.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let tries = c.retries.saturating_add(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let stream = format!("{ws}/gate-run-{attempt}.subunit");
            let name = if attempt == 1 {
                "tempest run".to_owned()
            } else {
                format!("tempest run (attempt {attempt})")
            };
            cx.events.emit(&step("started", &name));
            let ran = place
                .exec(&run::run(place, c, ws, conf_path, &stream, &env))
                .await;
            let ok = ran.as_ref().is_ok_and(|o| o.status.success());
            cx.events
                .emit(&step(if ok { "ok" } else { "failed" }, &name));
            if let Err(e) = &ran
                && e.is_cancelled()
            {
                return Err(Error::Cancelled);
            }
            let local = artifacts.join(format!("attempt-{attempt}.subunit"));
            let stream = match place
                .get(&stream, &format!("subunit-{attempt}"), &local)
                .await
            {
                Ok(true) => Some(local),
                Ok(false) => None,
                Err(e) if e.is_cancelled() => return Err(e),
                Err(e) => {
                    place
                        .io
                        .log
                        .note(&format!("fetching the subunit stream {stream}: {e}"));
                    None
                }
            };
            if !ok && attempt < tries {
                let text = match &ran {
                    Ok(out) => format!("{}\n{}", out.stdout, out.tail.join("\n")),
                    Err(e) => e.to_string(),
                };
                let found = run::flaky_in(&c.flaky_patterns, &text).or_else(|| {
                    stream
                        .as_deref()
                        .and_then(|s| run::flaky_in_file(&c.flaky_patterns, s))
                });
                if let Some(pattern) = found {
                    place.io.log.note(&format!(
                        "tempest run {attempt} of {tries} failed with `{pattern}` in its output: running it again"
                    ));
                    continue;
                }
            }
            return Ok(results::FinalRun {
                ran,
                stream,
                attempt,
            });
        }
    }
}

/// Runs `cmd` on the host and returns its standard output.
async fn place_run(transport: &dyn Transport, cmd: &Command, io: &ExecIo<'_>) -> Result<String> {
    use gate_core::TransportExt;
    Ok(transport.run(cmd, io).await?.stdout)
}

/// Writes `text` to `dest` in the place (mode 0600) through a private local file.
async fn put_text(place: &Place<'_>, text: &str, name: &str, dest: &str) -> Result<()> {
    let mut local = tempfile::NamedTempFile::new()
        .map_err(|e| Error::io("creating a temporary file for", name, e))?;
    std::io::Write::write_all(&mut local, text.as_bytes())
        .map_err(|e| Error::io("writing", local.path(), e))?;
    place.put(local.path(), name, dest).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use gate_core::Stage;
    use gate_core::testkit::LocalStage;

    const AUTH: &str =
        "[auth]\nurl = \"http://127.0.0.1:5000/v3\"\nadmin_password = \"unit-admin-pw\"\n";

    fn tester(toml: &str) -> Result<TempestTester> {
        TempestTester::from_config(&BackendConfig::from_toml("tester", NAME, toml)?)
    }

    #[test]
    fn config_errors_name_the_key() {
        for (toml, key) in [
            ("sets = [\"fast\"]\n", "[tester] sets"),
            ("concurrency = 0\n", "[tester] concurrency"),
            ("env = { \"A-B\" = \"x\" }\n", "[tester] env"),
            ("workspace = \"\"\n", "[tester] workspace"),
            ("[install]\nversion = \"47; rm -rf /\"\n", "install.version"),
            (
                "[install]\nmode = \"command\"\ncommand = \"\"\n",
                "install.command",
            ),
            ("[install]\nmode = \"apt\"\n", "install.mode"),
            ("[container]\nkind = \"lxc\"\n", "container.name"),
            (
                "[container]\nkind = \"lxc\"\nname = \"u\"\nexec = [\"x\"]\n",
                "container.exec",
            ),
            ("[container]\nexec = []\n", "container.exec"),
            (
                "[options.compute]\nx = \"a\\nb = c\"\n",
                "options.compute.x",
            ),
            ("[options.\"a]b\"]\nx = 1\n", "options.a]b"),
            ("region = \"a\\n[auth]\"\n", "[tester] region"),
        ] {
            let err = tester(&format!("{toml}{AUTH}")).unwrap_err().to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
        for (toml, key) in [
            ("[auth]\nurl = \"http://k/v3\"\n", "[tester] auth"),
            (
                "[auth]\nurl = \"ftp://k\"\nadmin_password = \"x-pw\"\n",
                "auth.url",
            ),
            (
                "[auth]\nurl = \"http://k/v3\"\naccounts_file = \"/nonexistent/a.yaml\"\n",
                "auth.accounts_file",
            ),
            ("", "auth"),
        ] {
            let err = tester(toml).unwrap_err().to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
    }

    #[test]
    fn the_password_never_shows_in_debug() {
        let t = tester(AUTH).unwrap();
        let shown = format!("{t:?}");
        assert!(!shown.contains("unit-admin-pw"), "{shown}");
    }

    #[test]
    fn containers_become_exec_prefixes() {
        let kind = |k: ContainerKind| Container {
            kind: Some(k),
            name: Some("utility 1".into()),
            exec: None,
        };
        assert_eq!(
            kind(ContainerKind::Lxc).prefix(),
            ["lxc-attach", "-n", "utility 1", "--"]
        );
        assert_eq!(
            kind(ContainerKind::Docker).prefix(),
            ["docker", "exec", "-i", "utility 1"]
        );
        assert_eq!(
            kind(ContainerKind::Podman).prefix(),
            ["podman", "exec", "-i", "utility 1"]
        );
    }

    #[tokio::test]
    async fn a_tempest_that_is_not_there_is_an_error_case_naming_the_step() {
        let stage = LocalStage::new(1, Stage::Test).await;
        let t = tester(&format!(
            "[install]\nmode = \"command\"\ncommand = \"/nonexistent/tempest\"\n{AUTH}"
        ))
        .unwrap();
        let report = t.test(&stage.cx).await.unwrap();
        assert_eq!((report.tests, report.errors), (1, 1));
        let xml = std::fs::read_to_string(stage.cx.results_dir().join(RESULTS_FILE)).unwrap();
        assert!(xml.contains("name=\"install tempest\""), "{xml}");
        assert!(
            xml.contains("no tempest command /nonexistent/tempest"),
            "{xml}"
        );
        assert!(xml.contains("tempest.host-1"), "{xml}");
    }

    #[tokio::test]
    async fn an_unknown_host_is_an_error_case_not_a_lost_run() {
        let stage = LocalStage::new(1, Stage::Test).await;
        let t = tester(&format!("host = \"utility\"\n{AUTH}")).unwrap();
        let report = t.test(&stage.cx).await.unwrap();
        assert_eq!((report.tests, report.errors), (1, 1));
        let xml = std::fs::read_to_string(stage.cx.results_dir().join(RESULTS_FILE)).unwrap();
        assert!(
            xml.contains("no host is named or labelled `utility`"),
            "{xml}"
        );
    }
}
