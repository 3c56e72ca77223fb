//! The walls between modules (issue 11, `shared/DESIGN.md`), held by a check of the sources.
//!
//! It reads every `.rs` file under `src/`, finds the crate modules each one refers to in
//! non-test code (`use crate::…` trees, grouped and over several lines, `crate::x::…` and
//! `super::…` paths anywhere), and fails naming file, line and the forbidden import when:
//! - `device` reaches a module other than protocol, pki, tls, stage, limits;
//! - `protocol` reaches any crate module;
//! - `mock` reaches anything but mock, protocol, pki, tls, limits, mock_settings and the crate
//!   root's `toml_error_message`;
//! - `iot` (AWS IoT's template and policy languages, the seed's template and claim policy)
//!   reaches any crate module: both the mock and `aws` build on it;
//! - `aws` reaches `mock` (what both need is in `iot`);
//! - `results` (the results files' models) reaches the engine or the writers: `live`,
//!   `fleet`, `output`, `tui`, `cli`; `output` reaches `live`, `fleet`, `tui` or `cli`;
//! - `metrics`, `live` or `tui` reach `device` (they share `stage`);
//! - `scenario` reaches `mock`;
//! - `http` (the HTTP servers' shared loop) reaches any crate module;
//! - a module other than `cli` reaches `exit` (the exit-code map: error types carry no codes);
//! - the top-level modules import each other in a cycle;
//! - the files of one module import each other in a cycle (siblings, directly or through what
//!   their parent re-exports; a parent and its children make none);
//! - a production file is over 800 lines and its opening `//!` comment does not say why ("over
//!   800 lines"); test-only files (`#[cfg(test)] mod tests;`) are not counted.
//!
//! `src/lib.rs` opens with the same picture as a layered map.
//!
//! Test-only code (the item after a `#[cfg(test)]`, e.g. `mod tests { … }`) is left out.
//! A hand-written scan rather than `syn`: the few token rules here are all it needs, and it
//! keeps the check free of a parser dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One reference from a file to a crate module.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    line: usize,
    /// The top-level module (or crate-root item) it reaches.
    module: String,
    /// The path as written (`crate::mock::ALPN`), for the message.
    path: String,
}

/// The module path of a file under `src/`: `device/lean.rs` → [device, lean]; `mock/mod.rs` →
/// [mock]; `lib.rs` → [].
fn module_path(relative: &str) -> Vec<String> {
    let without = relative.trim_end_matches(".rs");
    let mut parts: Vec<String> = without.split('/').map(str::to_string).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The source with comments, string and char literals blanked out (newlines kept, so byte
/// offsets and line numbers stay those of the original).
fn blank_non_code(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = src[i..].find('\n').map_or(b.len(), |n| i + n);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < b.len() && depth > 0 {
                    if b[j..].starts_with(b"/*") {
                        depth += 1;
                        j += 2;
                    } else if b[j..].starts_with(b"*/") {
                        depth -= 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                blank(&mut out, i, j);
                i = j;
            }
            b'r' if (i == 0 || !is_ident(b[i - 1]))
                && matches!(b.get(i + 1), Some(b'"' | b'#')) =>
            {
                // A raw string r"…" or r#"…"#.
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let body = i + 2 + hashes;
                let end = src[body..]
                    .find(&close)
                    .map_or(b.len(), |n| body + n + close.len());
                blank(&mut out, i, end);
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                let end = (j + 1).min(b.len());
                blank(&mut out, i, end);
                i = end;
            }
            b'\'' => {
                // A char literal ('x', '\n', '\u{..}', '"'); otherwise a lifetime.
                let end = if b.get(i + 1) == Some(&b'\\') {
                    src[i + 2..].find('\'').map(|n| i + 2 + n + 1)
                } else {
                    let len = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                    (b.get(i + 1 + len) == Some(&b'\'')).then_some(i + 2 + len)
                };
                match end {
                    Some(end) => {
                        blank(&mut out, i, end);
                        i = end;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced")
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Identifiers and punctuation with their byte offsets (`::` is one token).
fn tokens(code: &str) -> Vec<(usize, &str)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if is_ident(c) || c == b'$' {
            let start = i;
            i += 1;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            out.push((start, &code[start..i]));
        } else if code[i..].starts_with("::") {
            out.push((i, "::"));
            i += 2;
        } else {
            let len = code[i..].chars().next().map_or(1, char::len_utf8);
            out.push((i, &code[i..i + len]));
            i += len;
        }
    }
    out
}

/// Token ranges of test-only items: the item after each `#[cfg(test)]` (its further
/// attributes, then up to a `;` or the end of its `{ … }` body at depth 0).
fn test_only(toks: &[(usize, &str)]) -> Vec<(usize, usize)> {
    let texts: Vec<&str> = toks.iter().map(|t| t.1).collect();
    let attr = ["#", "[", "cfg", "(", "test", ")", "]"];
    let mut ranges = Vec::new();
    let mut i = 0;
    while i + attr.len() <= texts.len() {
        if texts[i..i + attr.len()] != attr {
            i += 1;
            continue;
        }
        let start = i;
        let mut j = i + attr.len();
        let mut depth = 0i32;
        while j < texts.len() {
            match texts[j] {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" => depth -= 1,
                "}" => {
                    depth -= 1;
                    if depth <= 0 {
                        // The end of the item's body, or of what encloses it (a field's).
                        j -= usize::from(depth < 0);
                        break;
                    }
                }
                ";" | "," if depth == 0 => break,
                _ => {}
            }
            j += 1;
        }
        ranges.push((start, j));
        i = j + 1;
    }
    ranges
}

/// Files of the modules `src` declares test-only (`#[cfg(test)] mod testkit;`), relative to
/// `src/`: their whole file is test code.
fn test_module_files(relative: &str, src: &str) -> Vec<String> {
    let code = blank_non_code(src);
    let toks = tokens(&code);
    let dir = module_path(relative).join("/");
    let dir = if dir.is_empty() { dir } else { dir + "/" };
    test_only(&toks)
        .into_iter()
        .filter(|&(_, end)| toks.get(end).is_some_and(|t| t.1 == ";"))
        .filter_map(|(_, end)| (toks[end - 2].1 == "mod").then_some(toks[end - 1].1))
        .flat_map(|name| [format!("{dir}{name}.rs"), format!("{dir}{name}/mod.rs")])
        .collect()
}

/// Parse the use tree starting at token `i` (after `use`, or after a `::` in it), appending
/// each full path (segments with offsets) to `paths`; returns the index after the tree.
fn use_tree<'a>(
    toks: &[(usize, &'a str)],
    mut i: usize,
    prefix: &[(usize, &'a str)],
    paths: &mut Vec<Vec<(usize, &'a str)>>,
) -> usize {
    let mut path = prefix.to_vec();
    while i < toks.len() {
        match toks[i].1 {
            "{" => {
                i += 1;
                while i < toks.len() && toks[i].1 != "}" {
                    i = use_tree(toks, i, &path, paths);
                    if i < toks.len() && toks[i].1 == "," {
                        i += 1;
                    }
                }
                return i + 1;
            }
            "::" => i += 1,
            "as" => i += 2,
            "," | "}" | ";" => break,
            _ => {
                path.push(toks[i]);
                i += 1;
            }
        }
    }
    if !path.is_empty() && toks.get(i.wrapping_sub(1)).is_some_and(|t| t.1 != "}") {
        paths.push(path);
    }
    i
}

/// Where a path points from the crate root (`super::state::X` in `aws/setup.rs` → `aws::state::X`),
/// with the offset of its first segment; None for paths that leave the crate (or start with a
/// name `here` brought into scope: a child module, an external crate).
fn absolute(path: &[(usize, &str)], here: &[String]) -> Option<(usize, Vec<String>)> {
    let first = path.first()?;
    let (base, rest): (Vec<String>, &[(usize, &str)]) = match first.1 {
        "crate" | "$crate" => (Vec::new(), &path[1..]),
        "super" => {
            let ups = path.iter().take_while(|s| s.1 == "super").count();
            (here[..here.len().checked_sub(ups)?].to_vec(), &path[ups..])
        }
        "self" => (here.to_vec(), &path[1..]),
        _ => return None,
    };
    let mut target = base;
    target.extend(rest.iter().map(|s| s.1.to_string()));
    // The offset of the segment naming the top-level module, for the line number.
    let offset = if first.1 == "crate" || first.1 == "$crate" {
        path.get(1).map_or(first.0, |s| s.0)
    } else {
        first.0
    };
    (!target.is_empty()).then_some((offset, target))
}

/// The top-level module (or crate-root item) a path reaches, with the offset of the segment
/// that names it; None for paths that stay inside `here` or leave the crate.
fn resolve(path: &[(usize, &str)], here: &[String]) -> Option<(usize, String, String)> {
    let written: Vec<&str> = path.iter().map(|s| s.1).collect();
    let written = written.join("::");
    let (offset, target) = absolute(path, here)?;
    let module = target[0].clone();
    (module != "*" && Some(module.as_str()) != here.first().map(String::as_str))
        .then_some((offset, module, written))
}

/// A path written in non-test code: its segments with their byte offsets, the module it is
/// written in (the file's, or an inline `mod x { … }` in it), and whether it is a `pub use`
/// (a re-export).
struct Written<'a> {
    segments: Vec<(usize, &'a str)>,
    module: Vec<String>,
    reexport: bool,
}

/// Every path `code` (blanked: see [`blank_non_code`]) writes outside test-only code.
fn written_paths<'a>(here: &[String], toks: &[(usize, &'a str)]) -> Vec<Written<'a>> {
    let skip = test_only(toks);
    let mut paths = Vec::new();
    let mut found = Vec::new();
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut reexport = false;
    let mut depth = 0;
    let mut i = 0;
    while i < toks.len() {
        if let Some(&(_, end)) = skip.iter().find(|r| r.0 == i) {
            i = end + 1;
            continue;
        }
        let mut module = here.to_vec();
        module.extend(inline.iter().map(|m| m.0.clone()));
        for segments in paths.drain(..) {
            found.push(Written {
                segments,
                module: module.clone(),
                reexport,
            });
        }
        reexport = false;
        let after_sep = i > 0 && toks[i - 1].1 == "::";
        match toks[i].1 {
            "{" => {
                depth += 1;
                i += 1;
            }
            "}" => {
                if inline.last().is_some_and(|m| m.1 == depth) {
                    inline.pop();
                }
                depth -= 1;
                i += 1;
            }
            "mod" if toks.get(i + 2).map(|t| t.1) == Some("{") => {
                inline.push((toks[i + 1].1.to_string(), depth + 1));
                i += 2;
            }
            "use" => {
                // `pub use` or `pub(crate) use`: what follows is re-exported.
                reexport = i > 0 && matches!(toks[i - 1].1, "pub" | ")");
                i = use_tree(toks, i + 1, &[], &mut paths);
            }
            "crate" | "$crate" | "super"
                if !after_sep && toks.get(i + 1).map(|t| t.1) == Some("::") =>
            {
                let mut path = vec![toks[i]];
                let mut j = i + 1;
                while toks.get(j).map(|t| t.1) == Some("::")
                    && toks.get(j + 1).is_some_and(|t| is_ident(t.1.as_bytes()[0]))
                {
                    path.push(toks[j + 1]);
                    j += 2;
                }
                paths.push(path);
                i = j;
            }
            _ => i += 1,
        }
    }
    found.extend(paths.into_iter().map(|segments| Written {
        segments,
        module: here.to_vec(),
        reexport,
    }));
    found
}

/// The crate modules `src` (the file at `relative` under `src/`) refers to in non-test code.
fn references(relative: &str, src: &str) -> Vec<Reference> {
    let here = module_path(relative);
    let code = blank_non_code(src);
    let toks = tokens(&code);
    let line = |offset: usize| code[..offset].matches('\n').count() + 1;
    written_paths(&here, &toks)
        .iter()
        .filter_map(|w| resolve(&w.segments, &w.module))
        .map(|(offset, module, path)| Reference {
            line: line(offset),
            module,
            path,
        })
        .collect()
}

/// One reference from a file to a module or item of the crate, by its full path.
struct Target {
    line: usize,
    /// From the crate root: `super::state::X` in `aws/setup.rs` is `[aws, state, X]`. A
    /// relative path (`use parser::X` in `template/mod.rs`) counts from where it is written.
    target: Vec<String>,
    written: String,
    reexport: bool,
}

fn targets(relative: &str, src: &str) -> Vec<Target> {
    let here = module_path(relative);
    let code = blank_non_code(src);
    let toks = tokens(&code);
    let line = |offset: usize| code[..offset].matches('\n').count() + 1;
    written_paths(&here, &toks)
        .into_iter()
        .filter_map(|w| {
            let first = w.segments.first()?;
            let (offset, target) = absolute(&w.segments, &w.module).unwrap_or_else(|| {
                let mut t = w.module.clone();
                t.extend(w.segments.iter().map(|s| s.1.to_string()));
                (first.0, t)
            });
            let written: Vec<&str> = w.segments.iter().map(|s| s.1).collect();
            Some(Target {
                line: line(offset),
                target,
                written: written.join("::"),
                reexport: w.reexport,
            })
        })
        .collect()
}

/// Which modules a top-level module may reach: `Allow` lists all it may, `Deny` those it must not.
enum Wall {
    Allow(&'static [&'static str]),
    Deny(&'static [&'static str]),
}

fn wall(module: &str) -> Option<Wall> {
    Some(match module {
        "device" => Wall::Allow(&["protocol", "pki", "tls", "stage", "limits"]),
        "protocol" => Wall::Allow(&[]),
        "mock" => Wall::Allow(&[
            "protocol",
            "pki",
            "tls",
            "limits",
            "mock_settings",
            "toml_error_message",
            "http",
            "iot",
        ]),
        "iot" => Wall::Allow(&[]),
        "aws" => Wall::Deny(&["mock"]),
        "results" => Wall::Deny(&["live", "fleet", "output", "tui", "cli"]),
        "output" => Wall::Deny(&["live", "fleet", "tui", "cli"]),
        "metrics" | "live" | "tui" => Wall::Deny(&["device"]),
        "scenario" => Wall::Deny(&["mock"]),
        "http" => Wall::Allow(&[]),
        _ => return None,
    })
}

/// The modules that alone may reach `module`, when only some may.
fn reached_only_from(module: &str) -> Option<&'static [&'static str]> {
    match module {
        "exit" => Some(&["cli"]),
        _ => None,
    }
}

/// Wall and length findings for one file (path relative to `src/`).
fn check_file(relative: &str, src: &str) -> Vec<String> {
    let mut found = Vec::new();
    let here = module_path(relative);
    if let Some(top) = here.first() {
        for r in references(relative, src) {
            let forbidden = match wall(top) {
                Some(Wall::Allow(ok)) => !ok.contains(&r.module.as_str()),
                Some(Wall::Deny(no)) => no.contains(&r.module.as_str()),
                None => false,
            } || reached_only_from(&r.module)
                .is_some_and(|from| *top != r.module && !from.contains(&top.as_str()));
            if forbidden {
                found.push(format!(
                    "src/{relative}:{}: `{}` crosses a wall: {top} must not import {}",
                    r.line, r.path, r.module
                ));
            }
        }
    }
    let lines = src.lines().count();
    let opening: Vec<&str> = src
        .lines()
        .take_while(|l| l.trim_start().starts_with("//!"))
        .map(|l| l.trim_start().trim_start_matches("//!").trim())
        .collect();
    if lines > 800 && !opening.join(" ").contains("over 800 lines") {
        found.push(format!(
            "src/{relative}: {lines} lines; split it, or say in its opening //! comment why it is \
             over 800 lines"
        ));
    }
    found
}

/// module -> (module it reaches -> the first reference, as "file:line `path`")
type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// Import cycles among top-level modules, each shown with one reference per edge.
fn cycles(files: &[(String, String)]) -> Vec<String> {
    let tops: BTreeSet<String> = files
        .iter()
        .filter_map(|(rel, _)| module_path(rel).first().cloned())
        .collect();
    let mut graph = Graph::new();
    for (rel, src) in files {
        let Some(top) = module_path(rel).first().cloned() else {
            continue;
        };
        for r in references(rel, src) {
            if tops.contains(&r.module) {
                graph
                    .entry(top.clone())
                    .or_default()
                    .entry(r.module)
                    .or_insert_with(|| format!("src/{rel}:{} `{}`", r.line, r.path));
            }
        }
    }
    find_cycles(&graph, "import cycle")
}

/// Import cycles between the files of one module: a child module (a file, or a folder of them)
/// reaching a sibling, directly (`super::setup::X`, `crate::aws::setup::X`) or through what
/// their parent re-exports (`super::Phase` where the parent says `pub use phase::Phase`). A
/// child using its parent's own items, and a parent using its children, make no cycle: the
/// parent is where they meet.
fn file_cycles(files: &[(String, String)]) -> Vec<String> {
    let modules: BTreeSet<Vec<String>> = files.iter().map(|(rel, _)| module_path(rel)).collect();
    // Per module, the names it re-exports and the full path each points at.
    let mut reexports: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (rel, src) in files {
        for t in targets(rel, src).into_iter().filter(|t| t.reexport) {
            if let Some(name) = t.target.last().cloned() {
                reexports
                    .entry(module_path(rel))
                    .or_default()
                    .insert(name, t.target);
            }
        }
    }
    let mut graph = Graph::new();
    for (rel, src) in files {
        let from = module_path(rel);
        for t in targets(rel, src) {
            let Some(k) = (0..from.len().min(t.target.len())).find(|&k| from[k] != t.target[k])
            else {
                continue;
            };
            let parent = &from[..k];
            let mut to = t.target[..=k].to_vec();
            if !modules.contains(&to) {
                // An item of the parent, or one it re-exports from a child.
                match reexports.get(parent).and_then(|r| r.get(&t.target[k])) {
                    Some(real) if real.len() > k + 1 && real[..k] == *parent => {
                        to = real[..=k].to_vec();
                    }
                    _ => continue,
                }
            }
            if !modules.contains(&to) || to[k] == from[k] {
                continue;
            }
            graph
                .entry(from[..=k].join("::"))
                .or_default()
                .entry(to.join("::"))
                .or_insert_with(|| format!("src/{rel}:{} `{}`", t.line, t.written));
        }
    }
    find_cycles(&graph, "import cycle between the files of a module")
}

/// The cycles of `graph`, each once (from its smallest node), with one reference per edge.
fn find_cycles(graph: &Graph, what: &str) -> Vec<String> {
    let mut found = BTreeSet::new();
    for start in graph.keys() {
        // Shortest way back to `start`, breadth first.
        let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.as_str()]);
        'search: while let Some(m) = queue.pop_front() {
            for next in graph.get(m).into_iter().flat_map(|e| e.keys()) {
                if next == start {
                    let mut cycle = vec![m];
                    while let Some(p) = previous.get(cycle.last().unwrap()) {
                        cycle.push(p);
                    }
                    cycle.reverse();
                    cycle.push(start);
                    let min = cycle[..cycle.len() - 1].iter().min().unwrap();
                    if cycle[0] != *min {
                        break 'search; // reported from its smallest module
                    }
                    let edges: Vec<String> = cycle
                        .windows(2)
                        .map(|w| format!("{} -> {} ({})", w[0], w[1], graph[w[0]][w[1]]))
                        .collect();
                    found.insert(format!("{what}: {}", edges.join(", ")));
                    break 'search;
                }
                if next != start && !previous.contains_key(next.as_str()) {
                    previous.insert(next, m);
                    queue.push_back(next);
                }
            }
        }
    }
    found.into_iter().collect()
}

/// Every `.rs` file under `dir`, as (path relative to `root`, contents).
pub(crate) fn sources(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .expect("under src")
                .to_string_lossy();
            let src = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((rel.replace('\\', "/"), src));
        }
    }
}

#[test]
fn the_sources_hold_the_walls_have_no_import_cycle_and_no_unexplained_big_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    let tests: Vec<String> = files
        .iter()
        .flat_map(|(rel, src)| test_module_files(rel, src))
        .collect();
    files.retain(|(rel, _)| !tests.contains(rel));
    assert!(files.len() > 20, "read {} files under src/", files.len());
    let mut found: Vec<String> = files
        .iter()
        .flat_map(|(rel, src)| check_file(rel, src))
        .collect();
    found.extend(cycles(&files));
    found.extend(file_cycles(&files));
    assert!(found.is_empty(), "\n{}\n", found.join("\n"));
}

#[test]
fn only_the_cli_reaches_the_exit_code_map_and_http_reaches_nothing() {
    let src = "//! x\nuse crate::exit::RUNTIME;\n";
    assert!(check_file("cli/run.rs", src).is_empty());
    let found = check_file("fleet/mod.rs", src);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].ends_with("fleet must not import exit"),
        "{}",
        found[0]
    );
    assert!(check_file("exit/tests.rs", "//! x\nuse crate::exit::OK;\n").is_empty());
    let found = check_file(
        "http.rs",
        "//! x\nfn f() { let _ = crate::mock::listen; }\n",
    );
    assert_eq!(found.len(), 1, "{found:#?}");
}

#[test]
fn a_forbidden_import_is_reported_with_its_file_and_line_in_every_spelling() {
    let src = "//! A device file.\nuse std::sync::Arc;\nuse crate::{stage::Stage,\n    \
               protocol::{self, Format}, mock::ALPN_MQTT_CA as ALPN};\n\nfn f() {\n    let _ = \
               crate::fleet::run;\n    let _ = \"crate::metrics::x\"; // crate::live::y\n}\n";
    let found = check_file("device/flow.rs", src);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with("src/device/flow.rs:4: `crate::mock::ALPN_MQTT_CA`"));
    assert!(
        found[0].ends_with("device must not import mock"),
        "{}",
        found[0]
    );
    assert!(found[1].starts_with("src/device/flow.rs:7: `crate::fleet::run`"));
}

#[test]
fn test_only_code_is_left_out_and_super_paths_are_resolved() {
    let src = "use super::session::Session;\n\n#[cfg(test)]\nmod tests {\n    use \
               crate::fleet;\n    fn g() { let _ = crate::output::x; }\n}\n\npub fn h() -> \
               super::super::cli::Cli { todo!() }\n";
    let found = check_file("mock/provisioning.rs", src);
    assert_eq!(found.len(), 1, "{found:#?}");
    let src = "#[cfg(test)]\nmod testkit;\nmod parser;\n";
    assert_eq!(
        test_module_files("mock/template/mod.rs", src),
        ["mock/template/testkit.rs", "mock/template/testkit/mod.rs"]
    );
    assert!(found[0].starts_with("src/mock/provisioning.rs:9: `super::super::cli::Cli`"));
    // Lifetimes and char literals are not strings.
    let src = "fn f<'a>(s: &'a str) -> char { let _ = crate::mock::x; '\"' }\n";
    assert_eq!(check_file("protocol.rs", src).len(), 1);
}

#[test]
fn a_cycle_is_reported_with_its_edges_and_a_big_file_needs_its_reason() {
    let files = vec![
        (
            "compare.rs".to_string(),
            "use crate::report::Timeseries;\n".to_string(),
        ),
        (
            "report/mod.rs".to_string(),
            "\nuse crate::{compare, pki};\n".to_string(),
        ),
        ("pki.rs".to_string(), String::new()),
    ];
    let found = cycles(&files);
    assert_eq!(
        found,
        [
            "import cycle: compare -> report (src/compare.rs:1 `crate::report::Timeseries`), report \
          -> compare (src/report/mod.rs:2 `crate::compare`)"
        ]
    );
    let big = "fn x() {}\n".repeat(801);
    assert_eq!(check_file("big.rs", &big).len(), 1);
    let why = format!("//! A table; it is over 800 lines because\n//! it is data.\n{big}");
    assert!(check_file("big.rs", &why).is_empty());
}

#[test]
fn a_cycle_between_the_files_of_a_module_is_reported_and_a_parent_is_no_part_of_one() {
    let file = |rel: &str, src: &str| (rel.to_string(), src.to_string());
    // setup and teardown import each other (one through the crate path); both use their
    // parent's items and the parent uses theirs: only the siblings' cycle counts.
    let files = vec![
        file(
            "aws/mod.rs",
            "pub mod setup;\npub mod teardown;\nuse setup::setup;\npub struct AwsError;\n",
        ),
        file(
            "aws/setup.rs",
            "use super::AwsError;\n\nfn f() { crate::aws::teardown::ensure_role(); }\n",
        ),
        file(
            "aws/teardown.rs",
            "use super::{AwsError, setup::STATE_FILE};\n",
        ),
    ];
    assert_eq!(
        file_cycles(&files),
        [
            "import cycle between the files of a module: aws::setup -> aws::teardown \
             (src/aws/setup.rs:3 `crate::aws::teardown::ensure_role`), aws::teardown -> \
             aws::setup (src/aws/teardown.rs:1 `super::setup::STATE_FILE`)"
        ]
    );
    // A cycle through what the parent re-exports, and one between folders of a module.
    let files = vec![
        file(
            "scenario/mod.rs",
            "mod arrivals;\nmod phase;\npub use phase::Phase;\n",
        ),
        file("scenario/arrivals.rs", "use super::Phase;\n"),
        file(
            "scenario/phase.rs",
            "pub struct Phase;\nuse super::arrivals::Arrivals;\n",
        ),
        file(
            "mock/session/mod.rs",
            "use crate::mock::registry::Registry;\n",
        ),
        file(
            "mock/registry/journal.rs",
            "use super::super::session::Session;\n",
        ),
        file("mock/registry.rs", ""),
    ];
    let found = file_cycles(&files);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].contains("mock::registry -> mock::session (src/mock/registry/journal.rs:1"));
    assert!(found[1].contains(
        "scenario::arrivals -> scenario::phase (src/scenario/arrivals.rs:1 `super::Phase`)"
    ));
    // Without the way back there is no cycle.
    assert!(file_cycles(&files[..2]).is_empty());
}

#[test]
fn the_product_model_and_the_results_model_have_walls() {
    let aws = "use crate::mock::template::Template;\nuse crate::iot::policy::claim_policy_json;\n";
    let found = check_file("aws/setup.rs", aws);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].ends_with("aws must not import mock"),
        "{}",
        found[0]
    );
    let iot = "use crate::pki::Pki;\n";
    assert_eq!(check_file("iot/template/mod.rs", iot).len(), 1);
    let results = "pub struct S { pub changes: Vec<crate::live::RateChange> }\n";
    let found = check_file("results/summary.rs", results);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].ends_with("results must not import live"),
        "{}",
        found[0]
    );
    assert_eq!(check_file("output.rs", "use crate::fleet::Run;\n").len(), 1);
    assert!(check_file("mock/mod.rs", "use crate::iot::template::Template;\n").is_empty());
}
