//! The two stand-in programs of the simulator: `agent.jar` (served at `/jnlpJars/agent.jar`)
//! and a `java` that runs it.

/// What `/jnlpJars/agent.jar` serves: a bash script standing in for Jenkins' remoting
/// agent. It takes the real agent's options (`-url`, `-secret` or `-secret @FILE`,
/// `-name`, `-workDir`) and holds one connection to the simulator, which keeps the node
/// online while it lasts — as the real agent's connection does.
pub const AGENT_JAR: &str = r#"#!/bin/bash
# gate's Jenkins simulator: a stand-in for agent.jar (run it with the stand-in java).
url= secret= name= work=
while [ $# -gt 0 ]; do
    case $1 in
        -url) url=$2; shift 2 ;;
        -secret) secret=$2; shift 2 ;;
        -name) name=$2; shift 2 ;;
        -workDir) work=$2; shift 2 ;;
        *) shift ;;
    esac
done
case $secret in @*) secret=$(cat -- "${secret#@}") ;; esac
if [ -z "$url" ] || [ -z "$name" ] || [ -z "$secret" ]; then
    echo "agent: -url, -name and -secret are required" >&2; exit 2
fi
echo "agent: $name connecting to $url (workDir ${work:-none})"
printf 'X-Agent-Secret: %s\n' "$secret" |
    curl -sS -N --fail -X POST -H @- "${url%/}/gate-sim/agent/$name"
echo "agent: disconnected ($?)"
"#;

/// A stand-in for a Java runtime (no JRE can be installed here): `java -version` answers
/// like one, and `java [options] -jar FILE ARGS…` runs FILE with bash — the simulator's
/// `agent.jar` is such a script. Tests install it as `/usr/local/bin/java` on a fleet host.
pub const JAVA: &str = r#"#!/bin/bash
# gate's test stand-in for java: runs the Jenkins simulator's agent.jar (a bash script).
if [ "${1:-}" = -version ]; then
    echo 'openjdk version "17.0.99" 2099-01-01 (gate stand-in)' >&2; exit 0
fi
while [ $# -gt 0 ]; do
    case $1 in
        -jar) jar=$2; shift 2; exec bash "$jar" "$@" ;;
        *) shift ;;
    esac
done
echo "usage: java -jar FILE [ARGS]" >&2; exit 2
"#;
