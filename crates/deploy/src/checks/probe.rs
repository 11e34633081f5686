//! The probe loop on the primary: started detached (commands on one host's transport run
//! one at a time, and the upgrade needs it), stopped with a stop file, its timeline fetched.
//!
//! Every round runs all probes at once and appends one line per probe to `probes.log`:
//! `EPOCH_MS INDEX ok|fail`. Targets reach the script as positional arguments only.

use std::path::Path;
use std::time::{Duration, Instant};

use gate_core::{Command, Error, Result};

use crate::checks::config::Probe;
use crate::host::HostSteps;

/// The loop: `probe DIR INTERVAL TIMEOUT LIFETIME (KIND A B)…`.
const LOOP: &str = r#"
dir=$1 interval=$2 timeout=$3 lifetime=$4
shift 4
args=("$@")
trap 'touch "$dir/done"' EXIT
probe() {
    local idx=$1 kind=$2 a=$3 b=$4 ts state=fail code
    ts=$(date +%s%3N)
    case $kind in
    ping)
        ping -n -q -c 1 -W "$timeout" "$a" >/dev/null 2>&1 && state=ok ;;
    tcp)
        timeout "$timeout" bash -c 'exec 3<>"/dev/tcp/$1/$2"' probe "$a" "$b" >/dev/null 2>&1 && state=ok ;;
    http)
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time "$timeout" --url "$a" 2>/dev/null) || true
        code=${code:-000}
        if [ -n "$b" ]; then
            case " $b " in *" $code "*) state=ok ;; esac
        elif [ "$code" -ge 100 ] && [ "$code" -lt 400 ]; then
            state=ok
        fi ;;
    esac
    printf '%s %s %s\n' "$ts" "$idx" "$state" >> "$dir/probes.log"
}
end=$(( $(date +%s) + lifetime ))
while [ ! -e "$dir/stop" ] && [ "$(date +%s)" -lt "$end" ]; do
    for ((i = 0; i < ${#args[@]}; i += 3)); do
        probe $((i / 3)) "${args[i]}" "${args[i+1]}" "${args[i+2]}" &
    done
    sleep "$interval"
    wait
done
"#;

/// Starts `LOOP` in its own session with every stream redirected, and returns at once.
const LAUNCH: &str = r#"
script=$1
shift
rm -rf -- "$1"
mkdir -p -- "$1"
: > "$1/probes.log"
setsid bash -c "$script" gate-probe "$@" > "$1/probe.out" 2>&1 < /dev/null &
echo "probes started in $1"
"#;

/// Waits for the loop to notice the stop file.
const STOP: &str = r#"
touch -- "$1/stop"
for _ in $(seq 1 "$2"); do
    [ -e "$1/done" ] && exit 0
    sleep 0.1
done
echo "the probe loop did not stop" >&2
exit 1
"#;

/// A running probe loop.
#[derive(Debug)]
pub struct Running {
    dir: String,
    count: usize,
    wait_limit: Duration,
}

/// Starts `probes` on the primary in `dir` (relative to its home), one round every
/// `interval`, each probe limited to `timeout`, the loop ending by itself after
/// `lifetime` should gate never stop it. Returns once every probe has reported once.
pub async fn start(
    primary: &HostSteps,
    dir: &str,
    probes: &[Probe],
    interval: Duration,
    timeout: Duration,
    lifetime: Duration,
) -> Result<Running> {
    let mut cmd = Command::script(LAUNCH)
        .arg("gate-probes")
        .arg(LOOP)
        .arg(dir);
    cmd = cmd
        .arg(format!(
            "{}.{:03}",
            interval.as_secs(),
            interval.subsec_millis()
        ))
        .arg(timeout.as_secs().max(1).to_string())
        .arg(lifetime.as_secs().to_string());
    for probe in probes {
        cmd = cmd.args(probe.target.script_args());
    }
    primary
        .step(
            "start the upgrade probes",
            &cmd.timeout(Duration::from_secs(60)),
        )
        .await?;
    let running = Running {
        dir: dir.to_owned(),
        count: probes.len(),
        wait_limit: interval + timeout + Duration::from_secs(10),
    };
    // The first round is the baseline: the upgrade starts once every probe has answered.
    let deadline = Instant::now() + running.wait_limit;
    loop {
        let out = primary
            .probe(&Command::new("cat").arg(format!("{dir}/probes.log")))
            .await?;
        let seen: std::collections::BTreeSet<&str> = out
            .stdout
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .collect();
        if seen.len() >= probes.len() {
            return Ok(running);
        }
        if Instant::now() > deadline {
            running.stop(primary).await.ok();
            return Err(Error::Host {
                host: primary.name().to_owned(),
                message: format!(
                    "the upgrade probes did not report within {}s",
                    running.wait_limit.as_secs()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Running {
    /// How many probes run.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Stops the loop and waits until it has ended.
    pub async fn stop(&self, primary: &HostSteps) -> Result<()> {
        let tries = (self.wait_limit.as_millis() / 100).max(1);
        primary
            .step(
                "stop the upgrade probes",
                &Command::script(STOP)
                    .arg("gate-probes")
                    .arg(&self.dir)
                    .arg(tries.to_string())
                    .timeout(self.wait_limit + Duration::from_secs(30)),
            )
            .await
            .map(|_| ())
    }

    /// Copies the raw timeline to `local`, then removes the loop's directory on the host.
    pub async fn fetch(&self, primary: &HostSteps, local: &Path) -> Result<()> {
        primary
            .transport()
            .download(&format!("{}/probes.log", self.dir), local)
            .await?;
        primary
            .probe(&Command::new("rm").args(["-rf", "--"]).arg(&self.dir))
            .await?;
        Ok(())
    }
}
