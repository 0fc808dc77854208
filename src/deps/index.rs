//! The live dependency graph of one repository root, kept current incrementally.
//!
//! How it stays cheap: [`DependencyIndex::upsert`] and [`DependencyIndex::remove`] only record
//! facts (the file's imports, parsed manifests, folder listings) and mark work as stale;
//! [`DependencyIndex::finish`] resolves what is stale. Every resolution records the *keys* it
//! read — a path's existence, a JS path stem, a Python module name, a folder listing, a package
//! name, a Go module path, a Rust crate's module — so an unresolved import waits on exactly the
//! names it needs, and adding, removing or changing a file re-resolves only the files whose
//! keys it touches. Rust crate module trees are a second kind of derived unit, rebuilt when a
//! member's `mod` declarations or a candidate module file change; a rebuild re-resolves only the
//! files whose membership or whose `use`d modules changed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::manifest::{self, CargoTargets, ManifestKind, PackageJson, TsConfig};
use super::{extract, Edge, Import, ImportKind, Lang, ResolveConfig};
use super::{js, paths};

/// What resolution read: see the module docs. The first byte names the kind.
type Key = String;

/// Extensions probed after a relative JS/TS specifier, in order.
const JS_EXTS: &[&str] = &[
    ".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts", ".json",
];

/// Every suffix whose removal gives a stem some specifier may probe.
const JS_STEM_SUFFIXES: &[&str] = &[
    ".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts", ".json", ".d.mts",
    ".d.cts",
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Unit {
    File(String),
    Crate(String),
}

struct FileState {
    lang: Option<Lang>,
    imports: Vec<Import>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Resolved {
    edges: Vec<Edge>,
    externals: Vec<String>,
}

impl Resolved {
    fn is_empty(&self) -> bool {
        self.edges.is_empty() && self.externals.is_empty()
    }
}

/// Where a file sits in a crate's module tree.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    /// Module path of the file's top-level module (`""` for the crate root, else `a::b`).
    modpath: String,
    /// Folder in which its `mod x;` declarations look for `x.rs` / `x/mod.rs`.
    owned_dir: String,
}

#[derive(Debug, Default)]
struct CrateTree {
    /// Module path → file defining it (an inline module lives in its parent's file).
    modules: HashMap<String, String>,
    /// File → its place in the tree (first reach wins).
    members: BTreeMap<String, Member>,
}

/// Collects what one resolution produced and read.
#[derive(Default)]
struct Ctx {
    keys: Vec<Key>,
    resolved: Resolved,
    seen: HashSet<String>,
    /// The importer is TypeScript: a `.js` specifier means its TypeScript source first.
    ts_importer: bool,
}

impl Ctx {
    fn key(&mut self, kind: char, s: &str) {
        self.keys.push(key(kind, s));
    }

    fn edge(&mut self, from: &str, target: &str, imp: &Import) {
        if target != from && self.seen.insert(target.to_string()) {
            self.resolved.edges.push(Edge {
                target: target.to_string(),
                kind: imp.kind,
                line: imp.line,
            });
        }
    }

    fn external(&mut self, name: &str) {
        if !name.is_empty() && !self.resolved.externals.iter().any(|e| e == name) {
            self.resolved.externals.push(name.to_string());
        }
    }
}

fn key(kind: char, s: &str) -> Key {
    let mut k = String::with_capacity(s.len() + 1);
    k.push(kind);
    k.push_str(s);
    k
}

/// Key kinds.
const K_EXISTS: char = 'e'; // a file at this path exists / its manifest content
const K_STEM: char = 's'; // JS: a file `stem.<ext>`, `stem/index.<ext>` or `stem/package.json`
const K_PYMOD: char = 'p'; // Python: a module with this dotted name under some source root
const K_PYROOTS: char = 'r'; // Python: the set of source roots
const K_LISTING: char = 'l'; // the direct children of a folder
const K_NPM: char = 'n'; // a package.json `name`
const K_GOMOD: char = 'g'; // a go.mod `module` path
const K_MODSIG: char = 'm'; // Rust: the `mod` declarations of a file
const K_MODULE: char = 't'; // Rust: module `<root>\0<modpath>` of a crate

/// The live dependency graph of one repository root.
///
/// Feed it with [`DependencyIndex::upsert`] / [`DependencyIndex::remove`] (cheap: they record
/// facts and mark work stale), then call [`DependencyIndex::finish`] (or
/// [`DependencyIndex::take_dirty`], which runs it) before reading: reads answer as of the last
/// `finish`. After any sequence of changes and a `finish`, the graph equals that of a fresh
/// index fed the same final set of files.
pub struct DependencyIndex {
    config: ResolveConfig,
    files: HashMap<String, FileState>,
    /// Folder → names of its direct children (files and folders).
    children: HashMap<String, BTreeSet<String>>,
    /// Folder → number of `pyproject.toml`/`setup.py` in it.
    py_markers: HashMap<String, usize>,
    py_roots: BTreeSet<String>,
    /// go.mod folder → module path.
    go_mods: HashMap<String, String>,
    go_by_module: HashMap<String, BTreeSet<String>>,
    /// package.json folder → parsed.
    packages: HashMap<String, PackageJson>,
    pkg_by_name: HashMap<String, BTreeSet<String>>,
    /// tsconfig/jsconfig path → parsed.
    tsconfigs: HashMap<String, TsConfig>,
    /// Cargo.toml folder → parsed.
    cargo: HashMap<String, CargoTargets>,
    cargo_dirty: bool,
    crate_roots: BTreeSet<String>,
    crates: HashMap<String, CrateTree>,
    /// File → crate root → place in that crate.
    membership: HashMap<String, BTreeMap<String, Member>>,
    watchers: HashMap<Key, HashSet<Unit>>,
    unit_keys: HashMap<Unit, Vec<Key>>,
    stale_files: HashSet<String>,
    stale_crates: BTreeSet<String>,
    results: HashMap<String, Resolved>,
    rev: HashMap<String, BTreeSet<String>>,
    dirty: BTreeSet<String>,
}

impl DependencyIndex {
    pub fn new(config: ResolveConfig) -> Self {
        let mut py_roots = BTreeSet::new();
        py_roots.insert(String::new());
        py_roots.insert("src".to_string());
        DependencyIndex {
            config,
            files: HashMap::new(),
            children: HashMap::new(),
            py_markers: HashMap::new(),
            py_roots,
            go_mods: HashMap::new(),
            go_by_module: HashMap::new(),
            packages: HashMap::new(),
            pkg_by_name: HashMap::new(),
            tsconfigs: HashMap::new(),
            cargo: HashMap::new(),
            cargo_dirty: false,
            crate_roots: BTreeSet::new(),
            crates: HashMap::new(),
            membership: HashMap::new(),
            watchers: HashMap::new(),
            unit_keys: HashMap::new(),
            stale_files: HashSet::new(),
            stale_crates: BTreeSet::new(),
            results: HashMap::new(),
            rev: HashMap::new(),
            dirty: BTreeSet::new(),
        }
    }

    /// A file was added or its content changed. Call it for every catalogued file, source or
    /// not: presence matters for resolution, and manifests are read from their text. Cheap:
    /// resolution waits for [`DependencyIndex::finish`].
    pub fn upsert(&mut self, path: &str, text: &[u8]) {
        let is_new = !self.files.contains_key(path);
        let lang = Lang::from_path(path);
        let imports = lang.map(|l| extract(l, text)).unwrap_or_default();
        if is_new {
            self.add_child(path);
        }
        let manifest_changed = match manifest::manifest_kind(path) {
            Some(kind) => self.set_manifest(path, kind, Some(text), is_new),
            None => false,
        };
        if is_new || manifest_changed {
            self.fire(&key(K_EXISTS, path));
        }
        if is_new {
            self.fire_presence(path);
        }
        let old = self
            .files
            .insert(path.to_string(), FileState { lang, imports });
        if lang.is_some() {
            let new_imports = &self.files[path].imports;
            let changed = old.as_ref().is_none_or(|o| o.imports != *new_imports);
            if changed {
                self.stale_files.insert(path.to_string());
                if lang == Some(Lang::Rust)
                    && old
                        .as_ref()
                        .is_none_or(|o| mod_sig(&o.imports) != mod_sig(new_imports))
                {
                    self.fire(&key(K_MODSIG, path));
                }
            }
        } else if old.as_ref().is_some_and(|o| o.lang.is_some()) {
            // cannot happen (language is by path), kept for safety
            self.stale_files.insert(path.to_string());
        }
    }

    /// A file was removed.
    pub fn remove(&mut self, path: &str) {
        let Some(old) = self.files.remove(path) else {
            return;
        };
        self.remove_child(path);
        if let Some(kind) = manifest::manifest_kind(path) {
            self.set_manifest(path, kind, None, false);
        }
        self.fire(&key(K_EXISTS, path));
        self.fire_presence(path);
        if old.lang == Some(Lang::Rust) {
            self.fire(&key(K_MODSIG, path));
        }
        let unit = Unit::File(path.to_string());
        self.set_keys(unit, Vec::new());
        self.stale_files.remove(path);
        self.set_result(path, Resolved::default());
    }

    /// Resolve everything that is stale. Reads ([`DependencyIndex::edges`],
    /// [`DependencyIndex::externals`], [`DependencyIndex::dependents`]) reflect the state as of
    /// the last `finish` (which [`DependencyIndex::take_dirty`] also runs).
    pub fn finish(&mut self) {
        if self.cargo_dirty {
            self.cargo_dirty = false;
            self.update_crate_roots();
        }
        let crates = std::mem::take(&mut self.stale_crates);
        for root in crates {
            self.rebuild_crate(&root);
        }
        let mut stale: Vec<String> = self.stale_files.drain().collect();
        stale.sort_unstable();
        for path in stale {
            if !self.files.contains_key(&path) {
                continue;
            }
            let ctx = self.resolve_file(&path);
            self.set_keys(Unit::File(path.clone()), ctx.keys);
            self.set_result(&path, ctx.resolved);
        }
    }

    /// Whether changes wait for [`DependencyIndex::finish`].
    pub fn has_pending(&self) -> bool {
        self.cargo_dirty || !self.stale_crates.is_empty() || !self.stale_files.is_empty()
    }

    /// Resolved repository-file edges of a file, deduplicated by target (first import wins).
    pub fn edges(&self, path: &str) -> &[Edge] {
        self.results.get(path).map_or(&[], |r| &r.edges[..])
    }

    /// Imports of a file that name something outside the repository, by name.
    pub fn externals(&self, path: &str) -> &[String] {
        self.results.get(path).map_or(&[], |r| &r.externals[..])
    }

    /// Files with an edge to `path`, sorted.
    pub fn dependents(&self, path: &str) -> Vec<String> {
        self.rev
            .get(path)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Paths whose edges or externals changed since the last call, sorted (runs `finish`).
    pub fn take_dirty(&mut self) -> Vec<String> {
        self.finish();
        std::mem::take(&mut self.dirty).into_iter().collect()
    }

    /// Every file that has edges or externals, sorted.
    pub fn sources(&self) -> Vec<String> {
        let mut v: Vec<String> = self.results.keys().cloned().collect();
        v.sort_unstable();
        v
    }

    /// The imports extracted from a file at its last upsert.
    pub fn imports(&self, path: &str) -> &[Import] {
        self.files.get(path).map_or(&[], |f| &f.imports[..])
    }

    /// Whether a file is known.
    pub fn contains(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    /// Number of known files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no file is known.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    // ---------------------------------------------------------------- facts and keys

    fn exists(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    fn add_child(&mut self, path: &str) {
        let mut path = path.to_string();
        loop {
            let dir = paths::parent(&path).to_string();
            let name = paths::file_name(&path).to_string();
            let set = self.children.entry(dir.clone()).or_default();
            let dir_was_new = set.is_empty();
            if !set.insert(name) {
                return;
            }
            self.fire(&key(K_LISTING, &dir));
            if !dir_was_new || dir.is_empty() {
                return;
            }
            path = dir;
        }
    }

    fn remove_child(&mut self, path: &str) {
        let mut path = path.to_string();
        loop {
            let dir = paths::parent(&path).to_string();
            let name = paths::file_name(&path);
            let Some(set) = self.children.get_mut(&dir) else {
                return;
            };
            if !set.remove(name) {
                return;
            }
            let now_empty = set.is_empty();
            if now_empty {
                self.children.remove(&dir);
            }
            self.fire(&key(K_LISTING, &dir));
            if !now_empty || dir.is_empty() {
                return;
            }
            path = dir;
        }
    }

    /// Fire the keys a file's appearance or disappearance touches (besides its own path).
    fn fire_presence(&mut self, path: &str) {
        let name = paths::file_name(path);
        let dir = paths::parent(path);
        // JS stems
        for suffix in JS_STEM_SUFFIXES {
            if name.len() > suffix.len() && name.ends_with(suffix) {
                let stem = &path[..path.len() - suffix.len()];
                self.fire(&key(K_STEM, stem));
                if &name[..name.len() - suffix.len()] == "index" {
                    self.fire(&key(K_STEM, dir));
                }
            }
        }
        // Python module names under every source root that contains the file
        if let Some(stem) = path.strip_suffix(".py") {
            let roots: Vec<String> = paths::ancestors(dir)
                .filter(|a| self.py_roots.contains(*a))
                .map(str::to_string)
                .collect();
            for root in roots {
                if let Some(rel) = paths::strip_dir(stem, &root) {
                    let rel = rel.strip_suffix("/__init__").unwrap_or(rel);
                    if rel != "__init__" {
                        self.fire(&key(K_PYMOD, &rel.replace('/', ".")));
                    }
                }
            }
        }
        if name.ends_with(".rs") {
            self.cargo_dirty = true;
        }
    }

    /// Record a manifest's facts (`text` is `None` on removal). Returns whether they changed.
    fn set_manifest(
        &mut self,
        path: &str,
        kind: ManifestKind,
        text: Option<&[u8]>,
        is_new: bool,
    ) -> bool {
        let dir = paths::parent(path).to_string();
        match kind {
            ManifestKind::GoMod => {
                let new = text.and_then(manifest::go_module_path);
                let old = self.go_mods.get(&dir).cloned();
                if old == new && !is_new {
                    return false;
                }
                if let Some(m) = &old {
                    if let Some(set) = self.go_by_module.get_mut(m) {
                        set.remove(&dir);
                        if set.is_empty() {
                            self.go_by_module.remove(m);
                        }
                    }
                    self.fire(&key(K_GOMOD, m));
                }
                match &new {
                    Some(m) => {
                        self.go_mods.insert(dir.clone(), m.clone());
                        self.go_by_module.entry(m.clone()).or_default().insert(dir);
                        self.fire(&key(K_GOMOD, m));
                    }
                    None => {
                        self.go_mods.remove(&dir);
                    }
                }
                old != new
            }
            ManifestKind::Cargo => {
                let new = text.map(manifest::cargo_targets);
                if self.cargo.get(&dir) == new.as_ref() {
                    return false;
                }
                match new {
                    Some(t) => self.cargo.insert(dir, t),
                    None => self.cargo.remove(&dir),
                };
                self.cargo_dirty = true;
                true
            }
            ManifestKind::PackageJson => {
                let new = text.map(manifest::package_json);
                let old = self.packages.get(&dir);
                if old == new.as_ref() {
                    return false;
                }
                let old_name = old.and_then(|p| p.name.clone());
                if let Some(n) = &old_name {
                    if let Some(set) = self.pkg_by_name.get_mut(n) {
                        set.remove(&dir);
                        if set.is_empty() {
                            self.pkg_by_name.remove(n);
                        }
                    }
                    self.fire(&key(K_NPM, n));
                }
                match new {
                    Some(p) => {
                        if let Some(n) = &p.name {
                            self.pkg_by_name
                                .entry(n.clone())
                                .or_default()
                                .insert(dir.clone());
                            self.fire(&key(K_NPM, n));
                        }
                        self.packages.insert(dir.clone(), p);
                    }
                    None => {
                        self.packages.remove(&dir);
                    }
                }
                self.fire(&key(K_STEM, &dir));
                true
            }
            ManifestKind::TsConfig => {
                let new = text
                    .filter(|t| t.len() <= manifest::MAX_CONFIG_JSON)
                    .map(manifest::tsconfig)
                    .filter(|c| manifest::is_tsconfig_name(path) || *c != TsConfig::default());
                if self.tsconfigs.get(path) == new.as_ref() {
                    return false;
                }
                match new {
                    Some(t) => self.tsconfigs.insert(path.to_string(), t),
                    None => self.tsconfigs.remove(path),
                };
                true
            }
            ManifestKind::PythonProject => {
                let changed_roots = match text {
                    Some(_) if is_new => {
                        let c = self.py_markers.entry(dir.clone()).or_default();
                        *c += 1;
                        *c == 1
                    }
                    Some(_) => false,
                    None => {
                        let c = self.py_markers.entry(dir.clone()).or_default();
                        *c = c.saturating_sub(1);
                        let gone = *c == 0;
                        if gone {
                            self.py_markers.remove(&dir);
                        }
                        gone
                    }
                };
                if changed_roots {
                    let mut roots = BTreeSet::new();
                    roots.insert(String::new());
                    roots.insert("src".to_string());
                    for d in self.py_markers.keys() {
                        roots.insert(d.clone());
                        roots.insert(paths::join(d, "src"));
                    }
                    if roots != self.py_roots {
                        self.py_roots = roots;
                        self.fire(&key(K_PYROOTS, ""));
                    }
                }
                false
            }
        }
    }

    fn fire(&mut self, k: &str) {
        if let Some(set) = self.watchers.remove(k) {
            for unit in set {
                match unit {
                    Unit::File(p) => {
                        self.stale_files.insert(p);
                    }
                    Unit::Crate(r) => {
                        self.stale_crates.insert(r);
                    }
                }
            }
        }
    }

    fn set_keys(&mut self, unit: Unit, mut keys: Vec<Key>) {
        if let Some(old) = self.unit_keys.remove(&unit) {
            for k in old {
                if let Some(set) = self.watchers.get_mut(&k) {
                    set.remove(&unit);
                    if set.is_empty() {
                        self.watchers.remove(&k);
                    }
                }
            }
        }
        if keys.is_empty() {
            return;
        }
        keys.sort_unstable();
        keys.dedup();
        for k in &keys {
            self.watchers
                .entry(k.clone())
                .or_default()
                .insert(unit.clone());
        }
        self.unit_keys.insert(unit, keys);
    }

    fn set_result(&mut self, path: &str, new: Resolved) {
        let empty = Resolved::default();
        let old = self.results.get(path).unwrap_or(&empty);
        if *old == new {
            return;
        }
        let old_targets: Vec<String> = old.edges.iter().map(|e| e.target.clone()).collect();
        for t in old_targets {
            if let Some(set) = self.rev.get_mut(&t) {
                set.remove(path);
                if set.is_empty() {
                    self.rev.remove(&t);
                }
            }
        }
        for e in &new.edges {
            self.rev
                .entry(e.target.clone())
                .or_default()
                .insert(path.to_string());
        }
        self.dirty.insert(path.to_string());
        if new.is_empty() {
            self.results.remove(path);
        } else {
            self.results.insert(path.to_string(), new);
        }
    }

    // ---------------------------------------------------------------- Rust crates

    fn update_crate_roots(&mut self) {
        let mut roots = BTreeSet::new();
        for (dir, targets) in &self.cargo {
            let mut cands: Vec<String> = Vec::new();
            match &targets.lib {
                Some(p) => cands.extend(paths::join_norm(dir, p)),
                None => cands.push(paths::join(dir, "src/lib.rs")),
            }
            cands.push(paths::join(dir, "src/main.rs"));
            cands.push(paths::join(dir, "build.rs"));
            for p in &targets.others {
                cands.extend(paths::join_norm(dir, p));
            }
            for (sub, nested_main) in [
                ("src/bin", true),
                ("tests", false),
                ("benches", false),
                ("examples", true),
            ] {
                let folder = paths::join(dir, sub);
                if let Some(names) = self.children.get(&folder) {
                    for name in names {
                        let p = paths::join(&folder, name);
                        if name.ends_with(".rs") {
                            cands.push(p);
                        } else if nested_main {
                            cands.push(paths::join(&p, "main.rs"));
                        }
                    }
                }
            }
            for c in cands {
                if c.ends_with(".rs") && self.exists(&c) {
                    roots.insert(c);
                }
            }
        }
        if roots == self.crate_roots {
            return;
        }
        let old = std::mem::replace(&mut self.crate_roots, roots);
        for r in old.symmetric_difference(&self.crate_roots) {
            self.stale_crates.insert(r.clone());
        }
    }

    fn rebuild_crate(&mut self, root: &str) {
        let mut keys = Vec::new();
        let tree = if self.crate_roots.contains(root) && self.exists(root) {
            self.build_tree(root, &mut keys)
        } else {
            CrateTree::default()
        };
        let old = self.crates.remove(root).unwrap_or_default();
        // modules that changed: files that `use` them re-resolve
        let mut changed: Vec<String> = Vec::new();
        for (m, f) in &old.modules {
            if tree.modules.get(m) != Some(f) {
                changed.push(m.clone());
            }
        }
        for (m, f) in &tree.modules {
            if old.modules.get(m) != Some(f) {
                changed.push(m.clone());
            }
        }
        for m in changed {
            self.fire(&module_key(root, &m));
        }
        // membership changes
        for (file, info) in &old.members {
            if tree.members.get(file) != Some(info) {
                self.stale_files.insert(file.clone());
            }
            if let Some(m) = self.membership.get_mut(file) {
                m.remove(root);
                if m.is_empty() {
                    self.membership.remove(file);
                }
            }
        }
        for (file, info) in &tree.members {
            if old.members.get(file) != Some(info) {
                self.stale_files.insert(file.clone());
            }
            self.membership
                .entry(file.clone())
                .or_default()
                .insert(root.to_string(), info.clone());
        }
        let unit = Unit::Crate(root.to_string());
        if tree.members.is_empty() {
            self.set_keys(unit, Vec::new());
        } else {
            self.set_keys(unit, keys);
            self.crates.insert(root.to_string(), tree);
        }
    }

    fn build_tree(&self, root: &str, keys: &mut Vec<Key>) -> CrateTree {
        let mut tree = CrateTree::default();
        keys.push(key(K_EXISTS, root));
        let mut queue = std::collections::VecDeque::new();
        queue.push_back((
            root.to_string(),
            Member {
                modpath: String::new(),
                owned_dir: paths::parent(root).to_string(),
            },
        ));
        tree.modules.insert(String::new(), root.to_string());
        while let Some((file, member)) = queue.pop_front() {
            if tree.members.contains_key(&file) {
                continue;
            }
            keys.push(key(K_MODSIG, &file));
            let Some(state) = self.files.get(&file) else {
                continue;
            };
            for imp in state.imports.iter().filter(|i| i.kind == ImportKind::Mod) {
                let parts: Vec<&str> = imp.spec.split("::").collect();
                let mut mp = member.modpath.clone();
                for inline in &parts[..parts.len() - 1] {
                    mp = join_mod(&mp, inline);
                    tree.modules
                        .entry(mp.clone())
                        .or_insert_with(|| file.clone());
                }
                let child_mp = join_mod(&mp, parts[parts.len() - 1]);
                let cands = mod_candidates(&member.owned_dir, paths::parent(&file), imp);
                let mut found = None;
                for c in &cands {
                    keys.push(key(K_EXISTS, c));
                    if self.exists(c) {
                        found = Some(c.clone());
                        break;
                    }
                }
                if let Some(target) = found {
                    // the same module declared twice (`#[cfg]` alternatives): the first names
                    // the module, every file still joins the tree
                    tree.modules
                        .entry(child_mp.clone())
                        .or_insert_with(|| target.clone());
                    let owned_dir = child_owned_dir(&target, imp.path_attr.is_some());
                    queue.push_back((
                        target,
                        Member {
                            modpath: child_mp,
                            owned_dir,
                        },
                    ));
                }
            }
            tree.members.insert(file, member);
        }
        tree
    }

    // ---------------------------------------------------------------- resolution

    fn resolve_file(&self, path: &str) -> Ctx {
        let mut ctx = Ctx::default();
        let Some(state) = self.files.get(path) else {
            return ctx;
        };
        match state.lang {
            Some(Lang::Python) => self.resolve_python(path, &state.imports, &mut ctx),
            Some(Lang::Rust) => self.resolve_rust(path, &state.imports, &mut ctx),
            Some(Lang::JavaScript | Lang::TypeScript) => {
                self.resolve_js(path, &state.imports, &mut ctx)
            }
            Some(Lang::Go) => self.resolve_go(path, &state.imports, &mut ctx),
            Some(Lang::C | Lang::Cpp) => self.resolve_c(path, &state.imports, &mut ctx),
            None => {}
        }
        ctx
    }

    // Python ---------------------------------------------------------------------

    fn py_module(&self, ctx: &mut Ctx, roots: &[&str], dotted: &str) -> Option<String> {
        ctx.key(K_PYMOD, dotted);
        let rel = dotted.replace('.', "/");
        for root in roots {
            let base = paths::join(root, &rel);
            let init = paths::join(&base, "__init__.py");
            if self.exists(&init) {
                return Some(init);
            }
            let module = format!("{base}.py");
            if self.exists(&module) {
                return Some(module);
            }
        }
        None
    }

    fn py_relative(&self, ctx: &mut Ctx, base_dir: &str, dotted: &str) -> Option<String> {
        let base = paths::join(base_dir, &dotted.replace('.', "/"));
        let mut cands = vec![paths::join(&base, "__init__.py")];
        if !dotted.is_empty() {
            cands.push(format!("{base}.py"));
        }
        for c in cands {
            ctx.key(K_EXISTS, &c);
            if self.exists(&c) {
                return Some(c);
            }
        }
        None
    }

    fn resolve_python(&self, path: &str, imports: &[Import], ctx: &mut Ctx) {
        ctx.key(K_PYROOTS, "");
        let dir = paths::parent(path);
        // roots containing the file, deepest first, then the others in order
        let mut roots: Vec<&str> = paths::ancestors(dir)
            .filter(|a| self.py_roots.contains(*a))
            .collect();
        for r in &self.py_roots {
            if !roots.contains(&r.as_str()) {
                roots.push(r);
            }
        }
        for imp in imports {
            let spec = imp.spec.as_str();
            match imp.kind {
                ImportKind::Import | ImportKind::DynamicImport => {
                    match self.py_module(ctx, &roots, spec) {
                        Some(t) => ctx.edge(path, &t, imp),
                        None => ctx.external(spec),
                    }
                }
                ImportKind::FromImport => {
                    let dots = spec.bytes().take_while(|&b| b == b'.').count();
                    let rest = &spec[dots..];
                    let (module, name) = match rest.rfind('.') {
                        Some(i) => (&rest[..i], &rest[i + 1..]),
                        None => ("", rest),
                    };
                    let full = if module.is_empty() {
                        name.to_string()
                    } else {
                        format!("{module}.{name}")
                    };
                    if dots > 0 {
                        let mut base = Some(dir);
                        for _ in 1..dots {
                            base = base.and_then(|b| {
                                if b.is_empty() {
                                    None
                                } else {
                                    Some(paths::parent(b))
                                }
                            });
                        }
                        let Some(base) = base else { continue };
                        let found = if name != "*" {
                            self.py_relative(ctx, base, &full)
                        } else {
                            None
                        };
                        if let Some(t) = found.or_else(|| self.py_relative(ctx, base, module)) {
                            ctx.edge(path, &t, imp);
                        }
                    } else {
                        let found = if name != "*" && !module.is_empty() {
                            self.py_module(ctx, &roots, &full)
                        } else {
                            None
                        };
                        let target_module = if module.is_empty() { name } else { module };
                        match found.or_else(|| self.py_module(ctx, &roots, target_module)) {
                            Some(t) => ctx.edge(path, &t, imp),
                            None => ctx.external(target_module),
                        }
                    }
                }
                _ => {}
            }
        }
    }

    // Rust -----------------------------------------------------------------------

    fn resolve_rust(&self, path: &str, imports: &[Import], ctx: &mut Ctx) {
        let dir = paths::parent(path);
        let member = self
            .membership
            .get(path)
            .and_then(|m| m.iter().next())
            .map(|(r, m)| (r.as_str(), m));
        let owned_dir = match member {
            Some((_, m)) => m.owned_dir.clone(),
            None => fallback_owned_dir(path),
        };
        for imp in imports {
            match imp.kind {
                ImportKind::Mod => {
                    for c in mod_candidates(&owned_dir, dir, imp) {
                        ctx.key(K_EXISTS, &c);
                        if self.exists(&c) {
                            ctx.edge(path, &c, imp);
                            break;
                        }
                    }
                }
                ImportKind::IncludeMacro => {
                    if let Some(p) = paths::join_norm(dir, &imp.spec) {
                        ctx.key(K_EXISTS, &p);
                        if self.exists(&p) {
                            ctx.edge(path, &p, imp);
                        }
                    }
                }
                ImportKind::Use => self.resolve_use(path, member, imp, ctx),
                _ => {}
            }
        }
    }

    fn resolve_use(
        &self,
        path: &str,
        member: Option<(&str, &Member)>,
        imp: &Import,
        ctx: &mut Ctx,
    ) {
        if let Some(rest) = imp.spec.strip_prefix("::") {
            ctx.external(rest.split("::").next().unwrap_or(""));
            return;
        }
        let segs: Vec<&str> = imp.spec.split("::").collect();
        let first = segs[0];
        let Some((root, m)) = member else {
            if !matches!(first, "crate" | "self" | "super") {
                ctx.external(first);
            }
            return;
        };
        let Some(tree) = self.crates.get(root) else {
            return;
        };
        let has = |ctx: &mut Ctx, mp: &str| {
            ctx.keys.push(module_key(root, mp));
            tree.modules.contains_key(mp)
        };
        let (mut cur, rest): (String, &[&str]) = match first {
            "crate" => (String::new(), &segs[1..]),
            "self" => (m.modpath.clone(), &segs[1..]),
            "super" => {
                let mut cur = m.modpath.clone();
                let mut i = 0;
                while i < segs.len() && segs[i] == "super" {
                    cur = match cur.rfind("::") {
                        Some(p) => cur[..p].to_string(),
                        None => String::new(),
                    };
                    i += 1;
                }
                (cur, &segs[i..])
            }
            _ => {
                // 2018 uniform paths: a child module of the current module, else a crate
                if has(ctx, &join_mod(&m.modpath, first)) {
                    (m.modpath.clone(), &segs[..])
                } else {
                    // a crate; a capitalised name is an enum or type in scope (`use Kind::*`)
                    if !first.starts_with(|c: char| c.is_ascii_uppercase()) {
                        ctx.external(first);
                    }
                    return;
                }
            }
        };
        for seg in rest {
            let next = join_mod(&cur, seg);
            if has(ctx, &next) {
                cur = next;
            } else {
                break;
            }
        }
        if let Some(target) = tree.modules.get(&cur) {
            ctx.edge(path, target, imp);
        }
    }

    // JavaScript / TypeScript --------------------------------------------------------

    fn resolve_js(&self, path: &str, imports: &[Import], ctx: &mut Ctx) {
        let dir = paths::parent(path);
        let mut config: Option<Option<TsEffective>> = None;
        ctx.ts_importer = js::is_typescript(path);
        for imp in imports {
            let spec = imp.spec.as_str();
            let relative = spec == "."
                || spec == ".."
                || spec.starts_with("./")
                || spec.starts_with("../")
                || imp.kind == ImportKind::Reference;
            if relative {
                let spec = strip_query(spec);
                if let Some(base) = paths::join_norm(dir, spec) {
                    if let Some(t) = self.js_path(ctx, &base, 0) {
                        ctx.edge(path, &t, imp);
                    }
                }
                continue;
            }
            if spec.is_empty()
                || spec.starts_with('/')
                || spec.contains(':') && !spec.starts_with('@')
            {
                if spec.contains(':') {
                    ctx.external(spec); // node:fs, https://…
                }
                continue;
            }
            let cfg = config.get_or_insert_with(|| self.ts_config(ctx, dir));
            if let Some(t) = self.js_bare(ctx, cfg.as_ref(), spec) {
                ctx.edge(path, &t, imp);
                continue;
            }
            ctx.external(package_name(spec));
        }
    }

    fn js_bare(&self, ctx: &mut Ctx, cfg: Option<&TsEffective>, spec: &str) -> Option<String> {
        if let Some(cfg) = cfg {
            if let Some((paths_base, list)) = &cfg.paths {
                // exact patterns first, then the longest prefix
                let mut best: Option<(usize, &str, &Vec<String>)> = None;
                for (pat, targets) in list {
                    match pat.split_once('*') {
                        None if pat == spec => {
                            best = Some((usize::MAX, "", targets));
                            break;
                        }
                        None => {}
                        Some((pre, suf))
                            if spec.len() >= pre.len() + suf.len()
                                && spec.starts_with(pre)
                                && spec.ends_with(suf)
                                && best.is_none_or(|b| pre.len() > b.0) =>
                        {
                            best = Some((
                                pre.len(),
                                &spec[pre.len()..spec.len() - suf.len()],
                                targets,
                            ));
                        }
                        Some(_) => {}
                    }
                }
                if let Some((_, star, targets)) = best {
                    for t in targets {
                        let sub = t.replacen('*', star, 1);
                        if let Some(base) = paths::join_norm(paths_base, &sub) {
                            if let Some(found) = self.js_path(ctx, &base, 0) {
                                return Some(found);
                            }
                        }
                    }
                }
            }
            if let Some(base_url) = &cfg.base_url {
                if let Some(base) = paths::join_norm(base_url, spec) {
                    if let Some(found) = self.js_path(ctx, &base, 0) {
                        return Some(found);
                    }
                }
            }
        }
        // a package of the repository
        let name = package_name(spec);
        ctx.key(K_NPM, name);
        let dir = self.pkg_by_name.get(name).and_then(|s| s.iter().next())?;
        let sub = spec[name.len()..].trim_start_matches('/');
        self.package_entry(ctx, dir, if sub.is_empty() { None } else { Some(sub) })
    }

    fn package_entry(&self, ctx: &mut Ctx, dir: &str, sub: Option<&str>) -> Option<String> {
        ctx.key(K_STEM, dir);
        let pkg = self.packages.get(dir)?;
        match sub {
            None => {
                for e in &pkg.entries {
                    if let Some(base) = paths::join_norm(dir, e) {
                        if let Some(found) = self.js_path(ctx, &base, 1) {
                            return Some(found);
                        }
                    }
                }
                for folder in [dir.to_string(), paths::join(dir, "src")] {
                    ctx.key(K_STEM, &folder);
                    for ext in JS_EXTS {
                        let c = format!("{}{ext}", paths::join(&folder, "index"));
                        if self.exists(&c) {
                            return Some(c);
                        }
                    }
                }
                None
            }
            Some(sub) => {
                let want = format!("./{sub}");
                for (pat, targets) in &pkg.subpaths {
                    let star = match pat.split_once('*') {
                        None if *pat == want => Some(""),
                        Some((pre, suf))
                            if want.len() >= pre.len() + suf.len()
                                && want.starts_with(pre)
                                && want.ends_with(suf) =>
                        {
                            Some(&want[pre.len()..want.len() - suf.len()])
                        }
                        _ => None,
                    };
                    if let Some(star) = star {
                        for t in targets {
                            if let Some(base) = paths::join_norm(dir, &t.replacen('*', star, 1)) {
                                if let Some(found) = self.js_path(ctx, &base, 1) {
                                    return Some(found);
                                }
                            }
                        }
                    }
                }
                let base = paths::join_norm(dir, sub)?;
                self.js_path(ctx, &base, 1)
            }
        }
    }

    /// Resolve a root-relative JS/TS path as TypeScript and Node do (see DESIGN.md).
    fn js_path(&self, ctx: &mut Ctx, base: &str, depth: u32) -> Option<String> {
        ctx.key(K_EXISTS, base);
        for probe in js::written_probes(base, ctx.ts_importer) {
            match probe {
                js::Probe::Stem(stem) => ctx.key(K_STEM, stem),
                js::Probe::File(c) if !c.is_empty() && self.exists(&c) => return Some(c),
                js::Probe::File(_) => {}
            }
        }
        ctx.key(K_STEM, base);
        for ext in JS_EXTS {
            let c = format!("{base}{ext}");
            if self.exists(&c) {
                return Some(c);
            }
        }
        if depth < 2 {
            if let Some(pkg) = self.packages.get(base) {
                for e in &pkg.entries {
                    if let Some(b) = paths::join_norm(base, e) {
                        if b != base {
                            if let Some(found) = self.js_path(ctx, &b, depth + 1) {
                                return Some(found);
                            }
                        }
                    }
                }
            }
        }
        let index = paths::join(base, "index");
        for ext in JS_EXTS {
            let c = format!("{index}{ext}");
            if self.exists(&c) {
                return Some(c);
            }
        }
        None
    }

    /// The effective tsconfig/jsconfig of a folder (nearest one, `extends` applied).
    fn ts_config(&self, ctx: &mut Ctx, dir: &str) -> Option<TsEffective> {
        for a in paths::ancestors(dir) {
            for name in ["tsconfig.json", "jsconfig.json"] {
                let p = paths::join(a, name);
                ctx.key(K_EXISTS, &p);
                if self.tsconfigs.contains_key(&p) {
                    return Some(self.ts_effective(ctx, &p, 0));
                }
            }
        }
        None
    }

    fn ts_effective(&self, ctx: &mut Ctx, path: &str, depth: u32) -> TsEffective {
        let mut eff = TsEffective::default();
        let Some(cfg) = self.tsconfigs.get(path) else {
            return eff;
        };
        let dir = paths::parent(path);
        if depth < 8 {
            for ext in &cfg.extends {
                if !(ext.starts_with("./") || ext.starts_with("../")) {
                    continue; // a package's config: not in the repository
                }
                let Some(p) = paths::join_norm(dir, ext) else {
                    continue;
                };
                let cands = [p.clone(), format!("{p}.json")];
                for c in cands {
                    ctx.key(K_EXISTS, &c);
                    if self.tsconfigs.contains_key(&c) {
                        let parent = self.ts_effective(ctx, &c, depth + 1);
                        if parent.base_url.is_some() {
                            eff.base_url = parent.base_url;
                        }
                        if parent.paths_dir.is_some() {
                            eff.paths_dir = parent.paths_dir;
                            eff.raw_paths = parent.raw_paths;
                        }
                        break;
                    }
                }
            }
        }
        if let Some(b) = &cfg.base_url {
            eff.base_url = paths::join_norm(dir, b);
        }
        if let Some(p) = &cfg.paths {
            eff.paths_dir = Some(dir.to_string());
            eff.raw_paths = p.clone();
        }
        if depth == 0 {
            if let Some(pd) = &eff.paths_dir {
                let base = eff.base_url.clone().unwrap_or_else(|| pd.clone());
                eff.paths = Some((base, std::mem::take(&mut eff.raw_paths)));
            }
        }
        eff
    }

    // Go -----------------------------------------------------------------------------

    fn resolve_go(&self, path: &str, imports: &[Import], ctx: &mut Ctx) {
        let dir = paths::parent(path);
        let mut nearest: Option<(&str, &str)> = None;
        for a in paths::ancestors(dir) {
            ctx.key(K_EXISTS, &paths::join(a, "go.mod"));
            if let Some(m) = self.go_mods.get(a) {
                nearest = Some((a, m.as_str()));
                break;
            }
        }
        for imp in imports {
            let spec = imp.spec.as_str();
            let mut pkg_dir: Option<String> = None;
            if let Some((mdir, module)) = nearest {
                if let Some(rest) = strip_module(spec, module) {
                    pkg_dir = Some(paths::join(mdir, rest));
                }
            }
            if pkg_dir.is_none() {
                // another module of the repository (longest module path first)
                let mut prefix = spec;
                loop {
                    ctx.key(K_GOMOD, prefix);
                    if let Some(d) = self.go_by_module.get(prefix).and_then(|s| s.iter().next()) {
                        pkg_dir =
                            Some(paths::join(d, spec[prefix.len()..].trim_start_matches('/')));
                        break;
                    }
                    match prefix.rfind('/') {
                        Some(i) => prefix = &prefix[..i],
                        None => break,
                    }
                }
            }
            match pkg_dir {
                Some(pd) => {
                    ctx.key(K_LISTING, &pd);
                    if let Some(names) = self.children.get(&pd) {
                        for name in names {
                            if name.ends_with(".go") && !name.ends_with("_test.go") {
                                let f = paths::join(&pd, name);
                                if self.exists(&f) {
                                    ctx.edge(path, &f, imp);
                                }
                            }
                        }
                    }
                }
                None => ctx.external(spec),
            }
        }
    }

    // C / C++ ----------------------------------------------------------------------------

    fn resolve_c(&self, path: &str, imports: &[Import], ctx: &mut Ctx) {
        let dir = paths::parent(path);
        for imp in imports {
            let angle = imp.spec.starts_with('<');
            let name = imp.spec.trim_start_matches('<').trim_end_matches('>');
            let mut cands: Vec<String> = Vec::new();
            if !angle {
                cands.extend(paths::join_norm(dir, name));
            }
            for a in paths::ancestors(dir) {
                cands.extend(paths::join_norm(&paths::join(a, "include"), name));
            }
            for p in &self.config.c_include_paths {
                cands.extend(paths::join_norm(p.trim_matches('/'), name));
            }
            let mut found = None;
            for c in cands {
                ctx.key(K_EXISTS, &c);
                if self.exists(&c) {
                    found = Some(c);
                    break;
                }
            }
            match found {
                Some(t) => ctx.edge(path, &t, imp),
                None => ctx.external(&imp.spec),
            }
        }
    }
}

/// tsconfig `paths`: (pattern, targets) in file order.
type PathPatterns = Vec<(String, Vec<String>)>;

/// The effective compiler options of a tsconfig after `extends`.
#[derive(Debug, Default, Clone)]
struct TsEffective {
    base_url: Option<String>,
    /// (folder the patterns' targets are relative to, patterns) — set at the top level only.
    paths: Option<(String, PathPatterns)>,
    paths_dir: Option<String>,
    raw_paths: PathPatterns,
}

fn module_key(root: &str, modpath: &str) -> Key {
    let mut k = String::with_capacity(root.len() + modpath.len() + 2);
    k.push(K_MODULE);
    k.push_str(root);
    k.push('\0');
    k.push_str(modpath);
    k
}

fn join_mod(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}::{b}")
    }
}

/// The `mod` declarations of a file, which shape its crate's module tree.
fn mod_sig(imports: &[Import]) -> Vec<(&str, Option<&str>)> {
    imports
        .iter()
        .filter(|i| i.kind == ImportKind::Mod)
        .map(|i| (i.spec.as_str(), i.path_attr.as_deref()))
        .collect()
}

/// Candidate files of a `mod` declaration, in order.
fn mod_candidates(owned_dir: &str, file_dir: &str, imp: &Import) -> Vec<String> {
    let parts: Vec<&str> = imp.spec.split("::").collect();
    let name = parts[parts.len() - 1];
    let inline = parts[..parts.len() - 1].join("/");
    let base = paths::join(owned_dir, &inline);
    match &imp.path_attr {
        Some(p) if inline.is_empty() => paths::join_norm(file_dir, p).into_iter().collect(),
        Some(p) => paths::join_norm(&base, p).into_iter().collect(),
        None => vec![
            paths::join(&base, &format!("{name}.rs")),
            paths::join(&base, &format!("{name}/mod.rs")),
        ],
    }
}

/// Folder owned by a module file reached by a `mod` declaration.
fn child_owned_dir(target: &str, by_path_attr: bool) -> String {
    let name = paths::file_name(target);
    if by_path_attr || name == "mod.rs" {
        paths::parent(target).to_string()
    } else {
        paths::join(paths::parent(target), name.trim_end_matches(".rs"))
    }
}

/// Folder owned by a Rust file that no crate reaches (by its name alone).
fn fallback_owned_dir(path: &str) -> String {
    let name = paths::file_name(path);
    let dir = paths::parent(path);
    let dir_name = paths::file_name(dir);
    if matches!(name, "mod.rs" | "lib.rs" | "main.rs" | "build.rs")
        || matches!(dir_name, "bin" | "tests" | "benches" | "examples")
    {
        dir.to_string()
    } else {
        paths::join(dir, name.trim_end_matches(".rs"))
    }
}

fn strip_module<'a>(spec: &'a str, module: &str) -> Option<&'a str> {
    if spec == module {
        Some("")
    } else {
        spec.strip_prefix(module)?.strip_prefix('/')
    }
}

fn strip_query(spec: &str) -> &str {
    match spec.find(['?', '#']) {
        Some(i) => &spec[..i],
        None => spec,
    }
}

/// `react/jsx-runtime` → `react`, `@scope/pkg/x` → `@scope/pkg`.
fn package_name(spec: &str) -> &str {
    let mut it = spec.match_indices('/');
    let cut = if spec.starts_with('@') {
        it.nth(1)
    } else {
        it.next()
    };
    match cut {
        Some((i, _)) => &spec[..i],
        None => spec,
    }
}
