//! Interrupts: SIGINT and SIGTERM cancel in-flight work; the signal is kept for the exit
//! code (130 or 143).

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio_util::sync::CancellationToken;

/// A cancellation token plus the signal that fired it.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    token: CancellationToken,
    signal: Arc<AtomicI32>,
}

impl Interrupt {
    /// An interrupt that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token in-flight work watches.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Fires the interrupt for `signal` (the first signal is kept).
    pub fn trigger(&self, signal: i32) {
        let _ = self
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        self.token.cancel();
    }

    /// The signal that fired it, if it fired.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            sig => Some(sig),
        }
    }

    /// Whether it fired.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Fires this interrupt on SIGINT or SIGTERM (from a background task). Later signals
    /// are logged: archive and cleanup go on regardless, so nothing leaks.
    pub fn listen_for_signals(&self) -> std::io::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let this = self.clone();
        Ok(tokio::spawn(async move {
            loop {
                let sig = tokio::select! {
                    Some(()) = int.recv() => 2,
                    Some(()) = term.recv() => 15,
                    else => return,
                };
                if this.is_triggered() {
                    tracing::warn!(
                        "signal {sig} again: still finishing archive and cleanup so nothing leaks"
                    );
                } else {
                    tracing::warn!("signal {sig}: cancelling; archive and cleanup will still run");
                    this.trigger(sig);
                }
            }
        }))
    }
}
