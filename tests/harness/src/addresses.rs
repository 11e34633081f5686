//! Loopback addresses for fleet hosts, so that concurrent fleets never collide.
//!
//! Candidates are 127.0.0.11 ..= 127.0.0.254, then 127.0.1.1 ..= 127.0.15.254. An address
//! belongs to the fleet holding an exclusive `flock` on `/tmp/gate-fleet-locks/<address>`
//! (any thread, test binary or process of any user agrees on that path); the lock goes with
//! the fleet, or with its process if that dies. A locked address whose port still cannot be
//! bound (an sshd of a killed fleet still exiting, or some other server) is passed over.

use std::fs::{File, OpenOptions, TryLockError};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;

use crate::error::{HarnessError, Result, io};

/// Where the per-address lock files live.
pub(crate) const LOCK_DIR: &str = "/tmp/gate-fleet-locks";

/// An address held for one host: released when dropped.
#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) address: Ipv4Addr,
    _lock: File,
}

/// The candidate addresses, in order.
fn candidates() -> impl Iterator<Item = Ipv4Addr> {
    (0u8..16).flat_map(|third| {
        let first = if third == 0 { 11 } else { 1 };
        (first..=254u8).map(move |fourth| Ipv4Addr::new(127, 0, third, fourth))
    })
}

/// Takes `count` free addresses for hosts listening on `port`.
pub(crate) fn lease(count: usize, port: u16) -> Result<Vec<Lease>> {
    let dir = Path::new(LOCK_DIR);
    std::fs::create_dir_all(dir).map_err(io(format!("creating {LOCK_DIR}")))?;
    // Any user may take a lock; the directory is shared like /tmp.
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777));
    }
    let mut leases = Vec::with_capacity(count);
    let mut port_taken = 0usize;
    for address in candidates() {
        if leases.len() == count {
            break;
        }
        let path = dir.join(address.to_string());
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(format!("opening {}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => continue,
            Err(TryLockError::Error(source)) => {
                return Err(HarnessError::Io {
                    what: format!("locking {}", path.display()),
                    source,
                });
            }
        }
        // The port must be free: std sets SO_REUSEADDR, as sshd does.
        if TcpListener::bind(SocketAddr::from((address, port))).is_err() {
            port_taken += 1;
            continue;
        }
        leases.push(Lease {
            address,
            _lock: file,
        });
    }
    if leases.len() < count {
        return Err(HarnessError::NoAddress {
            host: format!("fleet-{}", leases.len() + 1),
            detail: format!(
                "{} candidates were locked by other fleets or had port {port} taken ({port_taken} \
                 had the port taken: is a server listening on 0.0.0.0:{port}? stop it, or set \
                 GATE_FLEET_PORT to another port)",
                candidates().count()
            ),
        });
    }
    Ok(leases)
}
