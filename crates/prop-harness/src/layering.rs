//! The module-layering checker: builds the graph of a crate's modules from the paths its source
//! names, and finds the cycles in it. No parser dependency: a conservative scan of the text.
//!
//! # What is read
//!
//! From `src/lib.rs` the module tree is followed through `mod name;` (the file `name.rs` or
//! `name/mod.rs` beside it, as rustc finds them; no `#[path]`) and inline `mod name { ... }`.
//! Comments, string and character literals are blanked first, so doc links and messages never
//! count, and test-only code is left out: a module or an import under `#[cfg(test)]` (a unit
//! test may cross-check its module against one above it). A module *references* another when
//! its text holds
//!
//! * a path `crate::a::b…`, `super::a…` (any number of `super`s), `self::a…`, or one starting with
//!   the name of one of its own child modules (`child::X`, as the crate root writes them);
//! * a `use` tree, expanded: `use crate::{a, b::{c, self}, d::*};` names `a`, `b::c`, `b`, `d`.
//!
//! A path resolves to the **deepest module it names** (`crate::hv::lock` → `hv`,
//! `crate::kvm::state::X` → `kvm::state`). The crate root is a facade, not a layer: a name the
//! root imports (`pub use hv_irq::IrqWait;`, `use acrn_hsm::memory;`) resolves to where it comes
//! from (`crate::IrqWait` → `hv_irq`; `crate::memory` → another crate: no edge). A name *defined*
//! in the root (`crate::Emulator` of a `struct Emulator` in `lib.rs`) resolves to the root.
//! Method calls and trait impls in other modules (`impl Hv { … }` in `hv_dev.rs`) are not paths
//! and are not seen.
//!
//! # The edges
//!
//! Every module with children is a *level*; its nodes are its children and `self` (its own
//! items). A reference from module `A` to module `B` is an edge at the level of their deepest
//! common ancestor `C`, between the node holding `A` and the node holding `B` (`self` when that
//! is `C` itself). So, at the crate's top level: `hv → hsm` for `crate::hsm::X` in `hv.rs`;
//! `hv → self` for `crate::VmState` defined in `lib.rs`; `self → hv` for `use hv::Hv;` in
//! `lib.rs`. Below, between siblings: `client::record → client::dispatch`. A submodule naming
//! its own parent (`super::X` in `kvm/state.rs`) is an edge inside the parent's level
//! (`state → self`), never an edge of the parent to itself. [`ModuleGraph::cycles`] lists every
//! cycle of every level.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// A module's path from the crate root (`[]` is the root).
pub type ModPath = Vec<String>;

/// Where an edge was seen: the file, the line and the path as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The source file (relative to `src/`).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The path as written (`crate::hv::lock`).
    pub path: String,
}

/// The module graph of one crate: for every level (a module with children, by its path joined
/// with `::`, `""` for the root) the edges between its nodes, each with its first evidence.
#[derive(Debug, Clone, Default)]
pub struct ModuleGraph {
    /// Level → (from, to) → where it was first seen. Nodes are child names or `"self"`.
    pub levels: BTreeMap<String, BTreeMap<(String, String), Evidence>>,
    /// Every module found, by path joined with `::` (`""` for the root).
    pub modules: BTreeSet<String>,
}

/// One cycle at one level: `nodes[0] → nodes[1] → … → nodes[0]`, with the evidence of each edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// The level (`""`: the crate's top level).
    pub level: String,
    /// The nodes in cycle order.
    pub nodes: Vec<String>,
    /// `edges[i]` is the evidence of `nodes[i] → nodes[(i + 1) % n]`.
    pub edges: Vec<Evidence>,
    /// Every node of the strongly connected component the cycle is one of (sorted): each one
    /// reaches each other one.
    pub component: Vec<String>,
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = if self.level.is_empty() {
            "crate"
        } else {
            &self.level
        };
        let mut ring = self.nodes.join(" → ");
        if let Some(first) = self.nodes.first() {
            ring.push_str(" → ");
            ring.push_str(first);
        }
        writeln!(f, "import cycle in `{level}`: {ring}")?;
        if self.component.len() > self.nodes.len() {
            writeln!(
                f,
                "  (one of the cycles among {})",
                self.component.join(", ")
            )?;
        }
        for (i, e) in self.edges.iter().enumerate() {
            let to = &self.nodes[(i + 1) % self.nodes.len()];
            writeln!(
                f,
                "  {} → {to}: `{}` at {}:{}",
                self.nodes[i], e.path, e.file, e.line
            )?;
        }
        Ok(())
    }
}

/// Builds the module graph of the crate whose `src/` directory is `src`.
pub fn graph_of_dir(src: &Path) -> Result<ModuleGraph, String> {
    graph_of(&|rel: &Path| std::fs::read_to_string(src.join(rel)).ok())
}

/// Builds the module graph of a crate given as files (relative paths: `lib.rs`, `a.rs`,
/// `a/mod.rs`, …): for tests of the checker itself.
pub fn graph_of_files(files: &[(&str, &str)]) -> Result<ModuleGraph, String> {
    let map: BTreeMap<PathBuf, String> = files
        .iter()
        .map(|(p, s)| (PathBuf::from(p), (*s).to_string()))
        .collect();
    graph_of(&|rel: &Path| map.get(rel).cloned())
}

impl ModuleGraph {
    /// Every cycle of every level (for each strongly connected component with more than one
    /// node, one cycle through it).
    pub fn cycles(&self) -> Vec<Cycle> {
        let mut out = Vec::new();
        for (level, edges) in &self.levels {
            let mut adj: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (a, b) in edges.keys() {
                adj.entry(a).or_default().push(b);
                adj.entry(b).or_default();
            }
            for scc in sccs(&adj) {
                if scc.len() < 2 {
                    continue;
                }
                let nodes = cycle_in(&adj, &scc);
                let mut component: Vec<String> = scc.iter().map(|s| s.to_string()).collect();
                component.sort();
                let n = nodes.len();
                let ev = (0..n)
                    .map(|i| edges[&(nodes[i].clone(), nodes[(i + 1) % n].clone())].clone())
                    .collect();
                out.push(Cycle {
                    level: level.clone(),
                    nodes,
                    edges: ev,
                    component,
                });
            }
        }
        out
    }

    /// `Ok` when no level has a cycle, else every cycle, printed.
    pub fn check(&self) -> Result<(), String> {
        let c = self.cycles();
        if c.is_empty() {
            Ok(())
        } else {
            Err(c.iter().map(ToString::to_string).collect())
        }
    }

    /// The nodes of `level` (its child modules and `self`) bottom-up: a node after everything
    /// it imports, ties by name; `None` when the level has a cycle.
    pub fn order(&self, level: &str) -> Option<Vec<String>> {
        let empty = BTreeMap::new();
        let edges = self.levels.get(level).unwrap_or(&empty);
        let mut deps: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        deps.insert("self", BTreeSet::new());
        let depth = if level.is_empty() {
            0
        } else {
            level.split("::").count()
        };
        for m in &self.modules {
            let segs: Vec<&str> = if m.is_empty() {
                Vec::new()
            } else {
                m.split("::").collect()
            };
            if segs.len() == depth + 1 && segs[..depth].join("::") == level {
                deps.insert(segs[depth], BTreeSet::new());
            }
        }
        for (a, b) in edges.keys() {
            deps.entry(a).or_default().insert(b);
            deps.entry(b).or_default();
        }
        let mut out = Vec::new();
        while !deps.is_empty() {
            let ready: Vec<&str> = deps
                .iter()
                .filter(|(_, d)| d.is_empty())
                .map(|(n, _)| *n)
                .collect();
            if ready.is_empty() {
                return None;
            }
            for n in ready {
                deps.remove(n);
                for d in deps.values_mut() {
                    d.remove(n);
                }
                out.push(n.to_string());
            }
        }
        Some(out)
    }

    /// The edges of `level` as `from → to` lines, sorted.
    pub fn edges(&self, level: &str) -> Vec<String> {
        self.levels
            .get(level)
            .map(|e| e.keys().map(|(a, b)| format!("{a} → {b}")).collect())
            .unwrap_or_default()
    }
}

/// Tarjan's strongly connected components.
fn sccs<'a>(adj: &BTreeMap<&'a str, Vec<&'a str>>) -> Vec<Vec<&'a str>> {
    struct St<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        on: BTreeSet<&'a str>,
        stack: Vec<&'a str>,
        next: usize,
        out: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(v: &'a str, adj: &BTreeMap<&'a str, Vec<&'a str>>, s: &mut St<'a>) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on.insert(v);
        for &w in adj.get(v).map(Vec::as_slice).unwrap_or(&[]) {
            if !s.index.contains_key(w) {
                visit(w, adj, s);
                let lw = s.low[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(lw));
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w);
                if w == v {
                    break;
                }
            }
            s.out.push(comp);
        }
    }
    let mut s = St {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        on: BTreeSet::new(),
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for &v in adj.keys() {
        if !s.index.contains_key(v) {
            visit(v, adj, &mut s);
        }
    }
    s.out
}

/// A shortest cycle through the smallest node of `scc` (breadth-first inside the component).
fn cycle_in(adj: &BTreeMap<&str, Vec<&str>>, scc: &[&str]) -> Vec<String> {
    let set: BTreeSet<&str> = scc.iter().copied().collect();
    let start = *set.iter().next().unwrap_or(&"");
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in adj.get(v).map(Vec::as_slice).unwrap_or(&[]) {
            if !set.contains(w) {
                continue;
            }
            if w == start {
                let mut path = vec![v];
                let mut c = v;
                while c != start {
                    c = prev[c];
                    path.push(c);
                }
                path.reverse();
                return path.into_iter().map(str::to_string).collect();
            }
            if !prev.contains_key(w) && w != start {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    scc.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Reading the sources.

/// One token of blanked source: an identifier (keywords included) or one punctuation mark
/// (`::` is one token).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tok {
    text: String,
    line: usize,
}

/// Replaces comments, string, byte-string, raw-string and character literals by spaces (keeping
/// newlines), leaving lifetimes alone.
pub fn blank(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let n = b.len();
    let push_blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    while i < n {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < n && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            let mut depth = 0usize;
            while i < n {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    push_blank(&mut out, b[i]);
                    i += 1;
                }
            }
            continue;
        }
        let prev_ident = i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_');
        // Raw strings: r"…", r#"…"#, br#"…"#.
        if !prev_ident && (c == 'r' || (c == 'b' && next == Some('r'))) {
            let mut j = if c == 'b' { i + 2 } else { i + 1 };
            let mut hashes = 0;
            while j < n && b[j] == '#' {
                hashes += 1;
                j += 1;
            }
            if j < n && b[j] == '"' {
                for _ in i..=j {
                    out.push(' ');
                }
                j += 1;
                loop {
                    if j >= n {
                        break;
                    }
                    if b[j] == '"' && (1..=hashes).all(|k| b.get(j + k) == Some(&'#')) {
                        for _ in 0..=hashes {
                            out.push(' ');
                        }
                        j += hashes + 1;
                        break;
                    }
                    push_blank(&mut out, b[j]);
                    j += 1;
                }
                i = j;
                continue;
            }
        }
        if c == '"' || (c == 'b' && next == Some('"') && !prev_ident) {
            if c == 'b' {
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
            while i < n {
                if b[i] == '\\' {
                    push_blank(&mut out, b[i]);
                    if i + 1 < n {
                        push_blank(&mut out, b[i + 1]);
                    }
                    i += 2;
                    continue;
                }
                if b[i] == '"' {
                    out.push(' ');
                    i += 1;
                    break;
                }
                push_blank(&mut out, b[i]);
                i += 1;
            }
            continue;
        }
        if c == '\'' {
            // A char literal: '\…' up to the closing quote, or 'x' (x one char); else a lifetime.
            if next == Some('\\') {
                // The escaped character itself may be a quote (`'\''`): the scan starts after it.
                let mut j = i + 3;
                while j < n && b[j] != '\'' && b[j] != '\n' {
                    j += 1;
                }
                for _ in i..=j.min(n - 1) {
                    out.push(' ');
                }
                i = j + 1;
                continue;
            }
            if b.get(i + 2) == Some(&'\'') && next != Some('\n') {
                out.push_str("   ");
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

fn tokens(blanked: &str) -> Vec<Tok> {
    let b: Vec<char> = blanked.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphabetic() || c == '_' {
            let s = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            let mut text: String = b[s..i].iter().collect();
            // r#ident
            if text == "r" && b.get(i) == Some(&'#') {
                let s2 = i + 1;
                let mut j = s2;
                while j < b.len() && (b[j].is_alphanumeric() || b[j] == '_') {
                    j += 1;
                }
                if j > s2 {
                    text = b[s2..j].iter().collect();
                    i = j;
                }
            }
            out.push(Tok { text, line });
        } else if c == ':' && b.get(i + 1) == Some(&':') {
            out.push(Tok {
                text: "::".into(),
                line,
            });
            i += 2;
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                i += 1;
            }
        } else {
            out.push(Tok {
                text: c.to_string(),
                line,
            });
            i += 1;
        }
    }
    out
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// A path a module wrote: its segments, its line, and whether it is a `use` import (with the
/// name it binds, for the root's facade).
#[derive(Debug, Clone)]
struct RawRef {
    /// The module (scope) the path was written in.
    scope: ModPath,
    segs: Vec<String>,
    line: usize,
    /// `Some(name)`: a `use` binding `name` (`None` for globs and plain paths).
    binds: Option<String>,
    in_use: bool,
}

/// What one source file contributes.
#[derive(Debug, Default)]
struct FileScan {
    /// `mod name;` declarations: (declaring scope, name).
    file_mods: Vec<(ModPath, String)>,
    /// Inline `mod name { … }` scopes.
    inline_mods: Vec<ModPath>,
    refs: Vec<RawRef>,
}

fn scan_file(text: &str, module: &ModPath) -> FileScan {
    let toks = tokens(&blank(text));
    let mut scan = FileScan::default();
    // (module path, brace depth at which it closes)
    let mut scopes: Vec<(ModPath, usize)> = vec![(module.clone(), 0)];
    let mut depth = 0usize;
    let mut i = 0;
    // Set by `#[cfg(test)]`, kept over further attributes and a visibility, used by the next
    // `mod` or `use`, cleared by anything else.
    let mut cfg_test = false;
    while i < toks.len() {
        let t = toks[i].text.as_str();
        let scope = scopes.last().map(|s| s.0.clone()).unwrap_or_default();
        if t == "#" {
            let at = |k: usize| toks.get(i + k).map(|t| t.text.as_str());
            if at(1) == Some("[")
                && at(2) == Some("cfg")
                && at(3) == Some("(")
                && at(4) == Some("test")
                && at(5) == Some(")")
                && at(6) == Some("]")
            {
                cfg_test = true;
                i += 7;
                continue;
            }
            // Any other attribute: skipped whole, the flag kept.
            if at(1) == Some("[") || (at(1) == Some("!") && at(2) == Some("[")) {
                let mut j = i + if at(1) == Some("!") { 2 } else { 1 };
                let mut d = 0usize;
                while j < toks.len() {
                    match toks[j].text.as_str() {
                        "[" => d += 1,
                        "]" => {
                            d -= 1;
                            if d == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                i = j + 1;
                continue;
            }
        }
        if cfg_test {
            match t {
                "pub" | "crate" | "(" | ")" | "in" | "super" | "self" => {
                    i += 1;
                    continue;
                }
                "mod" | "use" => {
                    // A test-only module or import: skipped (to its `;` or its closing brace).
                    cfg_test = false;
                    let mut j = i;
                    let mut d = 0usize;
                    while j < toks.len() {
                        match toks[j].text.as_str() {
                            ";" if d == 0 => break,
                            "{" => d += 1,
                            "}" => {
                                d -= 1;
                                if d == 0 && t == "mod" {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    i = j + 1;
                    continue;
                }
                _ => cfg_test = false,
            }
        }
        match t {
            "{" => {
                depth += 1;
                i += 1;
            }
            "}" => {
                if scopes.len() > 1 && scopes.last().is_some_and(|s| s.1 == depth) {
                    scopes.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            "mod" if toks.get(i + 1).is_some_and(|n| is_ident(&n.text)) => {
                let name = toks[i + 1].text.clone();
                match toks.get(i + 2).map(|t| t.text.as_str()) {
                    Some(";") => {
                        scan.file_mods.push((scope.clone(), name));
                        i += 3;
                    }
                    Some("{") => {
                        let mut p = scope.clone();
                        p.push(name);
                        scan.inline_mods.push(p.clone());
                        depth += 1;
                        scopes.push((p, depth));
                        i += 3;
                    }
                    _ => i += 2,
                }
            }
            "use" => {
                let line = toks[i].line;
                let mut j = i + 1;
                if toks.get(j).is_some_and(|t| t.text == "::") {
                    j += 1;
                }
                let mut out = Vec::new();
                parse_use_tree(&toks, &mut j, Vec::new(), &mut out);
                for (segs, binds) in out {
                    scan.refs.push(RawRef {
                        scope: scope.clone(),
                        segs,
                        line,
                        binds,
                        in_use: true,
                    });
                }
                while j < toks.len() && toks[j].text != ";" {
                    j += 1;
                }
                i = j + 1;
            }
            _ if is_ident(t) && toks.get(i + 1).is_some_and(|n| n.text == "::") => {
                // A path expression starts here unless this ident follows `::` (mid-path).
                let mid = i > 0 && toks[i - 1].text == "::";
                let line = toks[i].line;
                let mut segs = vec![t.to_string()];
                let mut j = i + 1;
                while j + 1 < toks.len() && toks[j].text == "::" && is_ident(&toks[j + 1].text) {
                    segs.push(toks[j + 1].text.clone());
                    j += 2;
                }
                if !mid {
                    scan.refs.push(RawRef {
                        scope,
                        segs,
                        line,
                        binds: None,
                        in_use: false,
                    });
                }
                i = j;
            }
            _ => i += 1,
        }
    }
    scan
}

/// Expands one use tree starting at `toks[*j]` with `prefix` already read: pushes every full
/// path with the name it binds (`None` for `*`).
fn parse_use_tree(
    toks: &[Tok],
    j: &mut usize,
    mut prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    loop {
        let Some(t) = toks.get(*j).map(|t| t.text.as_str()) else {
            return;
        };
        match t {
            "{" => {
                *j += 1;
                loop {
                    match toks.get(*j).map(|t| t.text.as_str()) {
                        None => return,
                        Some("}") => {
                            *j += 1;
                            return;
                        }
                        Some(",") => *j += 1,
                        Some(_) => parse_use_tree(toks, j, prefix.clone(), out),
                    }
                }
            }
            "*" => {
                *j += 1;
                out.push((prefix, None));
                return;
            }
            _ if is_ident(t) => {
                if t == "self" && !prefix.is_empty() {
                    // `a::{self}` binds `a`.
                    *j += 1;
                } else {
                    prefix.push(t.to_string());
                    *j += 1;
                }
                if toks.get(*j).is_some_and(|t| t.text == "::") {
                    *j += 1;
                    continue;
                }
                let mut bind = prefix.last().cloned();
                if toks.get(*j).is_some_and(|t| t.text == "as") {
                    bind = toks.get(*j + 1).map(|t| t.text.clone());
                    *j += 2;
                }
                out.push((prefix, bind));
                return;
            }
            _ => return,
        }
    }
}

fn join(p: &[String]) -> String {
    p.join("::")
}

/// The crate, read: its module tree and every path written in it.
struct CrateSrc {
    modules: BTreeSet<ModPath>,
    /// `use` bindings of the root: name → path.
    root_aliases: BTreeMap<String, (ModPath, Vec<String>)>,
    refs: Vec<(String, RawRef)>,
}

fn read_crate(read: &dyn Fn(&Path) -> Option<String>) -> Result<CrateSrc, String> {
    let mut modules: BTreeSet<ModPath> = BTreeSet::new();
    let mut refs = Vec::new();
    // (module path, file, directory of its file children)
    let mut todo: Vec<(ModPath, PathBuf, PathBuf)> =
        vec![(Vec::new(), PathBuf::from("lib.rs"), PathBuf::new())];
    while let Some((m, file, dir)) = todo.pop() {
        let text = read(&file).ok_or_else(|| format!("cannot read {}", file.display()))?;
        let scan = scan_file(&text, &m);
        modules.insert(m.clone());
        for im in &scan.inline_mods {
            modules.insert(im.clone());
        }
        for (scope, name) in scan.file_mods {
            // The directory of `scope`'s children: `dir` for the file's own module, plus the
            // inline modules' names below it.
            let mut d = dir.clone();
            for seg in &scope[m.len()..] {
                d.push(seg);
            }
            let flat = d.join(format!("{name}.rs"));
            let nested = d.join(&name).join("mod.rs");
            let mut child = scope.clone();
            child.push(name.clone());
            if read(&flat).is_some() {
                todo.push((child, flat, d.join(&name)));
            } else if read(&nested).is_some() {
                todo.push((child, nested, d.join(&name)));
            } else {
                return Err(format!(
                    "module `{}`: neither {} nor {} exists",
                    join(&child),
                    flat.display(),
                    nested.display()
                ));
            }
        }
        let fname = file.display().to_string();
        refs.extend(scan.refs.into_iter().map(|r| (fname.clone(), r)));
    }
    let mut root_aliases = BTreeMap::new();
    for (_, r) in &refs {
        if r.scope.is_empty() && r.in_use {
            if let Some(b) = &r.binds {
                root_aliases.insert(b.clone(), (Vec::new(), r.segs.clone()));
            }
        }
    }
    Ok(CrateSrc {
        modules,
        root_aliases,
        refs,
    })
}

impl CrateSrc {
    /// The deepest module `segs`, written in `scope`, names; `None` for another crate's items
    /// (or a path that names no module of this crate: a local variable's enum, a type's
    /// associated item).
    fn resolve(&self, scope: &ModPath, segs: &[String], depth: usize) -> Option<ModPath> {
        if depth > 8 || segs.is_empty() {
            return None;
        }
        let mut cur: ModPath;
        let mut k = 0;
        match segs[0].as_str() {
            "crate" => {
                cur = Vec::new();
                k = 1;
            }
            "self" => {
                cur = scope.clone();
                while segs.get(k).is_some_and(|s| s == "self") {
                    k += 1;
                }
            }
            "super" => {
                cur = scope.clone();
                while segs.get(k).is_some_and(|s| s == "super") {
                    cur.pop()?;
                    k += 1;
                }
            }
            first => {
                let mut child = scope.clone();
                child.push(first.to_string());
                if self.modules.contains(&child) {
                    cur = child;
                    k = 1;
                } else if scope.is_empty() && self.root_aliases.contains_key(first) {
                    cur = Vec::new();
                } else {
                    return None;
                }
            }
        }
        while let Some(seg) = segs.get(k) {
            let mut child = cur.clone();
            child.push(seg.clone());
            if self.modules.contains(&child) {
                cur = child;
                k += 1;
                continue;
            }
            if cur.is_empty() {
                if let Some((s, target)) = self.root_aliases.get(seg) {
                    let mut full = target.clone();
                    full.extend(segs[k + 1..].iter().cloned());
                    if full.first().is_some_and(|f| f == seg) && full.len() == segs.len() - k {
                        // `use x;` of a crate `x`: not ours.
                        return None;
                    }
                    return self.resolve(s, &full, depth + 1);
                }
            }
            break;
        }
        Some(cur)
    }
}

fn graph_of(read: &dyn Fn(&Path) -> Option<String>) -> Result<ModuleGraph, String> {
    let c = read_crate(read)?;
    let mut g = ModuleGraph {
        modules: c.modules.iter().map(|m| join(m)).collect(),
        ..ModuleGraph::default()
    };
    for (file, r) in &c.refs {
        let Some(to) = c.resolve(&r.scope, &r.segs, 0) else {
            continue;
        };
        let from = &r.scope;
        if &to == from {
            continue;
        }
        let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
        let node = |p: &ModPath| p.get(common).cloned().unwrap_or_else(|| "self".into());
        let (a, b) = (node(from), node(&to));
        if a == b {
            continue;
        }
        let level = join(&from[..common]);
        g.levels
            .entry(level)
            .or_default()
            .entry((a, b))
            .or_insert_with(|| Evidence {
                file: file.clone(),
                line: r.line,
                path: join(&r.segs),
            });
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_strips_comments_and_literals() {
        let s = "a // crate::x\n/* crate::y /* nested */ */ \"crate::z\" r#\"crate::w\"# 'c' '\\n' '\\'' b\"q\" &'a T \"x\\\"crate::v\"";
        let b = blank(s);
        assert!(!b.contains("crate"), "{b}");
        assert!(b.contains("&'a T"), "{b}");
        assert_eq!(b.lines().count(), s.lines().count());
    }

    #[test]
    fn use_trees_expand() {
        let toks = tokens("crate::{a, b::{c, self}, d::*, e as f};");
        let mut j = 0;
        let mut out = Vec::new();
        parse_use_tree(&toks, &mut j, Vec::new(), &mut out);
        let got: Vec<String> = out
            .iter()
            .map(|(p, b)| format!("{}={}", p.join("::"), b.clone().unwrap_or_default()))
            .collect();
        assert_eq!(
            got,
            [
                "crate::a=a",
                "crate::b::c=c",
                "crate::b=b",
                "crate::d=",
                "crate::e=f"
            ]
        );
    }
}
