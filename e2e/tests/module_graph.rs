//! No crate of the workspace has an import circle: the files of a crate, linked by the paths one
//! names into another (`use crate::a::B`, `super::x`, `child::Y`, in `use` lines and in code),
//! form a graph without cycles. A file whose items another file needs, and which needs that
//! file's items in turn, is one job split in two, or two jobs mixed: move the shared item to the
//! module that owns it.
//!
//! The source is read as text: comments, strings and `#[cfg(test)]` modules are skipped (a test
//! module may use what it likes), macro bodies are read like code. A path counts for the
//! deepest module it names; an item re-exported by a `mod.rs` counts for that `mod.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates' roots: each is a crate of its own, with the module tree its `mod` lines declare.
fn crate_roots(workspace: &Path) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    for package in ["core", "bootstrap", "sidecar", "operator", "e2e", "sim"] {
        let dir = workspace.join(package);
        for root in ["src/lib.rs", "src/main.rs"] {
            if dir.join(root).is_file() {
                roots.push(dir.join(root));
            }
        }
        for folder in ["src/bin", "tests", "benches"] {
            let Ok(entries) = std::fs::read_dir(dir.join(folder)) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "rs") {
                    roots.push(path);
                } else if path.join("main.rs").is_file() {
                    roots.push(path.join("main.rs"));
                } else if path.join("mod.rs").is_file() && folder != "tests" {
                    roots.push(path.join("mod.rs"));
                }
            }
        }
    }
    roots.sort();
    roots
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

/// Identifiers, `::` and punctuation; comments, literals and lifetimes dropped.
fn tokenize(source: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let count_lines = |from: usize, to: usize, line: &mut usize| {
        *line += chars[from..to.min(chars.len())]
            .iter()
            .filter(|c| **c == '\n')
            .count();
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let (start, mut depth) = (i, 0);
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            count_lines(start, i, &mut line);
        } else if let Some(end) = raw_string_end(&chars, i) {
            count_lines(i, end, &mut line);
            i = end;
        } else if c == '"' || (c == 'b' && next == Some('"')) {
            let start = i;
            i += if c == 'b' { 2 } else { 1 };
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            count_lines(start, i, &mut line);
        } else if c == '\'' || (c == 'b' && next == Some('\'')) {
            let quote = if c == 'b' { i + 1 } else { i };
            if chars.get(quote + 1) == Some(&'\\') {
                // Skip the escaped character, which may itself be a quote.
                i = quote + 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(quote + 2) == Some(&'\'') {
                i = quote + 3;
            } else {
                // A lifetime or a label: skip the quote, the name follows as an identifier.
                i = quote + 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            if c == 'r' && next == Some('#') {
                i += 2;
            }
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            tokens.push((Token::Ident(word), line));
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c == ':' && next == Some(':') {
            tokens.push((Token::PathSep, line));
            i += 2;
        } else {
            tokens.push((Token::Punct(c), line));
            i += 1;
        }
    }
    tokens
}

/// The end of a raw string literal (`r"…"`, `r#"…"#`, `br"…"`) starting at `i`, if one does.
fn raw_string_end(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r')
        || (i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'))
    {
        return None;
    }
    j += 1;
    let hashes = chars[j..].iter().take_while(|c| **c == '#').count();
    j += hashes;
    if chars.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < chars.len() {
        if chars[j] == '"'
            && chars[j + 1..]
                .iter()
                .take(hashes)
                .filter(|c| **c == '#')
                .count()
                == hashes
        {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(chars.len())
}

/// One file of a crate: its module path and what it declares and names.
#[derive(Debug, Default)]
struct ModuleFile {
    path: PathBuf,
    /// Module paths of the inline modules in the file (the file's own path included).
    inline: Vec<Vec<String>>,
    /// Child file modules: name, file.
    children: Vec<(Vec<String>, PathBuf)>,
    /// Paths named, each resolved against the module it appears in: (segments, line).
    references: Vec<(Vec<String>, usize)>,
}

fn ident(tokens: &[(Token, usize)], i: usize) -> Option<&str> {
    match tokens.get(i) {
        Some((Token::Ident(word), _)) => Some(word),
        _ => None,
    }
}

fn punct(tokens: &[(Token, usize)], i: usize, c: char) -> bool {
    tokens.get(i).is_some_and(|(t, _)| *t == Token::Punct(c))
}

fn path_sep(tokens: &[(Token, usize)], i: usize) -> bool {
    tokens.get(i).is_some_and(|(t, _)| *t == Token::PathSep)
}

/// Reads a path (or `use` tree) from `i`; pushes every full path it names. Returns the index after.
fn read_path(
    tokens: &[(Token, usize)],
    mut i: usize,
    prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    let mut path = prefix;
    loop {
        if punct(tokens, i, '{') {
            i += 1;
            while i < tokens.len() && !punct(tokens, i, '}') {
                i = read_path(tokens, i, path.clone(), out);
                if punct(tokens, i, ',') {
                    i += 1;
                }
            }
            return i + 1;
        }
        match ident(tokens, i) {
            Some(word) => {
                if word != "self" || path.is_empty() {
                    path.push(word.to_owned());
                }
                i += 1;
            }
            None if punct(tokens, i, '*') => {
                i += 1;
            }
            None => {}
        }
        if path_sep(tokens, i) {
            i += 1;
            continue;
        }
        out.push(path);
        if ident(tokens, i) == Some("as") {
            i += 2;
        }
        return i;
    }
}

/// Reads a file: its inline modules, its `mod x;` children and the paths it names.
fn read_file(path: &Path, module: &[String], mod_rs: bool) -> ModuleFile {
    let source =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let tokens = tokenize(&source);
    let own_dir = if mod_rs {
        path.parent().unwrap().to_path_buf()
    } else {
        path.with_extension("")
    };
    let mut file = ModuleFile {
        path: path.to_path_buf(),
        inline: vec![module.to_vec()],
        ..ModuleFile::default()
    };
    // (module path, brace depth at which its block closes)
    let mut scopes: Vec<(Vec<String>, usize)> = vec![(module.to_vec(), 0)];
    let mut depth = 0;
    let mut cfg_test = false;
    let mut path_attr: Option<String> = None;
    let mut i = 0;
    while i < tokens.len() {
        let current = scopes.last().unwrap().0.clone();
        if punct(&tokens, i, '#') && punct(&tokens, i + 1, '[') {
            let words: Vec<&str> = (i + 2..tokens.len())
                .take_while(|j| !punct(&tokens, *j, ']'))
                .filter_map(|j| ident(&tokens, j))
                .collect();
            if words == ["cfg", "test"] {
                cfg_test = true;
            }
            if words == ["path"] {
                let line = tokens[i].1;
                let text = source.lines().nth(line - 1).unwrap_or_default();
                path_attr = text.split('"').nth(1).map(str::to_owned);
            }
            while i < tokens.len() && !punct(&tokens, i, ']') {
                i += 1;
            }
            i += 1;
            continue;
        }
        if ident(&tokens, i) == Some("mod")
            && let Some(name) = ident(&tokens, i + 1)
        {
            {
                let child: Vec<String> = current.iter().cloned().chain([name.to_owned()]).collect();
                if punct(&tokens, i + 2, ';') && cfg_test {
                    // A test module's file is not read: tests may use what they like.
                    cfg_test = false;
                    path_attr = None;
                    i += 3;
                    continue;
                }
                if punct(&tokens, i + 2, ';') {
                    let base = if current.len() > module.len() {
                        // A file module inside an inline module lives in a folder of that name.
                        current[module.len()..]
                            .iter()
                            .fold(own_dir.clone(), |dir, m| dir.join(m))
                    } else {
                        own_dir.clone()
                    };
                    let file_path = match path_attr.take() {
                        Some(relative) => path.parent().unwrap().join(relative),
                        None if base.join(format!("{name}.rs")).is_file() => {
                            base.join(format!("{name}.rs"))
                        }
                        None => base.join(name).join("mod.rs"),
                    };
                    file.children.push((child, file_path));
                    cfg_test = false;
                    i += 3;
                    continue;
                }
                if punct(&tokens, i + 2, '{') {
                    if cfg_test {
                        // Skip the test module's block.
                        let mut level = 0;
                        i += 2;
                        while i < tokens.len() {
                            if punct(&tokens, i, '{') {
                                level += 1;
                            } else if punct(&tokens, i, '}') {
                                level -= 1;
                                if level == 0 {
                                    break;
                                }
                            }
                            i += 1;
                        }
                        cfg_test = false;
                        i += 1;
                        continue;
                    }
                    depth += 1;
                    file.inline.push(child.clone());
                    scopes.push((child, depth));
                    i += 3;
                    continue;
                }
            }
        }
        if punct(&tokens, i, '{') {
            depth += 1;
            cfg_test = false;
        } else if punct(&tokens, i, '}') {
            if scopes.last().is_some_and(|(_, d)| *d == depth) && scopes.len() > 1 {
                scopes.pop();
            }
            depth = depth.saturating_sub(1);
            cfg_test = false;
        } else if punct(&tokens, i, ';') {
            cfg_test = false;
        }
        // A path starts at `crate`, `self` or `super` followed by `::`, or at any other name
        // followed by `::` that is not itself the tail of a path.
        let starts_path = path_sep(&tokens, i + 1)
            && ident(&tokens, i).is_some()
            && !(i > 0 && path_sep(&tokens, i - 1));
        if starts_path {
            let line = tokens[i].1;
            let mut paths = Vec::new();
            let end = read_path(&tokens, i, Vec::new(), &mut paths);
            for named in paths {
                if let Some(resolved) = resolve_start(&current, &named) {
                    file.references.push((resolved, line));
                }
            }
            i = end.max(i + 1);
            continue;
        }
        i += 1;
    }
    file
}

/// Turns `crate::a::b`, `super::a`, `self::a` and `a::b` (relative) into a path from the crate root.
/// Relative paths are kept with a marker (`?`) to be checked against the child modules later.
fn resolve_start(current: &[String], named: &[String]) -> Option<Vec<String>> {
    let mut module = current.to_vec();
    let mut rest = named;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            module.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                module.pop()?;
                rest = &rest[1..];
            }
        }
        Some(_) => {
            // Relative: only a child module of the current one makes it a module path.
            let mut relative = vec!["?".to_owned()];
            relative.extend(current.iter().cloned());
            relative.push("/".to_owned());
            relative.extend(rest.iter().cloned());
            return Some(relative);
        }
        None => return None,
    }
    module.extend(rest.iter().cloned());
    Some(module)
}

/// Every file of the crate rooted at `root`, by module path.
fn crate_files(root: &Path) -> BTreeMap<Vec<String>, ModuleFile> {
    let mut files = BTreeMap::new();
    let mut pending = vec![(Vec::new(), root.to_path_buf(), true)];
    while let Some((module, path, mod_rs)) = pending.pop() {
        let file = read_file(&path, &module, mod_rs);
        for (child, child_path) in &file.children {
            let is_mod_rs = child_path.file_name().is_some_and(|n| n == "mod.rs");
            pending.push((child.clone(), child_path.clone(), is_mod_rs));
        }
        files.insert(module, file);
    }
    files
}

/// The file (by module path) each edge leads to: `(from, to) -> first line naming it`.
fn module_edges(
    files: &BTreeMap<Vec<String>, ModuleFile>,
) -> BTreeMap<(Vec<String>, Vec<String>), usize> {
    // Every module, inline ones included, to the file that holds it.
    let mut holder: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for (module, file) in files {
        for inline in &file.inline {
            holder.insert(inline.clone(), module.clone());
        }
    }
    let mut edges = BTreeMap::new();
    for (from, file) in files {
        for (reference, line) in &file.references {
            let absolute = if reference.first().map(String::as_str) == Some("?") {
                let split = reference.iter().position(|s| s == "/").unwrap();
                let current = &reference[1..split];
                let rest = &reference[split + 1..];
                let mut child = current.to_vec();
                child.push(rest[0].clone());
                if !holder.contains_key(&child) {
                    continue;
                }
                current.iter().chain(rest).cloned().collect::<Vec<_>>()
            } else {
                reference.clone()
            };
            let deepest = (0..=absolute.len())
                .rev()
                .map(|n| &absolute[..n])
                .find(|prefix| holder.contains_key(*prefix));
            let Some(target) = deepest.and_then(|m| holder.get(m)) else {
                continue;
            };
            if target != from {
                edges.entry((from.clone(), target.clone())).or_insert(*line);
            }
        }
    }
    edges
}

/// The strongly connected components with more than one file (Tarjan).
fn cycles(
    nodes: &[Vec<String>],
    edges: &BTreeMap<(Vec<String>, Vec<String>), usize>,
) -> Vec<Vec<usize>> {
    let index_of: BTreeMap<&Vec<String>, usize> =
        nodes.iter().enumerate().map(|(i, n)| (n, i)).collect();
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (from, to) in edges.keys() {
        if let (Some(&a), Some(&b)) = (index_of.get(from), index_of.get(to)) {
            next[a].push(b);
        }
    }
    struct State {
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        counter: usize,
        components: Vec<Vec<usize>>,
    }
    fn visit(v: usize, next: &[Vec<usize>], s: &mut State) {
        s.index[v] = Some(s.counter);
        s.low[v] = s.counter;
        s.counter += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in &next[v] {
            match s.index[w] {
                None => {
                    visit(w, next, s);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(index) if s.on_stack[w] => s.low[v] = s.low[v].min(index),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort_unstable();
                s.components.push(component);
            }
        }
    }
    let mut state = State {
        index: vec![None; nodes.len()],
        low: vec![0; nodes.len()],
        on_stack: vec![false; nodes.len()],
        stack: Vec::new(),
        counter: 0,
        components: Vec::new(),
    };
    for v in 0..nodes.len() {
        if state.index[v].is_none() {
            visit(v, &next, &mut state);
        }
    }
    state.components
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A circle among the modules below `level`: each edge as (from file, line, to file).
struct Circle {
    level: Vec<String>,
    edges: Vec<(PathBuf, usize, PathBuf)>,
}

/// The circles among the modules directly below each module: a file module is one node with all
/// the modules below it, so `a/x.rs -> b/y.rs -> a/z.rs` is the circle `a -> b -> a`. Each circle
/// is listed with the module it lies below and one line per edge.
fn circles(files: &BTreeMap<Vec<String>, ModuleFile>) -> Vec<Circle> {
    let edges = module_edges(files);
    let mut found = Vec::new();
    for level in files.keys() {
        // Node of a file at this level: the level's own file, or the child module it lies below.
        let node_of = |file: &Vec<String>| -> Option<Vec<String>> {
            if file == level {
                Some(file.clone())
            } else if file.len() > level.len() && file.starts_with(level) {
                Some(file[..=level.len()].to_vec())
            } else {
                None
            }
        };
        let mut level_edges: BTreeMap<(Vec<String>, Vec<String>), usize> = BTreeMap::new();
        for (from, to) in edges.keys() {
            if let (Some(a), Some(b)) = (node_of(from), node_of(to))
                && a != b
            {
                level_edges.insert((a, b), 0);
            }
        }
        let nodes: BTreeSet<Vec<String>> = level_edges
            .keys()
            .flat_map(|(a, b)| [a.clone(), b.clone()])
            .collect();
        let nodes: Vec<Vec<String>> = nodes.into_iter().collect();
        for component in cycles(&nodes, &level_edges) {
            let members: BTreeSet<&Vec<String>> = component.iter().map(|&i| &nodes[i]).collect();
            let listed = edges
                .iter()
                .filter_map(|((from, to), line)| {
                    let (a, b) = (node_of(from)?, node_of(to)?);
                    (a != b && members.contains(&a) && members.contains(&b))
                        .then(|| (files[from].path.clone(), *line, files[to].path.clone()))
                })
                .collect();
            found.push(Circle {
                level: level.clone(),
                edges: listed,
            });
        }
    }
    found
}

#[test]
fn no_crate_has_an_import_circle() {
    let workspace = workspace();
    let shown = |path: &Path| {
        path.strip_prefix(&workspace)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    let mut report = String::new();
    let mut files_read = 0;
    for root in crate_roots(&workspace) {
        let files = crate_files(&root);
        files_read += files.len();
        for Circle { level, edges } in circles(&files) {
            report.push_str(&format!(
                "circle among the modules of {}{}:\n",
                shown(&root),
                if level.is_empty() {
                    String::new()
                } else {
                    format!(" :: {}", level.join("::"))
                }
            ));
            for (from, line, to) in edges {
                report.push_str(&format!("  {}:{line} names {}\n", shown(&from), shown(&to)));
            }
        }
    }
    assert!(
        files_read > 100,
        "only {files_read} files read: is the workspace layout known?"
    );
    assert!(report.is_empty(), "{report}");
}

#[test]
fn the_reader_sees_every_kind_of_path() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "lib.rs",
        "mod a;\nmod b;\nmod c;\npub use a::Thing;\n#[cfg(test)]\nmod tests { use crate::c::X; }\n",
    );
    write(
        "a/mod.rs",
        "mod inner;\n// crate::c::Y in a comment\nconst S: &str = \"crate::c::Z\";\nfn f() { super::b::g(); }\n",
    );
    write(
        "a/inner.rs",
        "use crate::{b::{self, H}, a as _};\nfn k<'a>(x: &'a str) -> char { 'c' }\n",
    );
    write(
        "b.rs",
        "pub fn g() { let _ = r#\"crate::c\"#; crate::a::inner::k(\"\"); }\n",
    );
    write("c.rs", "pub struct X;\n");
    let files = crate_files(&dir.path().join("lib.rs"));
    let edges = module_edges(&files);
    let named: BTreeSet<(String, String)> = edges
        .keys()
        .map(|(from, to)| (from.join("::"), to.join("::")))
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("", "a"),
        ("a", "b"),
        ("a::inner", "b"),
        ("a::inner", "a"),
        ("b", "a::inner"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .collect();
    assert_eq!(named, expected);
    // b -> a::inner -> b at the crate's level (a and b), and a -> b -> a::inner -> a inside it.
    let found: Vec<(String, usize)> = circles(&files)
        .into_iter()
        .map(|circle| (circle.level.join("::"), circle.edges.len()))
        .collect();
    assert_eq!(found, [(String::new(), 3)]);
}
