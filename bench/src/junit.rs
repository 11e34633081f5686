//! subunit v2 → JUnit: gate's streaming converter (`gate junit convert`) against
//! python-subunit's `subunit2junitxml`, on generated streams; wall time and peak memory of
//! each, in one run. Not a test: see bench/RESULTS.md.
//!
//! ```sh
//! cargo build --release --locked -p gate-cli -p gate-bench
//! target/release/junit-bench --gate target/release/gate \
//!     --subunit2junitxml target/subunit-venv/bin/subunit2junitxml
//! ```
//!
//! Each tool runs as a child of a small measuring process (`junit-bench measure`), which
//! reads the child's peak resident memory from `getrusage(RUSAGE_CHILDREN)` after reaping
//! it; wall time is taken around the same wait. Both outputs are checked (test and
//! failure counts) before a number is kept.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use nix::sys::resource::{UsageWho, getrusage};

/// One test in twenty fails with a traceback (5%).
const FAILING_EVERY: u64 = 20;

#[derive(Debug)]
struct Options {
    gate: PathBuf,
    subunit2junitxml: PathBuf,
    tests: u64,
    big_mb: u64,
    reps: usize,
    python_big: bool,
    work: PathBuf,
    report: PathBuf,
}

fn usage() -> &'static str {
    "junit-bench [--gate PATH] [--subunit2junitxml PATH] [--tests N (100000)] [--big-mb MB (1024, 0: skip)]\n\
     \x20           [--reps N (3)] [--python-big] [--work DIR (target/bench/junit)] [--report FILE (target/bench/junit.md)]"
}

fn parse(args: &[String]) -> Result<Options, String> {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let venv =
        std::env::var("GATE_SUBUNIT_VENV").unwrap_or_else(|_| format!("{target}/subunit-venv"));
    let mut o = Options {
        gate: PathBuf::from(format!("{target}/release/gate")),
        subunit2junitxml: PathBuf::from(format!("{venv}/bin/subunit2junitxml")),
        tests: 100_000,
        big_mb: 1024,
        reps: 3,
        python_big: false,
        work: PathBuf::from(format!("{target}/bench/junit")),
        report: PathBuf::from(format!("{target}/bench/junit.md")),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{arg} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{arg}: {e}"));
        match arg.as_str() {
            "--gate" => o.gate = value()?.into(),
            "--subunit2junitxml" => o.subunit2junitxml = value()?.into(),
            "--tests" => o.tests = number(value()?)?,
            "--big-mb" => o.big_mb = number(value()?)?,
            "--reps" => o.reps = number(value()?)?.max(1) as usize,
            "--python-big" => o.python_big = true,
            "--work" => o.work = value()?.into(),
            "--report" => o.report = value()?.into(),
            "-h" | "--help" => return Err(usage().into()),
            other => return Err(format!("unknown argument {other}\n{}", usage())),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("measure") {
        measure(&args[1..])
    } else {
        parse(&args).and_then(|o| run(&o))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("junit-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---- the stream ------------------------------------------------------------------------

/// CRC-32 (IEEE), as subunit v2 uses it.
fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    !data.iter().fold(!0u32, |c, &b| {
        table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
    })
}

/// A subunit v2 variable-length number (1 to 4 bytes).
fn varint(out: &mut Vec<u8>, n: u32) {
    match n {
        0..0x40 => out.push(n as u8),
        0x40..0x4000 => out.extend_from_slice(&((n as u16) | 0x4000).to_be_bytes()),
        0x4000..0x40_0000 => out.extend_from_slice(&(n | 0x80_0000).to_be_bytes()[1..]),
        _ => out.extend_from_slice(&(n | 0xC000_0000).to_be_bytes()),
    }
}

fn text(out: &mut Vec<u8>, s: &[u8]) {
    varint(out, s.len() as u32);
    out.extend_from_slice(s);
}

/// One packet: `status` 2 inprogress, 3 success, 6 fail, 0 none; an optional attachment.
fn packet(out: &mut Vec<u8>, id: &str, status: u16, secs: u32, file: Option<(&str, &[u8])>) {
    let mut flags: u16 = 0x2000 | 0x0800 | 0x0200 | 0x0080 | status;
    let mut body = Vec::with_capacity(256 + file.map_or(0, |f| f.1.len()));
    body.extend_from_slice(&secs.to_be_bytes());
    varint(&mut body, 123_456);
    text(&mut body, id.as_bytes());
    varint(&mut body, 1);
    text(&mut body, b"worker-0");
    if let Some((name, bytes)) = file {
        flags |= 0x0020 | 0x0040 | 0x0010;
        text(&mut body, b"text/x-traceback;charset=utf8");
        text(&mut body, name.as_bytes());
        varint(&mut body, bytes.len() as u32);
        body.extend_from_slice(bytes);
    }
    // The length counts the whole packet: signature, flags, the length itself, CRC.
    let base = 1 + 2 + body.len() + 4;
    let length = if base + 1 < 0x40 {
        base + 1
    } else if base + 2 < 0x4000 {
        base + 2
    } else {
        base + 3
    };
    let start = out.len();
    out.push(0xB3);
    out.extend_from_slice(&flags.to_be_bytes());
    varint(out, length as u32);
    out.extend_from_slice(&body);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A traceback of about 1.3 KB, like a tempest API failure.
fn traceback(i: u64) -> Vec<u8> {
    format!(
        "Traceback (most recent call last):\n  File \"/opt/tempest/tempest/api/compute/servers/test_servers.py\", line {}, in test_case_{i}\n    self.assertEqual(200, resp.status)\n  File \"/usr/lib/python3/dist-packages/testtools/testcase.py\", line 415, in assertEqual\n    self.assertThat(observed, matcher, message)\n  File \"/usr/lib/python3/dist-packages/testtools/testcase.py\", line 502, in assertThat\n    raise mismatch_error\ntesttools.matchers._impl.MismatchError: 200 != 500: <html><body>Internal Server Error & \"quotes\" <br/></body></html>\n{}",
        100 + i % 900,
        "Captured pythonlogging:\n    2026-11-25 01:00:00,000 INFO [tempest.lib.common.rest_client] Request (ServersTestJSON:test_create_server): 500 POST http://127.0.0.1:8774/v2.1/servers 0.1s\n".repeat(5)
    )
    .into_bytes()
}

/// Writes a stream of `tests` tests (or, with `tests == 0`, of at least `min_bytes`) to
/// `path`; returns (tests, failing, bytes).
fn generate(path: &Path, tests: u64, min_bytes: u64) -> Result<(u64, u64, u64), String> {
    let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let (mut n, mut failing, mut bytes) = (0u64, 0u64, 0u64);
    let mut buf = Vec::with_capacity(8192);
    while (tests > 0 && n < tests) || (tests == 0 && bytes < min_bytes) {
        buf.clear();
        let id = format!(
            "tempest.api.compute.servers.test_servers{}.ServersTestJSON.test_case_{n}[id-{:08x}-0000-4000-8000-{:012x},smoke]",
            n % 97,
            n * 2_654_435_761 % 0xFFFF_FFFF,
            n
        );
        let secs = 1_700_000_000 + (n / 10) as u32;
        packet(&mut buf, &id, 2, secs, None);
        if n % FAILING_EVERY == 0 {
            packet(&mut buf, &id, 0, secs, Some(("traceback", &traceback(n))));
            packet(&mut buf, &id, 6, secs + 1, None);
            failing += 1;
        } else {
            packet(&mut buf, &id, 3, secs + 1, None);
        }
        w.write_all(&buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        bytes += buf.len() as u64;
        n += 1;
    }
    w.flush().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((n, failing, bytes))
}

// ---- measuring ---------------------------------------------------------------------------

/// `measure STDIN STDOUT PROGRAM ARGS…`: runs the program once, prints
/// `<wall seconds> <peak RSS KiB> <exit code> <CPU seconds, user + system>`.
fn measure(args: &[String]) -> Result<(), String> {
    let [stdin, stdout, program, rest @ ..] = args else {
        return Err("measure STDIN STDOUT PROGRAM ARGS…".into());
    };
    let open = |p: &str| File::open(p).map_err(|e| format!("{p}: {e}"));
    let stdin = if stdin == "-" {
        Stdio::null()
    } else {
        open(stdin)?.into()
    };
    let stdout: Stdio = if stdout == "-" {
        Stdio::null()
    } else {
        File::create(stdout)
            .map_err(|e| format!("{stdout}: {e}"))?
            .into()
    };
    let start = Instant::now();
    let status = Command::new(program)
        .args(rest)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("{program}: {e}"))?;
    let wall = start.elapsed().as_secs_f64();
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).map_err(|e| e.to_string())?;
    let cpu = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    println!(
        "{wall:.3} {} {} {:.3}",
        usage.max_rss(),
        status.code().unwrap_or(-1),
        cpu(usage.user_time()) + cpu(usage.system_time())
    );
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: f64,
    cpu: f64,
    rss_kib: i64,
}

/// Runs one conversion under `junit-bench measure` and checks its exit code (one of
/// `codes`) and its output's counts (`want`: tests, failures).
fn sample(
    stdin: &str,
    output: &Path,
    program: &Path,
    args: &[&str],
    codes: &[&str],
    want: (u64, u64),
) -> Result<Sample, String> {
    let _ = std::fs::remove_file(output);
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let stdout = if stdin == "-" {
        "-".to_owned()
    } else {
        output.display().to_string()
    };
    let out = Command::new(me)
        .arg("measure")
        .arg(stdin)
        .arg(&stdout)
        .arg(program)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let fields: Vec<&str> = line.split(' ').collect();
    let [wall, rss, code, cpu] = fields.as_slice() else {
        return Err(format!(
            "measure said {line:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    };
    if !codes.contains(code) {
        return Err(format!("{} exited {code}", program.display()));
    }
    let counts = gate_core::junit::read_counts(output).map_err(|e| e.to_string())?;
    if (counts.tests, counts.failures) != want {
        return Err(format!(
            "{}: {} tests, {} failures; want {want:?}",
            output.display(),
            counts.tests,
            counts.failures
        ));
    }
    Ok(Sample {
        wall: wall.parse().map_err(|_| format!("wall {wall}"))?,
        cpu: cpu.parse().map_err(|_| format!("cpu {cpu}"))?,
        rss_kib: rss.parse().map_err(|_| format!("rss {rss}"))?,
    })
}

fn median(samples: &[Sample]) -> Sample {
    let mid = |f: fn(&Sample) -> f64| {
        let mut v: Vec<f64> = samples.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Sample {
        wall: mid(|s| s.wall),
        cpu: mid(|s| s.cpu),
        rss_kib: samples.iter().map(|s| s.rss_kib).max().unwrap_or(0),
    }
}

fn mib(kib: i64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn list(samples: &[Sample], f: fn(&Sample) -> f64) -> String {
    samples
        .iter()
        .map(|s| format!("{:.2}", f(s)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn gate_args(gate: &Path, input: &Path, out: &Path) -> (PathBuf, Vec<String>) {
    let args = ["junit", "convert", "--suite", "bench"]
        .iter()
        .map(|a| (*a).to_owned())
        .chain([input.display().to_string(), out.display().to_string()])
        .collect();
    (gate.to_owned(), args)
}

/// gate reads its input itself and writes the JUnit file named on its command line; it
/// must exit 0. subunit2junitxml reads stdin and writes stdout; it exits 1 when the stream
/// has failures (as these do), so 0 and 1 are accepted: the counts are checked either way.
fn run_gate(o: &Options, input: &Path, out: &Path, want: (u64, u64)) -> Result<Sample, String> {
    let (program, args) = gate_args(&o.gate, input, out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sample("-", out, &program, &args, &["0"], want)
}

fn run_python(o: &Options, input: &Path, out: &Path, want: (u64, u64)) -> Result<Sample, String> {
    let input = input.display().to_string();
    sample(&input, out, &o.subunit2junitxml, &[], &["0", "1"], want)
}

// ---- the run ----------------------------------------------------------------------------

fn run(o: &Options) -> Result<(), String> {
    for tool in [&o.gate, &o.subunit2junitxml] {
        if !tool.exists() {
            return Err(format!(
                "{} is missing (see bench/RESULTS.md for how to build it)",
                tool.display()
            ));
        }
    }
    std::fs::create_dir_all(&o.work).map_err(|e| format!("{}: {e}", o.work.display()))?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut report = format!(
        "Machine: {} cores, load average at start {}.\n\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split(' ').take(3).collect::<Vec<_>>().join(" ")
    );

    let small = o.work.join("small.subunit");
    let (tests, failing, bytes) = generate(&small, o.tests, 0)?;
    eprintln!("stream: {tests} tests, {failing} with tracebacks, {bytes} bytes");
    let want = (tests, failing);
    let (gate_out, py_out) = (o.work.join("gate.xml"), o.work.join("python.xml"));
    let (mut gate, mut python) = (Vec::new(), Vec::new());
    for rep in 0..o.reps {
        // Interleaved, so both see the same machine.
        gate.push(run_gate(o, &small, &gate_out, want)?);
        python.push(run_python(o, &small, &py_out, want)?);
        eprintln!(
            "round {}: gate {:.2}s ({:.2}s CPU), subunit2junitxml {:.2}s ({:.2}s CPU)",
            rep + 1,
            gate[rep].wall,
            gate[rep].cpu,
            python[rep].wall,
            python[rep].cpu
        );
    }
    let (g, p) = (median(&gate), median(&python));
    report.push_str(&format!(
        "#### {tests} tests ({failing} failing with a ~1.3 KB traceback), {:.1} MB stream, median of {}\n\n\
         | converter | wall (median) | wall samples (s) | CPU user+sys (median) | CPU samples (s) | peak RSS |\n\
         |---|---|---|---|---|---|\n\
         | gate `junit convert` | {:.2} s | {} | {:.2} s | {} | {} |\n\
         | `subunit2junitxml` | {:.2} s | {} | {:.2} s | {} | {} |\n\n\
         gate: **{:.0}×** faster in wall time, **{:.0}×** less CPU, **{:.0}×** less memory.\n\n",
        bytes as f64 / 1e6,
        o.reps,
        g.wall,
        list(&gate, |s| s.wall),
        g.cpu,
        list(&gate, |s| s.cpu),
        mib(g.rss_kib),
        p.wall,
        list(&python, |s| s.wall),
        p.cpu,
        list(&python, |s| s.cpu),
        mib(p.rss_kib),
        p.wall / g.wall,
        p.cpu / g.cpu.max(0.001),
        p.rss_kib as f64 / g.rss_kib.max(1) as f64,
    ));

    if o.big_mb > 0 {
        let big = o.work.join("big.subunit");
        let (btests, bfailing, bbytes) = generate(&big, 0, o.big_mb << 20)?;
        eprintln!("big stream: {btests} tests, {bbytes} bytes");
        let bwant = (btests, bfailing);
        let gb = run_gate(o, &big, &gate_out, bwant)?;
        let row = |tool: &str, size: String, s: &Sample| {
            format!(
                "| {tool} | {size} | {:.2} s | {:.2} s | {} |\n",
                s.wall,
                s.cpu,
                mib(s.rss_kib)
            )
        };
        let small_size = format!("{:.1} MB ({tests} tests)", bytes as f64 / 1e6);
        let big_size = format!("{:.2} GB ({btests} tests)", bbytes as f64 / 1e9);
        report.push_str(&format!(
            "#### Peak memory against stream size\n\n\
             | converter | stream | wall | CPU user+sys | peak RSS |\n|---|---|---|---|---|\n{}{}",
            row("gate", small_size.clone(), &g),
            row("gate", big_size.clone(), &gb),
        ));
        if o.python_big {
            let pb = run_python(o, &big, &py_out, bwant)?;
            report.push_str(&row("`subunit2junitxml`", small_size, &p));
            report.push_str(&row("`subunit2junitxml`", big_size, &pb));
        }
        report.push('\n');
        let _ = std::fs::remove_file(&big);
    }
    let _ = std::fs::remove_file(&gate_out);
    let _ = std::fs::remove_file(&py_out);
    if let Some(dir) = o.report.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&o.report, &report).map_err(|e| format!("{}: {e}", o.report.display()))?;
    println!("{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_and_varints_match_the_spec() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let enc = |n| {
            let mut v = Vec::new();
            varint(&mut v, n);
            v
        };
        assert_eq!(enc(0x3F), [0x3F]);
        assert_eq!(enc(0x40), [0x40, 0x40]);
        assert_eq!(enc(0x3FFF), [0x7F, 0xFF]);
        assert_eq!(enc(0x4000), [0x80, 0x40, 0x00]);
    }
}
