//! Collecting result files from hosts into `artifacts/results/`.
//!
//! Paths and glob patterns (`*`, `?`, `[…]`, `**`) are expanded on the host by a fixed bash
//! script that gets them as arguments, never pasted into its text; relative ones are
//! resolved against a base directory (the home unless said). The layout:
//!
//! - a JUnit file becomes `results/<host>-<file name>` (where Jenkins' `results/*.xml`
//!   finds it), checked by [`publish_junit`](crate::validate::publish_junit) first;
//! - any other file becomes `results/<host>/<subdir>/<file name>`;
//!
//! with `-2`, `-3`, … before the extension when two files would get the same name. Known
//! secret values are masked in collected text files (as the archive does); symbolic links
//! are never followed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gate_core::junit::{CaseOutcome, CaseResult};
use gate_core::{Command, Error, ExecIo, Result, StageContext, TestReport, Transport};

use crate::validate::publish_junit;

/// Lists the regular files the patterns `$2…` match, resolved against the directory `$1`,
/// one `<pattern index><TAB><absolute path>` a line; `-<TAB><index>` for a pattern that
/// matched nothing. Symbolic links (never followed) and paths with a newline are left out.
const LIST: &str = r#"cd -- "$1" || exit 3
shift
shopt -s nullglob globstar
IFS=
i=0
for pattern in "$@"; do
    found=0
    for f in $pattern; do
        [ -f "$f" ] && [ ! -L "$f" ] || continue
        case $f in *$'\n'*) continue ;; /*) ;; *) f=$PWD/$f ;; esac
        printf '%s\t%s\n' "$i" "$f"
        found=1
    done
    [ "$found" = 1 ] || printf -- '-\t%s\n' "$i"
    i=$((i + 1))
done"#;

/// What to collect from one host.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Directory that relative patterns are resolved against (absolute, or relative to the
    /// home); `None`: the home.
    pub base: Option<&'a str>,
    /// JUnit files: checked, published as `results/<host>-<name>`.
    pub junit: &'a [String],
    /// Other files: copied to `results/<host>/<files_subdir>/<name>`.
    pub files: &'a [String],
    /// The subdirectory for other files (empty: `results/<host>/` itself).
    pub files_subdir: &'a str,
}

/// What was collected from one host.
#[derive(Debug, Default)]
pub struct Collected {
    /// The published JUnit files and their counts (error reports for broken ones included).
    pub report: TestReport,
    /// Other files copied.
    pub files: Vec<PathBuf>,
    /// Patterns that matched nothing.
    pub missing: Vec<String>,
    /// Files that matched but could not be copied: (remote path, what went wrong).
    pub failed: Vec<(String, Error)>,
}

impl Collected {
    /// An error case (class `classname`) for each file that could not be copied.
    pub fn error_cases(&self, classname: &str) -> Vec<CaseResult> {
        self.failed
            .iter()
            .map(|(path, e)| error_case(classname, format!("collect {path}"), e))
            .collect()
    }
}

/// An error case: `name` in `classname` could not run or finish because of `error`.
pub fn error_case(classname: &str, name: String, error: &Error) -> CaseResult {
    CaseResult {
        classname: classname.to_owned(),
        name,
        duration: Duration::ZERO,
        outcome: CaseOutcome::Error {
            message: error.to_string(),
        },
        output: None,
    }
}

/// Collects what `request` asks for from the host of `transport`.
pub async fn collect(
    cx: &StageContext,
    transport: &dyn Transport,
    request: Request<'_>,
) -> Result<Collected> {
    let host = transport.host().name.clone();
    let mut out = Collected::default();
    let patterns: Vec<&String> = request.junit.iter().chain(request.files).collect();
    if patterns.is_empty() {
        return Ok(out);
    }
    let log = cx.host_log(&host)?;
    let io = ExecIo {
        log: &log,
        cancel: &cx.cancel,
    };
    let list = Command::script(LIST)
        .arg("gate-collect")
        .arg(request.base.unwrap_or("."))
        .args(patterns.iter().map(|p| p.as_str()));
    let listed = transport.exec(&list, &io).await?;
    if !listed.status.success() {
        return Err(Error::Command {
            host,
            command: "listing result files".into(),
            status: listed.status.to_string(),
            tail: listed.tail,
        });
    }
    let results = cx.results_dir();
    let mut seen = std::collections::HashSet::new();
    for line in listed.stdout.lines() {
        let Some((index, path)) = line.split_once('\t') else {
            continue;
        };
        if index == "-" {
            if let Some(p) = path.parse::<usize>().ok().and_then(|i| patterns.get(i)) {
                log.note(&format!("collect: nothing matches {p}"));
                out.missing.push((*p).clone());
            }
            continue;
        }
        let Ok(index) = index.parse::<usize>() else {
            continue;
        };
        if !seen.insert(path) {
            continue; // matched by two patterns
        }
        let name = path.rsplit('/').next().unwrap_or(path);
        let is_junit = index < request.junit.len();
        let target = if is_junit {
            free_name(&results, &format!("{host}-{name}"))
        } else {
            let dir = results.join(&host).join(request.files_subdir);
            free_name(&dir, name)
        };
        match transport.download(path, &target).await {
            Ok(()) => {
                mask_secrets(&target)?;
                if is_junit {
                    out.report.absorb(publish_junit(&target)?);
                } else {
                    out.files.push(target);
                }
            }
            Err(e) => out.failed.push((path.to_owned(), e)),
        }
    }
    Ok(out)
}

/// Text files larger than this are copied as they are (not read whole to mask secrets).
const MASK_LIMIT: u64 = 64 << 20;

/// Masks known secret values in the collected file `path` when it is text (no NUL byte in
/// its first 8 KiB) and at most [`MASK_LIMIT`] bytes, as the archive does.
fn mask_secrets(path: &Path) -> Result<()> {
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io("reading", path, e))?
        .len();
    if size > MASK_LIMIT {
        return Ok(());
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    if bytes[..bytes.len().min(8192)].contains(&0) {
        return Ok(());
    }
    if let Some(masked) = gate_core::secret::redact_bytes(&bytes) {
        std::fs::write(path, masked).map_err(|e| Error::io("writing", path, e))?;
    }
    Ok(())
}

/// `dir/name`, or `dir/<stem>-N.<ext>` for the first N from 2 that is not taken.
fn free_name(dir: &Path, name: &str) -> PathBuf {
    let candidate = dir.join(name);
    if !candidate.exists() {
        return candidate;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (name, String::new()),
    };
    (2..)
        .map(|n| dir.join(format!("{stem}-{n}{ext}")))
        .find(|p| !p.exists())
        .unwrap_or(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gate_core::Stage;
    use gate_core::testkit::LocalStage;

    #[tokio::test]
    async fn globs_from_a_base_and_absolute_paths_land_in_the_layout() {
        let stage = LocalStage::new(1, Stage::Test).await;
        let home = stage.home(1);
        let abs = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.join("out/deep/er")).unwrap();
        std::fs::write(
            home.join("out/a.xml"),
            "<testsuite><testcase name='x'/></testsuite>",
        )
        .unwrap();
        std::fs::write(
            home.join("out/deep/er/a.xml"),
            "<testsuite><testcase name='y'><failure/></testcase></testsuite>",
        )
        .unwrap();
        std::fs::write(home.join("out/shot 1.png"), "png").unwrap();
        std::fs::write(abs.path().join("notes.txt"), "n").unwrap();
        let junit = vec!["**/*.xml".to_owned(), "*.xml".to_owned()];
        let files = vec![
            "*.png".to_owned(),
            abs.path().join("*.txt").display().to_string(),
            "nothing-*.log".to_owned(),
        ];
        let got = collect(
            &stage.cx,
            stage.cx.primary().as_ref(),
            Request {
                base: Some("out"),
                junit: &junit,
                files: &files,
                files_subdir: "extra",
            },
        )
        .await
        .unwrap();
        let results = stage.cx.results_dir();
        let mut junit_files = got.report.junit_files.clone();
        junit_files.sort();
        assert_eq!(
            junit_files,
            vec![results.join("host-1-a-2.xml"), results.join("host-1-a.xml")]
        );
        assert_eq!((got.report.tests, got.report.failures), (2, 1));
        assert!(results.join("host-1/extra/shot 1.png").is_file());
        assert!(results.join("host-1/extra/notes.txt").is_file());
        assert_eq!(got.missing, vec!["nothing-*.log".to_owned()]);
        assert!(got.failed.is_empty());
    }

    #[tokio::test]
    async fn secrets_are_masked_and_symlinks_never_followed() {
        let stage = LocalStage::new(1, Stage::Test).await;
        let home = stage.home(1);
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("private.xml"), "<testsuite/>").unwrap();
        std::fs::create_dir_all(home.join("out")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("private.xml"),
            home.join("out/link.xml"),
        )
        .unwrap();
        gate_core::secret::register("collect-secret-4711");
        std::fs::write(
            home.join("out/r.xml"),
            "<testsuite><testcase name='a'><failure message='token collect-secret-4711'/></testcase></testsuite>",
        )
        .unwrap();
        std::fs::write(home.join("out/run.log"), "password=collect-secret-4711\n").unwrap();
        let (junit, files) = (vec!["out/*.xml".to_owned()], vec!["out/*.log".to_owned()]);
        let request = Request {
            base: None,
            junit: &junit,
            files: &files,
            files_subdir: "",
        };
        let got = collect(&stage.cx, stage.cx.primary().as_ref(), request)
            .await
            .unwrap();
        let results = stage.cx.results_dir();
        assert_eq!(got.report.junit_files, vec![results.join("host-1-r.xml")]);
        let xml = std::fs::read_to_string(results.join("host-1-r.xml")).unwrap();
        assert!(xml.contains("token ***") && !xml.contains("4711"), "{xml}");
        let log = std::fs::read_to_string(results.join("host-1/run.log")).unwrap();
        assert_eq!(log, "password=***\n");
    }

    #[tokio::test]
    async fn patterns_are_never_run_as_shell() {
        let stage = LocalStage::new(1, Stage::Test).await;
        let home = stage.home(1);
        let junit = vec!["$(touch pwned).xml".to_owned(), "`touch pwned2`".to_owned()];
        let got = collect(
            &stage.cx,
            stage.cx.primary().as_ref(),
            Request {
                base: None,
                junit: &junit,
                files: &[],
                files_subdir: "",
            },
        )
        .await
        .unwrap();
        assert_eq!(got.missing.len(), 2);
        assert!(!home.join("pwned").exists() && !home.join("pwned2").exists());
    }
}
