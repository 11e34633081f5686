//! The process table, read from /proc, and signals.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The children of `pid` (of all its threads).
pub(crate) fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            found.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    found
}

/// The command name of `pid`, if it exists.
pub(crate) fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|name| name.trim().to_owned())
}

/// Whether `pid` has exited (gone, or a zombie waiting to be reaped).
pub(crate) fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name in parentheses, which may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(true),
    }
}

/// Sends `signal` to `pid`, ignoring a process that is already gone.
pub(crate) fn signal(pid: i32, signal: Signal) {
    let _ = kill(Pid::from_raw(pid), signal);
}

/// SIGKILLs `root` and all its descendants. They are stopped first, top down, so none can
/// fork a child the walk misses or be re-parented out of the tree before the kill.
pub(crate) fn kill_tree(root: i32) -> Vec<i32> {
    let mut tree = vec![root];
    let mut next = 0;
    while next < tree.len() {
        let pid = tree[next];
        signal(pid, Signal::SIGSTOP);
        for child in children(pid) {
            if !tree.contains(&child) {
                tree.push(child);
            }
        }
        next += 1;
    }
    for &pid in &tree {
        signal(pid, Signal::SIGKILL);
    }
    tree
}

/// Waits until every one of `pids` has exited; false when `timeout` passed first.
pub(crate) fn wait_gone(pids: &[i32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pids.iter().all(|&pid| is_gone(pid)) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
