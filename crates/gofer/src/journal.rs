//! A journal of the paths a client changed on its mount (for `--diff` of writable
//! host mounts, which have no upper layer to walk). The client records every change
//! it sends; the journal keeps one entry per path, coalesced against the state the
//! path had when the journal started: created-then-written stays added, created-then-
//! removed disappears, removed-then-created is modified. At most [`JOURNAL_MAX`]
//! paths are kept; beyond that new paths are counted as missed.

use parking_lot::Mutex;
use sandfs_vfs::FileType;
use std::collections::BTreeMap;

/// The most paths one journal keeps.
pub const JOURNAL_MAX: usize = 100_000;

/// What happened to a path, relative to its state when the journal started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The path did not exist and does now.
    Added,
    /// The path existed and was written, truncated or had its metadata changed (or
    /// was removed and made again).
    Modified,
    /// The path existed and does not now.
    Deleted,
}

impl Change {
    /// The letter `--diff` prints: A, M or D.
    pub fn code(self) -> char {
        match self {
            Change::Added => 'A',
            Change::Modified => 'M',
            Change::Deleted => 'D',
        }
    }
}

/// One journal entry: a path relative to the mount's root (components joined by
/// `/`, empty for the root itself), its change, and the kind of file it last named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the mount root.
    pub path: Vec<u8>,
    /// What happened to it.
    pub change: Change,
    /// Kind of the file it last named.
    pub kind: FileType,
}

#[derive(Default)]
struct State {
    paths: BTreeMap<Vec<u8>, (Change, FileType)>,
    missed: u64,
}

/// See the module documentation.
#[derive(Default)]
pub struct Journal {
    state: Mutex<State>,
}

impl Journal {
    /// An empty journal.
    pub fn new() -> Journal {
        Journal::default()
    }

    /// Set `path`'s entry to what `f` makes of the current one (`None` removes it).
    fn update(&self, path: &[u8], f: impl FnOnce(Option<(Change, FileType)>) -> Option<(Change, FileType)>) {
        let mut st = self.state.lock();
        let old = st.paths.get(path).copied();
        match f(old) {
            Some(new) if old.is_some() || st.paths.len() < JOURNAL_MAX => {
                st.paths.insert(path.to_vec(), new);
            }
            Some(_) => st.missed += 1,
            None => {
                st.paths.remove(path);
            }
        }
    }

    /// `path` was made (create, mkdir, symlink, mknod, link).
    pub fn added(&self, path: &[u8], kind: FileType) {
        self.update(path, |old| match old {
            None => Some((Change::Added, kind)),
            Some((Change::Deleted, _)) => Some((Change::Modified, kind)),
            Some((c, _)) => Some((c, kind)),
        });
    }

    /// `path` was written, truncated, or had its metadata changed.
    pub fn modified(&self, path: &[u8], kind: FileType) {
        self.update(path, |old| match old {
            Some((Change::Added, _)) => Some((Change::Added, kind)),
            _ => Some((Change::Modified, kind)),
        });
    }

    /// `path` was removed (unlink, rmdir, renamed away), and with it everything
    /// recorded under it.
    pub fn removed(&self, path: &[u8], kind: FileType) {
        self.forget_under(path);
        self.update(path, |old| match old {
            Some((Change::Added, _)) => None,
            _ => Some((Change::Deleted, kind)),
        });
    }

    /// `old` was renamed to `new` (replacing what `new` named, if anything): a
    /// removal of `old` and a creation of `new`; with `exchange`, both names stay
    /// and each now names the other's file.
    pub fn renamed(&self, old: &[u8], new: &[u8], kind: FileType, exchange: bool) {
        if exchange {
            self.modified(old, kind);
            self.modified(new, kind);
            return;
        }
        self.removed(old, kind);
        self.forget_under(new);
        self.added(new, kind);
    }

    /// Drop the entries strictly under directory `dir` (its own entry stays).
    fn forget_under(&self, dir: &[u8]) {
        let mut st = self.state.lock();
        let mut prefix = dir.to_vec();
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        let under: Vec<Vec<u8>> = st
            .paths
            .range(prefix.clone()..)
            .map(|(p, _)| p)
            .take_while(|p| p.starts_with(&prefix))
            .cloned()
            .collect();
        for p in under {
            if p != dir {
                st.paths.remove(&p);
            }
        }
    }

    /// The entries, in path order.
    pub fn entries(&self) -> Vec<Entry> {
        self.state
            .lock()
            .paths
            .iter()
            .map(|(p, &(change, kind))| Entry { path: p.clone(), change, kind })
            .collect()
    }

    /// How many changes to new paths were not recorded (the journal was full).
    pub fn missed(&self) -> u64 {
        self.state.lock().missed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(j: &Journal) -> Vec<String> {
        j.entries()
            .iter()
            .map(|e| format!("{} {}", e.change.code(), String::from_utf8_lossy(&e.path)))
            .collect()
    }

    #[test]
    fn changes_coalesce() {
        let j = Journal::new();
        j.added(b"new", FileType::Regular);
        j.modified(b"new", FileType::Regular);
        j.added(b"gone", FileType::Regular);
        j.removed(b"gone", FileType::Regular);
        j.modified(b"old", FileType::Regular);
        j.removed(b"old", FileType::Regular);
        j.removed(b"again", FileType::Regular);
        j.added(b"again", FileType::Regular);
        j.modified(b"m", FileType::Regular);
        j.modified(b"m", FileType::Regular);
        assert_eq!(list(&j), ["M again", "M m", "A new", "D old"]);
    }

    #[test]
    fn renames_move_whole_subtrees() {
        let j = Journal::new();
        j.added(b"d", FileType::Directory);
        j.added(b"d/f", FileType::Regular);
        j.renamed(b"d", b"e", FileType::Directory, false);
        j.modified(b"x", FileType::Regular);
        j.renamed(b"x", b"y", FileType::Regular, false);
        assert_eq!(list(&j), ["A e", "D x", "A y"]);
    }

    #[test]
    fn a_full_journal_counts_what_it_misses() {
        let j = Journal::new();
        for i in 0..JOURNAL_MAX + 3 {
            j.added(format!("f{i}").as_bytes(), FileType::Regular);
        }
        assert_eq!(j.entries().len(), JOURNAL_MAX);
        assert_eq!(j.missed(), 3);
        j.modified(b"f0", FileType::Regular);
        assert_eq!(j.missed(), 3, "a path already kept is still updated");
    }
}
