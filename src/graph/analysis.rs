//! Whole-graph analyses: cycles (strongly connected components), orphans, components and the
//! edges between them, and PageRank.

use std::collections::BTreeMap;

use super::query::Way;
use super::DepGraph;

/// Purposes [`DepGraph::orphans`] looks at when given none: source files only, so tests,
/// configs and docs (which nothing is expected to import) are not noise.
pub const DEFAULT_ORPHAN_PURPOSES: &[&str] = &["source"];

/// PageRank damping factor.
const DAMPING: f64 = 0.85;
/// PageRank stops when the L1 change of an iteration falls below this…
const TOLERANCE: f64 = 1e-10;
/// …or after this many iterations, whichever comes first.
const MAX_ITERATIONS: usize = 100;

/// A dependency cycle: a strongly connected component of two or more files, or one file that
/// imports itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cycle {
    /// The files of the component, sorted.
    pub files: Vec<String>,
    /// One concrete cycle for people to read: a shortest chain of imports from the first file
    /// back to itself (first and last element are that file).
    pub example: Vec<String>,
}

/// A component and its files.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Component {
    /// Component name (empty for files without a component).
    pub name: String,
    /// Its files, sorted.
    pub files: Vec<String>,
    /// Number of edges between two files of this component.
    pub internal_edges: usize,
}

/// Edges from files of one component to files of another.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentEdge {
    /// The importing component.
    pub from: String,
    /// The imported component.
    pub to: String,
    /// Number of file-level edges between them.
    pub edges: usize,
}

/// The answer of [`DepGraph::components`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ComponentGraph {
    /// Components sorted by name.
    pub components: Vec<Component>,
    /// Edges between distinct components, sorted by (from, to).
    pub edges: Vec<ComponentEdge>,
}

/// A file and how much depends on it.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedFile {
    /// The file.
    pub path: String,
    /// Its PageRank (all scores of the graph sum to 1).
    pub score: f64,
    /// Number of files importing it directly (itself excluded).
    pub dependents: usize,
}

/// Whether a file is an entry point that nothing is expected to import, by its path alone:
///
/// - Rust crate roots: `main.rs`, `lib.rs`, `build.rs`, and any `.rs` directly in a `bin/`,
///   `examples/` or `benches/` folder (or `bin/<name>/main.rs`, covered by `main.rs`);
/// - Python: `__main__.py`, `__init__.py` (a package's own entry: its importers name the
///   package), `setup.py`, `conftest.py`, `manage.py`;
/// - JavaScript/TypeScript: `index.*` and `main.*` (any JS/TS extension) and declaration files
///   `*.d.ts` (the compiler loads them without an import);
/// - Go: `main.go`;
/// - C/C++: every translation unit (`.c`, `.cc`, `.cpp`, `.cxx`, `.c++`, `.m`, `.mm`): the build
///   compiles them, nothing `#include`s them; only headers can be orphans.
pub fn is_entry_point(path: &str) -> bool {
    let (folder, name) = path.rsplit_once('/').unwrap_or(("", path));
    let parent = folder.rsplit('/').next().unwrap_or("");
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i + 1..]),
        _ => (name, ""),
    };
    match ext {
        "rs" => {
            matches!(stem, "main" | "lib" | "build")
                || matches!(parent, "bin" | "examples" | "benches")
        }
        "py" => matches!(
            stem,
            "__main__" | "__init__" | "setup" | "conftest" | "manage"
        ),
        "js" | "jsx" | "mjs" | "cjs" | "ts" | "tsx" | "mts" | "cts" => {
            matches!(stem, "index" | "main") || name.ends_with(".d.ts")
        }
        "go" => stem == "main",
        "c" | "cc" | "cpp" | "cxx" | "c++" | "m" | "mm" => true,
        _ => false,
    }
}

impl DepGraph {
    /// Dependency cycles, largest first (ties by first file): every strongly connected
    /// component of two or more files, and every file importing itself. Tarjan's algorithm,
    /// iterative (an explicit stack: no recursion depth limit), O(files + edges).
    pub fn cycles(&self) -> Vec<Cycle> {
        let mut sccs: Vec<Vec<u32>> = self
            .strongly_connected()
            .into_iter()
            .filter(|c| c.len() > 1 || self.out(c[0]).iter().any(|o| o.to == c[0]))
            .collect();
        for c in sccs.iter_mut() {
            c.sort_unstable();
        }
        sccs.sort_unstable_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
        sccs.into_iter()
            .map(|c| Cycle {
                example: self.example_cycle(&c),
                files: c.iter().map(|&v| self.name(v).to_string()).collect(),
            })
            .collect()
    }

    /// Tarjan's SCC algorithm with an explicit call stack of (node, next edge offset).
    fn strongly_connected(&self) -> Vec<Vec<u32>> {
        const UNVISITED: u32 = u32::MAX;
        let n = self.len();
        let mut index = vec![UNVISITED; n];
        let mut low = vec![0u32; n];
        let mut on_stack = vec![false; n];
        let mut stack: Vec<u32> = Vec::new();
        let mut call: Vec<(u32, u32)> = Vec::new();
        let mut next_index = 0u32;
        let mut out = Vec::new();
        for s in 0..n as u32 {
            if index[s as usize] != UNVISITED {
                continue;
            }
            index[s as usize] = next_index;
            low[s as usize] = next_index;
            next_index += 1;
            stack.push(s);
            on_stack[s as usize] = true;
            call.push((s, self.fwd_off[s as usize]));
            while let Some(top) = call.last_mut() {
                let v = top.0;
                let end = self.fwd_off[v as usize + 1];
                if top.1 < end {
                    let w = self.fwd[top.1 as usize].to;
                    top.1 += 1;
                    if index[w as usize] == UNVISITED {
                        index[w as usize] = next_index;
                        low[w as usize] = next_index;
                        next_index += 1;
                        stack.push(w);
                        on_stack[w as usize] = true;
                        call.push((w, self.fwd_off[w as usize]));
                    } else if on_stack[w as usize] {
                        low[v as usize] = low[v as usize].min(index[w as usize]);
                    }
                    continue;
                }
                call.pop();
                if let Some(&(p, _)) = call.last() {
                    low[p as usize] = low[p as usize].min(low[v as usize]);
                }
                if low[v as usize] == index[v as usize] {
                    let mut comp = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w as usize] = false;
                        comp.push(w);
                        if w == v {
                            break;
                        }
                    }
                    out.push(comp);
                }
            }
        }
        out
    }

    /// A shortest cycle through the first (smallest) file of a sorted SCC.
    fn example_cycle(&self, scc: &[u32]) -> Vec<String> {
        let start = scc[0];
        let name = |v: u32| self.name(v).to_string();
        if self.out(start).iter().any(|o| o.to == start) {
            return vec![name(start), name(start)];
        }
        // BFS from the start's successors inside the SCC back to the start: a shortest cycle
        let succ: Vec<u32> = self
            .out(start)
            .iter()
            .map(|o| o.to)
            .filter(|w| scc.binary_search(w).is_ok())
            .collect();
        let bfs = self.bfs(&succ, Way::Forward, None, Some(start));
        let mut best: Option<Vec<String>> = None;
        // the BFS has several sources: walk back from the start to whichever source found it
        if bfs.dist[start as usize] != u32::MAX {
            let mut ids = vec![start];
            let mut cur = start;
            while bfs.dist[cur as usize] != 0 {
                cur = bfs.parent[cur as usize];
                ids.push(cur);
            }
            ids.push(start);
            ids.reverse();
            best = Some(ids.into_iter().map(name).collect());
        }
        best.unwrap_or_else(|| vec![name(start)])
    }

    /// Files that no other file imports, whose purpose is one of `purposes` (empty slice:
    /// [`DEFAULT_ORPHAN_PURPOSES`], i.e. `source`), sorted. Only files in a language whose
    /// imports are resolved (see [`crate::deps::Lang::from_path`]) are considered, since for
    /// other files "nothing imports it" means nothing; entry points ([`is_entry_point`]) are
    /// left out. A file importing only itself still counts as an orphan.
    pub fn orphans(&self, purposes: &[&str]) -> Vec<String> {
        let purposes = if purposes.is_empty() {
            DEFAULT_ORPHAN_PURPOSES
        } else {
            purposes
        };
        let wanted: Vec<bool> = self
            .purposes
            .iter()
            .map(|p| purposes.contains(&p.as_str()))
            .collect();
        (0..self.len() as u32)
            .filter(|&v| {
                wanted[self.purpose[v as usize] as usize]
                    && self.importers(v).iter().all(|&f| f == v)
                    && crate::deps::Lang::from_path(self.name(v)).is_some()
                    && !is_entry_point(self.name(v))
            })
            .map(|v| self.name(v).to_string())
            .collect()
    }

    /// Components with their files, and the number of file edges between each pair of
    /// distinct components.
    pub fn components(&self) -> ComponentGraph {
        let k = self.components.len();
        let mut files: Vec<Vec<String>> = vec![Vec::new(); k];
        for v in 0..self.len() {
            files[self.component[v] as usize].push(self.paths[v].clone());
        }
        let mut internal = vec![0usize; k];
        let mut between: BTreeMap<(u32, u32), usize> = BTreeMap::new();
        for v in 0..self.len() as u32 {
            let cv = self.component[v as usize];
            for o in self.out(v) {
                let cw = self.component[o.to as usize];
                if cv == cw {
                    internal[cv as usize] += 1;
                } else {
                    *between.entry((cv, cw)).or_default() += 1;
                }
            }
        }
        ComponentGraph {
            components: files
                .into_iter()
                .enumerate()
                .map(|(i, files)| Component {
                    name: self.components[i].clone(),
                    files,
                    internal_edges: internal[i],
                })
                .collect(),
            edges: between
                .into_iter()
                .map(|((a, b), edges)| ComponentEdge {
                    from: self.components[a as usize].clone(),
                    to: self.components[b as usize].clone(),
                    edges,
                })
                .collect(),
        }
    }

    /// The `limit` files most depended upon, by PageRank over the import edges (rank flows from
    /// importer to imported; damping 0.85; files importing nothing spread their rank evenly;
    /// self-imports ignored; iterated until the L1 change is below 1e-10 or 100 iterations).
    /// Sorted by score descending, then path.
    pub fn rank(&self, limit: usize) -> Vec<RankedFile> {
        let n = self.len();
        if n == 0 || limit == 0 {
            return Vec::new();
        }
        let nf = n as f64;
        let out_degree: Vec<u32> = (0..n as u32)
            .map(|v| self.out(v).iter().filter(|o| o.to != v).count() as u32)
            .collect();
        let mut pr = vec![1.0 / nf; n];
        let mut next = vec![0.0; n];
        for _ in 0..MAX_ITERATIONS {
            let dangling: f64 = (0..n).filter(|&v| out_degree[v] == 0).map(|v| pr[v]).sum();
            let base = (1.0 - DAMPING) / nf + DAMPING * dangling / nf;
            let mut change = 0.0;
            for v in 0..n as u32 {
                let inflow: f64 = self
                    .importers(v)
                    .iter()
                    .filter(|&&u| u != v)
                    .map(|&u| pr[u as usize] / out_degree[u as usize] as f64)
                    .sum();
                let value = base + DAMPING * inflow;
                change += (value - pr[v as usize]).abs();
                next[v as usize] = value;
            }
            std::mem::swap(&mut pr, &mut next);
            if change < TOLERANCE {
                break;
            }
        }
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_unstable_by(|&a, &b| pr[b as usize].total_cmp(&pr[a as usize]).then(a.cmp(&b)));
        order
            .into_iter()
            .take(limit)
            .map(|v| RankedFile {
                path: self.name(v).to_string(),
                score: pr[v as usize],
                dependents: self.importers(v).iter().filter(|&&u| u != v).count(),
            })
            .collect()
    }
}
