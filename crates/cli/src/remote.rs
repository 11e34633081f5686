//! Working on the run's hosts by hand: `gate exec`, `gate ssh`, `gate inventory`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gate_core::{
    Command, Connector, ExecIo, Host, HostLog, HostOutcome, Interrupt, Inventory, Registry,
    StateDir, bounded,
};

use crate::args::{ExecArgs, InventoryArgs, InventoryFormat, SshArgs};
use crate::commands::{Failure, Outcome, exit};
use crate::config::GateConfig;
use crate::wiring;

/// The inventory in `file`, or the run's.
fn load_inventory(file: Option<&PathBuf>, config: &GateConfig) -> Result<Inventory, Failure> {
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(format!("inventory {}: {e}", path.display())))?;
            serde_json::from_str(&text)
                .map_err(|e| Failure::usage(format!("inventory {}: {e}", path.display())))
        }
        None => StateDir::new(&config.run.state_dir)
            .load_inventory()
            .map_err(Failure::from_core)?
            .ok_or_else(|| {
                Failure::usage(format!(
                    "no inventory in {}: allocate hosts first (gate run --keep, or gate stage allocate), or pass -i FILE",
                    config.run.state_dir.display()
                ))
            }),
    }
}

/// `gate exec`.
pub async fn exec(args: &ExecArgs, registry: &Arc<Registry>) -> Outcome {
    let config = GateConfig::load(&args.config).map_err(Failure::usage)?;
    let inventory = load_inventory(args.inventory.as_ref(), &config)?;
    let hosts: Vec<&Host> = inventory
        .hosts()
        .iter()
        .filter(|h| args.hosts.is_empty() || args.hosts.contains(&h.name))
        .collect();
    if let Some(unknown) = args.hosts.iter().find(|name| inventory.get(name).is_none()) {
        return Err(Failure::usage(format!(
            "no host `{unknown}` in the inventory"
        )));
    }
    let connector = wiring::connectors(&config, registry).map_err(Failure::usage)?;
    let interrupt = Interrupt::new();
    let listener = interrupt
        .listen_for_signals()
        .map_err(|e| Failure::usage(format!("cannot watch for signals: {e}")))?;
    let mut cmd = Command::new(args.command[0].clone()).args(args.command[1..].iter().cloned());
    if let Some(secs) = args.timeout {
        cmd = cmd.timeout(Duration::from_secs(secs));
    }
    let forks = args.forks.unwrap_or(hosts.len()).max(1);
    let started = Instant::now();
    let cancel = interrupt.token();
    let outcomes = bounded(hosts, forks, |host| {
        let (connector, cmd) = (&connector, &cmd);
        async move {
            let began = Instant::now();
            let result = async {
                let transport = connector.connect(host, cancel).await?;
                let log = HostLog::detached(&host.name, None);
                transport.exec(cmd, &ExecIo { log: &log, cancel }).await
            }
            .await;
            (
                HostOutcome {
                    host: host.name.clone(),
                    result,
                },
                began.elapsed(),
            )
        }
    })
    .await;
    listener.abort();

    let mut failed = 0;
    for (outcome, took) in &outcomes {
        match &outcome.result {
            Ok(out) => {
                if !out.status.success() {
                    failed += 1;
                }
                println!(
                    "== {} ({}, {:.2}s)",
                    outcome.host,
                    out.status,
                    took.as_secs_f64()
                );
                for line in out.stdout.lines() {
                    println!("{line}");
                }
                if !out.status.success() {
                    for line in &out.tail {
                        println!("! {line}");
                    }
                }
            }
            Err(e) => {
                failed += 1;
                println!(
                    "== {} (error, {:.2}s)\n! {e}",
                    outcome.host,
                    took.as_secs_f64()
                );
            }
        }
    }
    eprintln!(
        "{} host(s): {} ok, {failed} failed, in {:.2}s",
        outcomes.len(),
        outcomes.len() - failed,
        started.elapsed().as_secs_f64()
    );
    Ok(match interrupt.signal() {
        Some(signal) => 128 + signal,
        None if failed > 0 => 1,
        None => exit::OK,
    })
}

/// `gate ssh`: replaces this process with `ssh` (or a shell in a local host's directory).
pub fn ssh(args: &SshArgs) -> Outcome {
    let config = GateConfig::load(&args.config).map_err(Failure::usage)?;
    let inventory = load_inventory(None, &config)?;
    let host = match &args.host {
        Some(name) => inventory.get(name).ok_or_else(|| {
            let names: Vec<&str> = inventory.hosts().iter().map(|h| h.name.as_str()).collect();
            Failure::usage(format!("no host `{name}`; hosts: {}", names.join(", ")))
        })?,
        None => inventory.primary(),
    };
    let mut command = if host.transport == gate_core::local::LOCAL {
        let home = host.home.clone().unwrap_or_else(|| ".".into());
        let mut shell = match args.command.split_first() {
            Some((program, rest)) => {
                let mut c = std::process::Command::new(program);
                c.args(rest);
                c
            }
            None => {
                std::process::Command::new(std::env::var("SHELL").unwrap_or_else(|_| "bash".into()))
            }
        };
        shell.current_dir(&home).env("HOME", &home);
        shell
    } else {
        let state = &config.run.state_dir;
        let mut ssh = std::process::Command::new("ssh");
        let run_key = state.join("keys").join("id_ed25519");
        if run_key.exists() {
            ssh.arg("-i").arg(run_key);
        }
        if let Some(identities) = config
            .transports
            .get(gate_ssh::SSH)
            .and_then(|t| t.get("identities"))
            .and_then(|v| v.clone().into_array().ok())
        {
            for identity in identities.into_iter().filter_map(|v| v.into_string().ok()) {
                ssh.arg("-i").arg(identity);
            }
        }
        ssh.arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                state.join("known_hosts").display()
            ))
            .args(["-o", "StrictHostKeyChecking=accept-new"])
            .arg("-p")
            .arg(if host.port == 0 { 22 } else { host.port }.to_string())
            .arg(format!("{}@{}", host.user, host.address));
        if !args.command.is_empty() {
            ssh.arg("--").args(&args.command);
        }
        ssh
    };
    let error = command.exec();
    Err(Failure {
        code: exit::INFRA,
        message: format!("cannot start {:?}: {error}", command.get_program()),
    })
}

/// `gate inventory`.
pub fn inventory(args: &InventoryArgs) -> Outcome {
    let config = GateConfig::load(&args.config).map_err(Failure::usage)?;
    let inventory = load_inventory(None, &config)?;
    let state = &config.run.state_dir;
    print!("{}", render(&inventory, args.format, state));
    Ok(exit::OK)
}

/// `inventory` in `format`; SSH settings point at the run's key and known_hosts in `state`.
pub fn render(inventory: &Inventory, format: InventoryFormat, state: &std::path::Path) -> String {
    let port = |h: &Host| if h.port == 0 { 22 } else { h.port };
    match format {
        InventoryFormat::Json => serde_json::to_string_pretty(inventory).unwrap_or_default() + "\n",
        InventoryFormat::Ansible => {
            let line = |h: &Host| {
                if h.transport == gate_core::local::LOCAL {
                    format!("{} ansible_connection=local\n", h.name)
                } else {
                    format!(
                        "{} ansible_host={} ansible_port={} ansible_user={}\n",
                        h.name,
                        h.address,
                        port(h),
                        h.user
                    )
                }
            };
            let mut out = String::from("[all]\n");
            out.extend(inventory.hosts().iter().map(line));
            let mut labels: Vec<&String> =
                inventory.hosts().iter().flat_map(|h| &h.labels).collect();
            labels.sort();
            labels.dedup();
            for label in labels {
                out.push_str(&format!("\n[{label}]\n"));
                for host in inventory
                    .hosts()
                    .iter()
                    .filter(|h| h.labels.contains(label))
                {
                    out.push_str(&format!("{}\n", host.name));
                }
            }
            out
        }
        InventoryFormat::SshConfig => {
            let mut out = String::new();
            for h in inventory
                .hosts()
                .iter()
                .filter(|h| h.transport != gate_core::local::LOCAL)
            {
                out.push_str(&format!(
                    "Host {}\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile {}\n  UserKnownHostsFile {}\n\n",
                    h.name,
                    h.address,
                    port(h),
                    h.user,
                    state.join("keys").join("id_ed25519").display(),
                    state.join("known_hosts").display()
                ));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, labels: &[&str]) -> Host {
        Host {
            name: name.into(),
            address: "10.1.0.5".into(),
            port: 2222,
            user: "root".into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            transport: "ssh".into(),
            home: None,
        }
    }

    #[test]
    fn inventories_render_for_ansible_and_ssh() {
        let inv = Inventory::new(vec![
            host("infra1", &["infra"]),
            host("compute1", &["compute", "infra"]),
        ])
        .unwrap();
        let ansible = render(
            &inv,
            InventoryFormat::Ansible,
            std::path::Path::new(".gate"),
        );
        assert_eq!(
            ansible,
            "[all]\ninfra1 ansible_host=10.1.0.5 ansible_port=2222 ansible_user=root\ncompute1 ansible_host=10.1.0.5 ansible_port=2222 ansible_user=root\n\n[compute]\ncompute1\n\n[infra]\ninfra1\ncompute1\n"
        );
        let ssh = render(
            &inv,
            InventoryFormat::SshConfig,
            std::path::Path::new(".gate"),
        );
        assert!(ssh.starts_with("Host infra1\n  HostName 10.1.0.5\n  Port 2222\n  User root\n  IdentityFile .gate/keys/id_ed25519\n"), "{ssh}");
        let json = render(&inv, InventoryFormat::Json, std::path::Path::new(".gate"));
        assert_eq!(serde_json::from_str::<Inventory>(&json).unwrap(), inv);
    }
}
