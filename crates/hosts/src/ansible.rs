//! `ansible`: a pinned `ansible-core` in a Python virtualenv, from a configurable index.
//!
//! What was installed is recorded in `<venv>/.gate-requirements`; when it matches the
//! configured requirements and the venv reports the pinned version, the step is a no-op.

use std::time::Duration;

use gate_core::{Error, HostIo, Result, Transport};

use crate::config::AnsibleStep;
use crate::remote::{self, script};

/// `$1` venv, `$2` version, then the requirements; exits 0 when they are all in place.
const INSTALLED: &str = r#"
venv=$1 version=$2; shift 2
[ -x "$venv/bin/python" ] || exit 1
[ -f "$venv/.gate-requirements" ] || exit 1
[ "$(cat -- "$venv/.gate-requirements")" = "$(printf '%s\n' "$@")" ] || exit 1
"$venv/bin/python" - "$version" <<'PY'
import importlib.metadata as m, sys
sys.exit(0 if m.version("ansible-core") == sys.argv[1] else 1)
PY
"#;

/// `$1` venv, `$2` python, then the requirements; index settings in `GATE_INDEX_URL` and
/// `GATE_FIND_LINKS`, which replace every source pip would otherwise use.
const INSTALL: &str = r#"
venv=$1 python=$2; shift 2
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
args=(--disable-pip-version-check --no-input --retries 3)
if [ -n "${GATE_INDEX_URL:-}${GATE_FIND_LINKS:-}" ]; then
  # The configured sources and nothing else: no pip.conf, no PIP_* sources.
  unset PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_NO_INDEX
  export PIP_CONFIG_FILE=/dev/null
fi
if [ -n "${GATE_INDEX_URL:-}" ]; then args+=(--index-url "$GATE_INDEX_URL"); fi
if [ -n "${GATE_FIND_LINKS:-}" ]; then
  args+=(--find-links "$GATE_FIND_LINKS")
  [ -n "${GATE_INDEX_URL:-}" ] || args+=(--no-index)
fi
"$venv/bin/python" -m pip install "${args[@]}" "$@"
printf '%s\n' "$@" > "$venv/.gate-requirements"
"$venv/bin/ansible" --version
"#;

/// The requirements installed: ansible-core pinned, then the extras.
pub(crate) fn requirements(step: &AnsibleStep) -> Vec<String> {
    std::iter::once(format!("ansible-core=={}", step.version))
        .chain(step.extra.iter().cloned())
        .collect()
}

/// The `ansible` step on one host.
pub(crate) async fn install(
    t: &dyn Transport,
    hio: &HostIo,
    step: &AnsibleStep,
    timeout: Duration,
) -> Result<()> {
    let reqs = requirements(step);
    let installed = script(
        INSTALLED,
        [step.venv.as_str(), step.version.as_str()]
            .into_iter()
            .chain(reqs.iter().map(String::as_str)),
        Duration::from_secs(60).min(timeout),
    );
    if remote::exec(t, hio, &installed).await?.status.success() {
        hio.log.note(&format!(
            "ansible: ansible-core {} is already in {}",
            step.version, step.venv
        ));
        return Ok(());
    }
    let mut cmd = script(
        INSTALL,
        [step.venv.as_str(), step.python.as_str()]
            .into_iter()
            .chain(reqs.iter().map(String::as_str)),
        timeout,
    );
    if let Some(url) = &step.index_url {
        cmd = cmd.env("GATE_INDEX_URL", url.clone());
    }
    if let Some(links) = &step.find_links {
        cmd = cmd.env("GATE_FIND_LINKS", links.clone());
    }
    let what = format!("install ansible-core {} into {}", step.version, step.venv);
    let delay = Duration::from_secs(step.retry_delay_secs);
    let out = remote::retry(hio, &what, step.retries, delay, || {
        remote::run(t, hio, &cmd, &what)
    })
    .await?;
    let wanted = format!("[core {}]", step.version);
    if !out.stdout.contains(&wanted) {
        return Err(Error::Host {
            host: t.host().name.clone(),
            message: format!(
                "{what}: `ansible --version` does not say {wanted}: {}",
                out.stdout.lines().next().unwrap_or("")
            ),
        });
    }
    Ok(())
}
