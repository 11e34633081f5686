//! `ssh-mesh`: a key pair on the primary (made there, the private key never leaves it), its
//! public key authorized on every host, every host's host key in the primary's
//! `known_hosts`, optionally a `Host` block per host in its `~/.ssh/config`; proven by
//! `ssh … true` from the primary to every other host.

use std::sync::Arc;
use std::time::Duration;

use gate_core::keys::PublicKey;
use gate_core::steps::Hosts;
use gate_core::{Error, Host, HostIo, Result, StageContext, Transport};

use crate::authorized_keys;
use crate::config::{KnownHosts, PrepStep, SshMeshStep};
use crate::prepare::on_hosts;
use crate::remote::{self, script};

const KEYGEN: &str = r#"
case $1 in /*) k=$1 ;; *) k=$HOME/$1 ;; esac
d=$(dirname -- "$k")
[ -d "$d" ] || mkdir -p -m 700 -- "$d"
[ -f "$k" ] || ssh-keygen -q -t ed25519 -N '' -C "$2" -f "$k" >/dev/null
[ -f "$k.pub" ] || ssh-keygen -y -f "$k" > "$k.pub"
printf '%s\n' "$k"
cat -- "$k.pub"
"#;

const HOST_KEYS: &str = r#"
for f in "$@"; do
  case $f in /*) ;; *) f=$HOME/$f ;; esac
  if [ -r "$f" ]; then cat -- "$f"; fi
done
"#;

/// The `known_hosts` host pattern of `host`: `address`, or `[address]:port` off port 22.
pub(crate) fn host_pattern(host: &Host) -> String {
    match port(host) {
        22 => host.address.clone(),
        port => format!("[{}]:{port}", host.address),
    }
}

fn port(host: &Host) -> u16 {
    if host.port == 0 { 22 } else { host.port }
}

/// `existing` known_hosts text with every plain line for one of `entries`' host patterns
/// replaced by `entries` (hashed lines are kept: ssh accepts a host when any line matches).
pub(crate) fn merge_known_hosts(existing: &str, entries: &[(String, PublicKey)]) -> String {
    let ours = |pattern: &str| entries.iter().any(|(p, _)| p == pattern);
    let mut lines: Vec<String> = existing
        .lines()
        .filter(|line| {
            let first = line.split_whitespace().next().unwrap_or("");
            line.starts_with('#') || !first.split(',').any(ours)
        })
        .map(str::to_owned)
        .collect();
    for (pattern, key) in entries {
        let line = format!("{pattern} {} {}", key.algorithm, key.blob);
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

const BEGIN: &str = "# BEGIN gate ssh-mesh (managed by gate, rewritten on every run)";
const END: &str = "# END gate ssh-mesh";

/// `existing` ssh config with gate's block (replacing an earlier one) at the top, where
/// it takes precedence.
pub(crate) fn merge_ssh_config(existing: &str, block: &str) -> String {
    let mut rest = Vec::new();
    let mut inside = false;
    for line in existing.lines() {
        match line.trim() {
            l if l == BEGIN => inside = true,
            l if l == END => inside = false,
            _ if inside => {}
            _ => rest.push(line),
        }
    }
    let mut text = format!("{BEGIN}\n{block}{END}\n");
    for line in rest {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// `Host` blocks for `hosts` (names and unique addresses as aliases).
fn ssh_config_block(hosts: &[Host], user: Option<&str>, key: &str) -> String {
    let safe = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:[]".contains(&b))
    };
    let mut block = String::new();
    for host in hosts {
        let mut aliases = Vec::new();
        if safe(&host.name) {
            aliases.push(host.name.as_str());
        }
        let unique = hosts.iter().filter(|h| h.address == host.address).count() == 1;
        if unique && safe(&host.address) && host.address != host.name {
            aliases.push(host.address.as_str());
        }
        if aliases.is_empty() || !safe(&host.address) {
            continue;
        }
        block.push_str(&format!(
            "Host {}\n    HostName {}\n    Port {}\n    User {}\n    IdentityFile {key}\n    BatchMode yes\n",
            aliases.join(" "),
            host.address,
            port(host),
            user.unwrap_or(&host.user),
        ));
    }
    block
}

/// The `ssh-mesh` step.
pub(crate) async fn run(cx: &StageContext, step: &PrepStep, mesh: &SshMeshStep) -> Result<()> {
    let timeout = step.timeout;
    let primary = cx.primary().clone();
    let primary_io = host_io(cx, &primary)?;
    let comment = format!("gate-mesh@{}", primary.host().name);
    let out = remote::run(
        primary.as_ref(),
        &primary_io,
        &script(KEYGEN, [mesh.key.as_str(), comment.as_str()], timeout),
        &format!("create the mesh key {}", mesh.key),
    )
    .await?;
    let mut lines = out.stdout.lines();
    let (key_path, public) = match (lines.next(), lines.next().map(PublicKey::parse)) {
        (Some(path), Some(Ok(public))) => (path.to_owned(), public),
        _ => {
            return Err(Error::Host {
                host: primary.host().name.clone(),
                message: format!("the mesh key {} has no readable public key", mesh.key),
            });
        }
    };

    // Every host authorizes the key; the host keys come back for known_hosts.
    let path = mesh
        .authorized_keys
        .clone()
        .unwrap_or_else(|| authorized_keys::DEFAULT_PATH.into());
    let found = Arc::new(std::sync::Mutex::new(
        Vec::<(usize, String, PublicKey)>::new(),
    ));
    on_hosts(cx, step, Hosts::All, |t, hio| {
        let (path, public, found) = (path.clone(), public.clone(), found.clone());
        async move {
            authorized_keys::install(t.as_ref(), &hio, &path, &[public], timeout).await?;
            if mesh.known_hosts == KnownHosts::HostKeys {
                let keys = host_keys(t.as_ref(), &hio, &mesh.host_key_files, timeout).await?;
                let pattern = host_pattern(t.host());
                let index = cx
                    .inventory
                    .hosts()
                    .iter()
                    .position(|h| h.name == t.host().name)
                    .unwrap_or(usize::MAX);
                if let Ok(mut found) = found.lock() {
                    found.extend(keys.into_iter().map(|k| (index, pattern.clone(), k)));
                }
            }
            Ok(())
        }
    })
    .await?;
    // In inventory order, whichever host answered first, so a second run writes the same.
    let mut found = found.lock().map(|f| f.clone()).unwrap_or_default();
    found.sort_by_key(|(index, _, _)| *index);
    let mut entries: Vec<(String, PublicKey)> = found.into_iter().map(|(_, p, k)| (p, k)).collect();
    if mesh.known_hosts == KnownHosts::Scan {
        for host in cx.inventory.hosts() {
            entries.extend(scan(primary.as_ref(), &primary_io, host, timeout).await?);
        }
    }

    let t = primary.as_ref();
    let known = remote::resolve(t, &primary_io, ".ssh/known_hosts", timeout).await?;
    let existing = remote::read_file(t, &primary_io, &known.path, timeout)
        .await?
        .unwrap_or_default();
    let merged = merge_known_hosts(&existing, &entries);
    if merged != existing {
        remote::write_file(t, &primary_io, &known.path, &merged, "644", timeout).await?;
    }
    if mesh.ssh_config {
        let config = remote::resolve(t, &primary_io, ".ssh/config", timeout).await?;
        let existing = remote::read_file(t, &primary_io, &config.path, timeout)
            .await?
            .unwrap_or_default();
        let block = ssh_config_block(cx.inventory.hosts(), mesh.user.as_deref(), &key_path);
        let merged = merge_ssh_config(&existing, &block);
        if merged != existing {
            remote::write_file(t, &primary_io, &config.path, &merged, "600", timeout).await?;
        }
    }
    if mesh.verify {
        verify(cx, &primary, &primary_io, &key_path, mesh.user.as_deref()).await?;
    }
    Ok(())
}

fn host_io(cx: &StageContext, t: &Arc<dyn Transport>) -> Result<HostIo> {
    Ok(HostIo {
        log: cx.host_log(&t.host().name)?,
        cancel: cx.cancel.clone(),
        events: cx.events.clone(),
    })
}

/// The public host keys found in `files` on the host; none found is an error.
async fn host_keys(
    t: &dyn Transport,
    hio: &HostIo,
    files: &[String],
    timeout: Duration,
) -> Result<Vec<PublicKey>> {
    let out = remote::run(
        t,
        hio,
        &script(HOST_KEYS, files, timeout),
        "read the host keys",
    )
    .await?;
    let keys: Vec<PublicKey> = out
        .stdout
        .lines()
        .filter_map(|l| PublicKey::parse(l.trim()).ok())
        .collect();
    if keys.is_empty() {
        return Err(Error::Host {
            host: t.host().name.clone(),
            message: format!("no SSH host key found in {}", files.join(", ")),
        });
    }
    Ok(keys)
}

/// `ssh-keyscan` of `host` from the primary.
async fn scan(
    primary: &dyn Transport,
    hio: &HostIo,
    host: &Host,
    timeout: Duration,
) -> Result<Vec<(String, PublicKey)>> {
    let cmd = gate_core::Command::new("ssh-keyscan")
        .args([
            "-T",
            "10",
            "-p",
            &port(host).to_string(),
            "--",
            &host.address,
        ])
        .timeout(timeout);
    let out = remote::run(primary, hio, &cmd, &format!("ssh-keyscan {}", host.name)).await?;
    let pattern = host_pattern(host);
    let keys: Vec<_> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            l.split_once(' ')
                .and_then(|(_, key)| PublicKey::parse(key).ok())
        })
        .map(|key| (pattern.clone(), key))
        .collect();
    if keys.is_empty() {
        return Err(Error::Host {
            host: primary.host().name.clone(),
            message: format!("ssh-keyscan of {} ({pattern}) found no key", host.name),
        });
    }
    Ok(keys)
}

/// `ssh … true` from the primary to every other host, with nothing but the key, the
/// `known_hosts` and no prompt.
async fn verify(
    cx: &StageContext,
    primary: &Arc<dyn Transport>,
    hio: &HostIo,
    key: &str,
    user: Option<&str>,
) -> Result<()> {
    let mut failures = Vec::new();
    for host in cx.inventory.hosts().iter().skip(1) {
        let login = user.unwrap_or(&host.user);
        let cmd = gate_core::Command::new("ssh")
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .args(["-o", "ConnectTimeout=10", "-i", key])
            .args([
                "-p",
                &port(host).to_string(),
                "-l",
                login,
                "--",
                &host.address,
                "true",
            ])
            .timeout(Duration::from_secs(60));
        let what = format!(
            "ssh from the primary to {} ({login}@{})",
            host.name, host.address
        );
        match remote::run(primary.as_ref(), hio, &cmd, &what).await {
            Ok(_) => hio
                .log
                .note(&format!("mesh: the primary reaches {}", host.name)),
            Err(e) if e.is_cancelled() => return Err(e),
            Err(e) => failures.push(e),
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        _ => Err(Error::Hosts {
            total: cx.inventory.len() - 1,
            failures,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorized_keys::tests::{ALICE, BOB, key};

    fn host(name: &str, address: &str, port: u16) -> Host {
        Host {
            name: name.into(),
            address: address.into(),
            port,
            user: "root".into(),
            labels: vec![],
            transport: "ssh".into(),
            home: None,
        }
    }

    #[test]
    fn known_hosts_entries_replace_stale_ones_for_the_same_host() {
        let entries = vec![
            (host_pattern(&host("a", "10.0.0.2", 22)), key(ALICE)),
            (host_pattern(&host("b", "10.0.0.3", 2222)), key(BOB)),
        ];
        assert_eq!(entries[1].0, "[10.0.0.3]:2222");
        let stale = format!("10.0.0.2,a {}\nother.example {}\n", BOB, ALICE);
        let merged = merge_known_hosts(&stale, &entries);
        let lines: Vec<_> = merged.lines().collect();
        assert_eq!(lines.len(), 3, "{merged}");
        assert!(lines[0].starts_with("other.example "));
        assert!(lines[1].starts_with("10.0.0.2 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHQ9"));
        assert_eq!(merge_known_hosts(&merged, &entries), merged);
    }

    #[test]
    fn the_ssh_config_block_is_replaced_in_place_at_the_top() {
        let hosts = [host("h1", "10.0.0.1", 0), host("h2", "10.0.0.2", 2222)];
        let block = ssh_config_block(&hosts, None, "/root/.ssh/id_ed25519");
        assert!(
            block.contains(
                "Host h2 10.0.0.2\n    HostName 10.0.0.2\n    Port 2222\n    User root\n"
            )
        );
        let first = merge_ssh_config("Host *\n    ServerAliveInterval 30\n", &block);
        assert!(first.starts_with(BEGIN), "{first}");
        let second = merge_ssh_config(&first, &block);
        assert_eq!(first, second);
        assert_eq!(second.matches("Host h1").count(), 1);
        assert!(second.ends_with("Host *\n    ServerAliveInterval 30\n"));
    }
}
