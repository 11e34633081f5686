//! The commands archive runs on a host: a look at the paths first, then one tar stream of
//! all of them. Paths and patterns are passed as arguments, never pasted into a script.

use gate_core::Command;

use super::stream::Codec;

/// Lists each path as `missing` (not there) and every file under the present ones that the
/// login user cannot read as `unreadable`, and says `has zstd` when the host has it. Paths
/// follow the script as `$@`.
const PREFLIGHT: &str = r#"command -v zstd >/dev/null 2>&1 && printf 'has\tzstd\n'
n=$#
for p do
    if [ -e "$p" ] || [ -h "$p" ]; then set -- "$@" "$p"; else printf 'missing\t%s\n' "$p"; fi
done
shift "$n"
if [ "$#" -gt 0 ]; then
    find "$@" ! -type l ! -readable -printf 'unreadable\t%p\n' 2>/dev/null
fi
exit 0"#;

/// The look at `paths` before the copy.
pub fn preflight(paths: &[String]) -> Command {
    Command::new("sh")
        .arg("-c")
        .arg(PREFLIGHT)
        .arg("gate-archive")
        .args(paths.iter().cloned())
}

/// What the look found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Preflight {
    /// Paths that do not exist.
    pub missing: Vec<String>,
    /// Files that cannot be read.
    pub unreadable: Vec<String>,
    /// Whether the host has the `zstd` program.
    pub zstd: bool,
}

impl Preflight {
    /// Parses the output of [`preflight`].
    pub fn parse(stdout: &str) -> Self {
        let mut found = Self::default();
        for line in stdout.lines() {
            match line.split_once('\t') {
                Some(("missing", path)) => found.missing.push(path.to_owned()),
                Some(("unreadable", path)) => found.unreadable.push(path.to_owned()),
                Some(("has", "zstd")) => found.zstd = true,
                _ => {}
            }
        }
        found
    }
}

/// One tar stream of every path in `present` (absolute paths named without their leading
/// `/`, relative ones as given from the home directory), compressed by `codec` on the host,
/// leaving out `exclude` patterns on the host already, never following links, going on past
/// unreadable or vanishing files.
pub fn tar(present: &[String], exclude: &[String], codec: Codec) -> Command {
    let mut cmd = Command::new("tar").args([
        "-cf",
        "-",
        "--ignore-failed-read",
        "--warning=no-file-changed",
        "--warning=no-file-removed",
        "--warning=no-file-shrank",
    ]);
    if let Some(program) = codec.program() {
        cmd = cmd.arg(format!("--use-compress-program={program}"));
    }
    for pattern in exclude {
        cmd = cmd.arg(format!("--exclude={pattern}"));
    }
    let (absolute, relative): (Vec<&String>, Vec<&String>) =
        present.iter().partition(|p| p.starts_with('/'));
    // Relative names first (from the home directory), then `-C /` for the absolute ones.
    for path in relative {
        cmd = cmd.arg(dash_safe(path));
    }
    if !absolute.is_empty() {
        cmd = cmd.arg("-C").arg("/");
        for path in absolute {
            let name = path.trim_start_matches('/');
            cmd = cmd.arg(if name.is_empty() { "." } else { name });
        }
    }
    cmd
}

/// A relative path that starts with `-` as `./-…`, so tar never reads it as an option.
fn dash_safe(path: &str) -> String {
    if path.starts_with('-') {
        format!("./{path}")
    } else {
        path.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preflight_output_is_parsed_into_missing_and_unreadable() {
        let found = Preflight::parse("missing\t/nope\nunreadable\t/var/log/secret.log\nnoise\n");
        assert_eq!(found.missing, ["/nope"]);
        assert_eq!(found.unreadable, ["/var/log/secret.log"]);
        assert!(!found.zstd);
        assert!(Preflight::parse("has\tzstd\n").zstd);
    }

    #[test]
    fn tar_names_absolute_paths_from_the_root_and_quotes_nothing_into_a_shell() {
        let cmd = tar(
            &["/var/log".into(), "logs".into(), "-odd".into()],
            &["*secrets*.yml".into()],
            Codec::Zstd,
        );
        let args = cmd.arg_list();
        assert!(args.contains(&"--exclude=*secrets*.yml".to_owned()));
        assert!(args.contains(&"--use-compress-program=zstd -1 -T0 -q".to_owned()));
        let tail: Vec<&str> = args
            .iter()
            .rev()
            .take(5)
            .rev()
            .map(String::as_str)
            .collect();
        assert_eq!(tail, ["logs", "./-odd", "-C", "/", "var/log"]);
    }
}
