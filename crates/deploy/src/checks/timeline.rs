//! From the raw probe log to outage windows, `timeline.json` and a JUnit suite.

use std::path::Path;
use std::time::Duration;

use gate_core::junit::{CaseOutcome, CaseResult, write_suite};
use gate_core::{Error, Result, TestReport};
use serde::Serialize;

use crate::checks::config::Probe;

/// One probe result: when, which probe, whether it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Milliseconds since the epoch, on the primary's clock.
    pub at_ms: u64,
    /// The probe's index.
    pub probe: usize,
    /// Whether it answered.
    pub ok: bool,
}

/// Parses `EPOCH_MS INDEX ok|fail` lines; other lines are ignored.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut samples: Vec<Sample> = text
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let at_ms = f.next()?.parse().ok()?;
            let probe = f.next()?.parse().ok()?;
            let ok = match f.next()? {
                "ok" => true,
                "fail" => false,
                _ => return None,
            };
            Some(Sample { at_ms, probe, ok })
        })
        .collect();
    samples.sort_by_key(|s| s.at_ms);
    samples
}

/// A time a probe did not answer: from its first failed round to its next good one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outage {
    /// The first failed round (RFC 3339).
    pub start: String,
    /// The first good round after it, or the last round when it never came back (RFC 3339).
    pub end: String,
    /// Milliseconds from start to end.
    pub duration_ms: u64,
    /// Whether the probe answered again before the probes stopped.
    pub recovered: bool,
    /// Failed rounds in the window.
    pub failed_rounds: u64,
}

/// One probe's timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeTimeline {
    /// Its name.
    pub name: String,
    /// `ping`, `tcp` or `http`.
    pub kind: String,
    /// What it probed.
    pub target: String,
    /// Rounds run.
    pub rounds: u64,
    /// Rounds that failed.
    pub failures: u64,
    /// The outage windows, in order.
    pub outages: Vec<Outage>,
    /// The tolerated outage, if any.
    pub max_outage_secs: Option<f64>,
    /// Whether an outage broke the tolerance.
    pub violated: bool,
}

fn rfc3339(at_ms: u64) -> String {
    let nanos = i128::from(at_ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map(gate_core::time::format_rfc3339)
        .unwrap_or_else(|_| at_ms.to_string())
}

/// The timeline of every probe from `samples`.
pub fn timelines(probes: &[Probe], samples: &[Sample]) -> Vec<ProbeTimeline> {
    probes
        .iter()
        .enumerate()
        .map(|(index, probe)| {
            let mine: Vec<&Sample> = samples.iter().filter(|s| s.probe == index).collect();
            let mut outages = Vec::new();
            let mut open: Option<(u64, u64)> = None; // (start, failed rounds)
            for s in &mine {
                match (s.ok, &mut open) {
                    (false, None) => open = Some((s.at_ms, 1)),
                    (false, Some((_, n))) => *n += 1,
                    (true, Some((start, n))) => {
                        outages.push(window(*start, s.at_ms, true, *n));
                        open = None;
                    }
                    (true, None) => {}
                }
            }
            if let (Some((start, n)), Some(last)) = (open, mine.last()) {
                outages.push(window(start, last.at_ms, false, n));
            }
            let violated = probe.max_outage_secs.is_some_and(|max| {
                outages
                    .iter()
                    .any(|o| !o.recovered || o.duration_ms as f64 > max * 1000.0)
            });
            ProbeTimeline {
                name: probe.name.clone(),
                kind: probe.target.kind().to_owned(),
                target: probe.target.shown(),
                rounds: mine.len() as u64,
                failures: mine.iter().filter(|s| !s.ok).count() as u64,
                outages,
                max_outage_secs: probe.max_outage_secs,
                violated,
            }
        })
        .collect()
}

fn window(start: u64, end: u64, recovered: bool, failed_rounds: u64) -> Outage {
    Outage {
        start: rfc3339(start),
        end: rfc3339(end),
        duration_ms: end.saturating_sub(start),
        recovered,
        failed_rounds,
    }
}

/// The JUnit suite name of the upgrade checks.
pub const SUITE: &str = "upgrade-checks";

/// Writes `timeline.json` into `dir` and the JUnit suite `upgrade-checks.xml` into
/// `results` (a case per probe, then `extra`); returns the JUnit counts.
pub fn write(
    dir: &Path,
    results: &Path,
    timelines: &[ProbeTimeline],
    extra: &[CaseResult],
) -> Result<TestReport> {
    let json = serde_json::json!({ "probes": timelines });
    let path = dir.join("timeline.json");
    let text = serde_json::to_string_pretty(&json)
        .map_err(|e| Error::backend("upgrade-checks", format!("timeline.json: {e}")))?;
    std::fs::write(&path, text).map_err(|e| Error::io("writing", &path, e))?;
    let mut cases: Vec<CaseResult> = timelines
        .iter()
        .map(|t| {
            let mut output = format!(
                "{} {}: {} rounds, {} failed, {} outage(s)\n",
                t.kind,
                t.target,
                t.rounds,
                t.failures,
                t.outages.len()
            );
            for o in &t.outages {
                output.push_str(&format!(
                    "  down from {} to {} ({:.1}s, {} failed rounds){}\n",
                    o.start,
                    o.end,
                    o.duration_ms as f64 / 1000.0,
                    o.failed_rounds,
                    if o.recovered { "" } else { ", not recovered" }
                ));
            }
            let outcome = if t.rounds == 0 {
                CaseOutcome::Error {
                    message: "the probe never ran".into(),
                }
            } else if t.violated {
                CaseOutcome::Failed {
                    message: violation(t),
                }
            } else {
                CaseOutcome::Passed
            };
            CaseResult {
                classname: format!("{SUITE}.{}", t.kind),
                name: t.name.clone(),
                duration: Duration::ZERO,
                outcome,
                output: Some(output),
            }
        })
        .collect();
    cases.extend_from_slice(extra);
    write_suite(&results.join(format!("{SUITE}.xml")), SUITE, &cases)
}

/// What broke a probe's tolerance, in one line.
pub fn violation(t: &ProbeTimeline) -> String {
    let longest = t.outages.iter().map(|o| o.duration_ms).max().unwrap_or(0);
    let unrecovered = t.outages.iter().any(|o| !o.recovered);
    format!(
        "probe `{}` ({} {}): {}longest outage {:.1}s, tolerated {}s",
        t.name,
        t.kind,
        t.target,
        if unrecovered {
            "still down when the upgrade ended; "
        } else {
            ""
        },
        longest as f64 / 1000.0,
        t.max_outage_secs.unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::config::Target;

    fn probe(max: Option<f64>) -> Probe {
        Probe {
            name: "db".into(),
            target: Target::Tcp {
                host: "10.0.0.1".into(),
                port: 3306,
            },
            max_outage_secs: max,
        }
    }

    #[test]
    fn outage_windows_run_from_the_first_failure_to_the_next_success() {
        let log =
            "1000 0 ok\n2000 0 fail\n3000 0 fail\n4000 0 ok\ngarbage\n5000 0 fail\n6000 0 fail\n";
        let t = &timelines(&[probe(Some(1.5))], &parse(log))[0];
        assert_eq!((t.rounds, t.failures), (6, 4));
        assert_eq!(t.outages.len(), 2);
        assert_eq!(t.outages[0].duration_ms, 2000);
        assert!(t.outages[0].recovered);
        assert_eq!(t.outages[0].start, "1970-01-01T00:00:02Z");
        assert_eq!(t.outages[1].duration_ms, 1000);
        assert!(!t.outages[1].recovered);
        assert!(t.violated);
        assert!(violation(t).contains("still down"), "{}", violation(t));
    }

    #[test]
    fn without_a_tolerance_outages_are_recorded_but_pass() {
        let t = &timelines(&[probe(None)], &parse("1 0 fail\n2 0 ok\n"))[0];
        assert_eq!(t.outages.len(), 1);
        assert!(!t.violated);
        let t = &timelines(&[probe(Some(5.0))], &parse("1000 0 fail\n2000 0 ok\n"))[0];
        assert!(!t.violated, "a 1 s outage is within 5 s");
    }
}
