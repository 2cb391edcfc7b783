//! The module layering ARCHITECTURE.md describes, checked: each module of the library refers
//! only to modules below it, so dependencies point one way and no two modules depend on each
//! other. A reference is a `crate::module` path in code (comments are skipped), or a name the
//! crate root re-exports from a module (`crate::Secret` is `secret`'s).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom first: a module may use the modules before it in this list, never one after it.
const LAYERS: &[&str] = &[
    // base types
    "text",
    "dn",
    "entry",
    "secret",
    "files",
    "clock",
    "retry",
    "tls",
    "ldap",
    // the pipeline, down to the destination
    "job",
    "query",
    "source",
    "transform",
    "destination",
    "matching",
    "plan",
    // a run
    "error",
    "report",
    "hooks",
    "engine",
    // around runs
    "lifecycle",
];

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// What the crate root re-exports, by name: `pub use module::{A, B};` and `pub use module::A;`.
fn root_exports(lib: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for line in lib.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("pub use ") else {
            continue;
        };
        let rest = rest.trim_end_matches(';');
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        let items = items.trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let name = item.rsplit("::").next().unwrap_or(item);
            names.insert(name.to_string(), module.to_string());
        }
    }
    names
}

/// The first segment of each path after `crate::` in `code`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(list) = rest.strip_prefix('{') {
            let end = list.find('}').unwrap_or(list.len());
            for item in list[..end].split(',') {
                let first = item.trim().split("::").next().unwrap_or("");
                found.push(first.to_string());
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            found.push(rest[..end].to_string());
        }
    }
    found
}

#[test]
fn modules_depend_only_on_the_modules_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let exports = root_exports(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut wrong = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    for path in all {
        let relative = path.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_string_lossy().trim_end_matches(".rs").to_string();
        if module == "lib" || module == "bin" {
            continue;
        }
        let Some(own) = rank(&module) else {
            unknown.insert(module);
            continue;
        };
        let code: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for name in crate_paths(&code) {
            let target = if rank(&name).is_some() {
                name.clone()
            } else if let Some(m) = exports.get(&name) {
                m.clone()
            } else {
                continue; // a root item of its own (`crate::BoxError`)
            };
            if target == module {
                continue;
            }
            match rank(&target) {
                Some(r) if r < own => {}
                _ => {
                    wrong.insert(format!(
                        "{} uses {target} (crate::{name})",
                        relative.display()
                    ));
                }
            }
        }
    }
    assert!(unknown.is_empty(), "modules not in LAYERS: {unknown:?}");
    assert!(
        wrong.is_empty(),
        "references up the layers:\n{}",
        wrong.into_iter().collect::<Vec<_>>().join("\n")
    );
}
