//! `gate init`: a commented config assembled from one example section per backend.
//!
//! [`EXAMPLES`] holds a working, commented section for every built-in backend. `gate init
//! --provider X --deployer Y --tester Z` puts three of them together; the generated
//! reference (docs/backends/) shows each one as its backend's complete example. A test
//! runs `gate plan` on every combination and every page, so an example that stops
//! parsing fails CI.

/// One backend's example: its section, its registry name and the TOML of its section
/// (header included), commented.
#[derive(Debug, Clone, Copy)]
pub struct Example {
    /// The config section, e.g. `provider`, or `transport.ssh`.
    pub section: &'static str,
    /// The backend's registry name.
    pub backend: &'static str,
    /// One line saying what it is.
    pub summary: &'static str,
    /// The section's TOML.
    pub toml: &'static str,
}

/// The `[run]` section every assembled config starts with.
pub const RUN: &str = r#"[run]
state_dir = ".gate"          # run.json, inventory.json, the ledger (resources.jsonl), logs/
artifacts_dir = "artifacts"  # results/*.xml, per-host files, report.html
concurrency = 10             # hosts worked on at once
# keys_file = "https://keys.example/ci.pub"   # public keys every host must authorize
"#;

/// The example section of every built-in backend.
pub const EXAMPLES: &[Example] = &[
    Example {
        section: "provider",
        backend: "local",
        summary: "hosts are directories on this machine (no cloud, no root)",
        toml: r#"[provider]
backend = "local"
hosts = 3                    # host-1 is the primary
# root = "/var/tmp/gate"     # where host directories go; default: the system temp dir
setup = "mkdir -p etc logs"  # runs in each new host, like cloud-init user data
"#,
    },
    Example {
        section: "provider",
        backend: "static",
        summary: "fixed lab hosts over SSH, each reserved for one run at a time",
        toml: r#"[provider]
backend = "static"
lock_dir = "/var/lock/gate-reservation"   # the reservation lives on each host
reservation_ttl_secs = 86400

[[provider.hosts]]           # the primary first
name = "lab-1"
address = "10.0.0.11"
user = "root"
labels = ["infra"]

[[provider.hosts]]
name = "lab-2"
address = "10.0.0.12"
labels = ["compute"]

# [provider.rekick]          # reinstall each host before use
# run = ["/usr/local/bin/rekick", "--wait"]
"#,
    },
    Example {
        section: "provider",
        backend: "pubcloud",
        summary: "OpenStack Nova servers, with region fallback",
        toml: r#"[provider]
backend = "pubcloud"
cloud = "public"                  # a clouds.yaml entry; default: $OS_CLOUD, else OS_*
hosts = 1
flavor = "general1-8"             # rpc-gating's FLAVOR
image = "Ubuntu 24.04"            # rpc-gating's IMAGE
regions = ["DFW", "ORD"]          # REGIONS: shuffled, tried one after another
fallback_regions = ["IAD"]        # FALLBACK_REGIONS: tried after every region failed
# name = "my-aio"                 # INSTANCE_NAME; default: the run id
protected = ["gate-keep-*"]       # gate sweep never touches these names

[provider.api]
tries = 10                        # 5xx, 429 and connection errors are retried
"#,
    },
    Example {
        section: "provider",
        backend: "heat",
        summary: "one Heat stack per run; hosts from a stack output",
        toml: r#"[provider]
backend = "heat"
cloud = "public"
template = "stacks/aio.yaml"       # a HOT template with a `hosts` output
hosts_output = "hosts"             # [{name, address} | {name, server}], primary first
user_data_parameter = "user_data"  # gate's cloud-config with root's keys goes here

[provider.parameters]
flavor = "general1-8"
image = "Ubuntu 24.04"
"#,
    },
    Example {
        section: "provider",
        backend: "onmetal",
        summary: "bare metal, through Nova or a standalone Ironic",
        toml: r#"[provider]
backend = "onmetal"
mode = "ironic"                    # or "nova", with cloud, flavor, image, networks
endpoint = "http://ironic.lab:6385"
resource_class = "baremetal-large" # or nodes = ["node-1", "node-2"]
hosts = 2
image_source = "http://images.lab/ubuntu-24.04.qcow2"
"#,
    },
    Example {
        section: "agent",
        backend: "jenkins",
        summary: "makes the primary a Jenkins node for the later stages",
        toml: r#"[agent]
backend = "jenkins"
url = "https://jenkins.example/"
user = "gate-bot"
token = { env = "JENKINS_TOKEN" }  # a secret: masked everywhere
launcher = "ssh"                   # Jenkins logs in with these credentials
credentials_id = "lab-root-key"
labels = ["single_use_slave"]
"#,
    },
    Example {
        section: "agent",
        backend: "monitoring",
        summary: "registers every host with a monitoring REST API",
        toml: r#"[agent]
backend = "monitoring"
url = "https://monitoring.example/v1.0/123456/"
token = { env = "MONITORING_TOKEN" }
hosts = "all"

[[agent.resources]]
kind = "entity"
label = "{run_id}-{name}"
create = "entities"
body = '{"label": "{label}", "ip_addresses": {"default": "{address}"}}'
id_from = "location"
delete = "entities/{id}"
"#,
    },
    Example {
        section: "validator",
        backend: "hosts",
        summary: "every host reachable and clean before anything is installed",
        toml: r#"[validator]
backend = "hosts"
reach_timeout_secs = 60
markers = ["/etc/openstack_deploy"]   # leftovers of an earlier deploy must be absent
commands = ["python3", "git"]
disk = [{ path = "/", min_free = "20G" }]
"#,
    },
    Example {
        section: "preparer",
        backend: "steps",
        summary: "ordered steps: keys, SSH mesh, packages, Ansible, networking, devices, scripts",
        toml: r#"[preparer]
backend = "steps"

[[preparer.steps]]
type = "authorized-keys"             # the keys file's keys and the run's key

[[preparer.steps]]
type = "packages"
packages = ["git", "python3-venv"]

[[preparer.steps]]
type = "script"
name = "motd"
script = 'echo "gate run $GATE_RUN_ID" > /etc/motd'
"#,
    },
    Example {
        section: "deployer",
        backend: "script",
        summary: "your own steps for prepare-deployment, deploy and upgrade",
        toml: r#"[deployer]
backend = "script"
hosts = "all"
env = { RELEASE = "27.1.0" }       # values reach scripts through the environment

[[deployer.prepare]]
name = "write the config"
script = 'mkdir -p etc && echo "release=$RELEASE" > etc/deploy.conf'

[[deployer.deploy]]
name = "deploy"
script = 'mkdir -p srv && echo "service at $RELEASE" > srv/service.txt'
"#,
    },
    Example {
        section: "deployer",
        backend: "hooks",
        summary: "the repository's own gating/<action>/{pre,run,post} hooks",
        toml: r#"[deployer]
backend = "hooks"
repo = "https://git.example/project.git"   # leave out when the repository is at `path`
version = "master"                         # rpc-gating's RPC_BRANCH / the PR ref
path = "project"
scenario = "functional"                    # RE_JOB_SCENARIO
"#,
    },
    Example {
        section: "deployer",
        backend: "osa",
        summary: "openstack-ansible (an AIO or multi-node)",
        toml: r#"[deployer]
backend = "osa"
version = "stable/2024.1"          # a branch, tag, commit, `latest` or `latest:PREFIX`
target = "aio"
scenario = "aio_lxc"
features = { ceph = false }        # feature flags add scenario tokens
variables = { tempest_run = true } # USER_VARS: written to user_zzz_gate_variables.yml
"#,
    },
    Example {
        section: "deployer",
        backend: "rpco",
        summary: "rpc-openstack, with its DEPLOY_* flags",
        toml: r#"[deployer]
backend = "rpco"
version = "master"                 # RPC_BRANCH
# upgrade_to = "latest:r17."       # an upgrade job's target
flags = { aio = true, elk = true, tempest = true }   # DEPLOY_AIO=yes, DEPLOY_ELK=yes, …
gating_variables = { maas_use_api = false }           # USER_VARS
"#,
    },
    Example {
        section: "tester",
        backend: "command",
        summary: "commands as test cases, JUnit from their exit codes",
        toml: r#"[tester]
backend = "command"
suite = "smoke"                    # -> artifacts/results/smoke.xml
hosts = "primary"

[[tester.tests]]
name = "the primary answers"
run = ["true"]

[[tester.tests]]
name = "hostname is set"
script = 'test -n "$(hostname)"'
"#,
    },
    Example {
        section: "tester",
        backend: "selenium",
        summary: "a Selenium suite against a URL (Horizon)",
        toml: r#"[tester]
backend = "selenium"
url = "https://172.29.236.100/"    # Horizon
python = "/opt/horizon-tests/bin/python"
cwd = "horizon-selenium"
tests = ["tests/test_login.py"]
"#,
    },
    Example {
        section: "tester",
        backend: "ceph",
        summary: "a Ceph functional suite on one host",
        toml: r#"[tester]
backend = "ceph"
cwd = "ceph-ansible"
script = 'py.test -v --junitxml="$GATE_RESULTS_DIR/ceph.xml" tests/functional'
"#,
    },
    Example {
        section: "tester",
        backend: "tempest",
        summary: "Tempest against the deployed cloud, subunit to JUnit",
        toml: r#"[tester]
backend = "tempest"
sets = ["smoke"]                   # or include = ["tempest.api.compute"], exclude = […]
concurrency = 4
services = { nova = true, neutron = true, cinder = false }

[tester.install]
version = "47.0.0"                 # pip-installed into a virtualenv on the primary

[tester.auth]
url = "https://172.29.236.100:5000/v3"
admin_password = { env = "OS_ADMIN_PASSWORD" }
"#,
    },
    Example {
        section: "publisher",
        backend: "s3",
        summary: "a directory of the primary to S3",
        toml: r#"[publisher]
backend = "s3"
source = "/var/www/repo"            # on the primary
bucket = "gate-artifacts"
prefix = "rpc-r27"
endpoint = "https://s3.example.com" # omit for AWS
access_key = { env = "S3_ACCESS_KEY" }
secret_key = { env = "S3_SECRET_KEY" }
"#,
    },
    Example {
        section: "publisher",
        backend: "repo-server",
        summary: "a directory of the primary to a repo server over SFTP or rsync",
        toml: r#"[publisher]
backend = "repo-server"
source = "/var/www/repo"
host = "repo.example.com"
user = "publish"
key = "/etc/gate/repo_key"
known_hosts = "/etc/gate/repo_known_hosts"   # the server's pinned host key
dir = "/srv/artifacts"
series = "r27"
method = "sftp"                              # or "rsync"
"#,
    },
    Example {
        section: "archiver",
        backend: "streamed",
        summary: "one tar stream per host into artifacts/<host>/ (the default)",
        toml: r#"[archiver]
backend = "streamed"
paths = ["/var/log", "/etc/openstack_deploy"]   # absolute, or relative to the home
max_host_mb = 200
"#,
    },
    Example {
        section: "archiver",
        backend: "plain",
        summary: "plain copies into artifacts/<host>/",
        toml: r#"[archiver]
backend = "plain"
paths = ["etc", "logs"]
"#,
    },
    Example {
        section: "transport.ssh",
        backend: "ssh",
        summary: "how gate reaches hosts over SSH",
        toml: r#"[transport.ssh]
agent = false                 # use ssh-agent keys too
strict = false                # true: only hosts already in known_hosts
connect_timeout_secs = 30
"#,
    },
];

/// The example of `backend` in `section`.
pub fn example(section: &str, backend: &str) -> Option<&'static Example> {
    EXAMPLES
        .iter()
        .find(|e| e.section == section && e.backend == backend)
}

/// The backends with an example in `section`, for `--provider` and friends.
pub fn choices(section: &str) -> Vec<&'static str> {
    EXAMPLES
        .iter()
        .filter(|e| e.section == section)
        .map(|e| e.backend)
        .collect()
}

fn pick(section: &str, flag: &str, name: &str) -> Result<&'static Example, String> {
    example(section, name).ok_or_else(|| {
        format!(
            "--{flag} {name}: unknown {section}; choose one of: {}",
            choices(section).join(", ")
        )
    })
}

/// A commented config for `provider` with an optional deployer and tester; an unknown
/// name is an error listing the choices.
pub fn assemble(
    provider: &str,
    deployer: Option<&str>,
    tester: Option<&str>,
) -> Result<String, String> {
    let provider = pick("provider", "provider", provider)?;
    let deployer = deployer
        .map(|name| pick("deployer", "deployer", name))
        .transpose()?;
    let tester = tester
        .map(|name| pick("tester", "tester", name))
        .transpose()?;
    let names: Vec<&str> = [Some(provider), deployer, tester]
        .into_iter()
        .flatten()
        .map(|e| e.backend)
        .collect();
    let mut out = format!(
        "# gate config: {}. Written by `gate init`.\n\
         # Check it with `gate plan`, run it with `gate run`; every key is in docs/reference.md.\n\
         # Any value can be overridden: GATE__SECTION__KEY=value or --set section.key=value.\n\n{RUN}",
        names.join(" + ")
    );
    for example in [Some(provider), deployer, tester].into_iter().flatten() {
        out.push_str(&format!("\n# {}: {}\n", example.backend, example.summary));
        out.push_str(example.toml);
    }
    if deployer.is_none() {
        out.push_str("\n# [deployer]: none (prepare-deployment, deploy and upgrade are skipped); see `gate init --help`\n");
    }
    if tester.is_none() {
        out.push_str("\n# [tester]: none (test is skipped)\n");
    }
    let paths = if provider.backend == "local" {
        r#"["etc", "logs"]"#
    } else {
        r#"["/var/log"]"#
    };
    out.push_str(&format!(
        "\n# archive always runs (default `streamed`): what to keep from each host\n\
         [archiver]\npaths = {paths}\n"
    ));
    Ok(out)
}
