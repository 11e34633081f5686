//! The config sections of gate-artifacts: `[archiver]` with `backend = "streamed"`,
//! `[publisher]` with `backend = "repo-server"` or `backend = "s3"`.

use std::path::PathBuf;

use gate_core::Secret;
use serde::Deserialize;

/// Excluded from every archive unless `exclude` is set: sshd host keys, private keys and
/// secrets files such as openstack-ansible's `user_secrets.yml`.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    "ssh_host_*_key",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    "*.key",
    "*_key.pem",
    "*secrets*.yml",
    "*secrets*.yaml",
];

/// How the tar stream is compressed on the host (and undone here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd where both the host and this machine have the `zstd` program, else gzip.
    #[default]
    Auto,
    /// `zstd -1` on the host, `zstd -d` here: both need the `zstd` program.
    Zstd,
    /// `gzip -1` on the host, unpacked by gate: slower, but gzip is everywhere.
    Gzip,
    /// Plain tar: for a fast network where CPU is scarcer than bandwidth.
    None,
}

/// `[archiver]` with `backend = "streamed"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamedArchiverConfig {
    /// Paths on each host to archive (absolute, or relative to the host's home), e.g.
    /// `/var/log`, `/etc/openstack_deploy`, `/openstack/log`. Default: none (only the
    /// results and gate's own logs are then indexed).
    #[serde(default)]
    pub paths: Vec<String>,
    /// The most bytes taken from one host, in MB (10^6). The copy stops there with a
    /// message and keeps what fit. Default: 200.
    #[serde(default = "default_max_host_mb")]
    pub max_host_mb: u64,
    /// Name patterns (`*` and `?`) never archived; replaces [`DEFAULT_EXCLUDES`].
    #[serde(default = "default_excludes")]
    pub exclude: Vec<String>,
    /// Name patterns excluded besides `exclude`. Default: none.
    #[serde(default)]
    pub exclude_more: Vec<String>,
    /// Compression of the stream on the host: `auto` (zstd where the host and this machine
    /// have it, else gzip), `zstd`, `gzip` or `none`. Default: `auto`.
    #[serde(default)]
    pub compression: Compression,
    /// Also publish the run's artifacts and logs (with an index page) to S3, by default
    /// with a 30-day expiry. Default: off.
    #[serde(default)]
    pub publish_logs: Option<S3Config>,
}

impl Default for StreamedArchiverConfig {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            max_host_mb: default_max_host_mb(),
            exclude: default_excludes(),
            exclude_more: Vec::new(),
            compression: Compression::Auto,
            publish_logs: None,
        }
    }
}

impl StreamedArchiverConfig {
    /// The size limit per host in bytes.
    pub fn max_host_bytes(&self) -> u64 {
        self.max_host_mb.saturating_mul(1_000_000)
    }

    /// Every exclude pattern in force.
    pub fn excludes(&self) -> Vec<String> {
        self.exclude
            .iter()
            .chain(&self.exclude_more)
            .cloned()
            .collect()
    }
}

fn default_max_host_mb() -> u64 {
    200
}

fn default_excludes() -> Vec<String> {
    DEFAULT_EXCLUDES.iter().map(|s| (*s).to_owned()).collect()
}

/// Where a publisher takes its files from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceHost {
    /// `source` is a directory on the primary host (copied to the state dir first).
    #[default]
    Primary,
    /// `source` is a local directory (relative to the working directory).
    Local,
}

/// How files reach a repo server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// SFTP over gate's own SSH session.
    #[default]
    Sftp,
    /// The `rsync` program over `ssh` (both needed on the controller, rsync on the server).
    Rsync,
}

/// `[publisher]` with `backend = "repo-server"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoServerConfig {
    /// The directory to publish (see `on`). Required.
    pub source: String,
    /// Where `source` is. Default: `primary`.
    #[serde(default)]
    pub on: SourceHost,
    /// The server's address. Required.
    pub host: String,
    /// Its SSH port. Default: 22.
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// The login user. Default: `root`.
    #[serde(default = "default_user")]
    pub user: String,
    /// The private key file to log in with. Required.
    pub key: PathBuf,
    /// A `known_hosts` file holding the server's host key: it is pinned, no other key is
    /// accepted. Required.
    pub known_hosts: PathBuf,
    /// The base directory on the server. Required.
    pub dir: String,
    /// The series published: files go to `<dir>/<series>/`, and one run at a time may
    /// publish a series. Required.
    pub series: String,
    /// `sftp` or `rsync`. Default: `sftp`.
    #[serde(default)]
    pub method: Method,
    /// Overwrite files that exist with other content. Default: false (refuse).
    #[serde(default)]
    pub replace: bool,
    /// The URL `<dir>` is served at, for the reported public URLs. Default: none (paths
    /// on the server are reported).
    #[serde(default)]
    pub public_url: Option<String>,
    /// Tries of each transient operation. Default: 5.
    #[serde(default = "default_tries")]
    pub tries: u32,
    /// The first pause between tries in milliseconds, doubled each time. Default: 1000.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// A lock older than this many seconds is taken over (its publisher died). Default: 3600.
    #[serde(default = "default_stale_lock")]
    pub stale_lock_secs: u64,
    /// How long to wait for the server to answer, in seconds. Default: 30.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
}

fn default_ssh_port() -> u16 {
    22
}
fn default_user() -> String {
    "root".into()
}
fn default_tries() -> u32 {
    5
}
fn default_backoff_ms() -> u64 {
    1000
}
fn default_stale_lock() -> u64 {
    3600
}
fn default_connect_timeout() -> u64 {
    30
}

/// `[publisher]` with `backend = "s3"`, and `[archiver.publish_logs]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The directory to publish (see `on`). Required for the publisher; not allowed in
    /// `publish_logs` (which publishes the artifacts dir).
    #[serde(default)]
    pub source: Option<String>,
    /// Where `source` is. Default: `primary`.
    #[serde(default)]
    pub on: SourceHost,
    /// The bucket. Required.
    pub bucket: String,
    /// The key prefix (`logs/`); `publish_logs` adds the run id. Default: none.
    #[serde(default)]
    pub prefix: String,
    /// The endpoint URL (`https://s3.example.com`) of an S3-compatible server; requests
    /// are then path-style. Default: AWS for `region`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The region. Default: `AWS_REGION`, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// The access key id. Default: `AWS_ACCESS_KEY_ID`.
    #[serde(default)]
    pub access_key: Option<Secret>,
    /// The secret access key. Default: `AWS_SECRET_ACCESS_KEY`.
    #[serde(default)]
    pub secret_key: Option<Secret>,
    /// A session token. Default: `AWS_SESSION_TOKEN`, if set.
    #[serde(default)]
    pub session_token: Option<Secret>,
    /// Days until the objects expire (a lifecycle rule on the prefix where the server
    /// supports one, else each object's `Expires`). Default: none for the publisher, 30
    /// for `publish_logs`.
    #[serde(default)]
    pub expiry_days: Option<u32>,
    /// Overwrite objects that exist with other content. Default: false (refuse).
    #[serde(default)]
    pub replace: bool,
    /// Uploads at once. Default: 16.
    #[serde(default = "default_parallel")]
    pub parallel: usize,
    /// Files from this size (MB) up are uploaded in parts; a smaller file is held in memory
    /// while it goes up (at most `parallel` of them at once). Default: 64.
    #[serde(default = "default_multipart_mb")]
    pub multipart_threshold_mb: u64,
    /// The size of one part in MB (at least 5). Default: 16.
    #[serde(default = "default_part_mb")]
    pub part_size_mb: u64,
    /// The URL the bucket is served at, for the reported public URLs. Default: the
    /// endpoint's path-style URL of the bucket.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Tries of each transient operation. Default: 5.
    #[serde(default = "default_tries")]
    pub tries: u32,
    /// The first pause between tries in milliseconds, doubled each time. Default: 1000.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
}

fn default_parallel() -> usize {
    16
}
fn default_multipart_mb() -> u64 {
    64
}
fn default_part_mb() -> u64 {
    16
}
