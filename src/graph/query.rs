//! Traversals: dependencies and dependents to a depth, related files, affected files with
//! witness paths, and shortest dependency paths. Every traversal is a level-by-level BFS whose
//! levels are visited in id (= path) order, so depths are minimal and ties break the same way
//! every time.

use super::{DepGraph, GraphError};

/// A file reached by a traversal, with its distance in edges from the start.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reached {
    /// The file reached.
    pub path: String,
    /// Number of edges from the starting file (1 = direct).
    pub depth: usize,
}

/// Why a file is related to another (see [`DepGraph::related`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Relation {
    /// The file is a (transitive) dependency: the start imports it.
    Dependency,
    /// The file is a (transitive) dependent: it imports the start.
    Dependent,
    /// Both at once (the two files are on a cycle).
    Both,
    /// Not connected within the depth, but in the same component.
    SameComponent,
}

impl Relation {
    /// Lowercase name (`dependency`, `dependent`, `both`, `same-component`).
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Dependency => "dependency",
            Relation::Dependent => "dependent",
            Relation::Both => "both",
            Relation::SameComponent => "same-component",
        }
    }
}

/// A file related to the queried one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Related {
    /// The related file.
    pub path: String,
    /// How it is related.
    pub relation: Relation,
    /// Edges from the queried file (the shorter way for [`Relation::Both`]); 2 for
    /// [`Relation::SameComponent`] (file → component → file).
    pub distance: usize,
}

/// A file affected by a change, with the chain of imports that makes it so.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Affected {
    /// The affected file.
    pub path: String,
    /// Length of the shortest import chain to a changed file.
    pub depth: usize,
    /// That chain: `path` first, the changed file last; each file imports the next.
    pub witness: Vec<String>,
}

/// The answer of [`DepGraph::affected`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AffectedSet {
    /// Affected files sorted by (depth, path); the changed files themselves are not listed.
    pub files: Vec<Affected>,
    /// Changed paths that are not in the graph (e.g. deleted files), sorted; they affect nothing.
    pub unknown: Vec<String>,
}

const UNSEEN: u32 = u32::MAX;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Way {
    /// Along imports: from a file to what it imports.
    Forward,
    /// Against imports: from a file to its importers.
    Backward,
}

/// Result of a BFS: distances and parents of every node, and the reached nodes (not the
/// sources) in (depth, id) order.
pub(super) struct Bfs {
    pub(super) dist: Vec<u32>,
    pub(super) parent: Vec<u32>,
    pub(super) order: Vec<u32>,
}

impl DepGraph {
    /// Level-by-level BFS from `sources` (sorted, distinct) up to `depth` edges (`None`:
    /// unbounded); stops after the level that reaches `stop_at`.
    pub(super) fn bfs(
        &self,
        sources: &[u32],
        way: Way,
        depth: Option<usize>,
        stop_at: Option<u32>,
    ) -> Bfs {
        let n = self.len();
        let mut dist = vec![UNSEEN; n];
        let mut parent = vec![UNSEEN; n];
        let mut order = Vec::new();
        for &s in sources {
            dist[s as usize] = 0;
        }
        let mut frontier: Vec<u32> = sources.to_vec();
        let mut d = 0usize;
        while !frontier.is_empty() && depth.is_none_or(|m| d < m) {
            d += 1;
            let mut next = Vec::new();
            for &u in &frontier {
                let mut visit = |w: u32| {
                    if dist[w as usize] == UNSEEN {
                        dist[w as usize] = d as u32;
                        parent[w as usize] = u;
                        next.push(w);
                    }
                };
                match way {
                    Way::Forward => self.out(u).iter().for_each(|o| visit(o.to)),
                    Way::Backward => self.importers(u).iter().for_each(|&w| visit(w)),
                }
            }
            next.sort_unstable();
            order.extend_from_slice(&next);
            if stop_at.is_some_and(|t| dist[t as usize] != UNSEEN) {
                break;
            }
            frontier = next;
        }
        Bfs {
            dist,
            parent,
            order,
        }
    }

    fn reached(&self, bfs: &Bfs) -> Vec<Reached> {
        bfs.order
            .iter()
            .map(|&v| Reached {
                path: self.name(v).to_string(),
                depth: bfs.dist[v as usize] as usize,
            })
            .collect()
    }

    /// Files `path` imports, directly or through others, up to `depth` edges (`None`: all),
    /// sorted by (depth, path). The file itself is not listed, even on a cycle.
    pub fn dependencies(
        &self,
        path: &str,
        depth: Option<usize>,
    ) -> Result<Vec<Reached>, GraphError> {
        let id = self.id(path)?;
        Ok(self.reached(&self.bfs(&[id], Way::Forward, depth, None)))
    }

    /// Files that import `path`, directly or through others, up to `depth` edges (`None`: all),
    /// sorted by (depth, path). The file itself is not listed, even on a cycle.
    pub fn dependents(&self, path: &str, depth: Option<usize>) -> Result<Vec<Reached>, GraphError> {
        let id = self.id(path)?;
        Ok(self.reached(&self.bfs(&[id], Way::Backward, depth, None)))
    }

    /// Files related to `path`, as the original `get_related_files(path, max_depth=2)` ("files
    /// related through dependencies or type"), made exact:
    ///
    /// 1. its dependencies and its dependents, each within `depth` edges, each direction
    ///    followed on its own (a file sharing a dependency with `path` is *not* related
    ///    through it: a popular utility would make everything related), sorted by
    ///    (distance, path); a file reached both ways is [`Relation::Both`] at the shorter
    ///    distance;
    /// 2. then, when `depth >= 2` (file → component → file is two steps, as in the knowledge
    ///    graph), the other files of its component (none when its component is empty), nearest
    ///    folders first (steps between the two files' folders in the folder tree), then by path.
    pub fn related(&self, path: &str, depth: usize) -> Result<Vec<Related>, GraphError> {
        let id = self.id(path)?;
        let down = self.bfs(&[id], Way::Forward, Some(depth), None);
        let up = self.bfs(&[id], Way::Backward, Some(depth), None);
        let mut linked: Vec<(usize, u32, Relation)> = Vec::new();
        for &v in &down.order {
            let dd = down.dist[v as usize];
            let du = up.dist[v as usize];
            if du != UNSEEN {
                linked.push((dd.min(du) as usize, v, Relation::Both));
            } else {
                linked.push((dd as usize, v, Relation::Dependency));
            }
        }
        for &v in &up.order {
            if down.dist[v as usize] == UNSEEN {
                linked.push((up.dist[v as usize] as usize, v, Relation::Dependent));
            }
        }
        linked.sort_unstable_by_key(|&(d, v, _)| (d, v));
        let mut out: Vec<Related> = linked
            .iter()
            .map(|&(distance, v, relation)| Related {
                path: self.name(v).to_string(),
                relation,
                distance,
            })
            .collect();

        let comp = self.component[id as usize];
        if depth >= 2 && !self.components[comp as usize].is_empty() {
            let mut same: Vec<(usize, u32)> = (0..self.len() as u32)
                .filter(|&v| {
                    v != id
                        && self.component[v as usize] == comp
                        && down.dist[v as usize] == UNSEEN
                        && up.dist[v as usize] == UNSEEN
                })
                .map(|v| (folder_distance(path, self.name(v)), v))
                .collect();
            same.sort_unstable();
            out.extend(same.into_iter().map(|(_, v)| Related {
                path: self.name(v).to_string(),
                relation: Relation::SameComponent,
                distance: 2,
            }));
        }
        Ok(out)
    }

    /// Every file that transitively imports any of `changed`, up to `max_depth` edges (`None`:
    /// all), each with a shortest witness chain to a changed file. Changed paths unknown to the
    /// graph are reported in [`AffectedSet::unknown`] instead of failing the query, so a change
    /// set with deleted files can be passed as is.
    pub fn affected<S: AsRef<str>>(&self, changed: &[S], max_depth: Option<usize>) -> AffectedSet {
        let mut sources = Vec::new();
        let mut unknown = Vec::new();
        for p in changed {
            match self.ids.get(p.as_ref()) {
                Some(&id) => sources.push(id),
                None => unknown.push(p.as_ref().to_string()),
            }
        }
        sources.sort_unstable();
        sources.dedup();
        unknown.sort_unstable();
        unknown.dedup();
        let bfs = self.bfs(&sources, Way::Backward, max_depth, None);
        let files = bfs
            .order
            .iter()
            .map(|&v| {
                let depth = bfs.dist[v as usize] as usize;
                let mut witness = Vec::with_capacity(depth + 1);
                let mut cur = v;
                witness.push(self.name(cur).to_string());
                while bfs.dist[cur as usize] != 0 {
                    cur = bfs.parent[cur as usize];
                    witness.push(self.name(cur).to_string());
                }
                Affected {
                    path: self.name(v).to_string(),
                    depth,
                    witness,
                }
            })
            .collect();
        AffectedSet { files, unknown }
    }

    /// A shortest chain of imports from `from` to `to` (both included; each file imports the
    /// next), or `None` when `to` is not reachable. `path(a, a)` is `[a]`. Among equally short
    /// chains the one through the smallest paths, level by level, is chosen.
    pub fn path(&self, from: &str, to: &str) -> Result<Option<Vec<String>>, GraphError> {
        let f = self.id(from)?;
        let t = self.id(to)?;
        if f == t {
            return Ok(Some(vec![from.to_string()]));
        }
        let bfs = self.bfs(&[f], Way::Forward, None, Some(t));
        Ok(self.chain(&bfs, f, t))
    }

    /// The BFS tree path from a source `f` to `t`, if `t` was reached.
    pub(super) fn chain(&self, bfs: &Bfs, f: u32, t: u32) -> Option<Vec<String>> {
        if bfs.dist[t as usize] == UNSEEN {
            return None;
        }
        let mut ids = vec![t];
        let mut cur = t;
        while cur != f {
            cur = bfs.parent[cur as usize];
            ids.push(cur);
        }
        ids.reverse();
        Some(ids.iter().map(|&v| self.name(v).to_string()).collect())
    }
}

/// Steps between the folders of two paths in the folder tree: 0 for the same folder, 1 for a
/// parent or child folder, 2 for a sibling folder, and so on.
fn folder_distance(a: &str, b: &str) -> usize {
    let (fa, fb) = (folders(a), folders(b));
    let shared = fa.iter().zip(&fb).take_while(|(x, y)| x == y).count();
    fa.len() + fb.len() - 2 * shared
}

/// The folders of a path, outermost first (none for a file at the root).
fn folders(path: &str) -> Vec<&str> {
    match path.rsplit_once('/') {
        Some((d, _)) => d.split('/').collect(),
        None => Vec::new(),
    }
}
