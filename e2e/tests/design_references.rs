//! The design the code cites is in the repository: every mention of `DESIGN` in the source of
//! the workspace (Rust, shell, Python, YAML) cites a section as `docs/DESIGN.md §N`, and
//! `docs/DESIGN.md` has a heading `## N.` for it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const CITED_FORM: &str = "docs/DESIGN.md §";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ has a parent")
        .to_path_buf()
}

/// Source files below `dir`, without build output and hidden folders.
fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            source_files(&path, out);
        } else if ["rs", "sh", "py", "yaml", "yml", "tpl"]
            .iter()
            .any(|ext| path.extension().is_some_and(|e| e == *ext))
        {
            out.push(path);
        }
    }
}

/// The section numbers of `## N. Title` headings.
fn sections(design: &str) -> BTreeSet<String> {
    design
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .filter_map(|title| title.split_once('.').map(|(number, _)| number.to_owned()))
        .collect()
}

/// Every `DESIGN` mention of `text`: `Ok(section)` when it is in the cited form, else `Err(line)`.
fn citations(text: &str) -> Vec<(usize, Result<String, String>)> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        for (at, _) in line.match_indices("DESIGN") {
            let section: String = line[at..]
                .strip_prefix("DESIGN.md §")
                .filter(|_| line[..at].ends_with("docs/"))
                .map(|after| {
                    after
                        .chars()
                        .take_while(char::is_ascii_alphanumeric)
                        .collect()
                })
                .unwrap_or_default();
            let citation = if section.is_empty() {
                Err(line.trim().to_owned())
            } else {
                Ok(section)
            };
            found.push((index + 1, citation));
        }
    }
    found
}

#[test]
fn every_cited_design_section_exists() {
    let root = workspace();
    let design = std::fs::read_to_string(root.join("docs/DESIGN.md")).expect("docs/DESIGN.md");
    let sections = sections(&design);
    assert!(
        sections.contains("4a") && sections.contains("9"),
        "{sections:?}"
    );
    let mut files = Vec::new();
    for dir in ["core", "bootstrap", "sidecar", "operator", "e2e", "charts"] {
        source_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 100, "only {} files found", files.len());
    let mut problems = Vec::new();
    let mut cited = 0;
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        if file.ends_with("e2e/tests/design_references.rs") {
            continue;
        }
        for (line, citation) in citations(&text) {
            let place = format!("{}:{line}", file.strip_prefix(&root).unwrap().display());
            match citation {
                Ok(section) if sections.contains(&section) => cited += 1,
                Ok(section) => {
                    problems.push(format!("{place}: no section {section} in docs/DESIGN.md"))
                }
                Err(text) => problems.push(format!("{place}: cite as `{CITED_FORM}N`: {text}")),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        cited > 0,
        "no citation found: is the form `{CITED_FORM}N` still used?"
    );
}

#[test]
fn citations_are_read_with_their_section() {
    let text = "// see docs/DESIGN.md §4a and docs/DESIGN.md §12.\n// DESIGN 4a\n";
    let found: Vec<_> = citations(text).into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        found,
        vec![
            Ok("4a".to_owned()),
            Ok("12".to_owned()),
            Err("// DESIGN 4a".to_owned())
        ]
    );
}
