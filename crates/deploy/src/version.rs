//! Versions of deployment code: a branch, a tag, a commit, a ref such as `refs/pull/12/head`,
//! or `latest` (the newest tag, optionally the newest starting with a prefix).
//!
//! A version reaches git only as an argument, never inside a shell string; on top of that,
//! anything that is not a plausible ref name is refused when the config is read, so a
//! hostile string such as `27.1.0; rm -rf /` or `--upload-pack=evil` never gets that far.

use std::fmt;

/// The most characters a version may have.
const MAX_LEN: usize = 200;

/// What to check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// A branch, a tag, a commit (7 to 40 hex digits) or a full ref (`refs/pull/12/head`).
    Ref(String),
    /// The newest tag in version order (`27.10.0` after `27.9.0`), or the newest whose name
    /// starts with `prefix`. Release candidates sort before their release.
    Latest {
        /// Only tags starting with this, e.g. `27.`.
        prefix: Option<String>,
    },
}

impl Version {
    /// Parses `text`: `latest`, `latest:PREFIX`, or a ref name. The error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "latest" {
            return Ok(Version::Latest { prefix: None });
        }
        if let Some(prefix) = text.strip_prefix("latest:") {
            check_chars(prefix, "the tag prefix")?;
            return Ok(Version::Latest {
                prefix: Some(prefix.to_owned()),
            });
        }
        check_ref(text)?;
        Ok(Version::Ref(text.to_owned()))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Ref(name) => f.write_str(name),
            Version::Latest { prefix: None } => f.write_str("latest"),
            Version::Latest {
                prefix: Some(prefix),
            } => write!(f, "latest:{prefix}"),
        }
    }
}

fn check_chars(text: &str, what: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if text.len() > MAX_LEN {
        return Err(format!("{what} is longer than {MAX_LEN} characters"));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '+')))
    {
        return Err(format!(
            "{what} `{}` has the character {bad:?}; a version is a branch, tag, commit or ref \
             name made of letters, digits and . _ - / +",
            text.escape_debug()
        ));
    }
    if text.starts_with('-') {
        return Err(format!("{what} `{text}` starts with `-`"));
    }
    Ok(())
}

/// Checks that `text` is a ref name git accepts and that cannot pass for an option.
fn check_ref(text: &str) -> Result<(), String> {
    check_chars(text, "the version")?;
    let bad = text.starts_with('/')
        || text.ends_with('/')
        || text.ends_with('.')
        || text.ends_with(".lock")
        || text.contains("..")
        || text.contains("//")
        || text.split('/').any(|part| part.starts_with('.'));
    if bad {
        return Err(format!("the version `{text}` is not a valid git ref name"));
    }
    Ok(())
}

/// Checks a git URL: it reaches git as one argument, verbatim, so only what could be taken
/// for an option or break a line is refused.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err("the URL is empty".into());
    }
    if url.starts_with('-') {
        return Err(format!("the URL `{url}` starts with `-`"));
    }
    if url.chars().any(char::is_control) {
        return Err(format!(
            "the URL `{}` has control characters",
            url.escape_debug()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_tags_commits_and_pull_refs_parse() {
        for ok in [
            "master",
            "stable/2024.1",
            "27.1.0",
            "0123abc",
            "refs/pull/12/head",
            "refs/pull/12/merge",
            "v1.0+build",
        ] {
            assert_eq!(Version::parse(ok), Ok(Version::Ref(ok.into())), "{ok}");
        }
        assert_eq!(
            Version::parse("latest"),
            Ok(Version::Latest { prefix: None })
        );
        assert_eq!(
            Version::parse("latest:27."),
            Ok(Version::Latest {
                prefix: Some("27.".into())
            })
        );
        assert_eq!(
            Version::parse("latest:27.").unwrap().to_string(),
            "latest:27."
        );
    }

    #[test]
    fn hostile_versions_are_refused_naming_the_problem() {
        for (bad, says) in [
            ("27.1.0; rm -rf /", "character ';'"),
            ("$(touch /tmp/pwned)", "character '$'"),
            ("`id`", "character '`'"),
            ("--upload-pack=evil", "character '='"),
            ("--force", "starts with `-`"),
            ("a b", "character ' '"),
            ("x\ny", "character '\\n'"),
            ("../../etc", "not a valid git ref"),
            ("refs/heads/.hidden", "not a valid git ref"),
            ("", "is empty"),
            ("latest:27;", "character ';'"),
        ] {
            let err = Version::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn urls_are_refused_only_when_they_could_be_options_or_break_lines() {
        assert!(check_url("git://127.0.0.1:9418/osa.git").is_ok());
        assert!(check_url("https://example.invalid/a b;$(x)").is_ok());
        assert!(check_url("--upload-pack=x").is_err());
        assert!(check_url("a\nb").is_err());
        assert!(check_url("").is_err());
    }
}
