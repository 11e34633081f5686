//! The shared test harness of gate: real servers on loopback for every crate's tests.
//!
//! - [`SshFleet`]: N real OpenSSH servers (`/usr/sbin/sshd`), host *i* of a fleet on its own
//!   127.0.0.x address, each a separate host with its own writable view of the whole
//!   filesystem (a mount, PID and UTS namespace with an overlay over the machine's root).
//!   [`FleetHost::exec`] runs a command *inside* a host without SSH, so tests can check a
//!   host's files independently of the code under test. Needs root.
//! - [`Mirror`]: the package mirror (a flat apt repository and a pip index, filled by
//!   `scripts/fetch-mirror`) served over plain HTTP on 127.0.0.1.
//! - [`StaticServer`]: any directory over plain HTTP on 127.0.0.1.
//! - [`HttpsServer`]: a directory over HTTPS on 127.0.0.1, with a CA made for the test.
//! - [`GitServer`] / [`GitRepo`]: real git repositories served by `git daemon` on
//!   127.0.0.1, with branches, tags and pull-request refs; [`deploy_repos`] lays out
//!   lookalikes of openstack-ansible and rpc-openstack whose scripts record what they saw.
//! - [`JenkinsSim`]: a simulator of the Jenkins REST endpoints gate uses (nodes, crumbs,
//!   agent secrets, `agent.jar`), with faults, on 127.0.0.1.
//! - [`MonitoringSim`]: a simulator of Rackspace Cloud Monitoring's REST API (entities,
//!   checks, paginated lists, faults, lost answers) on 127.0.0.1.
//! - [`S3Server`]: a real S3 server (`s3s-fs`) on 127.0.0.1, objects in a temporary directory.
//! - [`OpenStack`]: real Keystone, Nova (fake virt driver), Placement, Glance and Heat on
//!   127.0.0.1 (plus the one stand-in, a read-only Neutron API), a project per test, and a
//!   join task that makes servers reachable fleet hosts ([`openstack`]).
//!
//! Everything stops on `Drop` and leaves nothing behind, also when a test panics.
//!
//! ```no_run
//! use gate_test_harness::SshFleet;
//!
//! let fleet = SshFleet::start(2)?;
//! let host = &fleet.hosts()[0];
//! host.exec_ok("echo hello > /root/greeting")?;
//! // The file is on fleet-1 only, not on fleet-2 nor on the real machine.
//! assert!(!fleet.hosts()[1].exec("test -e /root/greeting").status.success());
//! println!("ssh -i {} root@{}", host.client_key().display(), host.address());
//! # Ok::<(), gate_test_harness::HarnessError>(())
//! ```
#![deny(missing_docs)]

mod addresses;
mod banner;
pub mod deploy_repos;
mod error;
mod fleet;
mod git;
mod host;
mod http;
mod https;
mod jenkins;
mod keeper;
mod mirror;
mod monitoring;
pub mod openstack;
mod proc;
mod s3;
mod tools;
mod wire;

pub use error::{HarnessError, Result};
pub use fleet::SshFleet;
pub use git::{GitRepo, GitServer};
pub use host::FleetHost;
pub use http::StaticServer;
pub use https::HttpsServer;
pub use jenkins::{JenkinsSim, SimNode, SimRequest};
pub use mirror::Mirror;
pub use monitoring::{MonitoringRequest, MonitoringSim, MonitoringThing};
pub use openstack::OpenStack;
pub use s3::S3Server;
