//! The agent's side of the primary host, over its transport: a Java runtime, the agent
//! user (the keys file in its `authorized_keys`, passwordless sudo), the remote root, sshd
//! hardening, and for the inbound launcher `agent.jar` started as a detached service.
//!
//! Every script is fixed text; values reach it as positional arguments.

use std::path::Path;
use std::time::Duration;

use gate_core::transport::ExecOutput;
use gate_core::{Command, Error, HostIo, Result, Secret, Transport, TransportExt};

/// Makes sure `$java` runs, installing `$@` (after the first 2 arguments) when it does not.
const JAVA: &str = r#"
java=$1; shift
if ! command -v "$java" >/dev/null 2>&1; then
    if [ $# -eq 0 ]; then
        echo "no Java runtime: \`$java\` is not on PATH and java_packages is empty" >&2; exit 3
    fi
    echo "installing $* for the Java runtime"
    if command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get -o Acquire::Retries=3 -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "$@" \
          || { apt-get -o Acquire::Retries=3 update && apt-get -o Acquire::Retries=3 -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "$@"; }
    elif command -v dnf >/dev/null 2>&1; then
        dnf install -y "$@"
    else
        echo "no Java runtime and neither apt-get nor dnf to install $*" >&2; exit 3
    fi
    command -v "$java" >/dev/null 2>&1 || { echo "\`$java\` is still missing after installing $*" >&2; exit 3; }
fi
"$java" -version 2>&1 | head -n 1 | sed 's/^/java: /'
"#;

/// The agent user `$1` with home and remote root `$2`, passwordless sudo, and the keys
/// `$3…` in its `authorized_keys` (existing lines kept, each key once).
const USER: &str = r#"
user=$1 root=$2; shift 2
if ! id -u "$user" >/dev/null 2>&1; then
    useradd --system --create-home --home-dir "$root" --shell /bin/bash "$user"
    echo "created user $user"
fi
group=$(id -gn "$user")
home=$(getent passwd "$user" | cut -d: -f6)
mkdir -p -- "$root" "$home/.ssh"
chown "$user:$group" -- "$root" "$home" "$home/.ssh"
chmod 700 -- "$home/.ssh"
keys=$home/.ssh/authorized_keys
touch -- "$keys"
for key in "$@"; do
    blob=$(printf '%s\n' "$key" | awk '{print $2}')
    grep -qF -- "$blob" "$keys" || printf '%s\n' "$key" >> "$keys"
done
chown "$user:$group" -- "$keys"; chmod 600 -- "$keys"
mkdir -p /etc/sudoers.d
sudoers=/etc/sudoers.d/gate-agent-$user
printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$user" > "$sudoers.new"
chmod 440 -- "$sudoers.new"
if command -v visudo >/dev/null 2>&1; then visudo -cqf "$sudoers.new"; fi
mv -f -- "$sudoers.new" "$sudoers"
echo "user $user: $(grep -c . "$keys") key(s), passwordless sudo, root $root"
"#;

/// Sets `PasswordAuthentication no` (and no keyboard-interactive or empty passwords) at
/// the top of the sshd config `$1`, where sshd takes the first value it reads, checks the
/// result with `sshd -t` and reloads sshd.
const SSHD: &str = r#"
conf=$1
[ -f "$conf" ] || { echo "sshd config $conf does not exist" >&2; exit 3; }
begin='# BEGIN gate agent hardening' end='# END gate agent hardening'
{
    printf '%s\n' "$begin" 'PasswordAuthentication no' 'KbdInteractiveAuthentication no' 'PermitEmptyPasswords no' "$end"
    sed "/^$begin\$/,/^$end\$/d" -- "$conf"
} > "$conf.gate-new"
sshd=$(command -v sshd || echo /usr/sbin/sshd)
"$sshd" -t -f "$conf.gate-new" || { rm -f -- "$conf.gate-new"; echo "sshd refuses the hardened config" >&2; exit 3; }
if cmp -s -- "$conf" "$conf.gate-new"; then rm -f -- "$conf.gate-new"; echo "sshd: already hardened"; exit 0; fi
chmod --reference="$conf" -- "$conf.gate-new"
mv -f -- "$conf.gate-new" "$conf"
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl reload ssh 2>/dev/null || systemctl reload sshd
elif [ -s /run/sshd.pid ] && kill -0 "$(cat /run/sshd.pid)" 2>/dev/null; then
    kill -HUP "$(cat /run/sshd.pid)"
fi
echo "sshd: password authentication off"
"#;

/// Installs the staged `agent.jar` (`$3`) and secret (`$4`) in the remote root `$2` for
/// user `$1`, then starts `$5 -jar agent.jar -url $6 -secret @file -name $7 -workDir $2`
/// as that user in a session of its own (`setsid nohup`), recording its pid, unless the
/// recorded one still runs.
const START: &str = r#"
user=$1 root=$2 jar=$3 secret=$4 java=$5 url=$6 name=$7
group=$(id -gn "$user")
install -o "$user" -g "$group" -m 644 -- "$jar" "$root/agent.jar"
install -o "$user" -g "$group" -m 600 -- "$secret" "$root/.agent-secret"
rm -f -- "$jar" "$secret"
pidfile=$root/agent.pid
if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "the agent runs already (pid $(cat "$pidfile"))"; exit 0
fi
javabin=$(command -v "$java")
cd -- "$root"
setsid nohup runuser -u "$user" -- "$javabin" -jar "$root/agent.jar" -url "$url" \
    -secret "@$root/.agent-secret" -name "$name" -workDir "$root" \
    >>"$root/agent.log" 2>&1 </dev/null &
echo $! > "$pidfile"
echo "agent started (pid $!, log $root/agent.log)"
"#;

/// Stops the agent whose pid is in `$1` (its whole session) and removes the pidfile.
/// Prints `stopped` or `absent`.
const STOP: &str = r#"
pidfile=$1
[ -s "$pidfile" ] || { echo absent; exit 0; }
pid=$(cat "$pidfile")
if kill -0 "$pid" 2>/dev/null; then
    pkill -TERM -s "$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    pkill -KILL -s "$pid" 2>/dev/null || true
fi
rm -f -- "$pidfile"
echo stopped
"#;

/// How commands reach root on the host: directly, or through `sudo -n` for another user.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Privilege {
    sudo: bool,
}

impl Privilege {
    /// For `transport`'s login user.
    pub(crate) fn of(transport: &dyn Transport) -> Self {
        Self {
            sudo: transport.host().user != "root",
        }
    }

    /// `script` run by bash as root, with `args` as `$1…`.
    pub(crate) fn script<I, S>(self, script: &str, args: I, timeout: Duration) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let base = if self.sudo {
            Command::new("sudo").args(["-n", "bash"])
        } else {
            Command::new("bash")
        };
        base.args(["-euo", "pipefail", "-c", script, "gate"])
            .args(args)
            .timeout(timeout)
    }
}

/// What to set up on the host.
#[derive(Debug, Clone)]
pub(crate) struct HostSetup<'a> {
    pub(crate) user: &'a str,
    pub(crate) remote_root: &'a str,
    pub(crate) java: &'a str,
    pub(crate) java_packages: &'a [String],
    pub(crate) sshd_config: &'a str,
    pub(crate) keys: Vec<String>,
    pub(crate) timeout: Duration,
}

async fn run(
    transport: &dyn Transport,
    hio: &HostIo,
    cmd: &Command,
    what: &str,
) -> Result<ExecOutput> {
    transport.run(cmd, &hio.io()).await.map_err(|e| match e {
        Error::Command {
            host, status, tail, ..
        } => Error::Command {
            host,
            command: what.to_owned(),
            status,
            tail,
        },
        other => other,
    })
}

/// Java, the agent user with keys and sudo, the remote root, and sshd hardening.
pub(crate) async fn prepare(
    transport: &dyn Transport,
    hio: &HostIo,
    setup: &HostSetup<'_>,
) -> Result<()> {
    let root = Privilege::of(transport);
    let java_args =
        std::iter::once(setup.java.to_owned()).chain(setup.java_packages.iter().cloned());
    run(
        transport,
        hio,
        &root.script(JAVA, java_args, setup.timeout),
        "check (or install) the Java runtime",
    )
    .await?;
    let user_args = [setup.user.to_owned(), setup.remote_root.to_owned()]
        .into_iter()
        .chain(setup.keys.iter().cloned());
    run(
        transport,
        hio,
        &root.script(USER, user_args, setup.timeout),
        &format!("set up the agent user {}", setup.user),
    )
    .await?;
    if !setup.sshd_config.is_empty() {
        run(
            transport,
            hio,
            &root.script(SSHD, [setup.sshd_config], setup.timeout),
            "harden sshd",
        )
        .await?;
    }
    Ok(())
}

/// What the inbound agent needs.
#[derive(Debug, Clone)]
pub(crate) struct Inbound<'a> {
    pub(crate) user: &'a str,
    pub(crate) remote_root: &'a str,
    pub(crate) java: &'a str,
    pub(crate) controller: &'a str,
    pub(crate) node: &'a str,
    pub(crate) jar: &'a [u8],
    pub(crate) secret: &'a Secret,
    pub(crate) timeout: Duration,
}

/// The agent's pidfile under `remote_root`.
pub(crate) fn pidfile(remote_root: &str) -> String {
    format!("{}/agent.pid", remote_root.trim_end_matches('/'))
}

/// Uploads `agent.jar` and the secret (never on a command line) and starts the agent.
pub(crate) async fn start_inbound(
    transport: &dyn Transport,
    hio: &HostIo,
    agent: &Inbound<'_>,
) -> Result<()> {
    let staging =
        tempfile::tempdir().map_err(|e| Error::io("creating", std::env::temp_dir(), e))?;
    let jar = staging.path().join("agent.jar");
    write_private(&jar, agent.jar)?;
    let secret = staging.path().join("agent-secret");
    write_private(&secret, agent.secret.expose().as_bytes())?;
    let suffix = gate_core::model::random_hex(8);
    let remote_jar = format!("/tmp/gate-agent-{suffix}.jar");
    let remote_secret = format!("/tmp/gate-agent-{suffix}.secret");
    transport.upload(&jar, &remote_jar).await?;
    transport.upload(&secret, &remote_secret).await?;
    drop(staging);
    let root = Privilege::of(transport);
    run(
        transport,
        hio,
        &root.script(
            START,
            [
                agent.user,
                agent.remote_root,
                &remote_jar,
                &remote_secret,
                agent.java,
                agent.controller,
                agent.node,
            ],
            agent.timeout,
        ),
        "start the inbound agent",
    )
    .await?;
    Ok(())
}

/// Stops the agent recorded in `pidfile`; `true` when one was running.
pub(crate) async fn stop_inbound(
    transport: &dyn Transport,
    hio: &HostIo,
    pidfile: &str,
    timeout: Duration,
) -> Result<bool> {
    let root = Privilege::of(transport);
    let out = run(
        transport,
        hio,
        &root.script(STOP, [pidfile], timeout),
        "stop the inbound agent",
    )
    .await?;
    Ok(out.stdout.trim() == "stopped")
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("creating", path, e))?;
    file.write_all(bytes)
        .map_err(|e| Error::io("writing", path, e))
}
