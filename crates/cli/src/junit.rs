//! `gate junit`: convert subunit v2 to JUnit, merge JUnit files, summarize them.

use std::io::Write;
use std::path::{Path, PathBuf};

use gate_core::junit::read_counts;
use gate_core::report::{CaseStatus, read_cases};

use crate::args::{JunitAction, JunitArgs};
use crate::commands::{Failure, Outcome, exit};

/// Runs `gate junit`.
pub fn run(args: &JunitArgs) -> Outcome {
    match &args.action {
        JunitAction::Convert {
            suite,
            input,
            output,
            ..
        } => convert(input, output, suite),
        JunitAction::Merge { output, inputs } => merge(output, inputs),
        JunitAction::Summary { slowest, inputs } => summary(inputs, *slowest),
    }
}

fn convert(input: &Path, output: &Path, suite: &str) -> Outcome {
    let report = if input == Path::new("-") {
        gate_testers::subunit::convert(std::io::stdin().lock(), output, suite)
    } else {
        let file = std::fs::File::open(input)
            .map_err(|e| Failure::usage(format!("{}: {e}", input.display())))?;
        gate_testers::subunit::convert(file, output, suite)
    }
    .map_err(Failure::from_core)?;
    for problem in &report.problems {
        eprintln!(
            "warning: {}: byte {}: {}",
            input.display(),
            problem.offset,
            problem.reason
        );
    }
    eprintln!(
        "{}: {} tests, {} failures, {} errors, {} skipped",
        output.display(),
        report.tests,
        report.failures,
        report.errors,
        report.skipped
    );
    Ok(exit::OK)
}

/// The `<testsuite>` elements of a JUnit file's text (the whole root when it is one suite,
/// the children when it is a `<testsuites>`).
fn suites_of(text: &str) -> &str {
    let body = match text.find("?>") {
        Some(end) if text.trim_start().starts_with("<?xml") => &text[end + 2..],
        _ => text,
    }
    .trim();
    if body.starts_with("<testsuites") {
        let open_end = body.find('>').map(|i| i + 1).unwrap_or(0);
        let close = body.rfind("</testsuites>").unwrap_or(body.len());
        if body[..open_end].ends_with("/>") {
            return "";
        }
        body[open_end..close].trim()
    } else {
        body
    }
}

fn merge(output: &Path, inputs: &[PathBuf]) -> Outcome {
    let mut total = gate_core::TestReport::default();
    let mut parts = Vec::with_capacity(inputs.len());
    for input in inputs {
        let counts = read_counts(input).map_err(Failure::usage)?;
        let text = std::fs::read_to_string(input)
            .map_err(|e| Failure::usage(format!("{}: {e}", input.display())))?;
        total.absorb(counts);
        parts.push(text);
    }
    let tmp = output.with_extension("xml.partial");
    let write = || -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        writeln!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\">",
            total.tests, total.failures, total.errors, total.skipped
        )?;
        for part in &parts {
            writeln!(out, "{}", suites_of(part))?;
        }
        writeln!(out, "</testsuites>")?;
        out.flush()
    };
    write()
        .and_then(|()| std::fs::rename(&tmp, output))
        .map_err(|e| Failure {
            code: exit::INFRA,
            message: format!("writing {}: {e}", output.display()),
        })?;
    read_counts(output).map_err(Failure::from_core)?;
    eprintln!(
        "{}: {} files, {} tests, {} failures, {} errors, {} skipped",
        output.display(),
        inputs.len(),
        total.tests,
        total.failures,
        total.errors,
        total.skipped
    );
    Ok(exit::OK)
}

fn summary(inputs: &[PathBuf], slowest: usize) -> Outcome {
    let mut cases = Vec::new();
    for input in inputs {
        cases.extend(read_cases(input).map_err(Failure::usage)?);
    }
    let count = |status: CaseStatus| cases.iter().filter(|c| c.status == status).count();
    println!(
        "{} tests: {} passed, {} failed, {} errors, {} skipped",
        cases.len(),
        count(CaseStatus::Passed),
        count(CaseStatus::Failed),
        count(CaseStatus::Error),
        count(CaseStatus::Skipped)
    );
    let mut by_time: Vec<_> = cases.iter().collect();
    by_time.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    if !by_time.is_empty() && slowest > 0 {
        println!("\nslowest:");
        for case in by_time.iter().take(slowest) {
            println!("  {:>9.3}s  {}.{}", case.seconds, case.classname, case.name);
        }
    }
    let failed: Vec<_> = cases
        .iter()
        .filter(|c| matches!(c.status, CaseStatus::Failed | CaseStatus::Error))
        .collect();
    if !failed.is_empty() {
        println!("\nfailures:");
        for case in failed {
            let message = case.message.lines().next().unwrap_or_default();
            println!(
                "  {} {}.{}: {message}",
                case.status.word(),
                case.classname,
                case.name
            );
        }
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_are_taken_out_of_either_root() {
        let one =
            "<?xml version=\"1.0\"?>\n<testsuite name=\"a\"><testcase name=\"x\"/></testsuite>\n";
        assert_eq!(
            suites_of(one),
            "<testsuite name=\"a\"><testcase name=\"x\"/></testsuite>"
        );
        let many = "<testsuites tests=\"1\">\n<testsuite name=\"b\"/>\n</testsuites>";
        assert_eq!(suites_of(many), "<testsuite name=\"b\"/>");
        assert_eq!(suites_of("<testsuites/>"), "");
    }
}
