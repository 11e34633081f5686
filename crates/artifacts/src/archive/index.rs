//! `artifacts/index.html`: a page linking every host's files, the JUnit results and the
//! run's own files, with what was missing, left out or cut off.

use std::fmt::Write;

use gate_core::{Error, Result, StageContext};

use super::{HostArchive, INDEX_HTML};
use crate::manifest::Manifest;

/// Writes `artifacts/index.html` for `hosts`, listing the files of `manifest`.
pub fn write_index(cx: &StageContext, hosts: &[HostArchive], manifest: &Manifest) -> Result<()> {
    let mut page = String::new();
    let title = format!("gate artifacts of {}", cx.run_id);
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;text-align:left}}\
         td.n{{text-align:right}}.warn{{color:#a60}}.err{{color:#b00}}</style></head><body>\n<h1>{t}</h1>\n\
         <p><a href=\"report.html\">Run report</a> · <a href=\"run.json\">run.json</a> · \
         <a href=\"logs/\">gate's logs</a> · <a href=\"manifest.json\">manifest.json</a> \
         (size and SHA-256 of every file)</p>\n",
        t = escape(&title)
    );
    let results: Vec<_> = manifest
        .files
        .iter()
        .filter(|f| f.path.starts_with("results/"))
        .collect();
    page.push_str("<h2>Test results</h2>\n");
    if results.is_empty() {
        page.push_str("<p>No JUnit results.</p>\n");
    } else {
        page.push_str("<ul>\n");
        for file in results {
            let _ = writeln!(
                page,
                "<li><a href=\"{}\">{}</a></li>",
                href(&file.path),
                escape(&file.path)
            );
        }
        page.push_str("</ul>\n");
    }
    for host in hosts {
        let _ = writeln!(
            page,
            "<h2 id=\"{h}\">{h}</h2>\n<p>{} files, {} bytes</p>",
            host.files,
            host.bytes,
            h = escape(&host.host)
        );
        if let Some(error) = &host.error {
            let _ = writeln!(page, "<p class=\"err\">Incomplete: {}</p>", escape(error));
        }
        if let Some(limit) = &host.limit_hit {
            let _ = writeln!(
                page,
                "<p class=\"warn\">Stopped at the size limit: {}</p>",
                escape(limit)
            );
        }
        for (label, items) in [
            ("Missing paths", &host.missing),
            ("Unreadable files", &host.unreadable),
            ("Symbolic links (not followed)", &host.links),
            ("Left out", &host.excluded),
            ("Warnings", &host.warnings),
        ] {
            if items.is_empty() {
                continue;
            }
            let _ = writeln!(
                page,
                "<details><summary>{label} ({})</summary><ul>",
                items.len()
            );
            for item in items {
                let _ = writeln!(page, "<li>{}</li>", escape(item));
            }
            page.push_str("</ul></details>\n");
        }
        let prefix = format!("{}/", host.host);
        let files: Vec<_> = manifest
            .files
            .iter()
            .filter(|f| f.path.starts_with(&prefix))
            .collect();
        if !files.is_empty() {
            page.push_str("<table><tr><th>file</th><th>bytes</th></tr>\n");
            for file in files {
                let _ = writeln!(
                    page,
                    "<tr><td><a href=\"{}\">{}</a></td><td class=\"n\">{}</td></tr>",
                    href(&file.path),
                    escape(&file.path[prefix.len()..]),
                    file.size
                );
            }
            page.push_str("</table>\n");
        }
    }
    page.push_str("</body></html>\n");
    let path = cx.artifacts_dir.join(INDEX_HTML);
    std::fs::write(&path, page).map_err(|e| Error::io("writing", &path, e))
}

/// `text` safe inside HTML text and attributes.
pub(crate) fn escape(text: &str) -> String {
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

/// A relative link to `path`, percent-encoded except for unreserved characters and `/`.
pub(crate) fn href(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_text_are_escaped() {
        assert_eq!(href("h/a b?.log"), "h/a%20b%3F.log");
        assert_eq!(escape("<a href=\"x\">"), "&lt;a href=&quot;x&quot;&gt;");
    }
}
