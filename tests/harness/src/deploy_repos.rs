//! Repositories that mimic the layouts of openstack-ansible and rpc-openstack, for the
//! deployer tests: every script records what it saw and does nothing else of substance.
//!
//! Each script (and the `openstack-ansible` command that the fake `bootstrap-ansible.sh`
//! installs into `/usr/local/bin`, as the real one does) appends one JSON line to
//! [`RECORD`] on the host it runs on: `{"step", "argv", "cwd", "env", "version", "files"}`
//! — `version` is the checkout's `VERSION` file, `files` every file under
//! `/etc/openstack_deploy` with its text. [`fail_step`] makes one step fail with given
//! output; [`HOLD_FLAG`] makes the upgrade script wait for the test (see
//! [`UpgradeHold`]).

use crate::FleetHost;
use crate::error::{HarnessError, Result};
use crate::git::GitRepo;

/// Where the scripts record, on the host.
pub const RECORD: &str = "/var/log/gate-fake/record.jsonl";
/// While this file exists on the host, the fake upgrade scripts create
/// [`UPGRADE_STARTED`] and wait (up to 120 s) for [`UPGRADE_RESUME`].
pub const HOLD_FLAG: &str = "/var/lib/gate-fake/hold-upgrade";
/// Created by a held upgrade script once it waits.
pub const UPGRADE_STARTED: &str = "/var/lib/gate-fake/upgrade-started";
/// Lets a held upgrade script go on.
pub const UPGRADE_RESUME: &str = "/var/lib/gate-fake/upgrade-resume";

/// Every record the fake scripts wrote on `host` so far, oldest first; the file is removed,
/// so the next call sees only what ran since.
pub fn take_records(host: &FleetHost) -> Result<Vec<serde_json::Value>> {
    let path = host.host_path(RECORD);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    text.lines()
        .map(|line| {
            serde_json::from_str(line).map_err(|e| HarnessError::Command {
                command: format!("reading {RECORD} on {}", host.name()),
                detail: format!("{e}: {line}"),
            })
        })
        .collect()
}

/// The recorder every fake script calls: `record.py STEP ARGS…`.
const RECORDER: &str = r#"#!/usr/bin/env python3
import json, os, pathlib, sys
step, argv = sys.argv[1], sys.argv[2:]
repo = pathlib.Path(__file__).resolve().parent.parent
config = pathlib.Path("/etc/openstack_deploy")
files = {}
if config.is_dir():
    for path in sorted(config.rglob("*")):
        if path.is_file():
            files[str(path.relative_to(config))] = path.read_text(errors="replace")
record = {
    "step": step,
    "argv": argv,
    "cwd": os.getcwd(),
    "env": dict(os.environ),
    "version": (repo / "VERSION").read_text().strip(),
    "files": files,
}
os.makedirs("/var/log/gate-fake", exist_ok=True)
with open("/var/log/gate-fake/record.jsonl", "a") as out:
    out.write(json.dumps(record) + "\n")
print(f"{step}: recorded at version {record['version']}")
fail = repo / ".gate-fake" / f"fail-{step}"
if fail.exists():
    sys.stdout.write(fail.read_text())
    sys.exit(1)
"#;

/// Calls the recorder for `$1`-named step, then holds when asked.
fn script(step: &str, extra: &str) -> String {
    format!(
        "#!/usr/bin/env bash\nset -euo pipefail\n\
         repo=$(cd \"$(dirname \"$0\")/..\" && pwd)\n\
         python3 \"$repo/.gate-fake/record.py\" {step} \"$@\"\n{extra}"
    )
}

/// Waits for the test while [`HOLD_FLAG`] exists.
const HOLD: &str = r#"if [ -e /var/lib/gate-fake/hold-upgrade ]; then
    touch /var/lib/gate-fake/upgrade-started
    for _ in $(seq 1 1200); do
        [ -e /var/lib/gate-fake/upgrade-resume ] && break
        sleep 0.1
    done
fi
"#;

/// Installs the fake `openstack-ansible` command, as the real bootstrap does.
const INSTALL_OSA_COMMAND: &str = r#"mkdir -p /usr/local/bin
cat > /usr/local/bin/openstack-ansible <<EOF
#!/usr/bin/env bash
exec python3 "$repo/.gate-fake/record.py" openstack-ansible "\$@"
EOF
chmod 755 /usr/local/bin/openstack-ansible
"#;

/// What the fake AIO bootstrap leaves in /etc/openstack_deploy, as the real one does.
const AIO_FILES: &str = r#"mkdir -p /etc/openstack_deploy
printf -- '---\n# written by bootstrap-aio\ndebug: false\n' > /etc/openstack_deploy/user_variables.yml
printf -- '---\n# the AIO host list, written by bootstrap-aio\n' > /etc/openstack_deploy/openstack_user_config.yml
"#;

/// Writes an openstack-ansible lookalike at `version` into `repo` (not committed). With
/// `collection_form` the release has no `playbooks/setup-*.yml` (newer releases run
/// `openstack.osa.setup_*`).
pub fn osa_layout(repo: &GitRepo, version: &str, collection_form: bool) -> Result<()> {
    repo.write("VERSION", &format!("{version}\n"), false)?;
    repo.write(".gate-fake/record.py", RECORDER, true)?;
    repo.write(
        "scripts/bootstrap-ansible.sh",
        &script("bootstrap-ansible", INSTALL_OSA_COMMAND),
        true,
    )?;
    repo.write(
        "scripts/bootstrap-aio.sh",
        &script("bootstrap-aio", AIO_FILES),
        true,
    )?;
    repo.write("scripts/run-upgrade.sh", &script("run-upgrade", HOLD), true)?;
    repo.write("scripts/pw-token-gen.py", &script("pw-token-gen", ""), true)?;
    repo.write(
        "etc/openstack_deploy/user_variables.yml",
        "---\n# the release's skeleton\n",
        false,
    )?;
    repo.write(
        "etc/openstack_deploy/openstack_user_config.yml.example",
        "---\n# example\n",
        false,
    )?;
    for playbook in [
        "setup-hosts.yml",
        "setup-infrastructure.yml",
        "setup-openstack.yml",
    ] {
        let path = format!("playbooks/{playbook}");
        if collection_form {
            if repo.path().join(&path).exists() {
                repo.remove(&path)?;
            }
        } else {
            repo.write(&path, "---\n- hosts: localhost\n", false)?;
        }
    }
    Ok(())
}

/// Writes an rpc-openstack lookalike at `version` into `repo` (not committed).
pub fn rpco_layout(repo: &GitRepo, version: &str) -> Result<()> {
    repo.write("VERSION", &format!("{version}\n"), false)?;
    repo.write(".gate-fake/record.py", RECORDER, true)?;
    repo.write("scripts/deploy.sh", &script("deploy.sh", ""), true)?;
    repo.write("scripts/upgrade.sh", &script("upgrade.sh", HOLD), true)?;
    Ok(())
}

/// Makes `step` fail in `repo` (not committed), printing `output` first.
pub fn fail_step(repo: &GitRepo, step: &str, output: &str) -> Result<()> {
    repo.write(&format!(".gate-fake/fail-{step}"), output, false)
}

/// The fake recorder alone, for repositories of other shapes (e.g. gating hooks): call it
/// as `python3 .gate-fake/record.py STEP ARGS…` from the repository.
pub fn recorder(repo: &GitRepo, version: &str) -> Result<()> {
    repo.write("VERSION", &format!("{version}\n"), false)?;
    repo.write(".gate-fake/record.py", RECORDER, true)
}

/// Holds the fake upgrade script on a fleet host until released: arm it before the
/// upgrade, wait for the script to start, do what the test needs, release it.
#[derive(Debug)]
pub struct UpgradeHold<'a> {
    host: &'a crate::FleetHost,
}

impl<'a> UpgradeHold<'a> {
    /// Arms the hold on `host`.
    pub fn arm(host: &'a crate::FleetHost) -> Result<Self> {
        host.exec_ok(&format!(
            "mkdir -p /var/lib/gate-fake && rm -f {UPGRADE_STARTED} {UPGRADE_RESUME} && touch {HOLD_FLAG}"
        ))?;
        Ok(Self { host })
    }

    /// Waits until the upgrade script is held (at most `within`).
    pub fn wait_started(&self, within: std::time::Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + within;
        while !self.host.host_path(UPGRADE_STARTED).exists() {
            if std::time::Instant::now() > deadline {
                return Err(crate::HarnessError::NotReady {
                    host: format!("the upgrade script on {}", self.host.name()),
                    seconds: within.as_secs(),
                    detail: "it never reached the hold".into(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }

    /// Lets the upgrade script go on.
    pub fn release(&self) -> Result<()> {
        self.host
            .exec_ok(&format!("touch {UPGRADE_RESUME}; rm -f {HOLD_FLAG}"))
            .map(|_| ())
    }
}

impl Drop for UpgradeHold<'_> {
    fn drop(&mut self) {
        let _ = self.release();
    }
}
