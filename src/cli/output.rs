//! Human tables and JSON lines.

use std::io::{IsTerminal, Write};

use serde_json::{json, Value};

use workflowdb::proto;

/// Where and how results are printed.
pub struct Output {
    pub json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Output { json }
    }

    /// Prints one JSON value on its own line.
    pub fn json_line(&self, v: &Value) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{v}");
    }

    /// Prints lines of text.
    pub fn text(&self, s: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{s}");
    }
}

fn kind_name(kind: i32) -> &'static str {
    match proto::FileKind::try_from(kind).unwrap_or(proto::FileKind::Unspecified) {
        proto::FileKind::Regular => "file",
        proto::FileKind::Symlink => "symlink",
        proto::FileKind::Fifo => "fifo",
        proto::FileKind::Socket => "socket",
        proto::FileKind::BlockDevice => "block_device",
        proto::FileKind::CharDevice => "char_device",
        proto::FileKind::Unspecified => "unknown",
    }
}

/// A file record as JSON, with the field names of the catalog.
pub fn file_json(f: &proto::FileInfo) -> Value {
    let mut v = json!({
        "path": f.path,
        "kind": kind_name(f.kind),
        "file_type": f.file_type,
        "purpose": f.purpose,
        "description": f.description,
        "component": f.component,
        "size_bytes": f.size_bytes,
        "mtime_ns": f.mtime_ns,
        "last_modified": f.last_modified,
        "sha256": f.sha256,
        "checksum": f.checksum,
        "dependencies": f.dependencies,
        "externals": f.externals,
        "dependencies_pending": f.dependencies_pending,
        "related_agents": f.related_agents,
        "clock": f.clock,
    });
    if !f.path_bytes.is_empty() {
        v["path_bytes_hex"] = json!(hex(&f.path_bytes));
    }
    if !f.symlink_target.is_empty() {
        v["symlink_target"] = json!(f.symlink_target);
    }
    if !f.error.is_empty() {
        v["error"] = json!(f.error);
    }
    v
}

/// Bytes as lowercase hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Scan figures as JSON.
pub fn report_json(r: &proto::ScanReport) -> Value {
    json!({
        "started_at": r.started_at,
        "duration_ms": r.duration_ms,
        "files_seen": r.files_seen,
        "files_hashed": r.files_hashed,
        "files_skipped": r.files_skipped,
        "files_added": r.files_added,
        "files_modified": r.files_modified,
        "files_removed": r.files_removed,
        "bytes_hashed": r.bytes_hashed,
        "errors": r.errors,
        "reason": r.reason,
    })
}

/// A histogram as the metrics module reads it (for quantile estimates).
pub fn histogram_snapshot(h: &proto::Histogram) -> workflowdb::metrics::HistogramSnapshot {
    workflowdb::metrics::HistogramSnapshot {
        bounds: h.bounds.clone(),
        cumulative: h.cumulative_counts.clone(),
        sum: h.sum,
        count: h.count,
    }
}

fn histogram_json(h: Option<&proto::Histogram>) -> Value {
    let Some(h) = h else { return Value::Null };
    let q = histogram_snapshot(h);
    json!({
        "bounds": h.bounds,
        "cumulative_counts": h.cumulative_counts,
        "sum": h.sum,
        "count": h.count,
        "p50": q.quantile(0.5),
        "p99": q.quantile(0.99),
    })
}

fn count_map(v: &[proto::CountEntry]) -> Value {
    Value::Object(
        v.iter()
            .map(|c| (c.key.clone(), json!(c.count)))
            .collect::<serde_json::Map<_, _>>(),
    )
}

/// The daemon's metrics as JSON: every figure, histograms with their buckets and estimated
/// p50/p99.
pub fn metrics_json(m: &proto::DaemonMetrics) -> Value {
    let roots: Vec<Value> = m
        .roots
        .iter()
        .map(|r| {
            json!({
                "root": r.root,
                "root_id": r.root_id,
                "files": r.files,
                "bytes": r.bytes,
                "clock": r.clock,
                "events_applied": r.events_applied,
                "batches_applied": r.batches_applied,
                "batch_paths": histogram_json(r.batch_paths.as_ref()),
                "event_apply_lag_seconds": histogram_json(r.event_apply_lag_seconds.as_ref()),
                "reconciles": count_map(&r.reconciles),
                "files_hashed": r.files_hashed,
                "bytes_hashed": r.bytes_hashed,
                "hash_backlog": r.hash_backlog,
                "last_scan_hashed_bytes_per_second": r.last_scan_hashed_bytes_per_second,
            })
        })
        .collect();
    let rpc: Vec<Value> = m
        .rpc
        .iter()
        .map(|x| {
            json!({
                "method": x.method,
                "codes": count_map(&x.codes),
                "latency_seconds": histogram_json(x.latency_seconds.as_ref()),
            })
        })
        .collect();
    json!({
        "uptime_seconds": m.uptime_seconds,
        "events_received": m.events_received,
        "overflows": m.overflows,
        "watched_dirs": m.watched_dirs,
        "polled_dirs": m.polled_dirs,
        "inotify_max_user_watches": m.inotify_max_user_watches,
        "watch_cap": m.watch_cap,
        "store_size_bytes": m.store_size_bytes,
        "resident_memory_bytes": m.resident_memory_bytes,
        "metrics_address": m.metrics_address,
        "roots": roots,
        "rpc": rpc,
    })
}

/// A root as JSON.
pub fn root_json(r: &proto::RootInfo) -> Value {
    json!({"root": r.root, "root_id": r.root_id, "files": r.files, "clock": r.clock, "state": r.state})
}

/// Bytes in a short human unit.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Renders rows as left-aligned columns, the last column unpadded, fitted to the terminal's
/// width when standard output is a terminal (pipes get every value in full).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    layout(header, rows, terminal_width())
}

/// Renders a record as FIELD/VALUE lines; on a terminal, long values continue on lines of
/// their own under the value column instead of wrapping across the field column.
pub fn record(rows: &[(String, String)]) -> String {
    record_layout(rows, terminal_width())
}

/// Spaces between two columns.
const GAP: usize = 2;

/// Lays out a table in at most `max_width` display columns per line (`None`: no limit).
/// When the rows are too wide, the widest columns are shrunk first, each to the same
/// width, and their cells ellipsized: in the middle when they look like paths (both the
/// top folder and the file name stay visible), else at the end.
pub fn layout(header: &[&str], rows: &[Vec<String>], max_width: Option<usize>) -> String {
    let columns = rows.iter().map(Vec::len).fold(header.len(), usize::max);
    let mut cells: Vec<Vec<String>> = Vec::with_capacity(rows.len() + 1);
    cells.push(header.iter().map(|h| printable(h)).collect());
    cells.extend(
        rows.iter()
            .map(|r| r.iter().map(|c| printable(c)).collect()),
    );
    let mut natural = vec![0; columns];
    for row in &cells {
        for (i, cell) in row.iter().enumerate() {
            natural[i] = natural[i].max(width(cell));
        }
    }
    let max_width = max_width.filter(|&m| m > 0);
    let caps = match max_width {
        Some(max) => column_caps(&natural, max),
        None => Some(natural.clone()),
    };
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let shown = match &caps {
                Some(caps) => ellipsize(cell, caps[i]),
                None => cell.clone(),
            };
            line.push_str(&shown);
            if i + 1 < row.len() {
                let cap = caps.as_ref().map_or(natural[i], |c| c[i]);
                line.push_str(&" ".repeat(cap - width(&shown) + GAP));
            }
        }
        let line = line.trim_end();
        match (&caps, max_width) {
            // Not even one character per column fits: cut the line itself.
            (None, Some(max)) => out.push_str(&ellipsize(line, max)),
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out.pop();
    out
}

/// Widths for columns of `natural` widths to fit in `max`: every column wider than a common
/// cap is cut to it, the cap as large as fits, and the columns left over share what
/// remains. `None` when even a cap of one character is too wide.
fn column_caps(natural: &[usize], max: usize) -> Option<Vec<usize>> {
    let gaps = GAP * natural.len().saturating_sub(1);
    let total = |cap: usize| natural.iter().map(|w| (*w).min(cap)).sum::<usize>() + gaps;
    let widest = natural.iter().copied().max().unwrap_or(0);
    if total(widest) <= max {
        return Some(natural.to_vec());
    }
    if total(1) > max {
        return None;
    }
    // The largest cap that fits: total() grows with the cap, so search for it.
    let (mut fits, mut too_wide) = (1, widest);
    while too_wide - fits > 1 {
        let mid = fits + (too_wide - fits) / 2;
        if total(mid) <= max {
            fits = mid;
        } else {
            too_wide = mid;
        }
    }
    let mut caps: Vec<usize> = natural.iter().map(|w| (*w).min(fits)).collect();
    let mut spare = max - total(fits);
    for (cap, natural) in caps.iter_mut().zip(natural) {
        if spare == 0 {
            break;
        }
        if *natural > *cap {
            *cap += 1;
            spare -= 1;
        }
    }
    Some(caps)
}

/// Lays out FIELD/VALUE rows; values longer than the room left continue on their own lines.
pub fn record_layout(rows: &[(String, String)], max_width: Option<usize>) -> String {
    let keys: Vec<String> = rows.iter().map(|(k, _)| printable(k)).collect();
    let key_width = keys.iter().map(|k| width(k)).max().unwrap_or(0);
    let indent = key_width + GAP;
    // Below a useful width, leave the lines to the terminal.
    let room = max_width.filter(|&m| m >= indent + 8).map(|m| m - indent);
    let mut out = String::new();
    for (key, (_, value)) in keys.iter().zip(rows) {
        let value = printable(value);
        let lines = match room {
            Some(room) => wrap(&value, room),
            None => vec![value],
        };
        for (n, part) in lines.iter().enumerate() {
            let lead = if n == 0 { key.as_str() } else { "" };
            let line = format!("{lead}{}{part}", " ".repeat(indent - width(lead)));
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out.pop();
    out
}

/// Splits `s` into lines of at most `room` display columns, preferring to break after a
/// space, comma or slash in the second half of a line.
pub fn wrap(s: &str, room: usize) -> Vec<String> {
    let room = room.max(1);
    let mut lines = Vec::new();
    let mut rest = s;
    while width(rest) > room {
        let mut end = 0;
        let mut used = 0;
        let mut soft = None;
        for (i, c) in rest.char_indices() {
            let w = char_width(c);
            if used + w > room {
                break;
            }
            used += w;
            end = i + c.len_utf8();
            if matches!(c, ' ' | ',' | '/') && used * 2 >= room {
                soft = Some(end);
            }
        }
        if end == 0 {
            // A character wider than the room: give it a line of its own.
            end = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let cut = soft.unwrap_or(end);
        lines.push(rest[..cut].trim_end().to_string());
        rest = &rest[cut..];
    }
    if !rest.is_empty() || lines.is_empty() {
        lines.push(rest.to_string());
    }
    lines
}

/// Shortens `s` to at most `max` display columns, marking the cut with `…`.
fn ellipsize(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let budget = max - 1;
    if s.contains('/') {
        // Paths: keep the start and, with twice the room, the end (the file name).
        let head = take_prefix(s, budget / 3);
        let tail = take_suffix(s, budget - width(head));
        format!("{head}…{tail}")
    } else {
        format!("{}…", take_prefix(s, budget))
    }
}

/// The longest prefix of `s` at most `max` columns wide.
fn take_prefix(s: &str, max: usize) -> &str {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        used += char_width(c);
        if used > max {
            return &s[..i];
        }
    }
    s
}

/// The longest suffix of `s` at most `max` columns wide.
fn take_suffix(s: &str, max: usize) -> &str {
    let mut used = 0;
    for (i, c) in s.char_indices().rev() {
        used += char_width(c);
        if used > max {
            return &s[i + c.len_utf8()..];
        }
    }
    s
}

/// Display columns of a string (sanitized by [`printable`]: no control characters).
fn width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

fn char_width(c: char) -> usize {
    unicode_width::UnicodeWidthChar::width(c).unwrap_or(0)
}

/// A cell without control characters: a newline or tab in a file name must not break the
/// table, so they are shown escaped (`\n`, `\t`, `\u{1b}`).
fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// The width human output should fit: the terminal's when standard output is one.
pub fn terminal_width() -> Option<usize> {
    let stdout = std::io::stdout();
    if !stdout.is_terminal() {
        return None;
    }
    // SAFETY: an all-zero winsize is a valid value of this plain C struct.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize through the pointer, which is valid and unique.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    let columns = std::env::var("COLUMNS").ok();
    choose_width(true, (rc == 0).then_some(size.ws_col), columns.as_deref())
}

/// The width to fit, from what the terminal says, else `$COLUMNS`; none off a terminal.
fn choose_width(is_terminal: bool, tty_columns: Option<u16>, env: Option<&str>) -> Option<usize> {
    if !is_terminal {
        return None;
    }
    tty_columns.filter(|&c| c > 0).map(usize::from).or_else(|| {
        env.and_then(|v| v.trim().parse().ok())
            .filter(|&n: &usize| n > 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(r: &[&[&str]]) -> Vec<Vec<String>> {
        r.iter()
            .map(|row| row.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    fn widths(text: &str) -> Vec<usize> {
        text.lines().map(width).collect()
    }

    #[test]
    fn no_limit_keeps_every_value() {
        let r = rows(&[&["src/a/very/long/path/to/module.rs", "rust"]]);
        let text = layout(&["PATH", "TYPE"], &r, None);
        assert_eq!(
            text,
            "PATH                               TYPE\nsrc/a/very/long/path/to/module.rs  rust"
        );
    }

    #[test]
    fn a_wide_enough_terminal_changes_nothing() {
        let r = rows(&[&["src/main.rs", "rust", "12 B"]]);
        assert_eq!(
            layout(&["PATH", "TYPE", "SIZE"], &r, Some(200)),
            layout(&["PATH", "TYPE", "SIZE"], &r, None)
        );
    }

    #[test]
    fn the_widest_column_is_shrunk_and_paths_keep_both_ends() {
        let r = rows(&[
            &["src/catalog/a_really_long_module_name.rs", "rust", "source"],
            &["README.md", "markdown", "docs"],
        ]);
        let text = layout(&["PATH", "TYPE", "PURPOSE"], &r, Some(40));
        assert!(widths(&text).iter().all(|&w| w <= 40), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        // The narrow columns are untouched; the path lost its middle.
        assert!(lines[1].starts_with("src/ca"), "{text}");
        assert!(lines[1].contains("…"), "{text}");
        assert!(lines[1].contains("name.rs  rust      source"), "{text}");
        assert!(lines[2].starts_with("README.md "), "{text}");
        // The room is used: the shrunk column is as wide as it may be.
        assert_eq!(width(lines[0]), 40, "{text}");
    }

    #[test]
    fn several_wide_columns_share_the_room() {
        let long = "x".repeat(60);
        let r = vec![vec![long.clone(), "1".into(), long.clone()]];
        let text = layout(&["A", "B", "C"], &r, Some(50));
        assert!(widths(&text).iter().all(|&w| w <= 50), "{text}");
        let row = text.lines().nth(1).unwrap();
        // 50 = a + 2 + 1 + 2 + c, with a and c within one of each other.
        let parts: Vec<&str> = row.split("  ").collect();
        assert_eq!(parts.len(), 3, "{row}");
        assert!(width(parts[0]).abs_diff(width(parts[2])) <= 1, "{row}");
        assert!(parts[0].ends_with('…') && parts[2].ends_with('…'), "{row}");
    }

    #[test]
    fn non_ascii_cells_are_measured_in_display_columns() {
        let r = rows(&[
            &["文档/说明书/非常长的文件名称.md", "markdown"],
            &["café/naïve/résumé.txt", "text"],
        ]);
        for max in [10, 17, 24, 31] {
            let text = layout(&["PATH", "TYPE"], &r, Some(max));
            assert!(
                widths(&text).iter().all(|&w| w <= max),
                "{max}: {text:?} {:?}",
                widths(&text)
            );
            // Columns stay aligned: TYPE starts at the same display column on every line.
            let starts: Vec<usize> = text
                .lines()
                .map(|l| {
                    let cut = l.rfind("  ").unwrap();
                    width(&l[..cut]) + 2 + (width(&l[cut + 2..]) - width(l[cut + 2..].trim_start()))
                })
                .collect();
            assert!(starts.windows(2).all(|w| w[0] == w[1]), "{max}: {text}");
        }
    }

    #[test]
    fn very_narrow_widths_never_overflow() {
        let r = rows(&[&["src/main.rs", "rust", "source", "1.2 KiB"]]);
        for max in 1..=30 {
            let text = layout(&["PATH", "TYPE", "PURPOSE", "SIZE"], &r, Some(max));
            assert!(widths(&text).iter().all(|&w| w <= max), "{max}: {text:?}");
            assert_eq!(text.lines().count(), 2, "{max}: {text:?}");
        }
    }

    #[test]
    fn control_characters_cannot_break_a_row() {
        let r = rows(&[&["bad\nname\t.txt", "text"]]);
        let text = layout(&["PATH", "TYPE"], &r, None);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("bad\\nname\\t.txt"), "{text}");
        assert!(layout(&["A"], &rows(&[&["\u{1b}[31m"]]), None).contains("\\u{1b}[31m"));
    }

    #[test]
    fn ellipsize_cuts_at_char_boundaries() {
        assert_eq!(ellipsize("abcdef", 4), "abc…");
        assert_eq!(ellipsize("abcdef", 6), "abcdef");
        assert_eq!(ellipsize("abcdef", 1), "…");
        assert_eq!(ellipsize("abcdef", 0), "");
        assert_eq!(ellipsize("a/b/c/d/e/f.rs", 8), "a/…/f.rs");
        // A double-width character that does not fit whole is left out, not split.
        assert_eq!(ellipsize("日本語", 4), "日…");
        assert_eq!(width(&ellipsize("日本語", 4)), 3);
    }

    #[test]
    fn records_wrap_long_values_under_the_value_column() {
        let rows = vec![
            ("path".to_string(), "src/main.rs".to_string()),
            (
                "dependencies".to_string(),
                r#"["src/cli/mod.rs","src/cli/output.rs","src/config.rs"]"#.to_string(),
            ),
        ];
        let text = record_layout(&rows, Some(40));
        assert!(widths(&text).iter().all(|&w| w <= 40), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "path          src/main.rs");
        assert!(
            lines[1].starts_with("dependencies  [\"src/cli/mod.rs\","),
            "{text}"
        );
        assert!(lines[2].starts_with("              "), "{text}");
        // Nothing is lost: the pieces put together are the value.
        let joined: String = lines[1..].iter().map(|l| &l[14..]).collect();
        assert_eq!(joined, rows[1].1);
        // Off a terminal, one line per field.
        assert_eq!(record_layout(&rows, None).lines().count(), 2);
    }

    #[test]
    fn wrap_handles_wide_characters_and_tiny_rooms() {
        let lines = wrap("日本語のファイル名", 5);
        assert!(lines.iter().all(|l| width(l) <= 5), "{lines:?}");
        assert_eq!(lines.concat(), "日本語のファイル名");
        let lines = wrap("日本", 1);
        assert_eq!(lines, vec!["日", "本"]);
    }

    #[test]
    fn width_comes_from_the_terminal_then_columns() {
        assert_eq!(choose_width(false, Some(80), Some("100")), None);
        assert_eq!(choose_width(true, Some(80), Some("100")), Some(80));
        assert_eq!(choose_width(true, Some(0), Some("100")), Some(100));
        assert_eq!(choose_width(true, None, Some(" 120 ")), Some(120));
        assert_eq!(choose_width(true, None, Some("wide")), None);
        assert_eq!(choose_width(true, None, None), None);
    }
}
