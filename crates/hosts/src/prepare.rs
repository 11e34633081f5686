//! The `steps` preparer: the configured steps, in order, each on its hosts.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use gate_core::steps::{Hosts, require_success, run_step, select};
use gate_core::{
    BackendConfig, Error, HostIo, HostPreparer, Result, StageContext, Transport, all_ok,
};

use crate::config::{PrepStep, PreparerConfig, StepKind};
use crate::{ansible, authorized_keys, devices, mesh, networking, packages, remote};

/// The `steps` preparer.
#[derive(Debug, Clone)]
pub struct StepsPreparer {
    config: PreparerConfig,
}

impl StepsPreparer {
    /// A preparer from its config section.
    pub fn from_config(section: &BackendConfig) -> Result<Self> {
        Ok(Self {
            config: PreparerConfig::from_section(section)?,
        })
    }

    /// The configured steps.
    pub fn steps(&self) -> &[PrepStep] {
        &self.config.steps
    }

    async fn run(&self, cx: &StageContext, step: &PrepStep) -> Result<()> {
        let timeout = step.timeout;
        match &step.kind {
            StepKind::AuthorizedKeys(keys) => {
                let wanted = cx.keys.authorized();
                if wanted.is_empty() {
                    return Err(Error::Stage {
                        stage: cx.stage,
                        message: "authorized-keys: the run has neither a keys file nor a run key"
                            .into(),
                    });
                }
                let path = keys
                    .path
                    .clone()
                    .unwrap_or_else(|| authorized_keys::DEFAULT_PATH.into());
                on_hosts(cx, step, step.hosts, |t, hio| {
                    let (path, wanted) = (path.clone(), wanted.clone());
                    async move {
                        authorized_keys::install(t.as_ref(), &hio, &path, &wanted, timeout).await
                    }
                })
                .await
            }
            StepKind::SshMesh(mesh) => mesh::run(cx, step, mesh).await,
            StepKind::Packages(packages) => {
                on_hosts(cx, step, step.hosts, |t, hio| async move {
                    packages::install(t.as_ref(), &hio, packages, timeout).await
                })
                .await
            }
            StepKind::Ansible(ansible) => {
                on_hosts(cx, step, step.hosts, |t, hio| async move {
                    ansible::install(t.as_ref(), &hio, ansible, timeout).await
                })
                .await
            }
            StepKind::Networking(net) => networking::run(cx, step, net, &self.config.env).await,
            StepKind::Devices(devices) => {
                on_hosts(cx, step, step.hosts, |t, hio| async move {
                    devices::prepare(t.as_ref(), &hio, devices, timeout).await
                })
                .await
            }
            StepKind::Script(script) => {
                let env = gate_core::steps::base_env(cx, &self.config.env);
                let outcomes = run_step(cx, script, &step.name, step.hosts, &env, timeout).await;
                all_ok(require_success(outcomes, &step.name)).map(|_| ())
            }
        }
    }
}

/// Runs `work` on the hosts `hosts` selects, with host-step events named after the step;
/// fails naming every host that failed.
pub(crate) async fn on_hosts<F, Fut>(
    cx: &StageContext,
    step: &PrepStep,
    hosts: Hosts,
    work: F,
) -> Result<()>
where
    F: Fn(Arc<dyn Transport>, HostIo) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let targets = select(cx, hosts);
    let outcomes = cx
        .on_hosts(&targets, |t, hio| {
            let run = work(t.clone(), hio.clone());
            let name = step.name.clone();
            async move {
                remote::progress(t.as_ref(), &hio, &name, "started");
                let result = run.await;
                let status = if result.is_ok() { "ok" } else { "failed" };
                remote::progress(t.as_ref(), &hio, &name, status);
                result
            }
        })
        .await;
    all_ok(outcomes).map(|_| ())
}

#[async_trait]
impl HostPreparer for StepsPreparer {
    async fn prepare(&self, cx: &StageContext) -> Result<()> {
        let total = self.config.steps.len();
        for (i, step) in self.config.steps.iter().enumerate() {
            tracing::info!("{}: step {}/{total}: {}", cx.stage, i + 1, step.name);
            self.run(cx, step).await.map_err(|e| {
                if e.is_cancelled() {
                    e
                } else {
                    Error::backend(
                        crate::PREPARER,
                        format!("step {}/{total} `{}`: {e}", i + 1, step.name),
                    )
                }
            })?;
        }
        Ok(())
    }
}
