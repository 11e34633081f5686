//! `openstack-services DESCRIPTION.json`: starts the harness's real OpenStack services
//! once for a whole test run, as `OpenStack::start` does, and Cinder with them; writes
//! their description to `DESCRIPTION.json` (atomically, once every service answers) for
//! the test processes to attach to (`GATE_OPENSTACK_SERVICES=DESCRIPTION.json`); then
//! stays until SIGTERM, SIGINT or the end of its stdin, and stops every service on the way
//! out. `scripts/test` runs it around `cargo test`.
//!
//! Stopped while the services start, it exits at once and the watchdogs of the harness
//! stop what was started (within 15 s).
//!
//! Signals: SIGTERM and SIGINT are blocked in every thread but the one that starts the
//! services and taken by `sigwait` in a thread of their own. Child processes inherit the
//! signal mask, so the services are started from the one thread that does not block them.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Instant;

use gate_test_harness::{HarnessError, OpenStack};
use nix::sys::signal::{SigSet, Signal};

const USAGE: &str = "usage: openstack-services DESCRIPTION.json\n\
    Starts the test harness's OpenStack services (with Cinder), writes their description \
    to DESCRIPTION.json once they answer, and stops them on SIGTERM, SIGINT or the end of \
    stdin. Tests attach with GATE_OPENSTACK_SERVICES=DESCRIPTION.json.";

fn main() -> ExitCode {
    let path = match parse(std::env::args_os().skip(1).collect()) {
        Ok(Some(path)) => path,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("openstack-services: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("openstack-services: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The description's path, or `None` for `--help`.
fn parse(args: Vec<OsString>) -> Result<Option<PathBuf>, String> {
    match args.as_slice() {
        [flag] if flag == "-h" || flag == "--help" => Ok(None),
        [path] if !path.to_string_lossy().starts_with('-') => Ok(Some(PathBuf::from(path))),
        [] => Err("the path of the description is missing".into()),
        _ => Err(format!("unexpected arguments: {args:?}")),
    }
}

/// What the main thread waits for.
enum Event {
    /// The services are up (or failed to come up).
    Started(Box<gate_test_harness::Result<OpenStack>>),
    /// Time to stop: why.
    Stop(String),
}

fn run(path: &Path) -> Result<(), HarnessError> {
    // Stale from an earlier run: nobody may attach to services that are gone.
    remove(path);
    let events = listen_for_stop()?;
    let started = Instant::now();
    let sender = events.sender;
    let signals = events.signals;
    std::thread::spawn(move || {
        // The services must not inherit the mask. A signal that lands here ends the process
        // (the default action): the watchdogs stop what was started.
        let cloud = unblock(signals)
            .and_then(|()| OpenStack::start())
            .and_then(|cloud| {
                // Now, so that no test process registers a Cinder of its own in Keystone.
                cloud.cinder()?;
                Ok(cloud)
            });
        let _ = sender.send(Event::Started(Box::new(cloud)));
    });
    let cloud = match events.receiver.recv() {
        Ok(Event::Started(cloud)) => (*cloud)?,
        Ok(Event::Stop(why)) => {
            // The start thread owns the services; exiting closes the watchdogs' pipes.
            return Err(stopped(format!(
                "stopped by {why}; the watchdogs stop what was started"
            )));
        }
        Err(_) => return Err(stopped("the start thread is gone".into())),
    };
    // Checks that every service answers first; on an error the services stop on return.
    cloud.write_description(path)?;
    eprintln!(
        "openstack-services: up in {:.1}s (pid {}): {} (logs in {}); stop with SIGTERM, \
         SIGINT or the end of stdin",
        started.elapsed().as_secs_f64(),
        std::process::id(),
        path.display(),
        cloud.log_dir().display(),
    );
    let why = match events.receiver.recv() {
        Ok(Event::Stop(why)) => why,
        Ok(Event::Started(_)) | Err(_) => "no more events".into(),
    };
    eprintln!("openstack-services: {why}: stopping the services");
    remove(path);
    drop(cloud);
    eprintln!("openstack-services: stopped");
    Ok(())
}

/// The main thread's events, a sender for the start thread, and the signals blocked.
struct Events {
    sender: mpsc::Sender<Event>,
    receiver: mpsc::Receiver<Event>,
    signals: SigSet,
}

/// Blocks SIGTERM and SIGINT in this thread (and so in every thread started after it, and
/// in their child processes) and starts two threads that send [`Event::Stop`]: one takes
/// those signals with `sigwait`, one reads stdin to its end.
fn listen_for_stop() -> Result<Events, HarnessError> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals
        .thread_block()
        .map_err(|errno| HarnessError::Command {
            command: "blocking SIGTERM and SIGINT".into(),
            detail: errno.to_string(),
        })?;
    let (sender, receiver) = mpsc::channel();
    let on_signal = sender.clone();
    std::thread::spawn(move || {
        let why = match signals.wait() {
            Ok(signal) => format!("{signal}"),
            Err(errno) => format!("sigwait failed: {errno}"),
        };
        let _ = on_signal.send(Event::Stop(why));
    });
    let on_eof = sender.clone();
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin().lock();
        loop {
            match stdin.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = on_eof.send(Event::Stop("the end of stdin".into()));
    });
    Ok(Events {
        sender,
        receiver,
        signals,
    })
}

/// Unblocks `signals` in this thread.
fn unblock(signals: SigSet) -> gate_test_harness::Result<()> {
    signals
        .thread_unblock()
        .map_err(|errno| HarnessError::Command {
            command: "unblocking SIGTERM and SIGINT".into(),
            detail: errno.to_string(),
        })
}

fn stopped(detail: String) -> HarnessError {
    HarnessError::Command {
        command: "starting the OpenStack services".into(),
        detail,
    }
}

fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}
