//! Cleanup: every live ledger entry handed to the cleaner of its backend, newest first.

use std::sync::Arc;

use crate::context::CleanContext;
use crate::error::{Error, Result};
use crate::ledger::{Ledger, LiveResource};
use crate::stage::Stage;
use crate::traits::{Cleaned, Cleaner};

/// Finds the cleaner for a backend name (built from that backend's config section).
pub type CleanerLookup = Arc<dyn Fn(&str) -> Result<Arc<dyn Cleaner>> + Send + Sync>;

/// What a cleanup did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Resources deleted (or found gone).
    pub deleted: usize,
    /// Resources released.
    pub released: usize,
}

/// How many entries are cleaned at once (each waits for its resource to be gone).
pub const CLEANUP_CONCURRENCY: usize = 8;

/// Cleans every live entry of `ledger`: children before their parents (a CI node before its
/// server), in waves of entries no remaining entry depends on, up to
/// [`CLEANUP_CONCURRENCY`] at a time, newest first. A failure on one entry does not stop the
/// others; if anything is left, the error lists each leftover with its cause. Running it
/// again is harmless.
pub async fn cleanup_ledger(
    ledger: &Ledger,
    cleaners: &CleanerLookup,
    cx: &CleanContext,
) -> Result<CleanupReport> {
    let mut remaining = order_for_cleanup(ledger.live()?);
    let mut report = CleanupReport::default();
    let mut left = Vec::new();
    while !remaining.is_empty() {
        let (wave, rest): (Vec<_>, Vec<_>) = remaining
            .iter()
            .cloned()
            .partition(|candidate| !has_child(candidate, &remaining));
        // order_for_cleanup always leaves a first entry without a child; guard anyway.
        let (wave, rest) = if wave.is_empty() {
            let mut rest = rest;
            let first = rest.remove(0);
            (vec![first], rest)
        } else {
            (wave, rest)
        };
        remaining = rest;
        let outcomes = crate::fanout::bounded(&wave, CLEANUP_CONCURRENCY, |resource| async move {
            let outcome = match cleaners(&resource.spec.backend) {
                Ok(cleaner) => cleaner.clean(resource, cx).await,
                Err(e) => Err(e),
            };
            (resource, outcome)
        })
        .await;
        for (resource, outcome) in outcomes {
            record(ledger, resource, outcome, &mut report, &mut left).await?;
        }
    }
    if left.is_empty() {
        Ok(report)
    } else {
        Err(Error::Stage {
            stage: Stage::Cleanup,
            message: format!(
                "{} resource(s) could not be freed (they stay in the ledger; run `gate cleanup` again):\n  - {}",
                left.len(),
                left.join("\n  - ")
            ),
        })
    }
}

/// Whether some other entry of `live` is a child of `candidate`.
fn has_child(candidate: &LiveResource, live: &[LiveResource]) -> bool {
    live.iter().any(|other| {
        other.spec.parent.as_deref() == Some(candidate.spec.name.as_str())
            && other.spec != candidate.spec
    })
}

/// Writes what happened to one entry to the ledger and the report.
async fn record(
    ledger: &Ledger,
    resource: &LiveResource,
    outcome: Result<Cleaned>,
    report: &mut CleanupReport,
    left: &mut Vec<String>,
) -> Result<()> {
    {
        match outcome {
            Ok(Cleaned::Deleted) => {
                ledger.deleted(&resource.spec).await?;
                report.deleted += 1;
            }
            Ok(Cleaned::Released) => {
                ledger.released(&resource.spec).await?;
                report.released += 1;
            }
            Err(e) => {
                tracing::error!(
                    "cleanup: {} {} `{}` is left: {e}",
                    resource.spec.backend,
                    resource.spec.kind,
                    resource.spec.name
                );
                left.push(format!(
                    "{} {} `{}`: {e}",
                    resource.spec.backend, resource.spec.kind, resource.spec.name
                ));
            }
        }
    }
    Ok(())
}

/// Newest first, and every child before its parent even when the parent came later.
fn order_for_cleanup(mut live: Vec<LiveResource>) -> Vec<LiveResource> {
    live.reverse();
    let mut ordered: Vec<LiveResource> = Vec::with_capacity(live.len());
    while !live.is_empty() {
        let next = live
            .iter()
            .position(|candidate| {
                !live.iter().any(|other| {
                    other.spec.parent.as_deref() == Some(candidate.spec.name.as_str())
                        && other.spec != candidate.spec
                })
            })
            .unwrap_or(0);
        ordered.push(live.remove(next));
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Resource;
    use crate::model::RunId;

    fn live(name: &str, parent: Option<&str>) -> LiveResource {
        let mut spec = Resource::new("b", "k", "s", name);
        spec.parent = parent.map(str::to_owned);
        LiveResource {
            spec,
            run_id: RunId::generate_from(None, None),
            id: None,
            intent_at: None,
        }
    }

    #[test]
    fn children_go_before_parents_newest_first() {
        let order = order_for_cleanup(vec![
            live("net", None),
            live("server", None),
            live("node", Some("server")),
            live("volume", Some("server")),
        ]);
        let names: Vec<_> = order.iter().map(|r| r.spec.name.as_str()).collect();
        assert_eq!(names, ["volume", "node", "server", "net"]);

        // A child recorded before its parent (adopted resources) still goes first.
        let order = order_for_cleanup(vec![live("node", Some("server")), live("server", None)]);
        let names: Vec<_> = order.iter().map(|r| r.spec.name.as_str()).collect();
        assert_eq!(names, ["node", "server"]);
    }
}
