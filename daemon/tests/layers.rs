//! silod's layers are one-way, checked from the source.
//!
//! Each top-level module of the crate is a layer or wiring: `api` (HTTP only) uses `service`,
//! which uses `store` and `helpers`, which use `model`, which uses nothing. Everything else
//! (`main.rs`, `lib.rs`, `startup.rs`, `confinement.rs`, ...) is wiring: it may use anything,
//! and no layer may use it. Within a layer, its modules (`service::instances`,
//! `service::snapshots`) must not form an import cycle.
//!
//! The references are read from the sources with comments and string literals removed:
//! `crate::a::b` anywhere (use lines, inline paths, `pub use`), grouped and nested uses
//! (`use crate::{a::{b, c}, d}`), `self::`, `super::` and `super::super::` resolved against
//! the module (inline `mod x { .. }` blocks included), paths from a child module without
//! `self::` (`use instances::Ctx` in the module that declares `instances`), and `silod::` from
//! the binary. A name a `pub use` re-exports is followed to the module it comes from. Not
//! followed: glob re-exports (`pub use x::*`), names brought in by a glob `use` and then used
//! bare, and macros.
//!
//! `cargo test -p silod --test layers -- --nocapture` prints the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, by top-level module (a directory under `daemon/src/`, or a file of that name),
/// and their ranks: a layer may use only layers of a lower rank. Layers of the same rank are
/// siblings and may not use each other. Anything not listed is wiring.
const LAYERS: &[(&str, u8)] = &[
    ("api", 3),
    ("service", 2),
    ("store", 1),
    ("helpers", 1),
    ("model", 0),
];

/// Uses the ranks would allow but the layering does not: handlers call services, and never
/// reach the database or the helpers themselves (a handler doing domain work was one cause
/// of the old import cycle).
const SKIPPING: &[(&str, &str)] = &[("api", "store"), ("api", "helpers")];

/// The rank of wiring: above every layer, so no layer may use it.
const WIRING: u8 = u8::MAX;

/// Import cycles allowed among the modules of one layer, each as its modules sorted (e.g.
/// `&["service::backups", "service::instances"]`). An entry needs a comment above it saying
/// why the cycle cannot be broken; a cycle that grows beyond its entry fails again.
const ALLOWED_CYCLES: &[&[&str]] = &[];

#[test]
fn silods_layers_are_one_way_and_acyclic() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let a = analyse(&src, LAYERS, ALLOWED_CYCLES).unwrap_or_else(|e| panic!("{e}"));
    println!("{}", a.graph());
    // A wrong path or a parser that sees nothing would pass vacuously.
    assert!(
        a.files >= 10,
        "only {} source files found under {}",
        a.files,
        src.display()
    );
    assert!(
        a.edges.len() >= 10,
        "only {} references between modules found",
        a.edges.len()
    );
    assert!(a.problems().is_empty(), "{}", a.problems().join("\n"));
}

/// One reference from a module to another.
#[derive(Debug, Clone)]
struct Edge {
    /// The file and line it is on, as `src/service/x.rs:12`.
    at: String,
    /// The module it is in, cut to its layer's module (`service::instances`).
    from: String,
    /// The module it names, cut the same way.
    to: String,
}

/// What was found under one source tree.
#[derive(Debug)]
struct Analysis {
    files: usize,
    edges: Vec<Edge>,
    /// The layer each `from`/`to` module belongs to, and its rank.
    layers: Vec<(String, u8)>,
    violations: Vec<String>,
    cycles: Vec<String>,
}

impl Analysis {
    fn problems(&self) -> Vec<String> {
        self.violations
            .iter()
            .chain(self.cycles.iter())
            .cloned()
            .collect()
    }

    /// The layers with the number of references between them, then each layer's modules.
    fn graph(&self) -> String {
        let mut between: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut inside: BTreeMap<(String, String), usize> = BTreeMap::new();
        for e in &self.edges {
            let (lf, lt) = (layer_of(&e.from), layer_of(&e.to));
            *between.entry((lf.clone(), lt.clone())).or_default() += 1;
            if lf == lt && e.from != e.to && rank_of(&lf, &self.layers) != WIRING {
                *inside.entry((e.from.clone(), e.to.clone())).or_default() += 1;
            }
        }
        let mut out = String::from("silod's layer graph (references):\n");
        for ((f, t), n) in &between {
            out += &format!(
                "  {} ({}) -> {} ({}): {n}\n",
                shown(f),
                rank_name(rank_of(f, &self.layers)),
                shown(t),
                rank_name(rank_of(t, &self.layers))
            );
        }
        out += "modules within layers:\n";
        for ((f, t), n) in &inside {
            out += &format!("  {f} -> {t}: {n}\n");
        }
        out
    }
}

fn shown(layer: &str) -> &str {
    if layer.is_empty() {
        "(crate root)"
    } else {
        layer
    }
}

fn rank_name(r: u8) -> String {
    if r == WIRING {
        "wiring".into()
    } else {
        format!("rank {r}")
    }
}

fn layer_of(module: &str) -> String {
    module.split("::").next().unwrap_or("").to_string()
}

fn rank_of(layer: &str, layers: &[(String, u8)]) -> u8 {
    layers
        .iter()
        .find(|(l, _)| l == layer)
        .map_or(WIRING, |(_, r)| *r)
}

/// Reads every `.rs` file under `src`, and checks the references between layers and the
/// cycles within each.
fn analyse(src: &Path, layers: &[(&str, u8)], allowed: &[&[&str]]) -> Result<Analysis, String> {
    let mut files = Vec::new();
    collect_files(src, &mut files)?;
    files.sort();
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f).join("::")).collect();
    let tops: BTreeSet<String> = modules
        .iter()
        .filter_map(|m| m.split("::").next())
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect();
    let layers: Vec<(String, u8)> = layers.iter().map(|(l, r)| (l.to_string(), *r)).collect();
    let mut read = Vec::new();
    // What each `pub use` makes another name of: `service::Ctx` -> `service::instances::Ctx`.
    let mut aliases: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let file = f
            .strip_prefix(src.parent().unwrap_or(src))
            .unwrap_or(f)
            .display()
            .to_string();
        let refs = references(&module_of(src, f), &strip(&text), &modules);
        for r in &refs {
            if let Some(name) = &r.re_export {
                let mut as_named = r.from.clone();
                as_named.push(name.clone());
                if as_named != r.to {
                    aliases.insert(as_named, r.to.clone());
                }
            }
        }
        read.push((file, refs));
    }
    let mut edges = Vec::new();
    for (file, refs) in read {
        for r in refs {
            let from = layer_module(&r.from, &modules, &tops);
            let to = layer_module(&through_re_exports(r.to, &aliases), &modules, &tops);
            if from != to {
                edges.push(Edge {
                    at: format!("{file}:{}", r.line),
                    from,
                    to,
                });
            }
        }
    }
    let violations = edges
        .iter()
        .filter_map(|e| {
            let (lf, lt) = (layer_of(&e.from), layer_of(&e.to));
            let (rf, rt) = (rank_of(&lf, &layers), rank_of(&lt, &layers));
            let skips = SKIPPING.iter().any(|(f, t)| *f == lf && *t == lt);
            (rf != WIRING && lf != lt && (rt >= rf || skips)).then(|| {
                format!(
                    "{}: {} -> {}: {} ({}) may not use {} ({})",
                    e.at,
                    e.from,
                    e.to,
                    lf,
                    rank_name(rf),
                    shown(&lt),
                    rank_name(rt)
                )
            })
        })
        .collect();
    let cycles = cycles(&edges, &layers, allowed);
    Ok(Analysis {
        files: files.len(),
        edges,
        layers,
        violations,
        cycles,
    })
}

/// `path` with each re-exported name on it replaced by what it names (a few hops at most).
fn through_re_exports(
    mut path: Vec<String>,
    aliases: &BTreeMap<Vec<String>, Vec<String>>,
) -> Vec<String> {
    for _ in 0..8 {
        let Some((n, target)) = (1..=path.len())
            .rev()
            .find_map(|n| aliases.get(&path[..n]).map(|t| (n, t)))
        else {
            break;
        };
        let mut p = target.clone();
        p.extend_from_slice(&path[n..]);
        path = p;
    }
    path
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in entries {
        let e = e.map_err(|e| format!("{}: {e}", dir.display()))?;
        let p = e.path();
        let ft = e.file_type().map_err(|e| format!("{}: {e}", p.display()))?;
        if ft.is_dir() {
            collect_files(&p, out)?;
        } else if ft.is_file() && p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

/// `src/service/instances.rs` is `service::instances`, `src/service/mod.rs` is `service`,
/// `src/lib.rs` and `src/main.rs` are the crate root.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.strip_suffix(".rs").unwrap_or(&last).to_string();
        let root = parts.is_empty() && (stem == "lib" || stem == "main");
        if stem != "mod" && !root {
            parts.push(stem);
        }
    }
    parts
}

/// A module path cut to what the check works on: the layer and its module
/// (`service::instances` for `service::instances::tests::X`), the layer alone for what is in
/// its `mod.rs`, and `""` for the crate root.
fn layer_module(path: &[String], modules: &BTreeSet<String>, tops: &BTreeSet<String>) -> String {
    let Some(top) = path.first().filter(|t| tops.contains(*t)) else {
        return String::new();
    };
    match path.get(1) {
        Some(m) if modules.contains(&format!("{top}::{m}")) => format!("{top}::{m}"),
        _ => top.clone(),
    }
}

/// `text` with comments, string and character literals blanked out (newlines kept, so lines
/// still count).
fn strip(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, s: &[char]| {
        for ch in s {
            out.push(if *ch == '\n' { '\n' } else { ' ' });
        }
    };
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let start = i;
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (i == 0
                || !ident(c[i - 1])
                || (matches!(c[i - 1], 'b' | 'c') && (i < 2 || !ident(c[i - 2]))))
            && matches!(c.get(i + 1), Some('"') | Some('#'))
        {
            // A raw string: r"..", r#".."#, br#".."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                // `r#ident`, a raw identifier.
                out.push(c[i]);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match c.get(j) {
                    None => break,
                    Some('"') if (1..=hashes).all(|k| c.get(j + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    _ => j += 1,
                }
            }
            i = j;
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i = (i + 1).min(c.len());
        } else if c[i] == '\'' {
            // A character literal ('a', '\n', '\''), or a lifetime ('a), which stays.
            if c.get(i + 1) == Some(&'\\') {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i = (i + 1).min(c.len());
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                out.push('\'');
                i += 1;
                continue;
            }
        } else {
            out.push(c[i]);
            i += 1;
            continue;
        }
        blank(&mut out, &c[start..i.min(c.len())]);
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Path,
    Open,
    Close,
    Comma,
    Star,
    Other(char),
}

/// Identifiers and the punctuation paths are made of, each with its line.
fn tokens(text: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphanumeric() || ch == '_' {
            let s = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[s..i].iter().collect()), line));
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((Tok::Path, line));
            i += 2;
        } else {
            let t = match ch {
                '{' => Tok::Open,
                '}' => Tok::Close,
                ',' => Tok::Comma,
                '*' => Tok::Star,
                other => Tok::Other(other),
            };
            out.push((t, line));
            i += 1;
        }
    }
    out
}

/// A reference as read: the module it is in and the crate path it names (from the crate
/// root, items included).
#[derive(Debug)]
struct Reference {
    line: usize,
    from: Vec<String>,
    to: Vec<String>,
    /// For a `pub use`, the name it is re-exported as.
    re_export: Option<String>,
}

/// Every path in `text` (already stripped) that starts at `crate`, `silod`, `self`, `super`
/// or a child module of the one it is in, resolved from the crate root; `module` is the
/// file's module, `modules` every module of the crate.
fn references(module: &[String], text: &str, modules: &BTreeSet<String>) -> Vec<Reference> {
    let toks = tokens(text);
    let mut out = Vec::new();
    // The inline `mod x { .. }` blocks we are in, with the depth their braces opened at.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        match &toks[i].0 {
            Tok::Open => {
                depth += 1;
                i += 1;
            }
            Tok::Close => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d > depth) {
                    inline.pop();
                }
                i += 1;
            }
            Tok::Ident(kw) if kw == "mod" => {
                if let (Some((Tok::Ident(name), _)), Some((Tok::Open, _))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    depth += 1;
                    inline.push((name.clone(), depth));
                    i += 3;
                } else {
                    i += 1;
                }
            }
            Tok::Ident(first)
                if toks.get(i + 1).map(|t| &t.0) == Some(&Tok::Path)
                    && !starts_mid_path(&toks, i) =>
            {
                let mut here: Vec<String> = module.to_vec();
                here.extend(inline.iter().map(|(n, _)| n.clone()));
                // A path from a child module of this one needs no `self::` (`use
                // instances::Ctx` in the module that declares `instances`).
                let child = modules.contains(&format!("{}::{first}", here.join("::")))
                    || (here.is_empty() && modules.contains(first));
                if !matches!(first.as_str(), "crate" | "silod" | "self" | "super") && !child {
                    i += 1;
                    continue;
                }
                let re_export = is_pub_use(&toks, i);
                let prefix = if child {
                    vec!["self".to_string()]
                } else {
                    Vec::new()
                };
                let mut paths = Vec::new();
                parse_tree(&toks, &mut i, prefix, &mut paths);
                for (p, line, alias) in paths {
                    if let Some(to) = resolve(&here, &p) {
                        let name = alias.or_else(|| to.last().cloned());
                        out.push(Reference {
                            line,
                            from: here.clone(),
                            to,
                            re_export: re_export.then_some(name).flatten(),
                        });
                    }
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Whether the path at `i` is the tree of a `pub use` (`pub(crate) use` included).
fn is_pub_use(toks: &[(Tok, usize)], i: usize) -> bool {
    let mut j = match i.checked_sub(1).map(|j| &toks[j].0) {
        Some(Tok::Ident(u)) if u == "use" => i - 1,
        _ => return false,
    };
    // Over a visibility's parentheses: `pub(crate)`, `pub(in crate::a)`.
    if j >= 1 && toks[j - 1].0 == Tok::Other(')') {
        j -= 1;
        while j > 0 && toks[j].0 != Tok::Other('(') {
            j -= 1;
        }
    }
    matches!(j.checked_sub(1).map(|k| &toks[k].0), Some(Tok::Ident(p)) if p == "pub")
}

/// Whether the path at `i` is inside another (`a::self::b`), a macro's `$crate`, or a
/// visibility (`pub(in crate::a)`), none of which is a reference.
fn starts_mid_path(toks: &[(Tok, usize)], i: usize) -> bool {
    let prev = |k: usize| i.checked_sub(k).and_then(|j| toks.get(j)).map(|t| &t.0);
    matches!(prev(1), Some(Tok::Path) | Some(Tok::Other('$')))
        || (matches!(prev(1), Some(Tok::Ident(s)) if s == "in")
            && matches!(prev(2), Some(Tok::Other('('))))
}

/// Reads one use tree (or inline path) from `toks[*i]`, leaving `*i` after it; pushes each
/// full path with the line of its last segment.
fn parse_tree(
    toks: &[(Tok, usize)],
    i: &mut usize,
    mut prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, usize, Option<String>)>,
) {
    let mut line = toks.get(*i).map_or(0, |t| t.1);
    loop {
        match toks.get(*i).map(|t| &t.0) {
            Some(Tok::Ident(s)) => {
                line = toks[*i].1;
                // `use crate::a::{self, b}`: `self` is the prefix itself.
                if s != "self" || prefix.is_empty() {
                    prefix.push(s.clone());
                }
                *i += 1;
                if toks.get(*i).map(|t| &t.0) == Some(&Tok::Path) {
                    *i += 1;
                    continue;
                }
                let mut alias = None;
                if matches!(toks.get(*i).map(|t| &t.0), Some(Tok::Ident(a)) if a == "as") {
                    if let Some((Tok::Ident(a), _)) = toks.get(*i + 1) {
                        alias = Some(a.clone());
                    }
                    *i += 2;
                }
                out.push((prefix, line, alias));
                return;
            }
            Some(Tok::Open) => {
                *i += 1;
                loop {
                    match toks.get(*i).map(|t| &t.0) {
                        None => return,
                        Some(Tok::Close) => {
                            *i += 1;
                            return;
                        }
                        Some(Tok::Comma) => *i += 1,
                        Some(Tok::Ident(_)) | Some(Tok::Open) | Some(Tok::Star) => {
                            parse_tree(toks, i, prefix.clone(), out)
                        }
                        // Not a use tree after all: stop here, the caller's scan goes on.
                        Some(_) => return,
                    }
                }
            }
            Some(Tok::Star) => {
                *i += 1;
                out.push((prefix, line, None));
                return;
            }
            // The end of an inline path (`crate::a::f(`, `crate::a::<T>`).
            _ => {
                out.push((prefix, line, None));
                return;
            }
        }
    }
}

/// A path as read in module `here`, from the crate root; `None` when it climbs above it.
fn resolve(here: &[String], path: &[String]) -> Option<Vec<String>> {
    let (first, rest) = path.split_first()?;
    let mut base: Vec<String> = match first.as_str() {
        "crate" | "silod" => Vec::new(),
        "self" => here.to_vec(),
        "super" => {
            let mut b = here.to_vec();
            b.pop()?;
            b
        }
        _ => return None,
    };
    let mut rest = rest;
    while let Some((s, r)) = rest.split_first() {
        if s != "super" {
            break;
        }
        base.pop()?;
        rest = r;
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The cycles among each layer's modules (Tarjan's strongly connected components) that
/// `allowed` does not list, each with the references that make it.
fn cycles(edges: &[Edge], layers: &[(String, u8)], allowed: &[&[&str]]) -> Vec<String> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in edges {
        let lf = layer_of(&e.from);
        // A layer's own mod.rs declares and re-exports its modules, so it sits on both sides
        // of most of them; re-exports are followed to what they name, and the cycles looked
        // for are among the modules beneath it.
        let root = |m: &str| !m.contains("::");
        if lf == layer_of(&e.to)
            && rank_of(&lf, layers) != WIRING
            && e.from != e.to
            && !root(&e.from)
            && !root(&e.to)
        {
            graph.entry(&e.from).or_default().insert(&e.to);
            graph.entry(&e.to).or_default();
        }
    }
    let mut out = Vec::new();
    for scc in tarjan(&graph) {
        if scc.len() < 2 {
            continue;
        }
        let mut names: Vec<&str> = scc.clone();
        names.sort();
        if allowed.iter().any(|a| {
            let mut a = a.to_vec();
            a.sort();
            a == names
        }) {
            continue;
        }
        let within: Vec<String> = edges
            .iter()
            .filter(|e| names.contains(&e.from.as_str()) && names.contains(&e.to.as_str()))
            .map(|e| format!("    {}: {} -> {}", e.at, e.from, e.to))
            .collect();
        out.push(format!(
            "an import cycle among {} (not in ALLOWED_CYCLES):\n{}",
            names.join(", "),
            within.join("\n")
        ));
    }
    out
}

/// Tarjan's strongly connected components of `graph`.
fn tarjan<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<Vec<&'a str>> {
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(v: &'a str, g: &BTreeMap<&'a str, BTreeSet<&'a str>>, s: &mut State<'a>) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in g.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(w, g, s);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                scc.push(w);
                if w == v {
                    break;
                }
            }
            s.out.push(scc);
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for &v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(v, graph, &mut s);
        }
    }
    s.out
}

/// A source tree written under the temp dir for one test, removed when dropped (a failing
/// test included).
struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new(name: &str, files: &[(&str, &str)]) -> Fixture {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "silo-layers-{}-{name}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let f = Fixture { dir };
        for (path, text) in files {
            let p = f.dir.join("src").join(path);
            let parent = p.parent().expect("a file has a directory");
            std::fs::create_dir_all(parent).expect("fixture directory");
            std::fs::write(&p, text).expect("fixture file");
        }
        f
    }

    fn analyse(&self, allowed: &[&[&str]]) -> Analysis {
        analyse(&self.dir.join("src"), LAYERS, allowed).expect("analyse the fixture")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A small crate in layers that keeps the rule.
const CLEAN: &[(&str, &str)] = &[
    ("lib.rs", "pub mod api;\npub mod service;\npub mod model;\npub mod store;\npub mod helpers;\npub mod startup;\n"),
    ("startup.rs", "use crate::api::routes;\nuse crate::service::Services;\n"),
    ("api/mod.rs", "pub mod instances;\npub fn routes() {}\n"),
    ("api/instances.rs", "use crate::service::instances::create;\nuse super::routes;\n"),
    ("service/mod.rs", "pub mod instances;\npub struct Services;\n"),
    ("service/instances.rs", "use crate::{model::Instance, store::instances::{get, put}};\npub fn create() {}\n"),
    ("store/mod.rs", "pub mod instances;\n"),
    ("store/instances.rs", "use crate::model::Instance;\npub fn get() {}\npub fn put() {}\n"),
    ("helpers/mod.rs", "use crate::model::Instance;\n"),
    ("model/mod.rs", "pub struct Instance;\n"),
];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<_> = CLEAN
        .iter()
        .filter(|(p, _)| !extra.iter().any(|(q, _)| q == p))
        .copied()
        .collect();
    v.extend_from_slice(extra);
    v
}

#[test]
fn a_tree_that_keeps_the_rule_passes() {
    let f = Fixture::new("clean", CLEAN);
    let a = f.analyse(&[]);
    assert!(a.problems().is_empty(), "{:?}", a.problems());
    let g = a.graph();
    assert!(g.contains("api (rank 3) -> service (rank 2): 1"), "{g}");
    assert!(g.contains("startup (wiring) -> api (rank 3): 1"), "{g}");
}

#[test]
fn an_upward_edge_is_caught() {
    let f = Fixture::new(
        "upward",
        &with(&[(
            "model/mod.rs",
            "pub struct Instance;\n\nfn f() { crate::service::instances::create() }\n",
        )]),
    );
    let a = f.analyse(&[]);
    assert_eq!(a.violations.len(), 1, "{:?}", a.violations);
    let v = &a.violations[0];
    assert!(
        v.starts_with("src/model/mod.rs:3: model -> service::instances"),
        "{v}"
    );
}

#[test]
fn using_wiring_is_caught() {
    let f = Fixture::new(
        "wiring",
        &with(&[("store/mod.rs", "pub mod instances;\nuse crate::startup;\n")]),
    );
    let a = f.analyse(&[]);
    assert_eq!(a.violations.len(), 1, "{:?}", a.violations);
    assert!(
        a.violations[0].contains("store (rank 1) may not use startup (wiring)"),
        "{:?}",
        a.violations
    );
}

#[test]
fn a_sibling_edge_is_caught() {
    let f = Fixture::new(
        "sibling",
        &with(&[("helpers/mod.rs", "use crate::store::instances::get;\n")]),
    );
    let a = f.analyse(&[]);
    assert_eq!(a.violations.len(), 1, "{:?}", a.violations);
    assert!(
        a.violations[0].starts_with("src/helpers/mod.rs:1: helpers -> store::instances"),
        "{:?}",
        a.violations
    );
}

#[test]
fn a_grouped_nested_use_is_parsed() {
    let f = Fixture::new(
        "grouped",
        &with(&[(
            "model/mod.rs",
            "use crate::{\n    store::{self, instances::{get as g, put}},\n    api,\n};\n",
        )]),
    );
    let a = f.analyse(&[]);
    assert_eq!(
        a.violations.len(),
        4,
        "self, get, put and api: {:?}",
        a.violations
    );
    for want in [
        "src/model/mod.rs:2: model -> store:",
        "src/model/mod.rs:2: model -> store::instances:",
        "src/model/mod.rs:3: model -> api:",
    ] {
        assert!(
            a.violations.iter().any(|v| v.starts_with(want)),
            "{want} in {:?}",
            a.violations
        );
    }
}

#[test]
fn super_is_resolved() {
    let f = Fixture::new(
        "super",
        &with(&[
            ("store/instances.rs", "use super::super::api::routes;\n"),
            (
                "model/mod.rs",
                "pub mod types;\nmod tests {\n    use super::*;\n    use super::super::service;\n}\n",
            ),
            ("model/types.rs", "use super::Instance;\n"),
        ]),
    );
    let a = f.analyse(&[]);
    let mut v = a.violations.clone();
    v.sort();
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(
        v[0].starts_with("src/model/mod.rs:4: model -> service:"),
        "inside an inline module: {v:?}"
    );
    assert!(
        v[1].starts_with("src/store/instances.rs:1: store::instances -> api:"),
        "{v:?}"
    );
    // `super::Instance` from model::types and `super::*` from model's tests stay in model.
    assert!(a
        .edges
        .iter()
        .any(|e| e.from == "model::types" && e.to == "model"));
}

const CYCLE: &[(&str, &str)] = &[
    (
        "service/mod.rs",
        "pub mod instances;\npub mod snapshots;\npub mod backups;\npub struct Services;\n",
    ),
    (
        "service/instances.rs",
        "pub fn create() { super::snapshots::list() }\n",
    ),
    (
        "service/snapshots.rs",
        "use crate::service::backups;\npub fn list() {}\n",
    ),
    ("service/backups.rs", "use super::instances::create;\n"),
];

#[test]
fn a_cycle_is_caught() {
    let f = Fixture::new("cycle", &with(CYCLE));
    let a = f.analyse(&[]);
    assert!(a.violations.is_empty(), "{:?}", a.violations);
    assert_eq!(a.cycles.len(), 1, "{:?}", a.cycles);
    let c = &a.cycles[0];
    assert!(
        c.contains("service::backups, service::instances, service::snapshots"),
        "{c}"
    );
    assert!(
        c.contains("src/service/instances.rs:1: service::instances -> service::snapshots"),
        "{c}"
    );
}

#[test]
fn an_allowed_cycle_passes() {
    let f = Fixture::new("allowed", &with(CYCLE));
    let allowed: &[&[&str]] = &[&[
        "service::snapshots",
        "service::instances",
        "service::backups",
    ]];
    let a = f.analyse(allowed);
    assert!(a.problems().is_empty(), "{:?}", a.problems());
    // Only that cycle: a smaller entry does not allow it.
    let a = f.analyse(&[&["service::instances", "service::snapshots"]]);
    assert_eq!(a.cycles.len(), 1, "{:?}", a.cycles);
}

#[test]
fn comments_and_strings_are_not_edges() {
    let f = Fixture::new(
        "strings",
        &with(&[(
            "model/mod.rs",
            concat!(
                "// use crate::api;\n",
                "/* crate::api::routes() /* nested crate::api */ crate::service */\n",
                "/// Unlike crate::api::instances, ...\n",
                "pub struct Instance;\n",
                "const A: &str = \"crate::api::x \\\" crate::api\";\n",
                "const B: &str = r#\"crate::api \"quoted\" crate::api\"#;\n",
                "const C: char = '\"'; fn f<'a>(x: &'a str) -> &'a str { x }\n",
                "const D: &[u8] = b\"crate::service\";\n",
            ),
        )]),
    );
    let a = f.analyse(&[]);
    assert!(a.problems().is_empty(), "{:?}", a.problems());
    assert!(!a.edges.iter().any(|e| e.from == "model"), "{:?}", a.edges);
}

#[test]
fn child_paths_and_re_exports_are_followed() {
    let f = Fixture::new(
        "reexport",
        &with(&[
            (
                "service/mod.rs",
                "pub mod instances;\npub mod snapshots;\npub use instances::{create as make};\npub struct Services;\n",
            ),
            // Through the re-export: a cycle between instances and snapshots.
            ("service/instances.rs", "pub fn create() { super::snapshots::list() }\n"),
            ("service/snapshots.rs", "pub fn list() { crate::service::make() }\n"),
            // A child path with no `self::`, from the layer's root, to a sibling.
            ("store/mod.rs", "pub mod instances;\nfn f() { instances::get(); helpers::x() }\n"),
        ]),
    );
    let a = f.analyse(&[]);
    assert!(a.violations.is_empty(), "{:?}", a.violations);
    assert_eq!(a.cycles.len(), 1, "{:?}", a.cycles);
    assert!(
        a.cycles[0]
            .contains("src/service/snapshots.rs:1: service::snapshots -> service::instances"),
        "{:?}",
        a.cycles
    );
    assert!(
        a.edges
            .iter()
            .any(|e| e.at == "src/store/mod.rs:2" && e.to == "store::instances"),
        "{:?}",
        a.edges
    );
    // `helpers::x` from store names no child of store: not read as the helpers layer.
    assert!(!a
        .edges
        .iter()
        .any(|e| e.from == "store" && e.to == "helpers"));
}
