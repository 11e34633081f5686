//! The settings of each preparer step type.

use std::collections::BTreeMap;
use std::path::PathBuf;

use gate_core::EnvValue;
use serde::Deserialize;

use crate::size::Size;

/// `authorized-keys`: the run's keys into `authorized_keys` on the hosts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizedKeysStep {
    /// The file; relative paths are under the login user's `$HOME`. Default
    /// `$HOME/.ssh/authorized_keys`.
    #[serde(default)]
    pub path: Option<String>,
}

/// Where the primary learns the other hosts' SSH host keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KnownHosts {
    /// Read each host's public host key files over its own transport (no trust on first
    /// use).
    #[default]
    HostKeys,
    /// `ssh-keyscan` from the primary.
    Scan,
}

/// `ssh-mesh`: a key pair on the primary whose public key every host authorizes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshMeshStep {
    /// The private key on the primary (created with `ssh-keygen` unless present); relative
    /// to `$HOME`. Default `.ssh/id_ed25519`.
    #[serde(default = "default_mesh_key")]
    pub key: String,
    /// The user the primary logs in as on the others. Default: each host's login user.
    #[serde(default)]
    pub user: Option<String>,
    /// The `authorized_keys` file on every host. Default `$HOME/.ssh/authorized_keys`.
    #[serde(default)]
    pub authorized_keys: Option<String>,
    /// How the primary's `known_hosts` is filled: `host-keys` (default) or `scan`.
    #[serde(default)]
    pub known_hosts: KnownHosts,
    /// The host key files read with `known_hosts = "host-keys"` (those present are used).
    #[serde(default = "default_host_key_files")]
    pub host_key_files: Vec<String>,
    /// Write a `Host` block per host into the primary's `~/.ssh/config`, so `ssh NAME`
    /// works. Default true.
    #[serde(default = "yes")]
    pub ssh_config: bool,
    /// Prove the mesh by running `ssh … true` from the primary to every other host.
    /// Default true.
    #[serde(default = "yes")]
    pub verify: bool,
}

fn default_mesh_key() -> String {
    ".ssh/id_ed25519".into()
}

fn default_host_key_files() -> Vec<String> {
    ["ed25519", "ecdsa", "rsa"]
        .iter()
        .map(|t| format!("/etc/ssh/ssh_host_{t}_key.pub"))
        .collect()
}

fn yes() -> bool {
    true
}

/// The package manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Manager {
    /// `apt-get` where present, else `dnf`.
    #[default]
    Auto,
    /// Debian and Ubuntu.
    Apt,
    /// Fedora, CentOS Stream, Rocky.
    Dnf,
}

/// A package mirror that replaces the host's configured sources.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// The repository URL.
    pub url: String,
    /// apt: the suite, e.g. `bookworm`, or `./` for a flat repository. Default: the host's
    /// `VERSION_CODENAME`.
    #[serde(default)]
    pub suite: Option<String>,
    /// apt: the components. Default `["main"]` (none for a flat repository).
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    /// Accept it unsigned (`[trusted=yes]`, `gpgcheck=0`). Default false.
    #[serde(default)]
    pub trusted: bool,
}

fn default_components() -> Vec<String> {
    vec!["main".into()]
}

/// `packages`: install packages with apt or dnf.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackagesStep {
    /// The packages.
    pub packages: Vec<String>,
    /// `auto` (default), `apt` or `dnf`.
    #[serde(default)]
    pub manager: Manager,
    /// Use only this mirror.
    #[serde(default)]
    pub mirror: Option<Mirror>,
    /// Attempts of the whole install. Default 3.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Pause between attempts. Default 10.
    #[serde(default = "default_retry_delay")]
    pub retry_delay_secs: u64,
}

fn default_retries() -> u32 {
    3
}

fn default_retry_delay() -> u64 {
    10
}

/// `ansible`: a pinned `ansible-core` in a Python virtualenv.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnsibleStep {
    /// The exact `ansible-core` version, e.g. `2.17.7`.
    pub version: String,
    /// The virtualenv. Default `/opt/ansible-runtime`.
    #[serde(default = "default_venv")]
    pub venv: String,
    /// The Python that creates it. Default `python3`.
    #[serde(default = "default_python")]
    pub python: String,
    /// A package index mirror (`pip --index-url`); may be a secret (a URL with a token).
    #[serde(default)]
    pub index_url: Option<EnvValue>,
    /// A directory or page of wheels (`pip --find-links`); alone, pip uses only it. May be
    /// a secret.
    #[serde(default)]
    pub find_links: Option<EnvValue>,
    /// More requirements installed beside it, e.g. `["netaddr==1.3.0"]`.
    #[serde(default)]
    pub extra: Vec<String>,
    /// Attempts of the install. Default 3.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Pause between attempts. Default 10.
    #[serde(default = "default_retry_delay")]
    pub retry_delay_secs: u64,
}

fn default_venv() -> String {
    "/opt/ansible-runtime".into()
}

fn default_python() -> String {
    "python3".into()
}

/// `networking`: a script (inline, or a local file uploaded and run) with values as
/// environment variables.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkingStep {
    /// A bash script.
    #[serde(default)]
    pub script: Option<String>,
    /// A local script file (a template filled from the environment when it runs).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Its environment (values may be secrets).
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
}

/// A file system to put on a prepared device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Filesystem {
    /// None: a raw block device (cinder LVM, ceph OSD).
    #[default]
    None,
    /// ext4.
    Ext4,
    /// XFS (swift).
    Xfs,
}

impl Filesystem {
    /// The `blkid` TYPE, if any.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Filesystem::None => None,
            Filesystem::Ext4 => Some("ext4"),
            Filesystem::Xfs => Some("xfs"),
        }
    }

    pub(crate) fn max_label(self) -> usize {
        match self {
            Filesystem::Xfs => 12,
            _ => 16,
        }
    }
}

/// A loop device backed by a file of `size`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopDevice {
    /// Names the backing file `<dir>/<name>.img` (letters, digits, `-`, `_`).
    pub name: String,
    /// Its size, e.g. `"10G"`.
    pub size: Size,
    /// `none` (default), `ext4` or `xfs`.
    #[serde(default)]
    pub filesystem: Filesystem,
    /// The file system label. Default: the name.
    #[serde(default)]
    pub label: Option<String>,
}

/// A physical device named by a stable path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedDevice {
    /// Under `/dev/`, preferably `/dev/disk/by-id/…` or `/dev/disk/by-path/…`.
    pub path: String,
    /// `none` (default), `ext4` or `xfs`.
    #[serde(default)]
    pub filesystem: Filesystem,
    /// The file system label.
    #[serde(default)]
    pub label: Option<String>,
    /// Wipe a device that carries a file system or partition table. Default false: such a
    /// device fails the step, untouched.
    #[serde(default)]
    pub wipe: bool,
}

/// `devices`: loop devices and named physical devices for cinder, swift or ceph.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesStep {
    /// Where loop backing files go. Default `/var/lib/gate/devices`.
    #[serde(default = "default_devices_dir")]
    pub dir: String,
    /// Loop devices.
    #[serde(default, rename = "loop")]
    pub loops: Vec<LoopDevice>,
    /// Named devices.
    #[serde(default, rename = "device")]
    pub devices: Vec<NamedDevice>,
}

fn default_devices_dir() -> String {
    "/var/lib/gate/devices".into()
}
