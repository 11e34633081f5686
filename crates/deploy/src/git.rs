//! A git checkout on a host at a [`Version`]: cloned on first use, fetched again after.
//!
//! One fixed bash script does the work on the host; the directory, URL and version reach
//! it as positional arguments, so nothing from config is ever part of the script text.
//! `git` runs with the `ext` transport disabled.

use std::time::Duration;

use gate_core::{Command, Error, Result};

use crate::host::HostSteps;
use crate::version::Version;

/// The checkout script: `checkout DEST URL (ref VERSION | latest [PREFIX])`. Its last line
/// of output is `gate-checkout KIND COMMIT NAME`.
const CHECKOUT: &str = r#"
dest=$1 url=$2 mode=$3 want=${4-}
g() { git -c protocol.ext.allow=never -c advice.detachedHead=false -C "$dest" "$@"; }
if [ ! -e "$dest/.git" ]; then
    mkdir -p -- "$dest"
    git init -q -- "$dest"
fi
if g remote get-url origin >/dev/null 2>&1; then
    g remote set-url origin "$url"
else
    g remote add origin "$url"
fi
echo "fetching $url into $dest"
g fetch --quiet --force --prune --prune-tags --tags origin '+refs/heads/*:refs/remotes/origin/*'
kind= commit= name=
if [ "$mode" = latest ]; then
    name=$(g -c versionsort.suffix=rc tag --list --sort=-version:refname -- "$want*" | sed -n 1p)
    if [ -z "$name" ]; then
        echo "no tag${want:+ starting with $want} in $url" >&2
        exit 3
    fi
    kind=tag
    commit=$(g rev-parse --verify --quiet "refs/tags/$name^{commit}")
elif [[ $want == refs/* ]]; then
    g fetch --quiet --force origin "+$want:refs/gate/checkout"
    kind=ref name=$want
    commit=$(g rev-parse --verify --quiet "refs/gate/checkout^{commit}")
elif commit=$(g rev-parse --verify --quiet "refs/remotes/origin/$want^{commit}"); then
    kind=branch name=$want
elif commit=$(g rev-parse --verify --quiet "refs/tags/$want^{commit}"); then
    kind=tag name=$want
elif [[ $want =~ ^[0-9a-f]{7,40}$ ]] && commit=$(g rev-parse --verify --quiet "$want^{commit}"); then
    kind=commit name=$want
else
    echo "version $want: no such branch, tag or commit in $url" >&2
    exit 3
fi
if [ "$kind" = branch ]; then
    g checkout --quiet --force -B "$want" "refs/remotes/origin/$want"
else
    g checkout --quiet --force --detach "$commit"
fi
echo "checked out $kind $name at $commit"
echo "gate-checkout $kind $commit $name"
"#;

/// What a version resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `branch`, `tag`, `commit` or `ref`.
    pub kind: String,
    /// The commit checked out (40 hex digits).
    pub commit: String,
    /// The branch, tag, commit or ref name; for `latest`, the tag it found.
    pub name: String,
}

/// A checkout to make: where, from where, at which version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The directory on the host.
    pub dest: String,
    /// The git URL.
    pub url: String,
    /// The version.
    pub version: Version,
    /// Time limit.
    pub timeout: Duration,
}

impl Checkout {
    /// The command that makes this checkout.
    pub fn command(&self) -> Command {
        let cmd = Command::script(CHECKOUT)
            .arg("gate-checkout")
            .arg(&self.dest)
            .arg(&self.url);
        let cmd = match &self.version {
            Version::Ref(name) => cmd.arg("ref").arg(name),
            Version::Latest { prefix } => cmd.arg("latest").arg(prefix.clone().unwrap_or_default()),
        };
        cmd.env("GIT_TERMINAL_PROMPT", "0").timeout(self.timeout)
    }

    /// Makes the checkout on `primary` as the step `step`.
    pub async fn run(&self, primary: &HostSteps, step: &str) -> Result<Resolved> {
        let out = primary.step(step, &self.command()).await?;
        let line = out
            .stdout
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("gate-checkout "))
            .unwrap_or_default();
        let mut fields = line.splitn(3, ' ');
        match (fields.next(), fields.next(), fields.next()) {
            (Some(kind), Some(commit), Some(name)) => {
                let resolved = Resolved {
                    kind: kind.to_owned(),
                    commit: commit.to_owned(),
                    name: name.to_owned(),
                };
                primary.note(&format!(
                    "{} {} is {} {} at {}",
                    self.dest, self.version, resolved.kind, resolved.name, resolved.commit
                ));
                Ok(resolved)
            }
            _ => Err(Error::Host {
                host: primary.name().to_owned(),
                message: format!(
                    "checking out {} at {}: the checkout did not say what it checked out",
                    self.url, self.version
                ),
            }),
        }
    }
}
