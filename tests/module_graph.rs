//! The crate's modules form no cycle: no file depends, directly or through others, on a file
//! that depends on it (parent ↔ child included). A dependency is any path a file names (`use`
//! trees; inline paths from `crate::`, `super::`, `self::` or a child module), resolved to the
//! file that defines the item through re-exports. `mod` declarations are containment, not
//! dependencies; inline `mod tests { .. }` blocks are left out (test code may reach back).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One module file: its child modules and its `use` paths (with whether they re-export).
#[derive(Default, Debug)]
struct Module {
    file: PathBuf,
    children: BTreeMap<String, usize>,
    parent: Option<usize>,
    /// `(path, alias, public)`: every `use`, flattened.
    uses: Vec<(Vec<String>, String, bool)>,
    /// Inline `crate::` / `super::` / `self::` paths outside `use`.
    paths: Vec<Vec<String>>,
}

/// The text without comments, string and char literals, and inline `mod tests { .. }` blocks.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'r'
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
            && b[i + 1..].iter().take_while(|&&c| c == b'#').count() + i + 1 < b.len()
            && b[i + 1 + b[i + 1..].iter().take_while(|&&c| c == b'#').count()] == b'"'
        {
            // A raw string r#"..."#: no escapes, ends at the quote followed by as many #.
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            let end: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            i += 2 + hashes;
            while i < b.len() && !b[i..].starts_with(&end) {
                i += 1;
            }
            i += end.len();
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('a', '\n'); lifetimes ('a) have no closing quote there.
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    // Inline test modules.
    while let Some(at) = out.find("mod tests {") {
        let open = at + "mod tests ".len();
        let mut depth = 0;
        let mut end = open;
        for (k, c) in out[open..].char_indices() {
            match c {
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
    out
}

/// Flattens a use tree (`a::b::{c, d::e as f, self, *}`) into `(path, alias)` pairs.
fn flatten(tree: &str, prefix: &[String], out: &mut Vec<(Vec<String>, String)>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let mut base = prefix.to_vec();
        base.extend(head);
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut depth = 0;
        let mut start = 0;
        for (k, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    flatten(&inner[start..k], &base, out);
                    start = k + 1;
                }
                _ => {}
            }
        }
        flatten(&inner[start..], &base, out);
        return;
    }
    if tree.is_empty() {
        return;
    }
    let (path, alias) = match tree.split_once(" as ") {
        Some((p, a)) => (p.trim(), a.trim().to_string()),
        None => (tree, String::new()),
    };
    let mut segs = prefix.to_vec();
    segs.extend(path.split("::").map(|s| s.trim().to_string()));
    if segs.last().map(String::as_str) == Some("self") {
        segs.pop();
    }
    let alias = if alias.is_empty() {
        segs.last().cloned().unwrap_or_default()
    } else {
        alias
    };
    out.push((segs, alias));
}

struct Crate {
    modules: Vec<Module>,
}

impl Crate {
    /// Loads the module tree under `root` (lib.rs or main.rs).
    fn load(root: &Path) -> Crate {
        let mut c = Crate {
            modules: Vec::new(),
        };
        c.add(root.to_path_buf(), None);
        c
    }

    fn add(&mut self, file: PathBuf, parent: Option<usize>) -> usize {
        let src =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let text = strip(&src);
        let id = self.modules.len();
        self.modules.push(Module {
            file: file.clone(),
            parent,
            ..Default::default()
        });
        // Child modules: `mod name;` (any visibility, any attributes).
        let dir = match file.file_name().and_then(|n| n.to_str()) {
            Some("lib.rs" | "main.rs" | "mod.rs") => file.parent().unwrap().to_path_buf(),
            _ => file.with_extension(""),
        };
        let mut children = Vec::new();
        for stmt in text.split(';') {
            let words: Vec<&str> = stmt.split_whitespace().collect();
            if let Some(k) = words.iter().rposition(|w| *w == "mod") {
                if k + 2 == words.len() {
                    children.push(words[k + 1].to_string());
                }
            }
        }
        // `use` statements.
        let mut uses = Vec::new();
        let mut rest = text.as_str();
        while let Some(at) = find_word(rest, "use") {
            let before = rest[..at].trim_end();
            let public =
                before.ends_with("pub") || before.ends_with(')') && before.contains("pub(");
            let end = rest[at..].find(';').map_or(rest.len(), |e| at + e);
            let mut flat = Vec::new();
            flatten(&rest[at + 3..end], &[], &mut flat);
            uses.extend(flat.into_iter().map(|(p, a)| (p, a, public)));
            rest = &rest[end..];
        }
        // Inline paths: `crate::`, `super::`, `self::` or a child module's name, followed by
        // more segments.
        let mut paths = Vec::new();
        let ident = |c: char| c.is_alphanumeric() || c == '_';
        let heads: Vec<String> = ["crate", "super", "self"]
            .iter()
            .map(|h| h.to_string())
            .chain(children.iter().cloned())
            .map(|h| format!("{h}::"))
            .collect();
        for head in &heads {
            for (k, _) in text.match_indices(head.as_str()) {
                let before = text[..k].chars().last();
                if before.is_some_and(|c| ident(c) || c == ':') {
                    continue; // inside a longer path (`super::super::`), counted from its start
                }
                let stop = text[k..]
                    .find(|c: char| !(ident(c) || c == ':'))
                    .map_or(text.len(), |e| k + e);
                let segs: Vec<String> = text[k..stop]
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                if segs.len() > 1 && !paths.contains(&segs) {
                    paths.push(segs);
                }
            }
        }
        self.modules[id].uses = uses;
        self.modules[id].paths = paths;
        for name in children {
            let f = if dir.join(format!("{name}.rs")).exists() {
                dir.join(format!("{name}.rs"))
            } else {
                dir.join(&name).join("mod.rs")
            };
            assert!(f.exists(), "{}: `mod {name};` has no file", file.display());
            let child = self.add(f, Some(id));
            self.modules[id].children.insert(name, child);
        }
        id
    }

    /// The file a path names, from module `at` (following re-exports), or `None` for an
    /// external crate.
    fn resolve(&self, at: usize, path: &[String], depth: usize) -> Option<usize> {
        if depth > 16 || path.is_empty() {
            return None;
        }
        let mut m = at;
        let mut segs = path;
        match segs[0].as_str() {
            "crate" => {
                m = 0;
                segs = &segs[1..];
            }
            "self" => segs = &segs[1..],
            "super" => {
                while segs.first().map(String::as_str) == Some("super") {
                    m = self.modules[m].parent?;
                    segs = &segs[1..];
                }
            }
            first if !self.modules[m].children.contains_key(first) => {
                // A name brought in by a `use` of this module, else an external crate.
                let (p, _, _) = self.modules[m].uses.iter().find(|(_, a, _)| a == first)?;
                if p.len() == 1 && p[0] == *first {
                    return None;
                }
                let mut full = p.clone();
                full.extend(segs[1..].iter().cloned());
                return self.resolve(m, &full, depth + 1);
            }
            _ => {}
        }
        while let Some(s) = segs.first() {
            match self.modules[m].children.get(s) {
                Some(&c) => {
                    m = c;
                    segs = &segs[1..];
                }
                None => break,
            }
        }
        // `segs[0]` is an item of module `m`: defined there, or re-exported from elsewhere.
        if let Some(name) = segs.first() {
            if let Some((p, _, _)) = self.modules[m]
                .uses
                .iter()
                .find(|(_, a, public)| a == name && *public)
            {
                let mut full = p.clone();
                full.extend(segs[1..].iter().cloned());
                if let Some(t) = self.resolve(m, &full, depth + 1) {
                    return Some(t);
                }
            }
        }
        Some(m)
    }

    /// Dependency edges between files.
    fn edges(&self) -> BTreeSet<(usize, usize)> {
        let mut e = BTreeSet::new();
        for (id, m) in self.modules.iter().enumerate() {
            let all = m.uses.iter().map(|(p, _, _)| p).chain(m.paths.iter());
            for p in all {
                if let Some(t) = self.resolve(id, p, 0) {
                    if t != id {
                        e.insert((id, t));
                    }
                }
            }
        }
        e
    }
}

fn find_word(s: &str, w: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(k) = s[from..].find(w) {
        let at = from + k;
        let before = s[..at].chars().last();
        let after = s[at + w.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if boundary(before) && after.is_some_and(char::is_whitespace) {
            return Some(at);
        }
        from = at + w.len();
    }
    None
}

/// Strongly connected components of more than one file (Tarjan's algorithm).
fn cycles(n: usize, edges: &BTreeSet<(usize, usize)>) -> Vec<Vec<usize>> {
    struct T<'a> {
        adj: Vec<Vec<usize>>,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: &'a mut Vec<Vec<usize>>,
    }
    fn visit(t: &mut T, v: usize) {
        t.index[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on[v] = true;
        for w in t.adj[v].clone() {
            match t.index[w] {
                None => {
                    visit(t, w);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(i) if t.on[w] => t.low[v] = t.low[v].min(i),
                _ => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                t.out.push(comp);
            }
        }
    }
    let mut adj = vec![Vec::new(); n];
    for &(a, b) in edges {
        adj[a].push(b);
    }
    let mut out = Vec::new();
    let mut t = T {
        adj,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: &mut out,
    };
    for v in 0..n {
        if t.index[v].is_none() {
            visit(&mut t, v);
        }
    }
    out
}

fn check(root: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let c = Crate::load(&src.join(root));
    let edges = c.edges();
    let name = |i: usize| {
        c.modules[i]
            .file
            .strip_prefix(&src)
            .unwrap()
            .display()
            .to_string()
    };
    let found: Vec<String> = cycles(c.modules.len(), &edges)
        .into_iter()
        .map(|comp| {
            let files: BTreeSet<usize> = comp.iter().copied().collect();
            let inside: Vec<String> = edges
                .iter()
                .filter(|(a, b)| files.contains(a) && files.contains(b))
                .map(|&(a, b)| format!("{} -> {}", name(a), name(b)))
                .collect();
            inside.join(", ")
        })
        .collect();
    assert!(
        found.is_empty(),
        "module cycles from {root}:\n{}",
        found.join("\n")
    );
    assert!(
        c.modules.len() > 5 && edges.len() > 5,
        "{} files",
        c.modules.len()
    );
}

#[test]
fn the_library_has_no_module_cycles() {
    check("lib.rs");
}

#[test]
fn the_binary_has_no_module_cycles() {
    check("main.rs");
}

/// The checker finds a cycle where there is one (so that its silence means something).
#[test]
fn a_parent_child_cycle_is_found() {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("modgraph-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::write(dir.join("lib.rs"), "mod a;\nmod b;\npub use a::X;\n").unwrap();
    std::fs::write(dir.join("a/mod.rs"), "mod c;\npub struct X;\nuse c::Y;\n").unwrap();
    std::fs::write(dir.join("a/c.rs"), "pub struct Y(super::X);\n").unwrap();
    std::fs::write(dir.join("b.rs"), "use crate::X;\nmod d;\n").unwrap();
    // A parent calling its child inline (`e::h()`), the child using the parent's item.
    std::fs::create_dir_all(dir.join("b/d")).unwrap();
    std::fs::write(
        dir.join("b/d/mod.rs"),
        "mod e;\npub fn g() { e::h() }\npub fn k() {}\n",
    )
    .unwrap();
    std::fs::write(dir.join("b/d/e.rs"), "pub fn h() { super::k() }\n").unwrap();
    let c = Crate::load(&dir.join("lib.rs"));
    let edges = c.edges();
    let comps = cycles(c.modules.len(), &edges);
    let found: BTreeSet<BTreeSet<String>> = comps
        .iter()
        .map(|comp| {
            comp.iter()
                .map(|&i| {
                    let f = c.modules[i].file.strip_prefix(&dir).unwrap();
                    f.display().to_string()
                })
                .collect()
        })
        .collect();
    let want = |a: &str, b: &str| BTreeSet::from([a.to_string(), b.to_string()]);
    assert_eq!(
        found,
        BTreeSet::from([want("a/mod.rs", "a/c.rs"), want("b/d/mod.rs", "b/d/e.rs")]),
        "{edges:?}"
    );
    // b reaches X through lib.rs's re-export: an edge to a/mod.rs, not to lib.rs.
    let b = c
        .modules
        .iter()
        .position(|m| m.file.ends_with("b.rs"))
        .unwrap();
    let a = c
        .modules
        .iter()
        .position(|m| m.file.ends_with("a/mod.rs"))
        .unwrap();
    assert!(edges.contains(&(b, a)) && !edges.contains(&(b, 0)));
}
