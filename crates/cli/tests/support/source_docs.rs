//! The doc comments of config struct fields, read from the workspace's sources, so the
//! reference says what the code says.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Field docs of one struct: serde key -> doc text.
pub type FieldDocs = BTreeMap<String, String>;

/// Every struct found in `crates/*/src`, by name (a name may occur in several crates).
#[derive(Debug, Default)]
pub struct SourceDocs {
    structs: BTreeMap<String, Vec<FieldDocs>>,
}

impl SourceDocs {
    pub fn load(root: &Path) -> Self {
        let mut files = Vec::new();
        collect(&root.join("crates"), &mut files);
        let mut docs = Self::default();
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            docs.scan(&text);
        }
        docs
    }

    fn scan(&mut self, text: &str) {
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i].trim_start();
            let name = line
                .strip_prefix("pub struct ")
                .or_else(|| line.strip_prefix("pub(crate) struct "))
                .or_else(|| line.strip_prefix("struct "));
            let Some(rest) = name.filter(|r| r.trim_end().ends_with('{')) else {
                i += 1;
                continue;
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let indent = lines[i].len() - line.len();
            let mut fields = FieldDocs::new();
            let (mut doc, mut rename) = (Vec::<String>::new(), None::<String>);
            i += 1;
            while i < lines.len() {
                let raw = lines[i];
                let l = raw.trim();
                if l == "}" && raw.len() - raw.trim_start().len() == indent {
                    break;
                }
                if let Some(d) = l.strip_prefix("///") {
                    doc.push(d.trim().to_owned());
                } else if l.starts_with("#[serde(") {
                    if let Some(r) = l.split("rename = \"").nth(1) {
                        rename = r.split('"').next().map(str::to_owned);
                    }
                } else if let Some(field) = field_name(l) {
                    let key = rename.take().unwrap_or(field);
                    fields.insert(key, doc.join(" ").trim().to_owned());
                    doc.clear();
                } else if !l.starts_with("#[") && !l.starts_with("//") {
                    doc.clear();
                }
                i += 1;
            }
            self.structs.entry(name).or_default().push(fields);
            i += 1;
        }
    }

    /// The doc of `field` of the struct `owner`; among several structs of that name, the
    /// one that has the field.
    pub fn field(&self, owner: &str, field: &str) -> String {
        self.structs
            .get(owner)
            .into_iter()
            .flatten()
            .find_map(|fields| fields.get(field).cloned())
            .unwrap_or_default()
    }
}

fn field_name(line: &str) -> Option<String> {
    let line = line
        .strip_prefix("pub(crate) ")
        .or_else(|| line.strip_prefix("pub "))
        .unwrap_or(line);
    let (name, rest) = line.split_once(':')?;
    let name = name.trim().trim_start_matches("r#");
    let ok = !name.is_empty()
        && name.chars().all(|c| c.is_alphanumeric() || c == '_')
        && !rest.starts_with(':');
    ok.then(|| name.to_owned())
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n == "tests" || n == "target")
            {
                continue;
            }
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}
