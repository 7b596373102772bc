//! The import-cycle gate of `cargo xtask lints`: within each crate, no module may reach
//! itself through `crate::`, `super::` and `self::` paths. A module is a source file
//! (`a/b.rs` or `a/b/mod.rs` is `a::b`); a path names the deepest module it reaches.
//! A module naming its own submodules (`mod x;`, `self::x`) is not an edge back, and
//! test code (files named `tests.rs` or `*_tests.rs`, inline test modules) is left out.
//!
//! Written here rather than taken from a crate: cargo-modules and similar tools need a
//! full rust-analyzer build (minutes, and a toolchain of their own); paths are all this
//! check needs.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// The cycles among the modules of the crate whose sources are under `src`, each as its
/// modules in order; empty if there are none.
pub fn cycles(src: &Path) -> anyhow::Result<Vec<Vec<String>>> {
    let mut sources = BTreeMap::new();
    collect(src, src, &mut sources)?;
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in &sources {
        let targets = edges.entry(module.clone()).or_default();
        for path in paths_in(text) {
            let within =
                |target: &str| target == module || module.is_empty() || target.starts_with(&format!("{module}::"));
            if let Some(target) = resolve(module, &path, &modules)
                && !within(&target)
            {
                targets.insert(target);
            }
        }
    }
    Ok(strongly_connected(&edges).into_iter().filter(|c| c.len() > 1).collect())
}

/// Every `.rs` file under `dir`, by module path (`""` for the crate root).
fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root)?.with_extension("");
            let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                parts.pop();
            }
            if parts.last().is_some_and(|name| name == "tests" || name.ends_with("_tests")) {
                continue;
            }
            out.insert(parts.join("::"), without_test_modules(&std::fs::read_to_string(&path)?));
        }
    }
    Ok(())
}

/// `text` without its inline test modules (`#[cfg(test)]` then `mod NAME {...}`).
fn without_test_modules(text: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let after = &rest[at + MARK.len()..];
        let header = after.trim_start();
        let is_inline_mod = header.starts_with("mod ")
            && header.find('{').is_some_and(|brace| header.find(';').is_none_or(|semi| brace < semi));
        if !is_inline_mod {
            rest = after;
            continue;
        }
        let open = after.len() - header.len() + header.find('{').expect("checked");
        let mut depth = 0;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The module `path` (as written in `module`) reaches: the longest prefix of it that is
/// a module.
fn resolve(module: &str, path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    let mut absolute: Vec<String> = match path.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("super") => {
            let mut parent: Vec<String> = module.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect();
            parent.pop()?;
            parent
        }
        Some("self") => module.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        _ => return None,
    };
    let mut rest = path[1..].iter();
    // `super::super::x`
    let mut next = rest.next();
    while next.is_some_and(|s| s == "super") {
        absolute.pop()?;
        next = rest.next();
    }
    absolute.extend(next.cloned());
    absolute.extend(rest.cloned());
    (0..=absolute.len()).rev().map(|n| absolute[..n].join("::")).find(|candidate| modules.contains(candidate))
}

/// Every path starting with `crate`, `super` or `self` in `text`, `use` trees expanded
/// (`use crate::{a::{self, B}, c}` gives `crate::a`, `crate::a::B`, `crate::c`).
fn paths_in(text: &str) -> Vec<Vec<String>> {
    let code: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let tokens = tokenize(&code);
    let mut paths = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if matches!(tokens[i].as_str(), "crate" | "super" | "self")
            && tokens.get(i + 1).is_some_and(|t| t == "::")
            && (i == 0 || tokens[i - 1] != "::")
        {
            i = tree(&tokens, i, Vec::new(), &mut paths);
        } else {
            i += 1;
        }
    }
    paths
}

/// Reads the path or use tree starting at `tokens[i]` under `prefix`; returns the index
/// after it.
fn tree(tokens: &[String], mut i: usize, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    loop {
        match tokens.get(i).map(String::as_str) {
            Some("{") => {
                i += 1;
                loop {
                    match tokens.get(i).map(String::as_str) {
                        None => return i,
                        Some("}") => return i + 1,
                        Some(",") => i += 1,
                        Some(_) => i = tree(tokens, i, prefix.clone(), out),
                    }
                }
            }
            Some(word) if is_ident(word) => {
                if word != "self" || prefix.is_empty() {
                    prefix.push(word.to_owned());
                }
                i += 1;
                if tokens.get(i).is_some_and(|t| t == "::") {
                    i += 1;
                    continue;
                }
                out.push(prefix);
                return i;
            }
            _ => {
                out.push(prefix);
                return i;
            }
        }
    }
}

fn is_ident(token: &str) -> bool {
    token.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Identifiers, `::`, and every other character as a token of its own; string and
/// character literals are skipped.
fn tokenize(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push("::".into());
            i += 2;
        } else if !c.is_whitespace() {
            tokens.push(c.to_string());
            i += 1;
        } else {
            i += 1;
        }
    }
    tokens
}

/// Tarjan's strongly connected components of `edges`.
fn strongly_connected(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<Vec<String>>,
    }
    fn visit<'a>(state: &mut State<'a>, node: &'a str) {
        let n = state.index.len();
        state.index.insert(node, n);
        state.low.insert(node, n);
        state.stack.push(node);
        state.on_stack.insert(node);
        for next in state.edges.get(node).into_iter().flatten() {
            if !state.index.contains_key(next.as_str()) {
                visit(state, next);
                let low = state.low[node].min(state.low[next.as_str()]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(next.as_str()) {
                let low = state.low[node].min(state.index[next.as_str()]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack.remove(member);
                component.push(member.to_owned());
                if member == node {
                    break;
                }
            }
            component.reverse();
            state.components.push(component);
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for node in edges.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.components
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(path: &[&str]) -> Vec<String> {
        path.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn use_trees_are_expanded() {
        let paths = paths_in("use crate::{a::{self, B}, c::d::E};\nfn f() { super::g(); x::crate_y(); }");
        assert_eq!(
            paths,
            vec![
                strings(&["crate", "a"]),
                strings(&["crate", "a", "B"]),
                strings(&["crate", "c", "d", "E"]),
                strings(&["super", "g"])
            ]
        );
    }

    #[test]
    fn inline_test_modules_are_left_out() {
        let text = "use crate::a;\n#[cfg(test)]\nmod tests {\n    use crate::b;\n    fn f() { if x { } }\n}\n#[cfg(test)]\nmod other;\nuse crate::c;";
        let paths = paths_in(&without_test_modules(text));
        assert_eq!(paths, vec![strings(&["crate", "a"]), strings(&["crate", "c"])]);
    }

    #[test]
    fn paths_resolve_to_the_deepest_module() {
        let modules: BTreeSet<String> = ["", "a", "a::b", "c"].into_iter().map(str::to_owned).collect();
        assert_eq!(resolve("c", &strings(&["crate", "a", "b", "F"]), &modules).as_deref(), Some("a::b"));
        assert_eq!(resolve("a::b", &strings(&["super", "G"]), &modules).as_deref(), Some("a"));
        assert_eq!(resolve("a", &strings(&["self", "b", "H"]), &modules).as_deref(), Some("a::b"));
    }

    #[test]
    fn a_cycle_is_found_and_a_chain_is_not() {
        let dir = std::env::temp_dir().join(format!("module-cycles-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(dir.join("lib.rs"), "mod a; mod b; mod c; mod d;").unwrap();
        std::fs::write(dir.join("a.rs"), "use crate::b::X;").unwrap();
        std::fs::write(dir.join("b.rs"), "use crate::c::Y;").unwrap();
        std::fs::write(dir.join("c.rs"), "pub struct Y;").unwrap();
        std::fs::write(dir.join("d/mod.rs"), "mod e; use self::e::Z;").unwrap();
        std::fs::write(dir.join("d/e.rs"), "pub struct Z;").unwrap();
        assert!(cycles(&dir).unwrap().is_empty());
        std::fs::write(dir.join("c.rs"), "use crate::a;").unwrap();
        assert_eq!(cycles(&dir).unwrap(), vec![strings(&["a", "b", "c"])]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
