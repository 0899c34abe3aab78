//! The module structure as a graph: every file of src/ and the files whose items it names
//! (through `use` or a `crate::`/`super::` path). The graph must have no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which crate a file belongs to: the library (src/lib.rs) or the binary (src/main.rs).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Krate {
    Lib,
    Bin,
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file relative to src/: `wire/types.rs` -> ["wire", "types"].
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts
}

/// Source with comments, strings and `#[cfg(test)]` inline modules' insides left out, so
/// only real paths remain.
fn code_only(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i + 1 < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // a char literal such as '"' or '\n'
            let end = src[i + 1..].find('\'').map_or(b.len(), |e| i + 2 + e);
            i = end;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    // inline test modules import their parent (`use super::*`) by design
    while let Some(at) = out.find("#[cfg(test)]\nmod ") {
        let Some(open) = out[at..].find('{').map(|o| at + o) else {
            break;
        };
        let mut depth = 0;
        let mut end = open;
        for (k, ch) in out[open..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.replace_range(at..end, "");
    }
    // inside an inline `mod name { .. }`, `super::` is this file's module
    let mut from = 0;
    while let Some(at) = out[from..].find("mod ").map(|a| a + from) {
        from = at + 4;
        let before_ok = at == 0 || !out.as_bytes()[at - 1].is_ascii_alphanumeric();
        let rest = &out[at + 4..];
        let name_len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(0);
        if !before_ok || name_len == 0 || !rest[name_len..].trim_start().starts_with('{') {
            continue;
        }
        let open = at + 4 + name_len + rest[name_len..].find('{').unwrap();
        let mut depth = 0;
        let mut end = open;
        for (k, ch) in out[open..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k;
                        break;
                    }
                }
                _ => {}
            }
        }
        let inner = out[open..end].replace("super::", "self::");
        out.replace_range(open..end, &inner);
    }
    out
}

/// Every path the code names from the crate root or a parent module, expanded from `use`
/// trees: `use super::{a::X, b}` gives super::a::X and super::b.
fn named_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let words: Vec<char> = code.chars().collect();
    let mut i = 0;
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < words.len() {
        // any `name::` that does not continue a longer path: crate::, super::, a child
        // module's name; the caller keeps those that name modules of this crate
        let prev_ok = i == 0 || !(is_ident(words[i - 1]) || words[i - 1] == ':');
        let mut k = i;
        while k < words.len() && is_ident(words[k]) {
            k += 1;
        }
        let starts_path = k > i
            && !words[i].is_ascii_digit()
            && words.get(k) == Some(&':')
            && words.get(k + 1) == Some(&':');
        if prev_ok && starts_path {
            // read a path, expanding one level of braces
            let mut j = i;
            let mut prefix = Vec::new();
            let mut cur = String::new();
            loop {
                if j >= words.len() {
                    break;
                }
                let c = words[j];
                if is_ident(c) {
                    cur.push(c);
                    j += 1;
                } else if c == ':' && words.get(j + 1) == Some(&':') {
                    prefix.push(std::mem::take(&mut cur));
                    j += 2;
                    if words.get(j) == Some(&'{') {
                        // a use tree: each item separated by commas at depth 1
                        let mut depth = 0;
                        let mut item = String::new();
                        while j < words.len() {
                            let c = words[j];
                            match c {
                                '{' => {
                                    depth += 1;
                                    if depth > 1 {
                                        item.push(c);
                                    }
                                }
                                '}' => {
                                    depth -= 1;
                                    if depth == 0 {
                                        push_item(&prefix, &item, &mut paths);
                                        break;
                                    }
                                    item.push(c);
                                }
                                ',' if depth == 1 => {
                                    push_item(&prefix, &item, &mut paths);
                                    item.clear();
                                }
                                _ => item.push(c),
                            }
                            j += 1;
                        }
                        prefix.clear();
                        break;
                    }
                } else {
                    break;
                }
            }
            if !prefix.is_empty() {
                if !cur.is_empty() {
                    prefix.push(cur);
                }
                paths.push(prefix);
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    paths
}

fn push_item(prefix: &[String], item: &str, out: &mut Vec<Vec<String>>) {
    let item: String = item.chars().filter(|c| !c.is_whitespace()).collect();
    let item = item.split(" as ").next().unwrap_or("").to_string();
    if item.is_empty() || item == "self" {
        out.push(prefix.to_vec());
        return;
    }
    // nested trees are expanded by their first segment only: enough to find the module
    let head = item.split("::{").next().unwrap_or(&item);
    let mut p = prefix.to_vec();
    p.extend(head.split("::").map(str::to_string));
    out.push(p);
}

/// The file that defines the longest module prefix of `path` (absolute module segments).
fn resolve(
    path: &[String],
    files: &BTreeMap<(Krate, Vec<String>), PathBuf>,
    krate: Krate,
) -> Option<PathBuf> {
    (0..=path.len())
        .rev()
        .find_map(|n| files.get(&(krate, path[..n].to_vec())).cloned())
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    rs_files(&src, &mut all);
    let mut files = BTreeMap::new();
    for f in &all {
        let rel = f.strip_prefix(&src).unwrap();
        let krate = if rel.starts_with("cli") || rel == Path::new("main.rs") {
            Krate::Bin
        } else {
            Krate::Lib
        };
        files.insert((krate, module_of(rel)), f.clone());
    }
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for ((krate, module), file) in &files {
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        for p in named_paths(&code) {
            let (k, abs) = match p[0].as_str() {
                "crate" => (*krate, p[1..].to_vec()),
                "ndmpd" => (Krate::Lib, p[1..].to_vec()),
                "self" => (*krate, [module.clone(), p[1..].to_vec()].concat()),
                "super" => {
                    let mut m = module.clone();
                    let mut rest = &p[..];
                    while rest.first().is_some_and(|s| s == "super") {
                        m.pop();
                        rest = &rest[1..];
                    }
                    (*krate, [m, rest.to_vec()].concat())
                }
                // a path relative to this module: one of its child modules
                child
                    if files.contains_key(&(
                        *krate,
                        [module.clone(), vec![child.to_string()]].concat(),
                    )) =>
                {
                    (*krate, [module.clone(), p.to_vec()].concat())
                }
                _ => continue,
            };
            if let Some(target) = resolve(&abs, &files, k) {
                if target != *file {
                    edges.entry(file.clone()).or_default().insert(target);
                }
            }
        }
    }
    // cycles: any edge a -> b with a path b -> ... -> a
    let mut cycles = Vec::new();
    for (a, outs) in &edges {
        for b in outs {
            if let Some(back) = path_between(&edges, b, a) {
                let mut c = vec![a.clone()];
                c.extend(back);
                let shown: Vec<String> = c
                    .iter()
                    .map(|p| p.strip_prefix(&src).unwrap().display().to_string())
                    .collect();
                cycles.push(shown.join(" -> "));
            }
        }
    }
    cycles.sort();
    cycles.dedup();
    assert!(
        cycles.is_empty(),
        "{} import cycles:\n{}",
        cycles.len(),
        cycles.join("\n")
    );
}

/// A shortest path from `from` to `to`, both ends included.
fn path_between(
    edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
    from: &Path,
    to: &Path,
) -> Option<Vec<PathBuf>> {
    let mut prev: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([from.to_path_buf()]);
    let mut seen = BTreeSet::from([from.to_path_buf()]);
    while let Some(n) = queue.pop_front() {
        if n == to {
            let mut path = vec![n.clone()];
            let mut cur = n;
            while let Some(p) = prev.get(&cur) {
                path.push(p.clone());
                cur = p.clone();
            }
            path.reverse();
            return Some(path);
        }
        for m in edges.get(&n).into_iter().flatten() {
            if seen.insert(m.clone()) {
                prev.insert(m.clone(), n.clone());
                queue.push_back(m.clone());
            }
        }
    }
    None
}
