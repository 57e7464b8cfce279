//! The shape docs/design.md promises a newcomer: no file of `host/src` over 400 lines, no
//! function of `host/src` or `guest-sdk/src` outside tests over 80, and no file of either that
//! imports (through a `crate::` or `super::` path) a file that imports it back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 400;
const MAX_FUNCTION_LINES: usize = 80;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`, test-only files (`tests.rs`) aside.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("a source folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && path.file_name().is_some_and(|n| n != "tests.rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// A file's code before its test module, without comment lines.
fn code(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("a source file");
    text.lines().take_while(|l| l.trim() != "#[cfg(test)]").filter(|l| !l.trim_start().starts_with("//")).map(str::to_string).collect()
}

/// The module path of a file under `root`: `pods/sync/mod.rs` is `pods::sync`.
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let mut parts: Vec<String> = file.strip_prefix(root).expect("under root").with_extension("").iter().map(|p| p.to_string_lossy().to_string()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// The paths after each `crate::` and `super::` in a line, as segments.
fn paths(line: &str) -> Vec<(bool, Vec<String>)> {
    let mut found = Vec::new();
    for (start, _) in line.match_indices("crate::").chain(line.match_indices("super::")) {
        if line[..start].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let is_crate = line[start..].starts_with("crate::");
        let mut segments = Vec::new();
        for part in line[start + "crate::".len()..].split("::") {
            let word: String = part.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            let whole = word.len() == part.len();
            if word.is_empty() {
                break;
            }
            segments.push(word);
            if !whole {
                break;
            }
        }
        found.push((is_crate, segments));
    }
    found
}

/// Each file's imports of other files of the crate at `root`, as module paths; a file's own
/// ancestors (whose items it may name) are left out.
fn imports(root: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let files = sources(root);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(root, f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let me = module_of(root, file);
        let mut deps = BTreeSet::new();
        for line in code(file) {
            for (is_crate, segments) in paths(&line) {
                let mut full: Vec<String> = if is_crate { Vec::new() } else { me[..me.len().saturating_sub(1)].to_vec() };
                full.extend(segments);
                let target = (1..=full.len()).rev().map(|n| full[..n].to_vec()).find(|m| modules.contains(m));
                if let Some(target) = target.filter(|t| *t != me && !me.starts_with(t)) {
                    deps.insert(target);
                }
            }
        }
        graph.insert(me, deps);
    }
    graph
}

/// The files on a cycle of imports, if there is one.
fn a_cycle(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        path: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            return Some(path[at..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_file_of_the_host_or_the_sdk_imports_one_that_imports_it_back() {
    for crate_root in ["host/src", "guest-sdk/src"] {
        let graph = imports(&workspace().join(crate_root));
        assert!(graph.values().map(BTreeSet::len).sum::<usize>() > 20, "{crate_root}: the imports were not read");
        if let Some(cycle) = a_cycle(&graph) {
            let names: Vec<String> = cycle.iter().map(|m| m.join("/")).collect();
            panic!("{crate_root}: {} import each other", names.join(" -> "));
        }
    }
}

/// The functions of `file` over [`MAX_FUNCTION_LINES`], outside its tests.
fn long_functions(file: &Path, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(file).expect("a source file");
    let lines: Vec<&str> = text.lines().take_while(|l| l.trim() != "#[cfg(test)]").collect();
    let mut long = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let head = line.trim_start();
        let is_fn = ["fn ", "pub fn ", "async fn ", "pub async fn ", "pub(crate) fn ", "pub(super) fn ", "pub(crate) async fn ", "pub(super) async fn "]
            .iter()
            .any(|p| head.starts_with(p));
        if !is_fn || head.ends_with(';') {
            continue;
        }
        let end = lines[i + 1..].iter().position(|l| l.len() - l.trim_start().len() == indent && l.trim_start().starts_with('}'));
        if let Some(end) = end.filter(|e| e + 2 > MAX_FUNCTION_LINES) {
            long.push(format!("{name}:{}: a function of {} lines", i + 1, end + 2));
        }
    }
    long
}

#[test]
fn files_and_functions_stay_short() {
    let mut long = Vec::new();
    for crate_root in ["host/src", "guest-sdk/src"] {
        let root = workspace().join(crate_root);
        for file in sources(&root) {
            let name = format!("{crate_root}/{}", file.strip_prefix(&root).expect("under root").display());
            let lines = std::fs::read_to_string(&file).expect("a source file").lines().count();
            if crate_root == "host/src" && lines > MAX_FILE_LINES {
                long.push(format!("{name}: {lines} lines"));
            }
            long.extend(long_functions(&file, &name));
        }
    }
    assert!(long.is_empty(), "over {MAX_FILE_LINES} lines a host file or {MAX_FUNCTION_LINES} a function:\n{}", long.join("\n"));
}
