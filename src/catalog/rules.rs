//! Which paths of a root are catalogued: `.gitignore` and `.ignore` files (layered by folder,
//! as git and ripgrep layer them), `.git/info/exclude`, configured globs, and paths the daemon
//! keeps for itself. Built on the `ignore` crate's gitignore matcher.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use super::scan::ScanError;

/// The ignore files of one folder, linked to those of its parent folder.
#[derive(Debug, Default)]
pub struct Layer {
    parent: Option<Arc<Layer>>,
    dot_ignore: Option<Gitignore>,
    gitignore: Option<Gitignore>,
}

/// The ignore rules of one root.
#[derive(Debug)]
pub struct IgnoreRules {
    globs: Gitignore,
    exclude: Vec<PathBuf>,
    git_exclude: Option<Gitignore>,
    base: Arc<Layer>,
}

impl IgnoreRules {
    /// Rules for `root`: configured `globs` (gitignore syntax), paths to `exclude` outright,
    /// and the `.gitignore` files of the folders between the root and its repository's top.
    pub fn new(
        root: &Path,
        globs: &[String],
        exclude: &[PathBuf],
    ) -> Result<IgnoreRules, ScanError> {
        let mut builder = GitignoreBuilder::new(root);
        // A configured glob with an unclosed class is a typo to report, not a literal '['.
        builder.allow_unclosed_class(false);
        for glob in globs {
            builder.add_line(None, glob).map_err(|e| ScanError::Glob {
                glob: glob.clone(),
                message: e.to_string(),
            })?;
        }
        let globs = builder.build().map_err(|e| ScanError::Glob {
            glob: globs.join(", "),
            message: e.to_string(),
        })?;
        // Git applies the ignore files of a repository's folders above a subfolder too, and
        // the repository's info/exclude; outside a repository only the root's own files count.
        let mut above: Vec<PathBuf> = Vec::new();
        let mut git_exclude = None;
        let mut dir = root.parent();
        let mut repo_top = root.join(".git").exists().then(|| root.to_path_buf());
        while repo_top.is_none() {
            let Some(d) = dir else { break };
            above.push(d.to_path_buf());
            if d.join(".git").exists() {
                repo_top = Some(d.to_path_buf());
            }
            dir = d.parent();
        }
        if repo_top.is_none() {
            above.clear();
        }
        if let Some(top) = &repo_top {
            let exclude_file = top.join(".git").join("info").join("exclude");
            if exclude_file.is_file() {
                git_exclude = Some(load(top, &[exclude_file]));
            }
        }
        let mut base = Arc::new(Layer::default());
        for d in above.iter().rev() {
            let gi = d.join(".gitignore");
            if gi.is_file() {
                base = Arc::new(Layer {
                    parent: Some(base),
                    dot_ignore: None,
                    gitignore: Some(load(d, &[gi])),
                });
            }
        }
        Ok(IgnoreRules {
            globs,
            exclude: exclude.to_vec(),
            git_exclude,
            base,
        })
    }

    /// The layer of the folders above the root.
    pub fn base(&self) -> Arc<Layer> {
        Arc::clone(&self.base)
    }

    /// The layer of folder `dir`, given its parent's layer and whether its listing holds a
    /// `.gitignore` or `.ignore` file.
    pub fn layer_for(
        &self,
        parent: &Arc<Layer>,
        dir: &Path,
        has_gitignore: bool,
        has_dot_ignore: bool,
    ) -> Arc<Layer> {
        if !has_gitignore && !has_dot_ignore {
            return Arc::clone(parent);
        }
        Arc::new(Layer {
            parent: Some(Arc::clone(parent)),
            dot_ignore: has_dot_ignore.then(|| load(dir, &[dir.join(".ignore")])),
            gitignore: has_gitignore.then(|| load(dir, &[dir.join(".gitignore")])),
        })
    }

    /// The layer of folder `rel_dir` (`None`: the root), built by reading the ignore files of
    /// each folder from the root down; `None` when the folder or one of its ancestors is
    /// ignored (or gone).
    pub fn layer_of(&self, root: &Path, rel_dir: Option<&[u8]>) -> Option<Arc<Layer>> {
        use std::os::unix::ffi::OsStrExt;
        let mut dir = root.to_path_buf();
        let mut layer = self.layer_for(
            &self.base,
            &dir,
            dir.join(".gitignore").is_file(),
            dir.join(".ignore").is_file(),
        );
        for part in rel_dir
            .unwrap_or(b"")
            .split(|b| *b == b'/')
            .filter(|p| !p.is_empty())
        {
            let next = dir.join(std::ffi::OsStr::from_bytes(part));
            if self.is_ignored(&layer, &next, true) || !next.is_dir() {
                return None;
            }
            dir = next;
            layer = self.layer_for(
                &layer,
                &dir,
                dir.join(".gitignore").is_file(),
                dir.join(".ignore").is_file(),
            );
        }
        Some(layer)
    }

    /// Whether any pattern could match in a folder with this layer (when none can, entries need
    /// no matching at all).
    pub fn has_patterns(&self, layer: &Layer) -> bool {
        if !self.globs.is_empty() || self.git_exclude.is_some() {
            return true;
        }
        let mut cur = Some(layer);
        while let Some(l) = cur {
            if l.dot_ignore.is_some() || l.gitignore.is_some() {
                return true;
            }
            cur = l.parent.as_deref();
        }
        false
    }

    /// Names of excluded paths that live directly in folder `dir`.
    pub fn excluded_names_in(&self, dir: &Path) -> Vec<&std::ffi::OsStr> {
        self.exclude
            .iter()
            .filter(|x| x.parent() == Some(dir))
            .filter_map(|x| x.file_name())
            .collect()
    }

    /// Whether `path` (inside the folder whose layer is `layer`) is left out of the catalog.
    pub fn is_ignored(&self, layer: &Layer, path: &Path, is_dir: bool) -> bool {
        use std::os::unix::ffi::OsStrExt;
        // Byte comparisons: these run for every entry of a walk, and `Path` equality and
        // `file_name` parse components.
        let bytes = path.as_os_str().as_bytes();
        if bytes.ends_with(b"/.git") || bytes == b".git" {
            return true;
        }
        if self
            .exclude
            .iter()
            .any(|x| x.as_os_str() == path.as_os_str())
        {
            return true;
        }
        if !self.globs.is_empty() && self.globs.matched(path, is_dir).is_ignore() {
            return true;
        }
        // Precedence as in ripgrep: .ignore files over .gitignore files over info/exclude;
        // within one kind the nearest folder decides.
        let picks: [fn(&Layer) -> Option<&Gitignore>; 2] =
            [|l| l.dot_ignore.as_ref(), |l| l.gitignore.as_ref()];
        for pick in picks {
            let mut cur = Some(layer);
            while let Some(l) = cur {
                if let Some(gi) = pick(l) {
                    let m = gi.matched(path, is_dir);
                    if m.is_ignore() {
                        return true;
                    }
                    if m.is_whitelist() {
                        return false;
                    }
                }
                cur = l.parent.as_deref();
            }
        }
        self.git_exclude
            .as_ref()
            .is_some_and(|gi| gi.matched(path, is_dir).is_ignore())
    }
}

fn load(dir: &Path, files: &[PathBuf]) -> Gitignore {
    let mut builder = GitignoreBuilder::new(dir);
    for f in files {
        if let Some(err) = builder.add(f) {
            tracing::warn!(file = %f.display(), error = %err, "ignore file partly unreadable");
        }
    }
    builder.build().unwrap_or_else(|e| {
        tracing::warn!(dir = %dir.display(), error = %e, "ignore file unusable; ignoring it");
        Gitignore::empty()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_negation_and_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join(".gitignore"), "*.log\nbuild/\n!keep.log\n").unwrap();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/.gitignore"), "!debug.log\nlocal.txt\n").unwrap();
        std::fs::write(root.join("sub/.ignore"), "debug.log\n").unwrap();
        let rules = IgnoreRules::new(root, &["*.tmp".into()], &[root.join("state")]).unwrap();
        let top = rules.layer_for(&rules.base(), root, true, false);
        let sub = rules.layer_for(&top, &root.join("sub"), true, true);
        assert!(rules.is_ignored(&top, &root.join("a.log"), false));
        assert!(!rules.is_ignored(&top, &root.join("keep.log"), false));
        assert!(rules.is_ignored(&top, &root.join("build"), true));
        assert!(!rules.is_ignored(&top, &root.join("build"), false));
        assert!(rules.is_ignored(&top, &root.join("x.tmp"), false));
        assert!(rules.is_ignored(&top, &root.join("state"), true));
        assert!(rules.is_ignored(&top, &root.join(".git"), true));
        assert!(rules.is_ignored(&sub, &root.join("sub/local.txt"), false));
        assert!(rules.is_ignored(&sub, &root.join("sub/other.log"), false));
        // .ignore beats .gitignore's re-inclusion.
        assert!(rules.is_ignored(&sub, &root.join("sub/debug.log"), false));
        assert!(!rules.is_ignored(&sub, &root.join("sub/main.rs"), false));
    }

    #[test]
    fn bad_glob_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            IgnoreRules::new(dir.path(), &["a[".into()], &[]),
            Err(ScanError::Glob { .. })
        ));
    }

    #[test]
    fn repository_ignores_above_the_root_apply() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        std::fs::create_dir_all(repo.join(".git/info")).unwrap();
        std::fs::write(repo.join(".git/info/exclude"), "*.secret\n").unwrap();
        std::fs::write(repo.join(".gitignore"), "*.o\n").unwrap();
        let root = repo.join("pkg");
        std::fs::create_dir_all(&root).unwrap();
        let rules = IgnoreRules::new(&root, &[], &[]).unwrap();
        let layer = rules.layer_for(&rules.base(), &root, false, false);
        assert!(rules.is_ignored(&layer, &root.join("x.o"), false));
        assert!(rules.is_ignored(&layer, &root.join("k.secret"), false));
        assert!(!rules.is_ignored(&layer, &root.join("x.c"), false));
    }
}
