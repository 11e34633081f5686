//! `fleet-bench`: gate side by side with parallel-ssh (Debian `pssh`) and Ansible on a fleet
//! of real sshd hosts on loopback (`gate_test_harness::SshFleet`), in one run:
//!
//! - (a) one command (`hostname`) on every host: `gate exec` vs `parallel-ssh` vs
//!   `ansible all -m raw`, and the CPU floor: what one SSH connection costs in CPU on both
//!   sides (the OpenSSH client's, from `getrusage(RUSAGE_CHILDREN)`, and the server's, from
//!   the reaped-children CPU of each host's sshd listener in `/proc/PID/stat`) × hosts ÷ cores;
//! - (b) a sequence of commands on fewer hosts: gate's `deploy` stage (one session per host,
//!   reused for every step) vs `ansible-playbook` (ControlPersist, pipelining) vs one
//!   `parallel-ssh` call per command.
//!
//! Every tool reads the same pre-filled `known_hosts` (no trust-on-first-use writes) and the
//! fleet's client key. `bench/run` installs the tools, builds gate in release mode and runs
//! this; bench/RESULTS.md has the method and the recorded numbers.

use std::collections::BTreeSet;
use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use gate_test_harness::{FleetHost, SshFleet};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeVal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

macro_rules! bail {
    ($($arg:tt)*) => {
        return Err(format!($($arg)*).into())
    };
}

const USAGE: &str =
    "usage: fleet-bench [--hosts N] [--seq-hosts N] [--steps N] [--reps N] [--warmup N]
                   [--floor-passes N] [--only a|b] [--gate PATH] [--ansible-dir DIR]
                   [--work DIR] [--report FILE] [--hold] [--keep-bashrc]
Defaults: 64 hosts for (a), 16 for (b), 20 steps, 5 repetitions after 1 warm-up round,
2 sequential passes over every host for the floor, gate from target/release/gate, Ansible
from PATH (else target/bench/venv/bin), report to target/bench/report.md. --hold: start the fleet, write every tool's files into
the work dir, print where they are and wait until stdin closes (for profiling by hand).
The hosts' /root/.bashrc (which bash sources for every command run over SSH) is reset to
Debian's stock one (/usr/share/base-files/dot.bashrc), inside the hosts only: the machine's
may run anything (here: `pyenv init`, ~100 processes per command). --keep-bashrc keeps it.
Needs root.";

/// What to run.
#[derive(Debug)]
struct Options {
    hosts: usize,
    seq_hosts: usize,
    steps: usize,
    reps: usize,
    warmup: usize,
    floor_passes: usize,
    parts: BTreeSet<char>,
    gate: PathBuf,
    ansible_dir: Option<PathBuf>,
    work: Option<PathBuf>,
    report: PathBuf,
    /// Only start the fleet, write the tools' files and wait for stdin to close.
    hold: bool,
    /// Keep the machine's /root/.bashrc on the hosts (else Debian's stock one).
    keep_bashrc: bool,
}

impl Options {
    fn parse() -> Result<Options> {
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
        let mut options = Options {
            hosts: 64,
            seq_hosts: 16,
            steps: 20,
            reps: 5,
            warmup: 1,
            floor_passes: 2,
            parts: ['a', 'b'].into(),
            gate: target.join("release/gate"),
            ansible_dir: None,
            work: None,
            report: target.join("bench/report.md"),
            hold: false,
            keep_bashrc: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            if flag == "--hold" {
                options.hold = true;
                continue;
            }
            if flag == "--keep-bashrc" {
                options.keep_bashrc = true;
                continue;
            }
            if flag == "-h" || flag == "--help" {
                println!("{USAGE}");
                std::process::exit(0);
            }
            let Some(value) = args.next() else {
                bail!("{flag} needs a value\n{USAGE}");
            };
            let number = || {
                value
                    .parse::<usize>()
                    .map_err(|_| format!("{flag}: `{value}` is not a number"))
            };
            match flag.as_str() {
                "--hosts" => options.hosts = number()?,
                "--seq-hosts" => options.seq_hosts = number()?,
                "--steps" => options.steps = number()?,
                "--reps" => options.reps = number()?,
                "--warmup" => options.warmup = number()?,
                "--floor-passes" => options.floor_passes = number()?,
                "--only" => options.parts = value.chars().filter(|c| *c != ',').collect(),
                "--gate" => options.gate = value.into(),
                "--ansible-dir" => options.ansible_dir = Some(value.into()),
                "--work" => options.work = Some(value.into()),
                "--report" => options.report = value.into(),
                _ => bail!("unknown option {flag}\n{USAGE}"),
            }
        }
        if options.hosts == 0 || options.reps == 0 || options.steps == 0 {
            bail!("--hosts, --reps and --steps must be at least 1");
        }
        if options.seq_hosts == 0 || options.seq_hosts > options.hosts {
            bail!("--seq-hosts must be between 1 and --hosts");
        }
        if options.parts.iter().any(|p| !matches!(p, 'a' | 'b')) {
            bail!("--only takes a, b or a,b");
        }
        Ok(options)
    }
}

/// The programs compared.
#[derive(Debug)]
struct Tools {
    gate: PathBuf,
    pssh: PathBuf,
    ansible: PathBuf,
    playbook: PathBuf,
}

/// `name` on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

impl Tools {
    fn find(options: &Options) -> Result<Tools> {
        let gate = std::fs::canonicalize(&options.gate).map_err(|e| {
            format!(
                "gate binary {}: {e} (build it: cargo build --release -p gate-cli)",
                options.gate.display()
            )
        })?;
        let pssh = which("parallel-ssh").ok_or("parallel-ssh not found (apt-get install pssh)")?;
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench/venv/bin");
        let in_dir = |name: &str| -> Result<PathBuf> {
            match &options.ansible_dir {
                Some(dir) => Ok(dir.join(name)),
                None => which(name)
                    .or_else(|| Some(venv.join(name)).filter(|p| p.is_file()))
                    .ok_or_else(|| format!("{name} not found (pip install ansible-core)").into()),
            }
        };
        Ok(Tools {
            gate,
            pssh,
            ansible: in_dir("ansible")?,
            playbook: in_dir("ansible-playbook")?,
        })
    }
}

/// Wall time and CPU of one measured run.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: Duration,
    /// CPU of the tool and every process it started on the machine (reaped children).
    client: Duration,
    /// CPU of the sshd processes (and what they ran) on every fleet host.
    server: Duration,
}

/// One row of a results table: a tool's samples.
#[derive(Debug)]
struct Row {
    tool: String,
    samples: Vec<Sample>,
}

impl Row {
    fn new(tool: impl Into<String>) -> Row {
        Row {
            tool: tool.into(),
            samples: Vec::new(),
        }
    }

    fn median(&self, pick: impl Fn(&Sample) -> Duration) -> Duration {
        let mut values: Vec<Duration> = self.samples.iter().map(pick).collect();
        values.sort();
        match values.len() {
            0 => Duration::ZERO,
            n if n % 2 == 1 => values[n / 2],
            n => (values[n / 2 - 1] + values[n / 2]) / 2,
        }
    }

    fn wall(&self) -> Duration {
        self.median(|s| s.wall)
    }
}

/// The pids that hold one host's reaped CPU: its sshd listener and its PID 1 (the keeper,
/// which reaps orphans).
#[derive(Debug)]
struct HostPids {
    listener: i32,
    keeper: i32,
}

/// The machine-side view of the fleet used for CPU accounting.
#[derive(Debug)]
struct Accounting {
    hosts: Vec<HostPids>,
    /// Our own children that belong to the fleet (the `unshare` parents of the keepers).
    fleet_children: BTreeSet<i32>,
    /// Clock ticks per second of /proc/PID/stat times.
    ticks: f64,
}

/// The children of `pid` (of all its threads).
fn children_of(pid: &str) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            found.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    found
}

/// The fields of /proc/PID/stat after the command name: index 0 is the state (field 3).
fn stat_fields(pid: i32) -> Result<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    let (_, rest) = stat
        .rsplit_once(')')
        .ok_or_else(|| format!("/proc/{pid}/stat: no command name"))?;
    Ok(rest
        .split_whitespace()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .collect())
}

/// cutime + cstime (fields 16 and 17) of `pid`, in clock ticks.
fn reaped_ticks(pid: i32) -> Result<u64> {
    let fields = stat_fields(pid)?;
    match (fields.get(13), fields.get(14)) {
        (Some(user), Some(system)) => Ok(user + system),
        _ => bail!("/proc/{pid}/stat: too few fields"),
    }
}

fn timeval(t: TimeVal) -> Duration {
    Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
        + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
}

/// User + system CPU of every child (and their descendants) this process has reaped.
fn children_cpu() -> Result<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    Ok(timeval(usage.user_time()) + timeval(usage.system_time()))
}

/// Reaps every exited child (orphans handed to us as the subreaper, e.g. ControlPersist
/// masters), so their CPU shows in `RUSAGE_CHILDREN`.
fn reap_orphans() {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

impl Accounting {
    fn new(fleet: &SshFleet) -> Result<Accounting> {
        let ticks = String::from_utf8_lossy(
            &run(Command::new("getconf").arg("CLK_TCK"), "getconf")?.stdout,
        )
        .trim()
        .parse::<f64>()
        .map_err(|e| format!("getconf CLK_TCK: {e}"))?;
        let mut hosts = Vec::new();
        let mut fleet_children = BTreeSet::new();
        for host in fleet.hosts() {
            let listener = host
                .sshd_pid()
                .ok_or_else(|| format!("{}: no sshd listener", host.name()))?;
            let keeper = host.keeper_pid();
            if let Some(&parent) = stat_fields(keeper)?.get(1) {
                fleet_children.insert(i32::try_from(parent)?);
            }
            hosts.push(HostPids { listener, keeper });
        }
        Ok(Accounting {
            hosts,
            fleet_children,
            ticks,
        })
    }

    /// Reaped CPU of every host's sshd listener and keeper.
    fn server_cpu(&self) -> Result<Duration> {
        let mut ticks = 0;
        for host in &self.hosts {
            ticks += reaped_ticks(host.listener)? + reaped_ticks(host.keeper)?;
        }
        Ok(Duration::from_secs_f64(ticks as f64 / self.ticks))
    }

    /// Waits until no SSH session runs on any host (every connection's sshd reaped by its
    /// listener) and every process we started has been reaped.
    fn settle(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            reap_orphans();
            let sessions = self
                .hosts
                .iter()
                .any(|h| !children_of(&h.listener.to_string()).is_empty());
            let ours = children_of("self")
                .into_iter()
                .any(|pid| !self.fleet_children.contains(&pid));
            if !sessions && !ours {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "processes still running 30 s after a measured run (sessions: {sessions}, ours: {ours})"
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Runs `timed` (its wall time measured), then `after` (not timed, e.g. closing
    /// ControlPersist masters), and gives the wall time and the CPU both sides spent.
    fn measure(
        &self,
        timed: impl FnOnce() -> Result<()>,
        after: impl FnOnce() -> Result<()>,
    ) -> Result<Sample> {
        self.settle()?;
        let (client, server) = (children_cpu()?, self.server_cpu()?);
        let started = Instant::now();
        timed()?;
        let wall = started.elapsed();
        after()?;
        self.settle()?;
        Ok(Sample {
            wall,
            client: children_cpu()?.saturating_sub(client),
            server: self.server_cpu()?.saturating_sub(server),
        })
    }
}

/// The last lines of a command's output, for errors.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Runs `cmd` to completion (stdin closed, output captured); fails unless it exits with 0.
fn run(cmd: &mut Command, what: &str) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            tail(&out.stdout),
            tail(&out.stderr)
        );
    }
    Ok(out)
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()).into())
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// The files every tool reads, in the work dir.
#[derive(Debug)]
struct Setup {
    work: PathBuf,
    key: PathBuf,
    known_hosts: PathBuf,
    /// OpenSSH client options shared by the floor, parallel-ssh and Ansible.
    ssh_options: Vec<String>,
    hosts: Vec<(String, String, u16)>,
}

impl Setup {
    fn new(work: &Path, fleet: &SshFleet) -> Result<Setup> {
        let known_hosts = work.join("known_hosts");
        write(&known_hosts, &fleet.known_hosts())?;
        let key = fleet.client_key().to_owned();
        let ssh_options = [
            "-F".to_owned(),
            "/dev/null".to_owned(),
            "-i".to_owned(),
            key.display().to_string(),
        ]
        .into_iter()
        .chain(
            [
                "IdentitiesOnly=yes".to_owned(),
                "BatchMode=yes".to_owned(),
                "StrictHostKeyChecking=yes".to_owned(),
                "GlobalKnownHostsFile=/dev/null".to_owned(),
                format!("UserKnownHostsFile={}", known_hosts.display()),
            ]
            .into_iter()
            .flat_map(|o| ["-o".to_owned(), o]),
        )
        .collect();
        let hosts = fleet
            .hosts()
            .iter()
            .map(|h| (h.name().to_owned(), h.address(), h.port()))
            .collect();
        Ok(Setup {
            work: work.to_owned(),
            key,
            known_hosts,
            ssh_options,
            hosts,
        })
    }

    /// `[transport.ssh]` for gate: the fleet key, no agent, the pre-filled known_hosts.
    fn gate_transport(&self) -> String {
        format!(
            "[transport.ssh]\nidentities = [\"{}\"]\nagent = false\nknown_hosts = \"{}\"\nstrict = true\nconnect_timeout_secs = 30\npoll_secs = 1\n",
            self.key.display(),
            self.known_hosts.display()
        )
    }

    /// gate's inventory.json for the first `n` hosts.
    fn gate_inventory(&self, n: usize) -> String {
        let hosts: Vec<String> = self.hosts[..n]
            .iter()
            .map(|(name, address, port)| {
                format!(
                    "{{\"name\":\"{name}\",\"address\":\"{address}\",\"port\":{port},\"user\":\"root\",\"transport\":\"ssh\"}}"
                )
            })
            .collect();
        format!("{{\"hosts\":[{}]}}\n", hosts.join(","))
    }

    /// A parallel-ssh hosts file for the first `n` hosts.
    fn pssh_hosts(&self, n: usize) -> String {
        self.hosts[..n]
            .iter()
            .map(|(_, address, port)| format!("root@{address}:{port}\n"))
            .collect()
    }

    /// An Ansible INI inventory for the first `n` hosts.
    fn ansible_inventory(&self, n: usize) -> String {
        let mut text = String::from("[all]\n");
        for (name, address, port) in &self.hosts[..n] {
            let _ = writeln!(
                text,
                "{name} ansible_host={address} ansible_port={port} ansible_user=root"
            );
        }
        let _ = write!(
            text,
            "\n[all:vars]\nansible_ssh_private_key_file={}\n",
            self.key.display()
        );
        text
    }

    /// An ansible.cfg; `persist`: ControlPersist and pipelining (b), else one plain
    /// connection per host and task (a).
    fn ansible_cfg(&self, inventory: &Path, persist: bool) -> String {
        let ssh_args: Vec<String> = self
            .ssh_options
            .iter()
            .skip(4) // -F /dev/null -i KEY: Ansible passes the key itself.
            .cloned()
            .chain(if persist {
                vec![
                    "-o".into(),
                    "ControlMaster=auto".into(),
                    "-o".into(),
                    "ControlPersist=60s".into(),
                ]
            } else {
                vec!["-o".into(), "ControlMaster=no".into()]
            })
            .collect();
        format!(
            "[defaults]\ninventory = {inventory}\nforks = 64\nhost_key_checking = True\ngathering = explicit\ninterpreter_python = /usr/bin/python3\nretry_files_enabled = False\nlocal_tmp = {tmp}\nnocows = True\n\n[ssh_connection]\nssh_args = -F /dev/null {args}\npipelining = {pipelining}\n",
            inventory = inventory.display(),
            tmp = self.work.join("ansible/tmp").display(),
            args = ssh_args.join(" "),
            pipelining = if persist { "True" } else { "False" },
        )
    }
}

/// The environment every tool runs in: no agent, no inherited logging or gate overrides.
fn clean(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("GATE__") || key_text.starts_with("ANSIBLE_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("SSH_AUTH_SOCK").env_remove("RUST_LOG")
}

/// The bench itself.
#[derive(Debug)]
struct Bench {
    options: Options,
    tools: Tools,
    setup: Setup,
    accounting: Accounting,
    cores: usize,
}

/// The files of (a).
#[derive(Debug)]
struct FilesA {
    inventory: PathBuf,
    gate_toml: PathBuf,
    pssh_hosts: PathBuf,
    ansible_cfg: PathBuf,
}

/// gate's config for (b) with its state under a directory.
type GateConfig<'a> = Box<dyn Fn(&Path) -> String + 'a>;

/// The files of (b).
struct FilesB<'a> {
    dir: PathBuf,
    pssh_hosts: PathBuf,
    ansible_cfg: PathBuf,
    playbooks: Vec<(&'static str, PathBuf)>,
    gate_config: GateConfig<'a>,
}

/// What the floor measurement found.
#[derive(Debug)]
struct Floor {
    connections: usize,
    client: Duration,
    server: Duration,
    latency: Duration,
}

impl Floor {
    fn per_connection(&self) -> Duration {
        (self.client + self.server) / self.connections as u32
    }

    /// (client + server CPU of one connection) × hosts ÷ cores.
    fn floor(&self, hosts: usize, cores: usize) -> Duration {
        self.per_connection() * hosts as u32 / cores as u32
    }

    /// The server's share alone: server CPU of one connection × hosts ÷ cores, a bound no
    /// client, however cheap, can beat.
    fn server_floor(&self, hosts: usize, cores: usize) -> Duration {
        self.server / self.connections as u32 * hosts as u32 / cores as u32
    }
}

impl Bench {
    fn ansible_env<'c>(&self, cmd: &'c mut Command, cfg: &Path) -> &'c mut Command {
        clean(cmd)
            .env("ANSIBLE_CONFIG", cfg)
            .env("ANSIBLE_HOME", self.setup.work.join("ansible/home"))
    }

    /// Sequential `ssh host hostname` to every host, `passes` times: the CPU one connection
    /// costs on the client and on the server, and its latency.
    fn floor(&self, hosts: &[FleetHost], extra: &[&str]) -> Result<Floor> {
        let mut client = Duration::ZERO;
        let mut server = Duration::ZERO;
        let mut latencies = Vec::new();
        for _ in 0..self.options.floor_passes {
            for host in hosts {
                let mut wall = Duration::ZERO;
                let sample = self.accounting.measure(
                    || {
                        let started = Instant::now();
                        let out = run(
                            clean(&mut Command::new("ssh"))
                                .args(&self.setup.ssh_options)
                                .args(extra)
                                .arg("-p")
                                .arg(host.port().to_string())
                                .arg(format!("root@{}", host.address()))
                                .arg("hostname"),
                            "ssh hostname",
                        )?;
                        wall = started.elapsed();
                        if String::from_utf8_lossy(&out.stdout).trim() != host.name() {
                            bail!("ssh {}: unexpected output", host.name());
                        }
                        Ok(())
                    },
                    || Ok(()),
                )?;
                client += sample.client;
                server += sample.server;
                latencies.push(wall);
            }
        }
        latencies.sort();
        Ok(Floor {
            connections: latencies.len(),
            client,
            server,
            latency: latencies[latencies.len() / 2],
        })
    }

    /// The files of (a) in `<work>/a`.
    fn write_a(&self) -> Result<FilesA> {
        let n = self.options.hosts;
        let dir = self.setup.work.join("a");
        let inventory = dir.join("inventory.json");
        write(&inventory, &self.setup.gate_inventory(n))?;
        let gate_toml = dir.join("gate.toml");
        write(
            &gate_toml,
            &format!(
                "[run]\nstate_dir = \"{}\"\nartifacts_dir = \"{}\"\n\n{}",
                dir.join("state").display(),
                dir.join("artifacts").display(),
                self.setup.gate_transport()
            ),
        )?;
        let pssh_hosts = dir.join("pssh-hosts");
        write(&pssh_hosts, &self.setup.pssh_hosts(n))?;
        let ansible_hosts = dir.join("hosts.ini");
        write(&ansible_hosts, &self.setup.ansible_inventory(n))?;
        let ansible_cfg = dir.join("ansible.cfg");
        write(&ansible_cfg, &self.setup.ansible_cfg(&ansible_hosts, false))?;
        Ok(FilesA {
            inventory,
            gate_toml,
            pssh_hosts,
            ansible_cfg,
        })
    }

    /// (a): one command on all hosts, each tool once per round.
    fn part_a(&self) -> Result<Vec<Row>> {
        let n = self.options.hosts;
        let FilesA {
            inventory,
            gate_toml,
            pssh_hosts,
            ansible_cfg,
        } = self.write_a()?;

        let summary = format!("{n} host(s): {n} ok, 0 failed");
        let gate = || -> Result<()> {
            let out = run(
                clean(&mut Command::new(&self.tools.gate))
                    .arg("exec")
                    .arg("-c")
                    .arg(&gate_toml)
                    .arg("-i")
                    .arg(&inventory)
                    .args(["--", "hostname"]),
                "gate exec",
            )?;
            if !String::from_utf8_lossy(&out.stderr).contains(&summary) {
                bail!("gate exec: no `{summary}` in:\n{}", tail(&out.stderr));
            }
            Ok(())
        };
        let pssh = || -> Result<()> {
            let out = run(
                clean(&mut Command::new(&self.tools.pssh))
                    .arg("-h")
                    .arg(&pssh_hosts)
                    .args(["-p", &n.to_string(), "-t", "120", "-i", "-x"])
                    .arg(self.setup.ssh_options.join(" "))
                    .arg("hostname"),
                "parallel-ssh",
            )?;
            let ok = String::from_utf8_lossy(&out.stdout)
                .matches("[SUCCESS]")
                .count();
            if ok != n {
                bail!("parallel-ssh: {ok} of {n} hosts succeeded");
            }
            Ok(())
        };
        let ansible = || -> Result<()> {
            let out = run(
                self.ansible_env(&mut Command::new(&self.tools.ansible), &ansible_cfg)
                    .args(["all", "-m", "raw", "-a", "hostname", "-f", "64"]),
                "ansible all -m raw",
            )?;
            let ok = String::from_utf8_lossy(&out.stdout)
                .matches("| CHANGED | rc=0")
                .count();
            if ok != n {
                bail!("ansible: {ok} of {n} hosts succeeded");
            }
            Ok(())
        };

        let mut rows = vec![
            Row::new("`gate exec`"),
            Row::new(format!("`parallel-ssh -p {n}`")),
            Row::new("`ansible all -m raw -f 64`"),
        ];
        let rounds = self.options.warmup + self.options.reps;
        for round in 0..rounds {
            let runs: [&dyn Fn() -> Result<()>; 3] = [&gate, &pssh, &ansible];
            for (row, each) in rows.iter_mut().zip(runs) {
                let sample = self.accounting.measure(each, || Ok(()))?;
                eprintln!(
                    "  (a) round {}/{rounds}{} {}: {} s",
                    round + 1,
                    if round < self.options.warmup {
                        " (warm-up)"
                    } else {
                        ""
                    },
                    row.tool,
                    secs(sample.wall)
                );
                if round >= self.options.warmup {
                    row.samples.push(sample);
                }
            }
        }
        Ok(rows)
    }

    /// The files of (b) in `<work>/b`, but gate's per-round config.
    fn write_b(&self) -> Result<FilesB<'_>> {
        let n = self.options.seq_hosts;
        let steps = self.options.steps;
        let dir = self.setup.work.join("b");
        let pssh_hosts = dir.join("pssh-hosts");
        write(&pssh_hosts, &self.setup.pssh_hosts(n))?;
        let ansible_hosts = dir.join("hosts.ini");
        write(&ansible_hosts, &self.setup.ansible_inventory(n))?;
        let ansible_cfg = dir.join("ansible.cfg");
        write(&ansible_cfg, &self.setup.ansible_cfg(&ansible_hosts, true))?;
        let mut playbooks = Vec::new();
        for module in ["raw", "command"] {
            let mut play = String::from("- hosts: all\n  gather_facts: false\n  tasks:\n");
            for step in 1..=steps {
                let _ = write!(
                    play,
                    "    - name: step {step}\n      {module}: echo step-{step}\n"
                );
            }
            let path = dir.join(format!("playbook-{module}.yml"));
            write(&path, &play)?;
            playbooks.push((module, path));
        }
        let mut gate_steps = String::new();
        for step in 1..=steps {
            let _ = write!(
                gate_steps,
                "[[deployer.deploy]]\nrun = [\"echo\", \"step-{step}\"]\n"
            );
        }
        let mut static_hosts = String::new();
        for (name, address, port) in &self.setup.hosts[..n] {
            let _ = write!(
                static_hosts,
                "[[provider.hosts]]\nname = \"{name}\"\naddress = \"{address}\"\nport = {port}\nuser = \"root\"\n"
            );
        }

        let gate_config = move |root: &Path| {
            format!(
                "[run]\nstate_dir = \"{state}\"\nartifacts_dir = \"{artifacts}\"\nconcurrency = {n}\n\n{transport}\n[provider]\nbackend = \"static\"\n{static_hosts}\n[deployer]\nbackend = \"script\"\nhosts = \"all\"\n{gate_steps}",
                state = root.join("state").display(),
                artifacts = root.join("artifacts").display(),
                transport = self.setup.gate_transport(),
            )
        };
        let gate_toml = dir.join("gate-hold/gate.toml");
        write(&gate_toml, &gate_config(&dir.join("gate-hold")))?;
        Ok(FilesB {
            dir,
            pssh_hosts,
            ansible_cfg,
            playbooks,
            gate_config: Box::new(gate_config),
        })
    }

    /// (b): `steps` commands in sequence on `seq_hosts` hosts.
    fn part_b(&self) -> Result<Vec<Row>> {
        let n = self.options.seq_hosts;
        let steps = self.options.steps;
        let FilesB {
            dir,
            pssh_hosts,
            ansible_cfg,
            playbooks,
            gate_config,
        } = self.write_b()?;
        let gate_dir = |round: usize| dir.join(format!("gate-{round}"));
        let gate_stage = |round: usize, stage: &str| -> Result<Output> {
            run(
                clean(&mut Command::new(&self.tools.gate))
                    .arg("stage")
                    .arg(stage)
                    .arg("-c")
                    .arg(gate_dir(round).join("gate.toml")),
                &format!("gate stage {stage}"),
            )
        };
        let gate_prepare = |round: usize| -> Result<()> {
            let root = gate_dir(round);
            write(&root.join("gate.toml"), &gate_config(&root))?;
            gate_stage(round, "allocate").map(|_| ())
        };
        let gate_deploy = |round: usize| -> Result<()> {
            gate_stage(round, "deploy")?;
            let logs = gate_dir(round).join("state/logs/deploy");
            for (name, _, _) in &self.setup.hosts[..n] {
                let log = std::fs::read_to_string(logs.join(format!("{name}.log")))
                    .map_err(|e| format!("gate deploy log of {name}: {e}"))?;
                if !log.contains(&format!("step-{steps}")) {
                    bail!("gate deploy: step-{steps} not in the log of {name}");
                }
            }
            Ok(())
        };
        let gate_cleanup = |round: usize| gate_stage(round, "cleanup").map(|_| ());

        let pssh = || -> Result<()> {
            for step in 1..=steps {
                run(
                    clean(&mut Command::new(&self.tools.pssh))
                        .arg("-h")
                        .arg(&pssh_hosts)
                        .args(["-p", &n.to_string(), "-t", "120", "-x"])
                        .arg(self.setup.ssh_options.join(" "))
                        .arg(format!("echo step-{step}")),
                    "parallel-ssh",
                )?;
            }
            Ok(())
        };
        let control_dir = |round: usize, module: &str| dir.join(format!("cp-{module}-{round}"));
        let playbook = |round: usize, module: &str, path: &Path| -> Result<()> {
            let out = run(
                self.ansible_env(&mut Command::new(&self.tools.playbook), &ansible_cfg)
                    .env("ANSIBLE_SSH_CONTROL_PATH_DIR", control_dir(round, module))
                    .arg(path),
                "ansible-playbook",
            )?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let ok = stdout
                .lines()
                .filter(|l| {
                    l.contains(&format!(" ok={steps} "))
                        && l.contains(" unreachable=0 ")
                        && l.contains(" failed=0 ")
                })
                .count();
            if ok != n {
                bail!(
                    "ansible-playbook: {ok} of {n} hosts ran every task:\n{}",
                    tail(&out.stdout)
                );
            }
            Ok(())
        };
        // Close the ControlPersist masters of a round (their CPU is part of Ansible's).
        let close_masters = |round: usize, module: &str| -> Result<()> {
            let Ok(entries) = std::fs::read_dir(control_dir(round, module)) else {
                return Ok(());
            };
            for entry in entries.flatten() {
                let _ = clean(&mut Command::new("ssh"))
                    .arg("-o")
                    .arg(format!("ControlPath={}", entry.path().display()))
                    .args(["-O", "exit", "fleet"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            Ok(())
        };

        let mut rows = vec![Row::new(format!(
            "gate: `gate stage deploy` ({steps} `run` steps, `hosts = \"all\"`)"
        ))];
        for (module, _) in &playbooks {
            rows.push(Row::new(format!(
                "`ansible-playbook` ({steps} `{module}` tasks, ControlPersist + pipelining)"
            )));
        }
        rows.push(Row::new(format!("{steps} × `parallel-ssh -p {n}`")));
        let rounds = self.options.warmup + self.options.reps;
        for round in 0..rounds {
            let mut samples = Vec::new();
            gate_prepare(round)?;
            samples.push(self.accounting.measure(|| gate_deploy(round), || Ok(()))?);
            gate_cleanup(round)?;
            for (module, path) in &playbooks {
                samples.push(self.accounting.measure(
                    || playbook(round, module, path),
                    || close_masters(round, module),
                )?);
            }
            samples.push(self.accounting.measure(pssh, || Ok(()))?);
            for (row, sample) in rows.iter_mut().zip(samples) {
                eprintln!(
                    "  (b) round {}/{rounds}{} {}: {} s",
                    round + 1,
                    if round < self.options.warmup {
                        " (warm-up)"
                    } else {
                        ""
                    },
                    row.tool,
                    secs(sample.wall)
                );
                if round >= self.options.warmup {
                    row.samples.push(sample);
                }
            }
        }
        Ok(rows)
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The first line a command prints (stdout, else stderr), or `?`.
fn version(program: &Path, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .env_remove("ANSIBLE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .map(|out| {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("?")
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|_| "?".into())
}

/// A results table: medians of wall time and CPU per run, all wall samples.
fn table(out: &mut String, rows: &[Row], cores: usize, extra: &[(String, Duration)]) {
    let _ = writeln!(
        out,
        "| tool | median wall (s) | wall samples (s) | client CPU (s) | server CPU (s) | (client+server) ÷ {cores} cores (s) |\n|---|---:|---|---:|---:|---:|"
    );
    for row in rows {
        let client = row.median(|s| s.client);
        let server = row.median(|s| s.server);
        let samples: Vec<String> = row.samples.iter().map(|s| secs(s.wall)).collect();
        let _ = writeln!(
            out,
            "| {} | **{}** | {} | {} | {} | {} |",
            row.tool,
            secs(row.wall()),
            samples.join(", "),
            secs(client),
            secs(server),
            secs((client + server) / cores as u32)
        );
    }
    for (name, value) in extra {
        let _ = writeln!(out, "| {name} | **{}** | | | | |", secs(*value));
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn main() -> Result<()> {
    let options = Options::parse()?;
    let tools = Tools::find(&options)?;
    nix::sys::prctl::set_child_subreaper(true)?;
    let cores = std::thread::available_parallelism()?.get();
    let load_before = loadavg();
    let work_dir = match &options.work {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            None
        }
        // Short paths: ControlPersist sockets live in here.
        None => Some(tempfile_dir()?),
    };
    let work = match (&options.work, &work_dir) {
        (Some(dir), _) => dir.clone(),
        (None, Some(dir)) => dir.clone(),
        (None, None) => bail!("no work directory"),
    };

    eprintln!("starting {} sshd hosts…", options.hosts);
    let started = Instant::now();
    let fleet = SshFleet::start(options.hosts)?;
    let fleet_start = started.elapsed();
    eprintln!("fleet up in {} s", secs(fleet_start));
    if !options.keep_bashrc {
        for host in fleet.hosts() {
            host.exec_ok("cp /usr/share/base-files/dot.bashrc /root/.bashrc")?;
        }
    }
    let accounting = Accounting::new(&fleet)?;
    let first = &accounting.hosts[0];
    let nspid = std::fs::read_to_string(format!("/proc/{}/status", first.listener))?
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .unwrap_or("NSpid: ?")
        .split_whitespace()
        .skip(1)
        .collect::<Vec<_>>()
        .join(" ");
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", first.listener))?;
    if comm.trim() != "sshd" {
        bail!(
            "FleetHost::sshd_pid() gave pid {} which is `{}`, not sshd",
            first.listener,
            comm.trim()
        );
    }
    let setup = Setup::new(&work, &fleet)?;
    let bench = Bench {
        options,
        tools,
        setup,
        accounting,
        cores,
    };

    if bench.options.hold {
        return hold(&bench);
    }
    eprintln!("floor: sequential ssh connections…");
    let floors = [
        (
            "OpenSSH defaults (sntrup761x25519-sha512: what parallel-ssh and Ansible pay)",
            bench.floor(fleet.hosts(), &[])?,
        ),
        (
            "OpenSSH with `KexAlgorithms=curve25519-sha256` (the key exchange gate's libssh2 negotiates)",
            bench.floor(fleet.hosts(), &["-o", "KexAlgorithms=curve25519-sha256"])?,
        ),
    ];
    let rows_a = if bench.options.parts.contains(&'a') {
        eprintln!("(a) one command on {} hosts…", bench.options.hosts);
        bench.part_a()?
    } else {
        Vec::new()
    };
    let rows_b = if bench.options.parts.contains(&'b') {
        eprintln!(
            "(b) {} commands on {} hosts…",
            bench.options.steps, bench.options.seq_hosts
        );
        bench.part_b()?
    } else {
        Vec::new()
    };
    let load_after = loadavg();
    drop(fleet);

    let report = render(
        &bench,
        &floors,
        &rows_a,
        &rows_b,
        &[
            ("load average before", load_before),
            ("load average after", load_after),
            ("fleet start", format!("{} s", secs(fleet_start))),
            (
                "hosts' /root/.bashrc",
                if bench.options.keep_bashrc {
                    "the machine's (--keep-bashrc)".to_owned()
                } else {
                    "Debian's stock (/usr/share/base-files/dot.bashrc)".to_owned()
                },
            ),
            (
                "sshd_pid() check",
                format!(
                    "pid {} is `sshd` in the machine's PID namespace (NSpid: {nspid})",
                    first_listener(&bench)
                ),
            ),
        ],
    );
    write(&bench.options.report, &report)?;
    println!("{report}");
    eprintln!("report: {}", bench.options.report.display());
    if let Some(dir) = work_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

/// `--hold`: the files of (a) and (b) written, the fleet up until stdin closes.
fn hold(bench: &Bench) -> Result<()> {
    bench.write_a()?;
    bench.write_b()?;
    let work = &bench.setup.work;
    println!("work dir: {}", work.display());
    println!("ssh options: {}", bench.setup.ssh_options.join(" "));
    for (i, host) in bench.accounting.hosts.iter().enumerate() {
        println!(
            "fleet-{} listener pid {} keeper pid {}",
            i + 1,
            host.listener,
            host.keeper
        );
    }
    println!("holding the fleet until stdin closes");
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink)? > 0 {}
    Ok(())
}

fn first_listener(bench: &Bench) -> i32 {
    bench.accounting.hosts.first().map_or(0, |h| h.listener)
}

/// A fresh, short work directory in /tmp.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = PathBuf::from(format!("/tmp/gate-bench-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn render(
    bench: &Bench,
    floors: &[(&str, Floor); 2],
    rows_a: &[Row],
    rows_b: &[Row],
    notes: &[(&str, String)],
) -> String {
    let o = &bench.options;
    let cores = bench.cores;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Run: {} hosts for (a), {} hosts × {} steps for (b), median of {} (after {} warm-up)\n",
        o.hosts, o.seq_hosts, o.steps, o.reps, o.warmup
    );
    let t = &bench.tools;
    let _ = writeln!(out, "| | |\n|---|---|");
    for (name, value) in [
        ("cores (`nproc`)", cores.to_string()),
        ("kernel", version(Path::new("uname"), &["-sr"])),
        (
            "gate",
            format!("{} (release build)", version(&t.gate, &["--version"])),
        ),
        (
            "gate commit",
            version(
                Path::new("git"),
                &[
                    "-C",
                    env!("CARGO_MANIFEST_DIR"),
                    "describe",
                    "--always",
                    "--dirty",
                ],
            ),
        ),
        ("OpenSSH", version(Path::new("ssh"), &["-V"])),
        ("parallel-ssh", version(&t.pssh, &["--version"])),
        ("ansible", version(&t.ansible, &["--version"])),
    ]
    .into_iter()
    .chain(notes.iter().map(|(k, v)| (*k, v.clone())))
    {
        let _ = writeln!(out, "| {name} | {value} |");
    }

    let _ = writeln!(
        out,
        "\n#### One SSH connection (`ssh root@host hostname`, sequential, each host {} times)\n\n| client | client CPU (ms) | server CPU: sshd, reaped (ms) | total (ms) | latency, median (ms) |\n|---|---:|---:|---:|---:|",
        o.floor_passes
    );
    for (name, floor) in floors {
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} |",
            ms(floor.client / floor.connections as u32),
            ms(floor.server / floor.connections as u32),
            ms(floor.per_connection()),
            ms(floor.latency),
        );
    }
    // The target's floor: the same key exchange as gate, the cheapest client measured.
    let floor = &floors[1].1;
    let per = floor.per_connection();
    if !rows_a.is_empty() {
        let floor_a = floor.floor(o.hosts, cores);
        let server_floor = floor.server_floor(o.hosts, cores);
        let _ = writeln!(out, "\n#### (a) `hostname` on {} hosts\n", o.hosts);
        table(
            &mut out,
            rows_a,
            cores,
            &[
                (
                    format!(
                        "**floor**: {} ms (OpenSSH client, curve25519, + sshd) × {} hosts ÷ {cores} cores",
                        ms(per),
                        o.hosts
                    ),
                    floor_a,
                ),
                (
                    format!(
                        "floor, OpenSSH defaults: {} ms × {} hosts ÷ {cores} cores",
                        ms(floors[0].1.per_connection()),
                        o.hosts
                    ),
                    floors[0].1.floor(o.hosts, cores),
                ),
                (
                    format!(
                        "sshd-only floor: {} ms × {} hosts ÷ {cores} cores",
                        ms(floor.server / floor.connections as u32),
                        o.hosts
                    ),
                    server_floor,
                ),
            ],
        );
        let gate = rows_a[0].wall();
        let pssh = rows_a[1].wall();
        let ansible = rows_a[2].wall();
        let _ = writeln!(
            out,
            "\n- gate ÷ parallel-ssh = **{:.2}** (target < 1: {})\n- gate ÷ floor = **{:.2}** (target ≤ 1.3: {})\n- gate ÷ sshd-only floor = {:.2}; gate ÷ its own CPU ÷ cores = {:.2}\n- parallel-ssh ÷ floor = {:.2}; ansible ÷ gate = {:.2}",
            ratio(gate, pssh),
            met(gate < pssh),
            ratio(gate, floor_a),
            met(ratio(gate, floor_a) <= 1.3),
            ratio(gate, server_floor),
            ratio(
                gate,
                (rows_a[0].median(|s| s.client) + rows_a[0].median(|s| s.server)) / cores as u32
            ),
            ratio(pssh, floor_a),
            ratio(ansible, gate),
        );
    }
    if !rows_b.is_empty() {
        let _ = writeln!(
            out,
            "\n#### (b) {} commands in sequence on {} hosts\n",
            o.steps, o.seq_hosts
        );
        table(&mut out, rows_b, cores, &[]);
        let gate = rows_b[0].wall();
        let _ = writeln!(out);
        for row in &rows_b[1..] {
            let r = ratio(row.wall(), gate);
            let target = if row.tool.contains("ansible") {
                format!(" (target ≥ 10: {})", met(r >= 10.0))
            } else {
                String::new()
            };
            let _ = writeln!(out, "- {} ÷ gate = **{r:.1}**{target}", row.tool);
        }
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn met(yes: bool) -> &'static str {
    if yes { "met" } else { "**missed**" }
}
