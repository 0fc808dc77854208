//! Export of the whole graph or a part of it as Graphviz DOT, Mermaid flowchart or JSON.
//!
//! Node identifiers in DOT and Mermaid are synthetic (`n0`, `n1`, … in path order), so no file
//! name can break the syntax; names appear only in labels, escaped for each format:
//! DOT uses HTML-like labels (`label=<…>`: only `&`, `<`, `>`, `"` need entities, and a
//! backslash is a plain character, which a quoted DOT string cannot guarantee since `\"` at
//! the end of a name would swallow the closing quote); Mermaid labels are quoted and every
//! character outside a small safe set is written as a `#<decimal>;` entity; JSON strings are
//! escaped per RFC 8259. Control characters, which neither Graphviz (XML) nor Mermaid accept,
//! are shown as visible `\xNN` text in DOT and Mermaid and escaped in JSON. Names that were not
//! valid UTF-8 arrive here already converted (lossily) by the caller.

use std::fmt::Write as _;

use super::query::Way;
use super::{DepGraph, GraphError};

/// Which way a `from`/`depth` filter walks from its file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Direction {
    /// What the file imports, transitively.
    Dependencies,
    /// What imports the file, transitively.
    Dependents,
    /// Both, each followed on its own (the neighbourhood of the file).
    #[default]
    Both,
}

/// Which part of the graph to export. The default exports everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ExportFilter {
    /// Keep only files of this component.
    pub component: Option<String>,
    /// Keep only files within `depth` edges of this file (and the file itself).
    pub from: Option<String>,
    /// Edges from `from` (`None`: unbounded); an error without `from`.
    pub depth: Option<usize>,
    /// Which way `from` is followed.
    pub direction: Direction,
}

/// The selected nodes (sorted ids) and edges (pairs of positions in that node list, plus the
/// edge's kind and line), sorted.
struct Selection {
    nodes: Vec<u32>,
    edges: Vec<(usize, usize, u32, u32)>,
}

impl DepGraph {
    /// Nodes kept by a filter: the component's files, intersected with the files within
    /// `depth` of `from` (in `direction`); edges between kept nodes.
    fn select(&self, filter: &ExportFilter) -> Result<Selection, GraphError> {
        let n = self.len();
        let mut keep = vec![true; n];
        if let Some(c) = &filter.component {
            let ci = self
                .components
                .binary_search(c)
                .map_err(|_| GraphError::UnknownComponent(c.clone()))?;
            for (v, k) in keep.iter_mut().enumerate() {
                *k = self.component[v] as usize == ci;
            }
        }
        match (&filter.from, filter.depth) {
            (None, Some(_)) => return Err(GraphError::DepthWithoutFrom),
            (None, None) => {}
            (Some(from), depth) => {
                let id = self.id(from)?;
                let mut near = vec![false; n];
                near[id as usize] = true;
                let ways: &[Way] = match filter.direction {
                    Direction::Dependencies => &[Way::Forward],
                    Direction::Dependents => &[Way::Backward],
                    Direction::Both => &[Way::Forward, Way::Backward],
                };
                for &way in ways {
                    for v in self.bfs(&[id], way, depth, None).order {
                        near[v as usize] = true;
                    }
                }
                for (k, nr) in keep.iter_mut().zip(near) {
                    *k &= nr;
                }
            }
        }
        let nodes: Vec<u32> = (0..n as u32).filter(|&v| keep[v as usize]).collect();
        let mut pos = vec![usize::MAX; n];
        for (i, &v) in nodes.iter().enumerate() {
            pos[v as usize] = i;
        }
        let mut edges = Vec::new();
        for (i, &v) in nodes.iter().enumerate() {
            for o in self.out(v) {
                let j = pos[o.to as usize];
                if j != usize::MAX {
                    edges.push((i, j, o.kind, o.line));
                }
            }
        }
        Ok(Selection { nodes, edges })
    }

    /// The selected nodes (positions in `sel.nodes`) grouped by component, components by name.
    fn groups(&self, sel: &Selection) -> Vec<(&str, Vec<usize>)> {
        let mut by_comp: Vec<(u32, usize)> = sel
            .nodes
            .iter()
            .enumerate()
            .map(|(i, &v)| (self.component[v as usize], i))
            .collect();
        by_comp.sort_unstable();
        let mut out: Vec<(&str, Vec<usize>)> = Vec::new();
        let mut last = u32::MAX;
        for (comp, i) in by_comp {
            if comp != last {
                out.push((&self.components[comp as usize], Vec::new()));
                last = comp;
            }
            if let Some(g) = out.last_mut() {
                g.1.push(i);
            }
        }
        out
    }

    /// Graphviz DOT of the filtered graph: one cluster per non-empty component, nodes labelled
    /// with their path, edges with a tooltip giving kind and line. `dot -Tsvg` renders it.
    pub fn to_dot(&self, filter: &ExportFilter) -> Result<String, GraphError> {
        let sel = self.select(filter)?;
        let mut s = String::new();
        s.push_str("digraph dependencies {\n");
        s.push_str("  graph [rankdir=LR];\n");
        s.push_str("  node [shape=box, fontname=\"monospace\"];\n");
        let mut cluster = 0;
        for (name, members) in self.groups(&sel) {
            let indent = if name.is_empty() { "  " } else { "    " };
            if !name.is_empty() {
                let _ = writeln!(s, "  subgraph cluster_{cluster} {{");
                let _ = writeln!(s, "    label=<{}>;", dot_html(name));
                cluster += 1;
            }
            for i in members {
                let _ = writeln!(
                    s,
                    "{indent}n{i} [label=<{}>];",
                    dot_html(self.name(sel.nodes[i]))
                );
            }
            if !name.is_empty() {
                s.push_str("  }\n");
            }
        }
        for &(a, b, kind, line) in &sel.edges {
            let _ = writeln!(
                s,
                "  n{a} -> n{b} [tooltip=<{} line {line}>];",
                dot_html(&self.kinds[kind as usize])
            );
        }
        s.push_str("}\n");
        Ok(s)
    }

    /// Mermaid flowchart of the filtered graph (paste into Markdown inside a ```` ```mermaid ````
    /// block): one subgraph per non-empty component, nodes labelled with their path. Mermaid's
    /// renderer limits text size and edge count (`maxTextSize`, `maxEdges`): filter large graphs.
    pub fn to_mermaid(&self, filter: &ExportFilter) -> Result<String, GraphError> {
        let sel = self.select(filter)?;
        let mut s = String::from("flowchart LR\n");
        let mut sub = 0;
        for (name, members) in self.groups(&sel) {
            let indent = if name.is_empty() { "  " } else { "    " };
            if !name.is_empty() {
                let _ = writeln!(s, "  subgraph c{sub}[\"{}\"]", mermaid_text(name));
                sub += 1;
            }
            for i in members {
                let _ = writeln!(
                    s,
                    "{indent}n{i}[\"{}\"]",
                    mermaid_text(self.name(sel.nodes[i]))
                );
            }
            if !name.is_empty() {
                s.push_str("  end\n");
            }
        }
        for &(a, b, _, _) in &sel.edges {
            let _ = writeln!(s, "  n{a} --> n{b}");
        }
        Ok(s)
    }

    /// JSON of the filtered graph: `{"nodes": [{"path", "component", "purpose"}…],
    /// "edges": [{"from", "to", "kind", "line"}…]}`, nodes by path, edges by (from, to).
    pub fn to_json(&self, filter: &ExportFilter) -> Result<String, GraphError> {
        let sel = self.select(filter)?;
        let mut s = String::from("{\"nodes\": [");
        for (i, &v) in sel.nodes.iter().enumerate() {
            s.push_str(if i == 0 { "\n  " } else { ",\n  " });
            let _ = write!(
                s,
                "{{\"path\": {}, \"component\": {}, \"purpose\": {}}}",
                json_string(self.name(v)),
                json_string(&self.components[self.component[v as usize] as usize]),
                json_string(&self.purposes[self.purpose[v as usize] as usize]),
            );
        }
        s.push_str(if sel.nodes.is_empty() {
            "],\n"
        } else {
            "\n],\n"
        });
        s.push_str("\"edges\": [");
        for (i, &(a, b, kind, line)) in sel.edges.iter().enumerate() {
            s.push_str(if i == 0 { "\n  " } else { ",\n  " });
            let _ = write!(
                s,
                "{{\"from\": {}, \"to\": {}, \"kind\": {}, \"line\": {line}}}",
                json_string(self.name(sel.nodes[a])),
                json_string(self.name(sel.nodes[b])),
                json_string(&self.kinds[kind as usize]),
            );
        }
        s.push_str(if sel.edges.is_empty() {
            "]}\n"
        } else {
            "\n]}\n"
        });
        Ok(s)
    }
}

/// Text for a Graphviz HTML-like label: XML entities for the markup characters, visible `\xNN`
/// for control characters, U+FFFD for the two non-characters XML refuses.
pub(super) fn dot_html(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            '\u{FFFE}' | '\u{FFFF}' => s.push('\u{FFFD}'),
            c if c.is_control() => {
                let _ = write!(s, "\\x{:02X}", c as u32);
            }
            c => s.push(c),
        }
    }
    s
}

/// Text for a quoted Mermaid label: ASCII letters, digits, space and `/._-+,:@~` as they are,
/// other non-ASCII characters as they are except whitespace (U+2028 ends a line for the
/// parser), everything else (quotes, `#`, `;`, `<`,
/// `&`, brackets, backticks, …) as a `#<decimal>;` entity, control characters as visible
/// `\xNN` (with the backslash itself an entity).
pub(super) fn mermaid_text(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            'a'..='z'
            | 'A'..='Z'
            | '0'..='9'
            | ' '
            | '/'
            | '.'
            | '_'
            | '-'
            | '+'
            | ','
            | ':'
            | '@'
            | '~' => s.push(c),
            c if c.is_control() => {
                let _ = write!(s, "#92;x{:02X}", c as u32);
            }
            c if !c.is_ascii() && !c.is_whitespace() => s.push(c),
            c => {
                let _ = write!(s, "#{};", c as u32);
            }
        }
    }
    s
}

/// A JSON string literal (RFC 8259).
pub(super) fn json_string(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('"');
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7F}' => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}
