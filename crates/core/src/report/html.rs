//! The report as one HTML page: inline CSS and SVG, no script, every value escaped.

use std::fmt::Write as _;

use time::OffsetDateTime;

use super::{CaseStatus, Failure, ReportData, StepSpan, parse_time};
use crate::ledger::Op;
use crate::stage::Stage;
use crate::state::{CauseKind, StageRecord, StageStatus};

/// How many of the slowest tests the page lists.
const SLOWEST: usize = 10;

/// The bars' drawing width (SVG user units; the picture scales to the column).
const BAR_WIDTH: f64 = 1000.0;

const STYLE: &str = r#"
:root { --ok: #1a7f37; --bad: #cf222e; --warn: #bc4c00; --skip: #8c959f; --run: #0969da; --line: #d0d7de; --soft: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; margin: 0; background: #fff; }
main { max-width: 1280px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 14px; margin: 14px 0 4px; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; overflow-x: auto; white-space: pre-wrap; word-break: break-word; margin: 4px 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { background: var(--soft); font-weight: 600; font-size: 12.5px; }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
a { color: var(--run); }
.verdict { display: inline-block; font-weight: 700; padding: 4px 12px; border-radius: 6px; color: #fff; margin: 4px 0 8px; }
.v-passed { background: var(--ok); } .v-failed { background: var(--bad); } .v-interrupted { background: var(--warn); }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0; }
dl.meta dt { color: #59636e; } dl.meta dd { margin: 0; }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px; font-weight: 600; color: #fff; white-space: nowrap; }
.s-passed, .s-ok { background: var(--ok); } .s-failed, .s-error { background: var(--bad); }
.s-cancelled, .s-unfinished { background: var(--warn); } .s-skipped { background: var(--skip); }
.s-not-configured { background: #d0d7de; color: #59636e; } .s-running { background: var(--run); }
section.failure { border: 2px solid var(--bad); border-radius: 8px; padding: 4px 16px 12px; margin: 12px 0; background: #fff8f8; }
section.failure.interrupted { border-color: var(--warn); background: #fff8f0; }
section.failure h2 { border: none; margin-top: 8px; }
table.timeline th[scope=row] { white-space: nowrap; }
tr.host-row th { font-weight: normal; padding-left: 24px; color: #59636e; }
tr.host-row td { border-bottom-style: dotted; }
tr.stage-row.dim th, tr.stage-row.dim td { color: #8c959f; }
td.bar { width: 42%; min-width: 240px; padding-top: 6px; }
td.bar svg { display: block; width: 100%; height: 14px; background: var(--soft); border-radius: 3px; }
.axis { display: flex; justify-content: space-between; font-weight: normal; color: #59636e; }
.counts { display: flex; gap: 12px; flex-wrap: wrap; margin: 8px 0; }
.count { border: 1px solid var(--line); border-radius: 8px; padding: 6px 14px; min-width: 96px; }
.count .n { display: block; font-size: 22px; font-weight: 700; }
.count.failed .n, .count.errors .n { color: var(--bad); } .count.passed .n { color: var(--ok); }
.count.zero .n { color: #8c959f; }
#ledger-entries td:nth-child(-n+5) { white-space: nowrap; }
.live { color: var(--bad); font-weight: 700; }
.muted { color: #59636e; }
details > summary { cursor: pointer; color: var(--run); }
footer { margin-top: 32px; color: #8c959f; font-size: 12px; }
"#;

/// Renders `data` as one self-contained HTML page.
pub fn render(data: &ReportData) -> String {
    let mut page = String::with_capacity(32 * 1024);
    let run = &data.run;
    let verdict = Verdict::of(data);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>gate run {}: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        esc(run.run_id.as_str()),
        esc(&verdict.text)
    );
    header(&mut page, data, &verdict);
    if let Some(failure) = &data.failure {
        failure_section(&mut page, data, failure);
    }
    timeline(&mut page, data);
    tests(&mut page, data);
    inventory(&mut page, data);
    ledger(&mut page, data);
    logs(&mut page, data);
    config(&mut page, data);
    let _ = write!(
        page,
        "<footer>Written by gate-core {} after cleanup, at {}. Self-contained: no scripts, no \
         network.</footer>\n</main>\n</body>\n</html>\n",
        esc(env!("CARGO_PKG_VERSION")),
        esc(&crate::time::now_rfc3339())
    );
    page
}

/// The run's outcome in one phrase, and its CSS class.
struct Verdict {
    text: String,
    class: &'static str,
}

impl Verdict {
    fn of(data: &ReportData) -> Self {
        let run = &data.run;
        let interrupted = run.causes.iter().any(|c| c.kind == CauseKind::Interrupted);
        let (text, class) = match run.exit_code {
            _ if interrupted => ("interrupted".to_owned(), "v-interrupted"),
            0 if run.kept => ("passed, hosts kept".to_owned(), "v-passed"),
            0 => ("passed".to_owned(), "v-passed"),
            1 => ("failed: the product".to_owned(), "v-failed"),
            2 => ("failed: usage or config".to_owned(), "v-failed"),
            3 => ("failed: infrastructure".to_owned(), "v-failed"),
            code => (format!("failed (exit {code})"), "v-failed"),
        };
        Self { text, class }
    }
}

fn header(page: &mut String, data: &ReportData, verdict: &Verdict) {
    let run = &data.run;
    let _ = write!(
        page,
        "<header>\n<h1>gate run <code id=\"run-id\">{}</code></h1>\n\
         <div id=\"verdict\" class=\"verdict {}\" data-exit-code=\"{}\">{} — exit {}</div>\n\
         <dl class=\"meta\">\n",
        esc(run.run_id.as_str()),
        verdict.class,
        run.exit_code,
        esc(&verdict.text),
        run.exit_code
    );
    let total = match (
        parse_time(&run.started_at),
        run.finished_at.as_deref().and_then(parse_time),
    ) {
        (Some(start), Some(end)) => human_ms(millis(end - start)),
        _ => "—".into(),
    };
    let rows = [
        (
            "config digest",
            format!(
                "<code id=\"config-digest\">{}</code>",
                esc(&run.config_digest)
            ),
        ),
        (
            "gate version",
            format!(
                "<span id=\"gate-version\">{}</span>",
                esc(&run.gate_version)
            ),
        ),
        ("started", esc(&run.started_at)),
        ("finished", esc(run.finished_at.as_deref().unwrap_or("—"))),
        ("took", esc(&total)),
        (
            "hosts",
            esc(&data
                .inventory
                .as_ref()
                .map(|i| i.len().to_string())
                .unwrap_or_else(|| "none allocated".into())),
        ),
    ];
    for (name, value) in rows {
        let _ = writeln!(page, "<dt>{name}</dt><dd>{value}</dd>");
    }
    if run.kept {
        page.push_str(
            "<dt>kept</dt><dd>hosts kept on purpose (<code>--keep</code>); free them with \
             <code>gate cleanup</code></dd>\n",
        );
    }
    page.push_str("</dl>\n");
    if !run.causes.is_empty() {
        page.push_str("<ul id=\"causes\">\n");
        for cause in &run.causes {
            let _ = writeln!(
                page,
                "<li><strong>{}</strong>{}: {}</li>",
                esc(kind_word(cause.kind)),
                cause
                    .stage
                    .map(|s| format!(" in {}", esc(s.name())))
                    .unwrap_or_default(),
                esc(first_line(&cause.message))
            );
        }
        page.push_str("</ul>\n");
    }
    page.push_str("</header>\n");
}

fn failure_section(page: &mut String, data: &ReportData, failure: &Failure) {
    let interrupted = failure.status == StageStatus::Cancelled;
    let _ = write!(
        page,
        "<section id=\"failure\" class=\"failure{}\" data-stage=\"{}\">\n<h2>{} <code>{}</code></h2>\n",
        if interrupted { " interrupted" } else { "" },
        esc(failure.stage.name()),
        if interrupted {
            "Interrupted during"
        } else {
            "Failed:"
        },
        esc(failure.stage.name())
    );
    if !failure.message.is_empty() {
        let _ = writeln!(
            page,
            "<pre class=\"message\">{}</pre>",
            esc(&failure.message)
        );
    }
    if failure.stage == Stage::Test {
        let failing: Vec<_> = data
            .cases()
            .filter(|c| matches!(c.status, CaseStatus::Failed | CaseStatus::Error))
            .take(5)
            .collect();
        if !failing.is_empty() {
            page.push_str(
                "<h3>Failing tests (all of them <a href=\"#tests\">below</a>)</h3>\n<ul>\n",
            );
            for case in failing {
                let _ = writeln!(
                    page,
                    "<li><strong>{}</strong> <span class=\"muted\">{}</span>: {}</li>",
                    esc(&case.name),
                    esc(&case.classname),
                    esc(&case.message)
                );
            }
            page.push_str("</ul>\n");
        }
    }
    for tail in &failure.tails {
        let _ = write!(
            page,
            "<h3>Last lines on <code>{}</code> (<a href=\"{}\">whole log</a>)</h3>\n<pre class=\"tail\">{}</pre>\n",
            esc(&tail.host),
            href(&tail.link),
            esc(if tail.text.is_empty() {
                "(no output)"
            } else {
                &tail.text
            })
        );
    }
    page.push_str("</section>\n");
}

/// The run's time axis: where the run started and how long the picture spans.
struct Axis {
    start: Option<OffsetDateTime>,
    total_ms: u64,
}

impl Axis {
    fn of(data: &ReportData) -> Self {
        let start = parse_time(&data.run.started_at);
        let mut total_ms = 1;
        if let Some(t0) = start {
            for record in &data.run.stages {
                if let Some(begin) = record.started_at.as_deref().and_then(parse_time) {
                    let end = millis(begin - t0) + record.duration_ms.unwrap_or(0);
                    total_ms = total_ms.max(end);
                }
            }
            for span in &data.steps {
                total_ms = total_ms.max(millis(span.ended.unwrap_or(span.started) - t0));
            }
        }
        Self { start, total_ms }
    }

    /// Milliseconds from the run's start to `at`.
    fn offset(&self, at: OffsetDateTime) -> u64 {
        self.start.map(|t0| millis(at - t0)).unwrap_or(0)
    }

    /// A rectangle from `from_ms` lasting `ms`, in bar units.
    fn rect(&self, from_ms: u64, ms: u64, class: &str, title: &str) -> String {
        let scale = BAR_WIDTH / self.total_ms as f64;
        let x = (from_ms as f64 * scale).min(BAR_WIDTH - 2.0);
        let w = (ms as f64 * scale).max(2.0).min(BAR_WIDTH - x);
        format!(
            "<rect class=\"{class}\" x=\"{x:.1}\" y=\"1\" width=\"{w:.1}\" height=\"12\" rx=\"2\" fill=\"{}\"><title>{}</title></rect>",
            fill(class),
            esc(title)
        )
    }
}

fn svg(rects: &str) -> String {
    format!(
        "<svg viewBox=\"0 0 {BAR_WIDTH} 14\" preserveAspectRatio=\"none\" role=\"img\">{rects}</svg>"
    )
}

fn timeline(page: &mut String, data: &ReportData) {
    let axis = Axis::of(data);
    let _ = write!(
        page,
        "<section id=\"timeline\">\n<h2>Stages</h2>\n<table class=\"timeline\">\n<thead><tr>\
         <th>stage</th><th>status</th><th>backend</th><th class=\"num\">start</th>\
         <th class=\"num\">took</th><th class=\"bar\"><div class=\"axis\"><span>0</span>\
         <span>{}</span><span>{}</span></div></th><th>note</th></tr></thead>\n<tbody>\n",
        esc(&human_ms(axis.total_ms / 2)),
        esc(&human_ms(axis.total_ms))
    );
    for record in &data.run.stages {
        stage_row(page, &axis, record);
        host_rows(page, data, &axis, record);
    }
    page.push_str("</tbody>\n</table>\n</section>\n");
}

fn stage_row(page: &mut String, axis: &Axis, record: &StageRecord) {
    let status = status_class(record.status);
    let begin = record
        .started_at
        .as_deref()
        .and_then(parse_time)
        .map(|at| axis.offset(at));
    let bar = match (begin, record.duration_ms) {
        (Some(from), Some(ms)) => svg(&axis.rect(
            from,
            ms,
            status,
            &format!(
                "{}: {}, {}",
                record.stage.name(),
                status_word(record.status),
                human_ms(ms)
            ),
        )),
        _ => String::new(),
    };
    let dim = matches!(
        record.status,
        StageStatus::Skipped | StageStatus::NotConfigured
    );
    let note = record
        .message
        .as_deref()
        .filter(|_| record.status != StageStatus::Failed)
        .map(first_line)
        .unwrap_or_default();
    let note = if record.status == StageStatus::Failed {
        "<a href=\"#failure\">see the failure above</a>".to_owned()
    } else {
        esc(note)
    };
    let _ = writeln!(
        page,
        "<tr class=\"stage-row{}\" id=\"stage-{}\" data-stage=\"{}\" data-status=\"{}\">\
         <th scope=\"row\">{}</th><td><span class=\"badge s-{}\">{}</span></td><td>{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"bar\">{}</td><td>{}</td></tr>",
        if dim { " dim" } else { "" },
        esc(record.stage.name()),
        esc(record.stage.name()),
        status,
        esc(record.stage.name()),
        status,
        esc(status_word(record.status)),
        esc(record.backend.as_deref().unwrap_or("—")),
        begin
            .map(|ms| format!("+{}", human_ms(ms)))
            .unwrap_or_default(),
        record.duration_ms.map(human_ms).unwrap_or_default(),
        bar,
        note
    );
}

/// One row per host that ran steps in `record`'s stage: a bar per step.
fn host_rows(page: &mut String, data: &ReportData, axis: &Axis, record: &StageRecord) {
    let spans: Vec<&StepSpan> = data
        .steps
        .iter()
        .filter(|s| s.stage == Some(record.stage))
        .collect();
    if spans.is_empty() {
        return;
    }
    let stage_end = record
        .started_at
        .as_deref()
        .and_then(parse_time)
        .map(|at| axis.offset(at) + record.duration_ms.unwrap_or(0));
    let mut hosts: Vec<&str> = data
        .inventory
        .iter()
        .flat_map(|i| i.hosts())
        .map(|h| h.name.as_str())
        .filter(|name| spans.iter().any(|s| s.host == *name))
        .collect();
    for span in &spans {
        if !hosts.contains(&span.host.as_str()) {
            hosts.push(&span.host);
        }
    }
    for host in hosts {
        let mine: Vec<&&StepSpan> = spans.iter().filter(|s| s.host == host).collect();
        let cancelled = record.status == StageStatus::Cancelled;
        // A step the interrupt killed reports `failed`: show it as cancelled.
        let class_of = |span: &StepSpan| match span.status.as_str() {
            "ok" => "ok",
            "failed" if cancelled => "cancelled",
            "failed" => "failed",
            _ => "unfinished",
        };
        let status = ["failed", "cancelled", "unfinished"]
            .into_iter()
            .find(|c| mine.iter().any(|s| class_of(s) == *c))
            .unwrap_or("ok");
        let mut rects = String::new();
        let mut busy_ms = 0;
        for span in &mine {
            let from = axis.offset(span.started);
            let to = match span.ended {
                Some(end) => axis.offset(end),
                None => stage_end.unwrap_or(axis.total_ms),
            };
            let ms = to.saturating_sub(from);
            busy_ms += ms;
            let class = class_of(span);
            rects.push_str(&axis.rect(
                from,
                ms,
                class,
                &format!("{host}: {} — {class}, {}", span.step, human_ms(ms)),
            ));
        }
        let steps = mine.len();
        let _ = writeln!(
            page,
            "<tr class=\"host-row\" data-stage=\"{}\" data-host=\"{}\" data-status=\"{status}\">\
             <th scope=\"row\">↳ {}</th><td><span class=\"badge s-{status}\">{status}</span></td>\
             <td>{steps} step{}</td><td class=\"num\"></td><td class=\"num\">{}</td>\
             <td class=\"bar\">{}</td><td>{}</td></tr>",
            esc(record.stage.name()),
            esc(host),
            esc(host),
            if steps == 1 { "" } else { "s" },
            human_ms(busy_ms),
            svg(&rects),
            esc(&mine
                .iter()
                .map(|s| s.step.as_str())
                .collect::<Vec<_>>()
                .join(", "))
        );
    }
}

fn tests(page: &mut String, data: &ReportData) {
    page.push_str("<section id=\"tests\">\n<h2>Tests</h2>\n");
    if data.results.is_empty() {
        page.push_str(
            "<p class=\"muted\" id=\"no-tests\">No JUnit results in <code>results/</code>: \
             the test stage did not run or wrote nothing.</p>\n</section>\n",
        );
        return;
    }
    let cases: Vec<_> = data.cases().collect();
    let count = |status: CaseStatus| cases.iter().filter(|c| c.status == status).count();
    let (failed, errors, skipped) = (
        count(CaseStatus::Failed),
        count(CaseStatus::Error),
        count(CaseStatus::Skipped),
    );
    let passed = count(CaseStatus::Passed);
    let _ = writeln!(
        page,
        "<div class=\"counts\" id=\"test-counts\" data-tests=\"{}\" data-passed=\"{passed}\" \
         data-failures=\"{failed}\" data-errors=\"{errors}\" data-skipped=\"{skipped}\">",
        cases.len()
    );
    for (id, class, n, label) in [
        ("tests-total", "total", cases.len(), "tests"),
        ("tests-passed", "passed", passed, "passed"),
        ("tests-failed", "failed", failed, "failed"),
        ("tests-errors", "errors", errors, "errors"),
        ("tests-skipped", "skipped", skipped, "skipped"),
    ] {
        let _ = writeln!(
            page,
            "<div class=\"count {class}{}\"><span class=\"n\" id=\"{id}\">{n}</span>{label}</div>",
            if n == 0 { " zero" } else { "" }
        );
    }
    page.push_str("</div>\n<h3>JUnit files</h3>\n<ul id=\"junit-files\">\n");
    for file in &data.results {
        let what = match &file.cases {
            Ok(cases) => format!("{} cases", cases.len()),
            Err(e) => format!("unreadable: {e}"),
        };
        let _ = writeln!(
            page,
            "<li><a href=\"{}\">{}</a> <span class=\"muted\">{}</span></li>",
            href(&file.link),
            esc(&file.link),
            esc(&what)
        );
    }
    page.push_str("</ul>\n");
    let failing: Vec<_> = cases
        .iter()
        .filter(|c| matches!(c.status, CaseStatus::Failed | CaseStatus::Error))
        .collect();
    if !failing.is_empty() {
        page.push_str(
            "<h3>Failures</h3>\n<table id=\"test-failures\"><thead><tr><th>test</th>\
             <th>class</th><th>status</th><th>message</th></tr></thead>\n<tbody>\n",
        );
        for (n, case) in failing.into_iter().enumerate() {
            // The first few are open: the output says more than the message.
            let output = if case.output.is_empty() {
                String::new()
            } else {
                format!(
                    "<details{}><summary>output</summary><pre>{}</pre></details>",
                    if n < 5 { " open" } else { "" },
                    esc(&case.output)
                )
            };
            let _ = writeln!(
                page,
                "<tr class=\"test-failure\"><td>{}</td><td class=\"mono\">{}</td>\
                 <td><span class=\"badge s-{}\">{}</span></td><td><pre>{}</pre>{output}</td></tr>",
                esc(&case.name),
                esc(&case.classname),
                case.status.word(),
                case.status.word(),
                esc(&case.message)
            );
        }
        page.push_str("</tbody></table>\n");
    }
    let mut slowest = cases.clone();
    slowest.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    page.push_str(
        "<h3>Slowest tests</h3>\n<table id=\"slowest-tests\"><thead><tr><th>test</th>\
         <th>class</th><th>status</th><th class=\"num\">time</th></tr></thead>\n<tbody>\n",
    );
    for case in slowest.into_iter().take(SLOWEST) {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td class=\"mono\">{}</td><td><span class=\"badge s-{}\">{}</span></td>\
             <td class=\"num\">{}</td></tr>",
            esc(&case.name),
            esc(&case.classname),
            case.status.word(),
            case.status.word(),
            human_ms((case.seconds * 1000.0) as u64)
        );
    }
    page.push_str("</tbody></table>\n</section>\n");
}

fn inventory(page: &mut String, data: &ReportData) {
    page.push_str("<section id=\"inventory\">\n<h2>Hosts</h2>\n");
    let Some(inventory) = &data.inventory else {
        page.push_str("<p class=\"muted\">No hosts were allocated.</p>\n</section>\n");
        return;
    };
    page.push_str(
        "<table><thead><tr><th>name</th><th>address</th><th class=\"num\">port</th><th>user</th>\
         <th>transport</th><th>labels</th><th>archived files</th></tr></thead>\n<tbody>\n",
    );
    for (n, host) in inventory.hosts().iter().enumerate() {
        let archived = if data.archived.contains(&host.name) {
            format!("<a href=\"{}/\">{}/</a>", href(&host.name), esc(&host.name))
        } else {
            "—".into()
        };
        let _ = writeln!(
            page,
            "<tr class=\"host\" data-host=\"{}\"><td><code>{}</code>{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{archived}</td></tr>",
            esc(&host.name),
            esc(&host.name),
            if n == 0 { " <em>(primary)</em>" } else { "" },
            esc(&host.address),
            host.port,
            esc(&host.user),
            esc(&host.transport),
            esc(&host.labels.join(", "))
        );
    }
    page.push_str("</tbody></table>\n</section>\n");
}

fn ledger(page: &mut String, data: &ReportData) {
    let entries = &data.ledger.entries;
    let count = |op: Op| entries.iter().filter(|e| e.op == op).count();
    let live = data.ledger.live();
    let _ = write!(
        page,
        "<section id=\"ledger\">\n<h2>Resources (the ledger)</h2>\n<p id=\"ledger-summary\" \
         data-live=\"{}\">{} created, {} deleted, {} released — <span class=\"{}\">{} live</span></p>\n",
        live.len(),
        count(Op::Created),
        count(Op::Deleted),
        count(Op::Released),
        if live.is_empty() { "" } else { "live" },
        live.len()
    );
    if !live.is_empty() {
        let _ = writeln!(
            page,
            "<p class=\"live\">Still live{}: free them with <code>gate cleanup</code>.</p>\n<ul>",
            if data.run.kept {
                " (kept on purpose)"
            } else {
                ""
            }
        );
        for r in &live {
            let _ = writeln!(
                page,
                "<li>{} {} <code>{}</code> ({})</li>",
                esc(&r.spec.backend),
                esc(&r.spec.kind),
                esc(&r.spec.name),
                esc(r.id.as_deref().unwrap_or("intent only"))
            );
        }
        page.push_str("</ul>\n");
    }
    if entries.is_empty() {
        page.push_str("<p class=\"muted\">The ledger is empty.</p>\n</section>\n");
        return;
    }
    page.push_str(
        "<table id=\"ledger-entries\"><thead><tr><th>at</th><th>op</th><th>backend</th>\
         <th>kind</th><th>name</th><th>id</th><th>scope</th><th>parent</th></tr></thead>\n<tbody>\n",
    );
    for e in entries {
        let op = match e.op {
            Op::Intent => "intent",
            Op::Created => "created",
            Op::Deleted => "deleted",
            Op::Released => "released",
        };
        let _ = writeln!(
            page,
            "<tr class=\"op-{op}\"><td class=\"mono\">{}</td><td>{op}</td><td>{}</td><td>{}</td>\
             <td><code>{}</code></td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td></tr>",
            esc(&e.at),
            esc(&e.spec.backend),
            esc(&e.spec.kind),
            esc(&e.spec.name),
            esc(e.id.as_deref().unwrap_or("")),
            esc(&e.spec.scope),
            esc(e.spec.parent.as_deref().unwrap_or(""))
        );
    }
    page.push_str("</tbody></table>\n");
    for warning in &data.ledger.warnings {
        let _ = writeln!(page, "<p class=\"live\">{}</p>", esc(warning));
    }
    page.push_str("</section>\n");
}

fn logs(page: &mut String, data: &ReportData) {
    page.push_str("<section id=\"logs\">\n<h2>Logs</h2>\n");
    if data.logs.is_empty() {
        page.push_str("<p class=\"muted\">No per-host logs.</p>\n");
    } else {
        page.push_str("<table id=\"host-logs\"><thead><tr><th>stage</th><th>per-host logs</th></tr></thead>\n<tbody>\n");
        let mut stages: Vec<&str> = data.logs.iter().map(|l| l.stage.as_str()).collect();
        stages.dedup();
        for stage in stages {
            let links: Vec<String> = data
                .logs
                .iter()
                .filter(|l| l.stage == stage)
                .map(|l| {
                    format!(
                        "<a href=\"{}\">{}</a> <span class=\"muted\">({})</span>",
                        href(&l.link),
                        esc(&l.host),
                        esc(&human_bytes(l.bytes))
                    )
                })
                .collect();
            let _ = writeln!(
                page,
                "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
                esc(stage),
                links.join(" · ")
            );
        }
        page.push_str("</tbody></table>\n");
    }
    page.push_str(
        "<p>Also: <a href=\"run.json\">run.json</a> · <a href=\"inventory.json\">inventory.json</a> · \
         <a href=\"logs/steps.jsonl\">logs/steps.jsonl</a> (host step times)</p>\n</section>\n",
    );
}

fn config(page: &mut String, data: &ReportData) {
    let json = serde_json::to_string_pretty(&data.run.config).unwrap_or_default();
    let _ = write!(
        page,
        "<section id=\"config\">\n<h2>Config</h2>\n<details><summary>The resolved config \
         (secrets masked), digest <code>{}</code></summary>\n<pre>{}</pre>\n</details>\n</section>\n",
        esc(&data.run.config_digest),
        esc(&json)
    );
}

/// `text` with known secret values masked, then escaped for HTML text and attributes.
pub(super) fn esc(text: &str) -> String {
    let text = crate::secret::redact(text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A relative link (`/`-separated) percent-encoded and escaped for an `href`.
fn href(link: &str) -> String {
    let mut out = String::with_capacity(link.len());
    for b in link.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    // A link never leaves the artifacts dir or names a scheme.
    if out.starts_with('/') || out.split('/').any(|seg| seg == "..") {
        return "#".into();
    }
    esc(&out)
}

fn fill(class: &str) -> &'static str {
    match class {
        "passed" | "ok" => "#1a7f37",
        "failed" | "error" => "#cf222e",
        "cancelled" | "unfinished" => "#bc4c00",
        "running" => "#0969da",
        _ => "#8c959f",
    }
}

fn status_class(status: StageStatus) -> &'static str {
    match status {
        StageStatus::Running => "running",
        StageStatus::Passed => "passed",
        StageStatus::Failed => "failed",
        StageStatus::Skipped => "skipped",
        StageStatus::Cancelled => "cancelled",
        StageStatus::NotConfigured => "not-configured",
    }
}

fn status_word(status: StageStatus) -> &'static str {
    match status {
        StageStatus::NotConfigured => "not configured",
        other => status_class(other),
    }
}

fn kind_word(kind: CauseKind) -> &'static str {
    match kind {
        CauseKind::Interrupted => "interrupted",
        CauseKind::Usage => "usage",
        CauseKind::Infrastructure => "infrastructure",
        CauseKind::Product => "product",
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// Whole milliseconds of `d`, 0 when negative.
fn millis(d: time::Duration) -> u64 {
    u64::try_from(d.whole_milliseconds()).unwrap_or(0)
}

/// `850ms`, `12.3s`, `4m05s`.
fn human_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
    }
}

/// `512 B`, `1.5 KiB`, `2.0 MiB`.
fn human_bytes(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_text_and_attributes_and_links_stay_inside() {
        assert_eq!(
            esc("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(href("logs/deploy/h 1.log"), "logs/deploy/h%201.log");
        assert_eq!(href("results/a\"b<.xml"), "results/a%22b%3C.xml");
        assert_eq!(href("../etc/passwd"), "#");
        assert_eq!(href("/etc/passwd"), "#");
        assert_eq!(href("javascript:alert(1)"), "javascript%3Aalert%281%29");
    }
}
