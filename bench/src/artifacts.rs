//! `artifacts-bench`: gate-artifacts side by side with its peers on loopback.
//!
//! - archive: N fleet hosts (`gate_test_harness::SshFleet`) × M MB of log-like text files
//!   each, gathered by gate's streamed archiver (in-process, connections included) vs
//!   `rsync -a` from every host at once vs `scp -r` from every host at once;
//! - publish: F files adding up to G MB, to one real S3 server (`s3s-fs`, in this process):
//!   gate's `s3` publisher vs `aws s3 sync` (awscli).
//!
//! Every tool gets the same key and pre-filled `known_hosts`, strict checking. Medians of
//! `--reps` rounds (tools interleaved), after one warm-up round. Needs root, rsync, scp, aws.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gate_artifacts::config::Compression;
use gate_artifacts::{S3Config, S3Publisher, StreamedArchiver, StreamedArchiverConfig};
use gate_core::{Archiver, ArtifactPublisher, Connector, Host, Inventory, Stage};
use gate_ssh::{SshConfig, SshConnector};
use gate_test_harness::{S3Server, SshFleet};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const USAGE: &str =
    "usage: artifacts-bench [--hosts N] [--mb MB] [--files-per-host N] [--publish-mb MB]
                       [--publish-files N] [--reps N] [--only archive|publish] [--gate-only]
                       [--parallel N]
Defaults: 8 hosts × 200 MB in 200 files each; publish 1000 MB in 2000 files; 3 rounds.";

struct Options {
    hosts: usize,
    mb: usize,
    files_per_host: usize,
    publish_mb: usize,
    publish_files: usize,
    reps: usize,
    only: Option<String>,
    /// Only gate's runs (for profiling): the peers are skipped.
    gate_only: bool,
    /// The S3 publisher's uploads at once.
    parallel: usize,
}

fn options() -> Result<Options> {
    let mut o = Options {
        hosts: 8,
        mb: 200,
        files_per_host: 200,
        publish_mb: 1000,
        publish_files: 2000,
        reps: 3,
        only: None,
        gate_only: false,
        parallel: 16,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--hosts" => o.hosts = value()?.parse()?,
            "--mb" => o.mb = value()?.parse()?,
            "--files-per-host" => o.files_per_host = value()?.parse()?,
            "--publish-mb" => o.publish_mb = value()?.parse()?,
            "--publish-files" => o.publish_files = value()?.parse()?,
            "--reps" => o.reps = value()?.parse()?,
            "--only" => o.only = Some(value()?),
            "--gate-only" => o.gate_only = true,
            "--parallel" => o.parallel = value()?.parse()?,
            _ => return Err(USAGE.into()),
        }
    }
    Ok(o)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// CPU time used so far by this process (gate and the in-process S3 server) and by its
/// waited-for children (the CLI peers).
fn cpu_now() -> Result<(Duration, Duration)> {
    use nix::sys::resource::{UsageWho, getrusage};
    let total = |who| -> Result<Duration> {
        let usage = getrusage(who)?;
        let (user, system) = (usage.user_time(), usage.system_time());
        let micros = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        Ok(Duration::from_secs_f64(micros(user) + micros(system)))
    };
    Ok((
        total(UsageWho::RUSAGE_SELF)?,
        total(UsageWho::RUSAGE_CHILDREN)?,
    ))
}

/// Runs `work`, returning its wall time and the CPU time it cost (this process and the
/// children it waited for).
async fn timed<F: std::future::Future<Output = Result<()>>>(
    work: F,
) -> Result<(Duration, Duration)> {
    let (self_before, children_before) = cpu_now()?;
    let started = Instant::now();
    work.await?;
    let wall = started.elapsed();
    let (self_after, children_after) = cpu_now()?;
    Ok((
        wall,
        (self_after - self_before) + (children_after - children_before),
    ))
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("artifacts-bench: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let o = options()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let work = tempfile::Builder::new()
        .prefix("artifacts-bench-")
        .tempdir()?;
    println!("# gate-artifacts benchmark\n");
    println!(
        "load before: {}",
        std::fs::read_to_string("/proc/loadavg")?.trim()
    );
    if o.only.as_deref() != Some("publish") {
        runtime.block_on(archive_bench(&o, work.path()))?;
    }
    if o.only.as_deref() != Some("archive") {
        runtime.block_on(publish_bench(&o, work.path()))?;
    }
    println!(
        "\nload after: {}",
        std::fs::read_to_string("/proc/loadavg")?.trim()
    );
    Ok(())
}

async fn archive_bench(o: &Options, work: &Path) -> Result<()> {
    let fleet = SshFleet::start(o.hosts)?;
    let file_kb = o.mb * 1000 / o.files_per_host.max(1);
    // Log-like text: timestamped lines with varying request ids, as OpenStack services write.
    let make = format!(
        "cp /usr/share/base-files/dot.bashrc /root/.bashrc; mkdir -p /var/log/bench && cd /var/log/bench && \
         for i in $(seq 1 {files}); do \
           awk -v n=$i 'BEGIN {{ for (j = 0; size < {kb}*1000; j++) {{ line = sprintf(\"2024-05-01 12:%02d:%02d.%03d 4242 INFO nova.compute.manager [req-%08x-%04x admin] Instance %d spawned on host compute-%d in %d.%02d seconds\", j/60%60, j%60, j%1000, j*7919+n, j%65536, j, n, j%97, j%100); print line; size += length(line) + 1 }} }}' > svc-$i.log; \
         done",
        files = o.files_per_host,
        kb = file_kb
    );
    std::thread::scope(|scope| {
        for host in fleet.hosts() {
            let make = &make;
            scope.spawn(move || host.exec_ok(make));
        }
    });
    let size = fleet.hosts()[0].exec_ok("du -sb /var/log/bench | cut -f1")?;
    println!(
        "\n## archive: {} hosts × {} MB ({} files each)\n",
        o.hosts,
        size.trim().parse::<u64>().unwrap_or(0) / 1_000_000,
        o.files_per_host
    );
    let known_hosts = work.join("known_hosts");
    std::fs::write(&known_hosts, fleet.known_hosts())?;
    let key = fleet.client_key().to_owned();
    let ssh_opts = format!(
        "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={}",
        key.display(),
        known_hosts.display()
    );
    let mut samples: Vec<(&str, Vec<Duration>)> = vec![
        ("gate archive (default: zstd -1 on the host)", Vec::new()),
        ("gate archive (gzip -1 on the host)", Vec::new()),
        ("gate archive (plain tar)", Vec::new()),
        ("rsync -a, all hosts at once", Vec::new()),
        ("rsync -a -e 'ssh -c aes128-gcm@openssh.com'", Vec::new()),
        ("scp -r, all hosts at once", Vec::new()),
    ];
    if o.gate_only {
        samples.truncate(3);
    }
    let expected_bytes = size.trim().parse::<u64>().unwrap_or(0) * o.hosts as u64;
    for round in 0..=o.reps {
        let mut times = Vec::new();
        for (n, compression) in [Compression::Auto, Compression::Gzip, Compression::None]
            .into_iter()
            .enumerate()
        {
            let dest = work.join(format!("gate-{round}-{n}"));
            let started = Instant::now();
            let report = gate_archive(&fleet, &key, &known_hosts, &dest, compression).await?;
            times.push(started.elapsed());
            // `du -sb` counts the directory too: every file's bytes must be there.
            let want = expected_bytes.saturating_sub(4096 * o.hosts as u64);
            if report.files != (o.files_per_host * o.hosts) as u64 || report.bytes < want {
                return Err(format!(
                    "gate archived {} files, {} bytes; expected {} files, {want}+ bytes",
                    report.files,
                    report.bytes,
                    o.files_per_host * o.hosts
                )
                .into());
            }
            std::fs::remove_dir_all(&dest)?;
        }
        if o.gate_only {
            if round > 0 {
                for (slot, t) in samples.iter_mut().zip(times) {
                    slot.1.push(t);
                }
            }
            continue;
        }
        for extra in ["", " -c aes128-gcm@openssh.com"] {
            let dest = work.join(format!("rsync-{round}"));
            let started = Instant::now();
            let children: Vec<_> = fleet
                .hosts()
                .iter()
                .map(|h| {
                    let into = dest.join(h.name());
                    std::fs::create_dir_all(&into)?;
                    Ok(Command::new("rsync")
                        .args(["-a", "-e"])
                        .arg(format!("{ssh_opts}{extra}"))
                        .arg(format!("root@{}:/var/log/bench/", h.address()))
                        .arg(&into)
                        .stdin(Stdio::null())
                        .spawn()?)
                })
                .collect::<Result<_>>()?;
            for mut child in children {
                if !child.wait()?.success() {
                    return Err("rsync failed".into());
                }
            }
            times.push(started.elapsed());
            std::fs::remove_dir_all(&dest)?;
        }
        let dest = work.join(format!("scp-{round}"));
        let started = Instant::now();
        let children: Vec<_> = fleet
            .hosts()
            .iter()
            .map(|h| {
                let into = dest.join(h.name());
                std::fs::create_dir_all(&into)?;
                Ok(Command::new("scp")
                    .args(["-r", "-q", "-F", "/dev/null", "-i"])
                    .arg(&key)
                    .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o"])
                    .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
                    .arg(format!("root@{}:/var/log/bench", h.address()))
                    .arg(&into)
                    .stdin(Stdio::null())
                    .spawn()?)
            })
            .collect::<Result<_>>()?;
        for mut child in children {
            if !child.wait()?.success() {
                return Err("scp failed".into());
            }
        }
        times.push(started.elapsed());
        std::fs::remove_dir_all(&dest)?;
        if round > 0 {
            for (slot, t) in samples.iter_mut().zip(times) {
                slot.1.push(t);
            }
        }
    }
    report(samples);
    Ok(())
}

async fn gate_archive(
    fleet: &SshFleet,
    key: &Path,
    known_hosts: &Path,
    dest: &Path,
    compression: Compression,
) -> Result<gate_core::traits::ArchiveReport> {
    let mut stage = gate_core::testkit::LocalStage::new(1, Stage::Archive).await;
    let connector = SshConnector::new(SshConfig {
        identities: vec![key.to_owned()],
        agent: false,
        known_hosts: Some(known_hosts.to_owned()),
        strict: true,
        connect_timeout_secs: 30,
        poll_secs: 1,
        ..SshConfig::default()
    });
    let hosts: Vec<Host> = fleet
        .hosts()
        .iter()
        .map(|h| Host {
            name: h.name().to_owned(),
            address: h.address(),
            port: h.port(),
            user: h.user().to_owned(),
            labels: Vec::new(),
            transport: gate_ssh::SSH.into(),
            home: None,
        })
        .collect();
    let connects = hosts.iter().map(|h| connector.connect(h, &stage.cx.cancel));
    let transports: Vec<Arc<dyn gate_core::Transport>> = futures_util::future::join_all(connects)
        .await
        .into_iter()
        .collect::<gate_core::Result<_>>()?;
    stage.cx.inventory = Inventory::new(hosts)?;
    stage.cx.transports = transports;
    stage.cx.artifacts_dir = dest.to_owned();
    stage.cx.concurrency = fleet.hosts().len();
    let config = StreamedArchiverConfig {
        paths: vec!["/var/log/bench".into()],
        max_host_mb: 100_000,
        compression,
        ..StreamedArchiverConfig::default()
    };
    Ok(StreamedArchiver::new(config).archive(&stage.cx).await?)
}

async fn publish_bench(o: &Options, work: &Path) -> Result<()> {
    const KEY: &str = "AKIDBENCH";
    const SECRET: &str = "bench-secret-key";
    let s3 = S3Server::start(KEY, SECRET)?;
    s3.create_bucket("bench")?;
    let src: PathBuf = work.join("publish-src");
    let per_file = o.publish_mb * 1_000_000 / o.publish_files.max(1);
    for n in 0..o.publish_files {
        let dir = src.join(format!("d{:02}", n % 20));
        std::fs::create_dir_all(&dir)?;
        let line = format!("2024-05-01 12:00:00 INFO keystone req-{n:08x} token issued\n");
        let data: Vec<u8> = line.bytes().cycle().take(per_file).collect();
        std::fs::write(dir.join(format!("f{n:05}.log")), data)?;
    }
    println!(
        "\n## publish: {} files, {} MB, to s3s-fs on 127.0.0.1\n",
        o.publish_files, o.publish_mb
    );
    let gate_name = format!("gate s3 publisher ({} at once)", o.parallel);
    let mut samples: Vec<(&str, Vec<Duration>)> = vec![(gate_name.as_str(), Vec::new())];
    if !o.gate_only {
        samples.push(("aws s3 sync (awscli defaults)", Vec::new()));
    }
    let mut cpu: Vec<Vec<Duration>> = vec![Vec::new(); samples.len()];
    for round in 0..=o.reps {
        let mut times = Vec::new();
        let stage = gate_core::testkit::LocalStage::new(1, Stage::Publish).await;
        let toml = format!(
            "source = \"{}\"\non = \"local\"\nbucket = \"bench\"\nprefix = \"gate-{round}\"\nendpoint = \"{}\"\naccess_key = \"{KEY}\"\nsecret_key = \"{SECRET}\"\nparallel = {}\n",
            src.display(),
            s3.endpoint(),
            o.parallel
        );
        let config: S3Config =
            gate_core::BackendConfig::from_toml("publisher", "s3", &toml)?.parse()?;
        times.push(
            timed(async {
                S3Publisher::new(config).publish(&stage.cx).await?;
                Ok(())
            })
            .await?,
        );
        if !o.gate_only {
            times.push(
                timed(async {
                    run(Command::new("aws")
                        .args(["s3", "sync", "--only-show-errors", "--endpoint-url"])
                        .arg(s3.endpoint())
                        .arg(&src)
                        .arg(format!("s3://bench/aws-{round}"))
                        .env("AWS_ACCESS_KEY_ID", KEY)
                        .env("AWS_SECRET_ACCESS_KEY", SECRET)
                        .env("AWS_DEFAULT_REGION", "us-east-1"))
                })
                .await?,
            );
        }
        if round > 0 {
            for ((slot, cpu), (wall, used)) in samples.iter_mut().zip(cpu.iter_mut()).zip(times) {
                slot.1.push(wall);
                cpu.push(used);
            }
        }
    }
    report(samples);
    println!(
        "\nCPU time (user + system; gate and the in-process server, or the CLI and the \
         server), median: {}",
        cpu.into_iter()
            .map(|c| secs(median(c)))
            .collect::<Vec<_>>()
            .join(" vs ")
    );
    Ok(())
}

fn report(samples: Vec<(&str, Vec<Duration>)>) {
    println!("| tool | median | samples |\n|---|---|---|");
    for (name, times) in samples {
        let all: Vec<String> = times.iter().map(|t| secs(*t)).collect();
        println!("| {name} | {} | {} |", secs(median(times)), all.join(", "));
    }
}
