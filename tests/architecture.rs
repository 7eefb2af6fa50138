//! The architecture, checked: every module imports only from its own layer or below, and
//! no two modules import each other, directly or round a circle. Read from the source.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, lowest first. A module may import from its own layer and those below.
const LAYERS: &[&[&str]] = &[
    &["topology", "protocols", "json_file", "journal"],
    &["contract", "plan", "events"],
    &["kernel", "dns"],
    &["supervisor", "agents"],
    &["lab"],
    &["cli"],
];

fn layer_of(top: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&top))
        .unwrap_or_else(|| panic!("module {top} is in no layer of tests/architecture.rs"))
}

/// Every source file's module path (`agents::vlr::core`) and text.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().replace(".rs", "");
            if path.is_dir() {
                let mut p = prefix.to_vec();
                p.push(name);
                walk(&path, &p, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let mut p = prefix.to_vec();
                if name != "mod" {
                    p.push(name);
                }
                out.insert(p.join("::"), std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &[],
        &mut out,
    );
    out.remove("lib");
    out.remove("main");
    out
}

/// The modules a file's code (tests left out) refers to, by `crate::`, `super::` and
/// `self::` paths, each resolved to the longest module that exists.
fn imports(module: &str, text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let code: String = text
        .split("#[cfg(test)]")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let own: Vec<&str> = module.split("::").collect();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    let mut paths = Vec::new();
    for root in ["crate::", "super::", "self::"] {
        for (at, _) in code.match_indices(root) {
            if code[..at].chars().last().is_some_and(is_ident) {
                continue;
            }
            let path: String = code[at..].chars().take_while(|c| is_ident(*c)).collect();
            let rest = &code[at + path.len()..];
            match rest.strip_prefix('{') {
                // `use super::{a::B, c}`: one path per item.
                Some(group) => {
                    let group = &group[..group.find('}').unwrap_or(group.len())];
                    for item in group.split(',') {
                        let item: String =
                            item.trim().chars().take_while(|c| is_ident(*c)).collect();
                        paths.push(format!("{path}{item}"));
                    }
                }
                None => paths.push(path),
            }
        }
    }
    let mut found = BTreeSet::new();
    for path in paths {
        let mut parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
        let mut base: Vec<&str> = match parts[0] {
            "crate" => Vec::new(),
            "self" => own.clone(),
            // `super::` from a file is its parent module (a mod.rs is its own module).
            _ => own[..own.len() - 1].to_vec(),
        };
        parts.remove(0);
        while parts.first() == Some(&"super") {
            base.pop();
            parts.remove(0);
        }
        base.extend(parts);
        while !base.is_empty() && !known.contains(&base.join("::")) {
            base.pop();
        }
        let target = base.join("::");
        if !target.is_empty() && target != module && !module.starts_with(&format!("{target}::")) {
            found.insert(target);
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(m, text)| (m.clone(), imports(m, text, &known)))
        .collect()
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let mut upward = Vec::new();
    for (module, deps) in graph() {
        let top = module.split("::").next().unwrap();
        for dep in deps {
            let dep_top = dep.split("::").next().unwrap();
            if layer_of(dep_top) > layer_of(top) {
                upward.push(format!("{module} -> {dep}"));
            }
        }
    }
    assert!(upward.is_empty(), "upward imports: {upward:#?}");
}

#[test]
fn no_import_cycles() {
    let graph = graph();
    // Depth-first search for a back edge, reporting the circle it closes.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_string());
            cycles.push(circle.join(" -> "));
            return;
        }
        if !done.insert(node.to_string()) {
            return;
        }
        path.push(node.to_string());
        for dep in graph.get(node).into_iter().flatten() {
            visit(dep, graph, path, done, cycles);
        }
        path.pop();
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}

#[test]
fn the_checker_sees_imports() {
    // A checker that found nothing would pass every test above.
    let graph = graph();
    assert!(graph["agents::vlr"].contains("agents::vlr::core"));
    assert!(graph["agents::dhcp"].contains("protocols::dhcp"));
    assert!(graph["lab"].contains("contract::lab_dir") || graph["lab"].contains("contract"));
    let known: BTreeSet<String> = graph.keys().cloned().collect();
    let fake = imports(
        "agents::x",
        "use super::vlr::core::Attach; use crate::lab::state;\nuse super::{leases::Book, queue};\n// crate::cli",
        &known,
    );
    assert_eq!(
        fake,
        BTreeSet::from([
            "agents::leases".to_string(),
            "agents::queue".to_string(),
            "agents::vlr::core".to_string(),
            "lab::state".to_string()
        ])
    );
}
