//! `networking`: a script on every selected host, inline or a local file uploaded first,
//! with its values in the environment: the section's and the step's `env`, the usual
//! `GATE_*` variables, and per host `GATE_HOST_ADDRESS` and `GATE_HOST_INDEX` (1-based, in
//! inventory order), so one script can give each host its own addresses.

use std::collections::BTreeMap;
use std::time::Duration;

use gate_core::steps::base_env;
use gate_core::{Command, EnvValue, Error, HostIo, Result, StageContext, Transport};

use crate::config::{NetworkingStep, PrepStep};
use crate::prepare::on_hosts;
use crate::remote;

/// The `networking` step.
pub(crate) async fn run(
    cx: &StageContext,
    step: &PrepStep,
    net: &NetworkingStep,
    section_env: &BTreeMap<String, EnvValue>,
) -> Result<()> {
    let mut env = base_env(cx, section_env);
    env.extend(net.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    if let Some(file) = &net.file
        && !file.is_file()
    {
        return Err(Error::Stage {
            stage: cx.stage,
            message: format!(
                "{}: the networking script {} does not exist",
                step.name,
                file.display()
            ),
        });
    }
    let timeout = step.timeout;
    on_hosts(cx, step, step.hosts, |t, hio| {
        let env = env.clone();
        async move {
            let host = t.host().clone();
            let index = cx
                .inventory
                .hosts()
                .iter()
                .position(|h| h.name == host.name)
                .map_or(0, |i| i + 1);
            let mut cmd = match (&net.script, &net.file) {
                (Some(text), _) => Command::script(text.clone()),
                (None, Some(file)) => Command::new("bash")
                    .args(["-euo", "pipefail"])
                    .arg(upload(t.as_ref(), &hio, &step.name, file, timeout).await?),
                (None, None) => Command::script("echo 'no networking script' >&2; exit 2"),
            };
            for (key, value) in env {
                cmd = cmd.env(key, value);
            }
            cmd = cmd
                .env("GATE_HOST", host.name.as_str())
                .env("GATE_HOST_ADDRESS", host.address.as_str())
                .env("GATE_HOST_INDEX", index.to_string())
                .timeout(timeout);
            remote::run(
                t.as_ref(),
                &hio,
                &cmd,
                &format!("networking step `{}`", step.name),
            )
            .await
            .map(|_| ())
        }
    })
    .await
}

/// Uploads the local script `file` to `~/.gate/prepare/<step name>.sh` and returns its
/// path on the host.
async fn upload(
    t: &dyn Transport,
    hio: &HostIo,
    name: &str,
    file: &std::path::Path,
    timeout: Duration,
) -> Result<String> {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let remote_path = remote::resolve(t, hio, &format!(".gate/prepare/{safe}.sh"), timeout).await?;
    let text = std::fs::read_to_string(file).map_err(|e| Error::io("reading", file, e))?;
    remote::write_file(t, hio, &remote_path.path, &text, "700", timeout).await?;
    Ok(remote_path.path)
}
