//! The commands of a Tempest run: install, init, `tempest run`, and telling a flaky
//! failure from a real one.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use gate_core::{Command, EnvValue};

use super::config::{InstallMode, SETS, TempestConfig};
use super::remote::Place;

/// Installs Tempest with pip into the virtualenv `$1` made by the Python `$2`, unless it
/// holds Tempest `$3` already and `$4` is `keep`; `$5…` are pip's arguments.
const INSTALL: &str = r#"venv=$1 python=$2 version=$3 keep=$4
shift 4
if [ "$keep" = keep ] && [ -x "$venv/bin/tempest" ] &&
    "$venv/bin/python" -c 'import sys, importlib.metadata as m; sys.exit(m.version("tempest") != sys.argv[1])' "$version" 2>/dev/null; then
    echo "tempest $version is already installed in $venv"
    exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv" || { echo "cannot make a virtualenv in $venv with $python (is python3-venv installed?)" >&2; exit 2; }
fi
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input "$@"
"$venv/bin/tempest" --version"#;

/// Checks that the Tempest command `$1` runs.
const CHECK: &str = r#"command -v -- "$1" >/dev/null || { echo "no tempest command $1" >&2; exit 127; }
"$1" --version"#;

/// Makes the workspace `$2` with the Tempest command `$1` (its registry file `$3`), unless
/// it is one already.
const INIT: &str = r#"tempest=$1 ws=$2 registry=$3
if [ -f "$ws/.stestr.conf" ]; then
    echo "tempest workspace $ws is there"
    exit 0
fi
"$tempest" init --workspace-path "$registry" "$ws""#;

/// In the workspace `$1`: runs `$3…` with its standard output (the subunit stream) in the
/// file `$2` and its standard error as the command's output.
const RUN: &str = r#"cd -- "$1" || exit 2
out=$2
shift 2
"$@" 2>&1 >"$out""#;

/// The `tempest` executable the config points at.
pub fn tempest_command(config: &TempestConfig) -> String {
    match config.install.mode {
        InstallMode::Pip | InstallMode::Venv => {
            format!("{}/bin/tempest", config.install.venv.trim_end_matches('/'))
        }
        InstallMode::Command => config.install.command.clone(),
    }
}

/// pip's arguments for the install: index, links, trusted hosts, constraints, then the
/// requirements.
pub fn pip_args(config: &TempestConfig) -> Vec<String> {
    let install = &config.install;
    let mut args = Vec::new();
    let mut trusted = install.trusted_hosts.clone();
    let mut plain_http = |url: &str| {
        if let Some(rest) = url.strip_prefix("http://") {
            let authority = rest.split('/').next().unwrap_or_default();
            let host = authority.rsplit('@').next().unwrap_or_default();
            if !host.is_empty() && !trusted.iter().any(|t| t == host) {
                trusted.push(host.to_owned());
            }
        }
    };
    if let Some(index) = &install.index_url {
        plain_http(index);
        args.extend(["--index-url".to_owned(), index.clone()]);
    }
    for link in &install.find_links {
        plain_http(link);
        args.extend(["--find-links".to_owned(), link.clone()]);
    }
    for host in trusted {
        args.extend(["--trusted-host".to_owned(), host]);
    }
    if let Some(constraints) = &install.constraints {
        args.extend(["-c".to_owned(), constraints.clone()]);
    }
    args.push(format!("tempest=={}", install.version));
    args.extend(install.packages.iter().cloned());
    args
}

/// The command that installs Tempest (mode `pip`) or checks it is there.
pub fn install(place: &Place<'_>, config: &TempestConfig) -> Command {
    let install = &config.install;
    let timeout = Duration::from_secs(install.timeout_secs);
    match install.mode {
        InstallMode::Pip => {
            let keep = if install.packages.is_empty() {
                "keep"
            } else {
                "always"
            };
            let head = [
                install.venv.clone(),
                install.python.clone(),
                install.version.clone(),
                keep.to_owned(),
            ];
            place
                .script(INSTALL, head.into_iter().chain(pip_args(config)))
                .timeout(timeout)
        }
        InstallMode::Venv | InstallMode::Command => place
            .script(CHECK, [tempest_command(config)])
            .timeout(timeout),
    }
}

/// The command that makes the workspace `ws`.
pub fn init(place: &Place<'_>, config: &TempestConfig, ws: &str) -> Command {
    let registry = format!("{}.workspaces.yaml", ws.trim_end_matches('/'));
    place
        .script(INIT, [tempest_command(config), ws.to_owned(), registry])
        .timeout(Duration::from_secs(600))
}

/// `tempest run`'s selection arguments.
pub fn selection_args(config: &TempestConfig) -> Vec<String> {
    let mut args = Vec::new();
    let mut include: Vec<&str> = Vec::new();
    let mut everything = false;
    for set in &config.sets {
        match SETS.iter().find(|(name, _)| name == set) {
            Some((_, "")) => everything = true,
            Some((_, regex)) => include.push(regex),
            None => {}
        }
    }
    include.extend(config.include.iter().map(String::as_str));
    let chosen = !config.sets.is_empty()
        || !config.include.is_empty()
        || config.include_file.is_some()
        || config.load_list.is_some();
    if !chosen {
        include.push(SETS[0].1);
    }
    if everything {
        // Everything, even with include files: a regex that matches every id.
        if config.include_file.is_some() || config.load_list.is_some() || !include.is_empty() {
            args.extend(["--regex".to_owned(), ".".to_owned()]);
        }
    } else if let Some(regex) = one_regex(&include) {
        args.extend(["--regex".to_owned(), regex]);
    }
    if let Some(regex) = one_regex(
        &config
            .exclude
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ) {
        args.extend(["--exclude-regex".to_owned(), regex]);
    }
    for (flag, file) in [
        ("--include-list", &config.include_file),
        ("--exclude-list", &config.exclude_file),
        ("--load-list", &config.load_list),
    ] {
        if let Some(file) = file {
            args.extend([flag.to_owned(), file.clone()]);
        }
    }
    if config.serial {
        args.push("--serial".to_owned());
    } else if let Some(n) = config.concurrency {
        args.extend(["--concurrency".to_owned(), n.to_string()]);
    }
    args
}

/// One regex for several: the only one as it is, else each in a group, joined by `|`.
fn one_regex(regexes: &[&str]) -> Option<String> {
    match regexes {
        [] => None,
        [one] => Some((*one).to_owned()),
        many => Some(
            many.iter()
                .map(|r| format!("(?:{r})"))
                .collect::<Vec<_>>()
                .join("|"),
        ),
    }
}

/// The command of one run: in the workspace `ws`, `tempest run --subunit …` with the
/// stream in `stream`, the config's environment set inside the place.
pub fn run(
    place: &Place<'_>,
    config: &TempestConfig,
    ws: &str,
    conf: &str,
    stream: &str,
    env: &[(String, EnvValue)],
) -> Command {
    let mut argv = vec![ws.to_owned(), stream.to_owned()];
    if !env.is_empty() {
        argv.push("env".to_owned());
        argv.extend(env.iter().map(|(k, v)| format!("{k}={}", v.expose())));
    }
    argv.extend([
        tempest_command(config),
        "run".to_owned(),
        "--config-file".to_owned(),
        conf.to_owned(),
        "--subunit".to_owned(),
    ]);
    argv.extend(selection_args(config));
    place
        .script(RUN, argv)
        .timeout(Duration::from_secs(config.timeout_secs))
}

/// The first of `patterns` in `text`.
pub fn flaky_in<'p>(patterns: &'p [String], text: &str) -> Option<&'p str> {
    patterns
        .iter()
        .find(|p| !p.is_empty() && text.contains(p.as_str()))
        .map(String::as_str)
}

/// The first of `patterns` in the file at `path` (read in blocks; a pattern across two
/// blocks is found too).
pub fn flaky_in_file<'p>(patterns: &'p [String], path: &Path) -> Option<&'p str> {
    let longest = patterns.iter().map(String::len).max().unwrap_or(0);
    if longest == 0 {
        return None;
    }
    let mut file = std::fs::File::open(path).ok()?;
    let mut window: Vec<u8> = Vec::new();
    let mut block = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut block).ok()?;
        if n == 0 {
            return None;
        }
        window.extend_from_slice(&block[..n]);
        if let Some(p) = patterns
            .iter()
            .find(|p| !p.is_empty() && contains(&window, p.as_bytes()))
        {
            return Some(p);
        }
        let keep = window.len().min(longest - 1);
        window.drain(..window.len() - keep);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.len() <= haystack.len() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gate_core::BackendConfig;

    fn config(toml: &str) -> TempestConfig {
        let toml = format!("{toml}\n[auth]\nurl = \"http://k/v3\"\nadmin_password = \"pw-x\"\n");
        BackendConfig::from_toml("tester", "tempest", &toml)
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn selection_becomes_tempest_run_options() {
        assert_eq!(selection_args(&config("")), ["--regex", SETS[0].1]);
        assert_eq!(
            selection_args(&config(
                "sets = [\"identity\"]\ninclude = [\"flavors\"]\nexclude = [\"slow\"]\nconcurrency = 2"
            )),
            [
                "--regex",
                r"(?:^tempest\.api\.identity\.)|(?:flavors)",
                "--exclude-regex",
                "slow",
                "--concurrency",
                "2"
            ]
        );
        assert!(selection_args(&config("sets = [\"all\"]")).is_empty());
        assert_eq!(
            selection_args(&config(
                "include_file = \"/etc/t.txt\"\nexclude_file = \"x\"\nserial = true\nconcurrency = 4"
            )),
            [
                "--include-list",
                "/etc/t.txt",
                "--exclude-list",
                "x",
                "--serial"
            ]
        );
    }

    #[test]
    fn plain_http_mirrors_are_trusted_and_the_version_pinned() {
        let c = config(
            "[install]\nindex_url = \"http://mirror.ci:8080/pip/simple/\"\nfind_links = [\"https://w/\", \"http://u@links.ci/x\"]\nversion = \"46.0.0\"\npackages = [\"a-plugin==1\"]",
        );
        assert_eq!(
            pip_args(&c),
            [
                "--index-url",
                "http://mirror.ci:8080/pip/simple/",
                "--find-links",
                "https://w/",
                "--find-links",
                "http://u@links.ci/x",
                "--trusted-host",
                "mirror.ci:8080",
                "--trusted-host",
                "links.ci",
                "tempest==46.0.0",
                "a-plugin==1"
            ]
        );
    }

    #[test]
    fn flaky_patterns_are_found_in_text_and_across_file_blocks() {
        let patterns = vec!["Race in testr accounting".to_owned()];
        assert_eq!(
            flaky_in(&patterns, "x\nRace in testr accounting.\n"),
            Some("Race in testr accounting")
        );
        assert_eq!(flaky_in(&patterns, "all good"), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut bytes = vec![0xb3u8; 256 * 1024 - 5];
        bytes.extend_from_slice(b"Race in testr accounting");
        std::fs::write(&path, &bytes).unwrap();
        assert!(flaky_in_file(&patterns, &path).is_some());
        std::fs::write(&path, b"nothing").unwrap();
        assert!(flaky_in_file(&patterns, &path).is_none());
    }
}
