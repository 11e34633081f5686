//! `packages`: install packages with apt or dnf, retried, optionally only from a mirror.
//!
//! With a mirror, apt gets `/etc/apt/gate-mirror.list` and `/etc/apt/apt.conf.d/99gate-mirror`
//! making it the only source (for later apt runs too; delete both files to undo); dnf gets
//! `/etc/yum.repos.d/gate-mirror.repo`, and gate's installs use only that repository.
//! Packages that are all installed already are not touched: a second run needs no network.

use std::time::Duration;

use gate_core::{Error, HostIo, Result, Transport};

use crate::config::{Manager, Mirror, PackagesStep};
use crate::remote::{self, script};

const APT_LIST: &str = "/etc/apt/gate-mirror.list";
const APT_CONF: &str = "/etc/apt/apt.conf.d/99gate-mirror";
const DNF_REPO: &str = "/etc/yum.repos.d/gate-mirror.repo";

const DETECT: &str = r#"
if command -v apt-get >/dev/null 2>&1; then echo apt
elif command -v dnf >/dev/null 2>&1; then echo dnf
else echo "neither apt-get nor dnf is installed" >&2; exit 1
fi
"#;

const CODENAME: &str = r#". /etc/os-release && printf '%s\n' "${VERSION_CODENAME:?/etc/os-release has no VERSION_CODENAME}""#;

const APT_INSTALLED: &str = r#"
for p in "$@"; do
  s=$(dpkg-query -W -f='${Status}' -- "$p" 2>/dev/null) || exit 1
  [ "$s" = "install ok installed" ] || exit 1
done
"#;

const APT_INSTALL: &str = r#"
o=(-q -o Acquire::Retries=3 -o DPkg::Lock::Timeout=300)
apt-get "${o[@]}" update
apt-get "${o[@]}" -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  --no-install-recommends install "$@"
"#;

const DNF_INSTALL: &str = r#"
o=(-y --setopt=retries=3)
if [ -n "${GATE_REPO:-}" ]; then o+=(--disablerepo='*' --enablerepo="$GATE_REPO"); fi
dnf "${o[@]}" install "$@"
"#;

/// The sources list making `mirror` apt's only source.
pub(crate) fn apt_sources(mirror: &Mirror, codename: &str) -> String {
    let options = if mirror.trusted { "[trusted=yes] " } else { "" };
    let suite = mirror.suite.as_deref().unwrap_or(codename);
    let components = if suite.ends_with('/') {
        String::new()
    } else {
        format!(" {}", mirror.components.join(" "))
    };
    format!(
        "# written by gate: the package mirror of this CI run\ndeb {options}{} {suite}{components}\n",
        mirror.url
    )
}

fn apt_conf() -> String {
    format!(
        "// written by gate: use only the mirror in {APT_LIST}\nDir::Etc::SourceList \"{APT_LIST}\";\nDir::Etc::SourceParts \"-\";\nAcquire::Retries \"3\";\n"
    )
}

pub(crate) fn dnf_repo(mirror: &Mirror) -> String {
    format!(
        "# written by gate: the package mirror of this CI run\n[gate-mirror]\nname=gate mirror\nbaseurl={}\nenabled=1\ngpgcheck={}\n",
        mirror.url,
        if mirror.trusted { 0 } else { 1 }
    )
}

/// Writes `text` to `path` unless it holds exactly that already.
async fn ensure_file(
    t: &dyn Transport,
    hio: &HostIo,
    path: &str,
    text: &str,
    timeout: Duration,
) -> Result<()> {
    if remote::read_file(t, hio, path, timeout).await?.as_deref() != Some(text) {
        remote::write_file(t, hio, path, text, "644", timeout).await?;
    }
    Ok(())
}

/// The `packages` step on one host.
pub(crate) async fn install(
    t: &dyn Transport,
    hio: &HostIo,
    step: &PackagesStep,
    timeout: Duration,
) -> Result<()> {
    let manager = match step.manager {
        Manager::Auto => {
            let out = remote::run(
                t,
                hio,
                &script(DETECT, [""; 0], timeout),
                "detect apt or dnf",
            )
            .await?;
            if out.stdout.trim() == "apt" {
                Manager::Apt
            } else {
                Manager::Dnf
            }
        }
        chosen => chosen,
    };
    let short = Duration::from_secs(60).min(timeout);
    match (&step.mirror, manager) {
        (Some(mirror), Manager::Apt) => {
            let codename = match &mirror.suite {
                Some(_) => String::new(),
                None => remote::run(
                    t,
                    hio,
                    &script(CODENAME, [""; 0], short),
                    "read /etc/os-release",
                )
                .await?
                .stdout
                .trim()
                .to_owned(),
            };
            ensure_file(t, hio, APT_LIST, &apt_sources(mirror, &codename), short).await?;
            ensure_file(t, hio, APT_CONF, &apt_conf(), short).await?;
        }
        (Some(mirror), _) => ensure_file(t, hio, DNF_REPO, &dnf_repo(mirror), short).await?,
        (None, _) => {}
    }
    let packages = step.packages.iter().map(String::as_str);
    let installed = match manager {
        Manager::Apt => script(APT_INSTALLED, packages.clone(), short),
        _ => gate_core::Command::new("rpm")
            .arg("-q")
            .args(packages.clone())
            .timeout(short),
    };
    if remote::exec(t, hio, &installed).await?.status.success() {
        hio.log.note("packages: every package is installed already");
        return Ok(());
    }
    let cmd = match manager {
        Manager::Apt => {
            script(APT_INSTALL, packages, timeout).env("DEBIAN_FRONTEND", "noninteractive")
        }
        _ => {
            let cmd = script(DNF_INSTALL, packages, timeout);
            match step.mirror {
                Some(_) => cmd.env("GATE_REPO", "gate-mirror"),
                None => cmd,
            }
        }
    };
    let what = format!("install {}", step.packages.join(" "));
    let delay = Duration::from_secs(step.retry_delay_secs);
    remote::retry(hio, &what, step.retries, delay, || {
        remote::run(t, hio, &cmd, &what)
    })
    .await?;
    if !remote::exec(t, hio, &installed).await?.status.success() {
        return Err(Error::Host {
            host: t.host().name.clone(),
            message: format!(
                "{what}: the package manager succeeded but not every package is installed"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(suite: Option<&str>, trusted: bool) -> Mirror {
        Mirror {
            url: "http://127.0.0.1:8080/debian".into(),
            suite: suite.map(Into::into),
            components: vec!["main".into(), "contrib".into()],
            trusted,
        }
    }

    #[test]
    fn apt_sources_name_only_the_mirror() {
        assert!(
            apt_sources(&mirror(None, false), "bookworm")
                .ends_with("\ndeb http://127.0.0.1:8080/debian bookworm main contrib\n")
        );
        assert!(
            apt_sources(&mirror(Some("./"), true), "bookworm")
                .ends_with("\ndeb [trusted=yes] http://127.0.0.1:8080/debian ./\n")
        );
        assert!(apt_conf().contains("Dir::Etc::SourceParts \"-\";"));
        assert!(dnf_repo(&mirror(None, true)).contains("gpgcheck=0\n"));
    }
}
