//! Root-relative, `/`-separated path helpers. The root itself is the empty string.

/// The folder of a path (`""` for a file at the root).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[..i],
        None => "",
    }
}

/// The last component of a path.
pub fn file_name(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// `dir` joined with a relative `rest` (either may be empty). No normalisation.
pub fn join(dir: &str, rest: &str) -> String {
    if dir.is_empty() {
        rest.to_string()
    } else if rest.is_empty() {
        dir.to_string()
    } else {
        let mut s = String::with_capacity(dir.len() + rest.len() + 1);
        s.push_str(dir);
        s.push('/');
        s.push_str(rest);
        s
    }
}

/// Resolve `.` and `..` components and drop empty ones; `None` when the path escapes the root.
pub fn normalize(path: &str) -> Option<String> {
    if !path.contains("./") && !path.contains("//") && !path.ends_with('.') && !path.ends_with('/')
    {
        return Some(path.to_string());
    }
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// `dir` joined with `rest`, normalised.
pub fn join_norm(dir: &str, rest: &str) -> Option<String> {
    if rest.starts_with('/') {
        return None;
    }
    normalize(&join(dir, rest))
}

/// The ancestors of a folder, itself first, the root (`""`) last.
pub fn ancestors(dir: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(dir);
    std::iter::from_fn(move || {
        let cur = next?;
        next = if cur.is_empty() {
            None
        } else {
            Some(parent(cur))
        };
        Some(cur)
    })
}

/// Whether `path` lies inside folder `dir` (at any depth).
pub fn is_under(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || (path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/')
}

/// `path` relative to `dir`, when it lies inside it.
pub fn strip_dir<'a>(path: &'a str, dir: &str) -> Option<&'a str> {
    if dir.is_empty() {
        Some(path)
    } else if is_under(path, dir) {
        Some(&path[dir.len() + 1..])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(parent("a/b/c.rs"), "a/b");
        assert_eq!(parent("c.rs"), "");
        assert_eq!(normalize("a/./b/../c"), Some("a/c".into()));
        assert_eq!(normalize("../x"), None);
        assert_eq!(join_norm("a/b", "../../c"), Some("c".into()));
        assert_eq!(ancestors("a/b").collect::<Vec<_>>(), vec!["a/b", "a", ""]);
        assert_eq!(ancestors("").collect::<Vec<_>>(), vec![""]);
        assert!(is_under("a/b", "a"));
        assert!(!is_under("ab/c", "a"));
        assert!(is_under("x", ""));
        assert_eq!(strip_dir("a/b/c", "a"), Some("b/c"));
    }
}
