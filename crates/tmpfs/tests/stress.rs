//! Multithreaded stress test: several threads share one `MountNamespace` on a `Tmpfs`
//! and create, rename (within and across shared directories, RENAME_EXCHANGE,
//! directories included), link, write, truncate and delete at the same time. At the
//! end the tree must be consistent and no acknowledged data may be lost.
//!
//! Each thread owns the names it makes (`t<thread>f<n>` files, `t<thread>d<n>`
//! directories) and keeps a model of them, so every one of its operations has a
//! known outcome even while the others run: own entries live in the shared static
//! directories or in the thread's own directories, which it moves around (also into
//! each other, expecting EINVAL for loops). On top, every thread does "chaos"
//! operations on unowned directories `c<n>` and files `j<n>` in the shared
//! directories (renames and exchanges of directories across directories and into
//! each other, links, creates, deletes), whose outcome depends on the other threads
//! and is only required to be one of the errnos that race can produce.
//!
//! Checked at the end: every name readdir lists is statable (with the same inode
//! and type), `.`/`..` are right; every inode's nlink equals the names found for it
//! and a directory's nlink is 2 + its subdirectories; every thread's files have
//! exactly the names and contents its model says (open handles to unlinked files
//! included); `Tmpfs::used_inodes` equals the inodes found; and after removing
//! everything, one inode (the root) and zero bytes are left.
//!
//! A run that does not finish within `DEADLINE` is reported as a deadlock.
//! `STRESS_OPS` (operations per thread) and `STRESS_SEED` change the run.

use sandfs_tmpfs::Tmpfs;
use sandfs_vfs::{
    Creds, Errno, FileType, MountFlags, MountNamespace, OpenFile, OpenFlags, RenameFlags, SetAttr,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const THREADS: usize = 8;
const DEFAULT_OPS: usize = 10_000;
const DEFAULT_SEED: u64 = 0x5eed_f00d;
const DEADLINE: Duration = Duration::from_secs(120);

/// Shared directories that are never renamed or removed: siblings, and nested ones
/// so that cross-directory renames go between ancestors and descendants too.
const STATIC_DIRS: &[&str] = &["/s0", "/s1", "/s2", "/s0/a", "/s0/a/b", "/s1/c"];
/// Unowned chaos directory names (`c0`..) and file names (`j0`..).
const CHAOS_DIRS: u64 = 6;
const CHAOS_FILES: u64 = 6;

const MAX_FILES: usize = 60;
const MAX_DIRS: usize = 12;
const MAX_HANDLES: usize = 4;

// ----- a small deterministic RNG (splitmix64) -----

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

// ----- the per-thread model of owned entries -----

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Parent {
    Static(usize),
    Dir(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Obj {
    File(usize),
    Dir(usize),
}

struct OwnDir {
    parent: Parent,
    name: String,
    alive: bool,
}

struct OwnFile {
    data: Vec<u8>,
    names: Vec<(Parent, String)>,
    handle: Option<OpenFile>,
    alive: bool,
}

struct Model {
    tid: usize,
    next_name: usize,
    dirs: Vec<OwnDir>,
    files: Vec<OwnFile>,
    /// Every owned name, by (parent, name).
    entries: BTreeMap<(Parent, String), Obj>,
    /// Operations that succeeded, by kind.
    stats: BTreeMap<&'static str, u64>,
}

impl Model {
    fn new(tid: usize) -> Model {
        Model {
            tid,
            next_name: 0,
            dirs: Vec::new(),
            files: Vec::new(),
            entries: BTreeMap::new(),
            stats: BTreeMap::new(),
        }
    }

    fn fresh(&mut self, kind: char) -> String {
        self.next_name += 1;
        format!("t{}{}{}", self.tid, kind, self.next_name)
    }

    fn dir_path(&self, p: Parent) -> String {
        match p {
            Parent::Static(i) => STATIC_DIRS[i].to_string(),
            Parent::Dir(d) => format!("{}/{}", self.dir_path(self.dirs[d].parent), self.dirs[d].name),
        }
    }

    fn path(&self, p: Parent, name: &str) -> String {
        format!("{}/{}", self.dir_path(p), name)
    }

    fn live_dirs(&self) -> Vec<usize> {
        (0..self.dirs.len()).filter(|&d| self.dirs[d].alive).collect()
    }

    fn named_files(&self) -> Vec<usize> {
        (0..self.files.len()).filter(|&f| self.files[f].alive && !self.files[f].names.is_empty()).collect()
    }

    fn writable_files(&self) -> Vec<usize> {
        (0..self.files.len())
            .filter(|&f| {
                let x = &self.files[f];
                x.alive && (!x.names.is_empty() || x.handle.is_some())
            })
            .collect()
    }

    fn handles(&self) -> usize {
        self.files.iter().filter(|f| f.handle.is_some()).count()
    }

    fn random_parent(&self, rng: &mut Rng) -> Parent {
        let dirs = self.live_dirs();
        if dirs.is_empty() || rng.chance(55) {
            Parent::Static(rng.index(STATIC_DIRS.len()))
        } else {
            Parent::Dir(dirs[rng.index(dirs.len())])
        }
    }

    /// Whether directory `d` is `p` or one of `p`'s ancestors.
    fn dir_contains(&self, d: usize, p: Parent) -> bool {
        let mut cur = p;
        loop {
            match cur {
                Parent::Static(_) => return false,
                Parent::Dir(x) if x == d => return true,
                Parent::Dir(x) => cur = self.dirs[x].parent,
            }
        }
    }

    fn is_empty_dir(&self, d: usize) -> bool {
        !self.entries.keys().any(|(p, _)| *p == Parent::Dir(d))
    }

    fn set_entry(&mut self, at: (Parent, String), obj: Obj) {
        match obj {
            Obj::File(f) => self.files[f].names.push(at.clone()),
            Obj::Dir(d) => {
                self.dirs[d].parent = at.0;
                self.dirs[d].name = at.1.clone();
            }
        }
        self.entries.insert(at, obj);
    }

    fn take_entry(&mut self, at: &(Parent, String)) -> Obj {
        let obj = self.entries.remove(at).expect("entry in model");
        if let Obj::File(f) = obj {
            let names = &mut self.files[f].names;
            let i = names.iter().position(|n| n == at).expect("name in file");
            names.swap_remove(i);
        }
        obj
    }

    /// A file that lost its last name and has no open handle is gone.
    fn reap(&mut self, f: usize) {
        let x = &mut self.files[f];
        if x.names.is_empty() && x.handle.is_none() {
            x.alive = false;
            x.data = Vec::new();
        }
    }
}

fn resize(data: &mut Vec<u8>, len: usize) {
    data.resize(len, 0);
}

fn write_model(data: &mut Vec<u8>, off: usize, new: &[u8]) {
    if data.len() < off + new.len() {
        data.resize(off + new.len(), 0);
    }
    data[off..off + new.len()].copy_from_slice(new);
}

// ----- one thread -----

struct Ctx<'a> {
    ns: &'a MountNamespace,
    creds: Creds,
    rng: Rng,
    m: Model,
    step: usize,
    log: Vec<String>,
}

impl Ctx<'_> {
    fn fail(&self, what: String) -> ! {
        let tail: Vec<&String> = self.log.iter().rev().take(12).collect();
        panic!("thread {} op {}: {what}\nlast operations (newest first):\n{tail:#?}", self.m.tid, self.step);
    }

    fn expect<T: std::fmt::Debug>(&self, what: &str, got: Result<T, Errno>, want: Result<(), Errno>) {
        match (&got, want) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(w)) if *e == w => {}
            _ => self.fail(format!("{what}: got {got:?}, expected {want:?}")),
        }
    }

    fn count(&mut self, what: &'static str) {
        *self.m.stats.entry(what).or_default() += 1;
    }

    fn note(&mut self, s: String) {
        if self.log.len() >= 64 {
            self.log.remove(0);
        }
        self.log.push(s);
    }

    fn run(&mut self, ops: usize) {
        for step in 0..ops {
            self.step = step;
            let r = self.rng.below(100);
            match r {
                0..=11 => self.create(),
                12..=23 => self.write(),
                24..=27 => self.append(),
                28..=32 => self.truncate(),
                33..=37 => self.link(),
                38..=44 => self.unlink(),
                45..=52 => self.rename_file(),
                53..=58 => self.exchange(),
                59..=63 => self.mkdir(),
                64..=71 => self.rename_dir(),
                72..=74 => self.rmdir(),
                75..=77 => self.close_handle(),
                _ => self.chaos(),
            }
        }
        // Open handles, to unlinked files too, still hold the last data written.
        for f in 0..self.m.files.len() {
            if let Some(h) = self.m.files[f].handle.take() {
                let want = &self.m.files[f].data;
                let mut buf = vec![0u8; want.len() + 100];
                let n = h.read_at(&mut buf, 0).unwrap_or_else(|e| self.fail(format!("read handle: {e:?}")));
                if &buf[..n] != want.as_slice() {
                    self.fail(format!("file {f} through its handle: {n} bytes, expected {}", want.len()));
                }
                drop(h);
                self.m.reap(f);
            }
        }
    }

    fn create(&mut self) {
        if self.m.named_files().len() >= MAX_FILES {
            return self.unlink();
        }
        let p = self.m.random_parent(&mut self.rng);
        let name = self.m.fresh('f');
        let path = self.m.path(p, &name);
        self.note(format!("create {path}"));
        let flags = OpenFlags::CREAT | OpenFlags::EXCL | OpenFlags::READ | OpenFlags::WRITE;
        let f = self.ns.open_path(&self.creds, None, &path, flags, 0o644);
        let f = f.unwrap_or_else(|e| self.fail(format!("create {path}: {e:?}")));
        let len = self.rng.index(6000);
        let data = self.rng.bytes(len);
        let n = f.write_at(&data, 0);
        self.expect(&format!("write {path}"), n, Ok(()));
        let id = self.m.files.len();
        let keep = self.m.handles() < MAX_HANDLES && self.rng.chance(20);
        self.m.files.push(OwnFile { data, names: Vec::new(), handle: keep.then_some(f), alive: true });
        self.m.set_entry((p, name), Obj::File(id));
    }

    /// Open a file for writing: its handle, or one of its names.
    fn open_for(&mut self, f: usize, flags: OpenFlags) -> Option<OpenFile> {
        let x = &self.m.files[f];
        if x.handle.is_some() && (x.names.is_empty() || self.rng.chance(50)) {
            return None;
        }
        let (p, name) = x.names[self.rng.index(x.names.len())].clone();
        let path = self.m.path(p, &name);
        match self.ns.open_path(&self.creds, None, &path, flags, 0) {
            Ok(h) => Some(h),
            Err(e) => self.fail(format!("open {path}: {e:?}")),
        }
    }

    fn write(&mut self) {
        let files = self.m.writable_files();
        if files.is_empty() {
            return self.create();
        }
        let f = files[self.rng.index(files.len())];
        let len = self.m.files[f].data.len();
        let off = self.rng.index(len + 2000);
        let n = 1 + self.rng.index(3000);
        let data = self.rng.bytes(n);
        self.note(format!("write file {f} at {off} len {n}"));
        let opened = self.open_for(f, OpenFlags::WRITE);
        let h = opened.as_ref().or(self.m.files[f].handle.as_ref()).expect("a handle");
        match h.write_at(&data, off as u64) {
            Ok(w) if w == n => {}
            r => self.fail(format!("write file {f}: {r:?}, expected Ok({n})")),
        }
        write_model(&mut self.m.files[f].data, off, &data);
    }

    fn append(&mut self) {
        let files = self.m.named_files();
        if files.is_empty() {
            return self.create();
        }
        let f = files[self.rng.index(files.len())];
        let (p, name) = self.m.files[f].names[0].clone();
        let path = self.m.path(p, &name);
        let data = {
            let n = 1 + self.rng.index(2000);
            self.rng.bytes(n)
        };
        self.note(format!("append {path} len {}", data.len()));
        let h = self.ns.open_path(&self.creds, None, &path, OpenFlags::WRITE | OpenFlags::APPEND, 0);
        let h = h.unwrap_or_else(|e| self.fail(format!("open {path} O_APPEND: {e:?}")));
        let r = h.write(&data);
        self.expect(&format!("append {path}"), r, Ok(()));
        self.m.files[f].data.extend_from_slice(&data);
    }

    fn truncate(&mut self) {
        let files = self.m.writable_files();
        if files.is_empty() {
            return self.create();
        }
        let f = files[self.rng.index(files.len())];
        let len = self.m.files[f].data.len();
        let size = if self.rng.chance(50) { self.rng.index(len + 1) } else { len + self.rng.index(5000) };
        self.note(format!("truncate file {f} to {size}"));
        let x = &self.m.files[f];
        let r = match (&x.handle, x.names.first()) {
            (Some(h), None) => h.truncate(size as u64),
            (Some(h), Some(_)) if self.rng.chance(50) => h.truncate(size as u64),
            (_, Some((p, name))) => {
                let path = self.m.path(*p, name);
                let set = SetAttr { size: Some(size as u64), ..SetAttr::default() };
                self.ns.setattr_path(&self.creds, None, &path, &set, false).map(|_| ())
            }
            (None, None) => unreachable!("writable files have a name or a handle"),
        };
        self.expect("truncate", r, Ok(()));
        resize(&mut self.m.files[f].data, size);
    }

    fn link(&mut self) {
        let files = self.m.named_files();
        if files.is_empty() {
            return self.create();
        }
        let f = files[self.rng.index(files.len())];
        let (p, name) = self.m.files[f].names[self.rng.index(self.m.files[f].names.len())].clone();
        let np = self.m.random_parent(&mut self.rng);
        let nname = self.m.fresh('f');
        let (old, new) = (self.m.path(p, &name), self.m.path(np, &nname));
        self.note(format!("link {old} {new}"));
        let r = self.ns.link_path(&self.creds, None, &old, &new);
        self.expect(&format!("link {old} {new}"), r, Ok(()));
        self.m.set_entry((np, nname), Obj::File(f));
    }

    fn unlink(&mut self) {
        let files = self.m.named_files();
        if files.is_empty() {
            return;
        }
        let f = files[self.rng.index(files.len())];
        let at = self.m.files[f].names[self.rng.index(self.m.files[f].names.len())].clone();
        let path = self.m.path(at.0, &at.1);
        self.note(format!("unlink {path}"));
        let r = self.ns.unlink_path(&self.creds, None, &path);
        self.expect(&format!("unlink {path}"), r, Ok(()));
        self.m.take_entry(&at);
        self.m.reap(f);
    }

    fn rename_file(&mut self) {
        let files = self.m.named_files();
        if files.is_empty() {
            return self.create();
        }
        let f = files[self.rng.index(files.len())];
        let src = self.m.files[f].names[self.rng.index(self.m.files[f].names.len())].clone();
        // The target: a fresh name, or an existing file name (maybe the same file).
        let dst = if self.rng.chance(60) {
            let np = self.m.random_parent(&mut self.rng);
            (np, self.m.fresh('f'))
        } else {
            let g = files[self.rng.index(files.len())];
            self.m.files[g].names[self.rng.index(self.m.files[g].names.len())].clone()
        };
        let noreplace = self.rng.chance(20);
        let flags = if noreplace { RenameFlags::NOREPLACE } else { RenameFlags::empty() };
        let (old, new) = (self.m.path(src.0, &src.1), self.m.path(dst.0, &dst.1));
        self.note(format!("rename {old} {new} {flags:?}"));
        let r = self.ns.rename_path(&self.creds, None, &old, &new, flags);
        match self.m.entries.get(&dst).copied() {
            Some(_) if noreplace => self.expect(&format!("rename {old} {new}"), r, Err(Errno::EXIST)),
            Some(Obj::File(g)) if g == f => {
                // Two names of one inode (or one name): nothing happens.
                self.expect(&format!("rename {old} {new}"), r, Ok(()));
            }
            Some(Obj::File(g)) => {
                self.expect(&format!("rename {old} {new}"), r, Ok(()));
                self.m.take_entry(&dst);
                self.m.reap(g);
                self.m.take_entry(&src);
                self.m.set_entry(dst, Obj::File(f));
            }
            Some(Obj::Dir(_)) => unreachable!("targets are files"),
            None => {
                self.expect(&format!("rename {old} {new}"), r, Ok(()));
                self.m.take_entry(&src);
                self.m.set_entry(dst, Obj::File(f));
            }
        }
    }

    /// RENAME_EXCHANGE of two owned entries, files or directories, within or across
    /// directories.
    fn exchange(&mut self) {
        if self.m.entries.len() < 2 {
            return self.mkdir();
        }
        let keys: Vec<(Parent, String)> = self.m.entries.keys().cloned().collect();
        let a = keys[self.rng.index(keys.len())].clone();
        let b = keys[self.rng.index(keys.len())].clone();
        if a == b {
            return;
        }
        let (oa, ob) = (self.m.entries[&a], self.m.entries[&b]);
        // A directory cannot trade places with something inside it.
        let looped = matches!(oa, Obj::Dir(d) if self.m.dir_contains(d, b.0))
            || matches!(ob, Obj::Dir(d) if self.m.dir_contains(d, a.0));
        let (pa, pb) = (self.m.path(a.0, &a.1), self.m.path(b.0, &b.1));
        self.note(format!("exchange {pa} {pb}"));
        let r = self.ns.rename_path(&self.creds, None, &pa, &pb, RenameFlags::EXCHANGE);
        if looped {
            return self.expect(&format!("exchange {pa} {pb}"), r, Err(Errno::INVAL));
        }
        self.expect(&format!("exchange {pa} {pb}"), r, Ok(()));
        let dirs = matches!(oa, Obj::Dir(_)) || matches!(ob, Obj::Dir(_));
        self.count(match (a.0 == b.0, dirs) {
            (true, _) => "exchange in one directory",
            (false, false) => "exchange of files across directories",
            (false, true) => "exchange with a directory across directories",
        });
        self.m.take_entry(&a);
        self.m.take_entry(&b);
        self.m.set_entry(a, ob);
        self.m.set_entry(b, oa);
    }

    fn mkdir(&mut self) {
        if self.m.live_dirs().len() >= MAX_DIRS {
            return self.rmdir();
        }
        let p = self.m.random_parent(&mut self.rng);
        let name = self.m.fresh('d');
        let path = self.m.path(p, &name);
        self.note(format!("mkdir {path}"));
        let r = self.ns.mkdir(&self.creds, None, &path, 0o755);
        self.expect(&format!("mkdir {path}"), r, Ok(()));
        let id = self.m.dirs.len();
        self.m.dirs.push(OwnDir { parent: p, name: name.clone(), alive: true });
        self.m.set_entry((p, name), Obj::Dir(id));
    }

    /// Move an owned directory: to a fresh name anywhere (EINVAL below itself), or
    /// over another owned directory (ENOTEMPTY unless that one is empty).
    fn rename_dir(&mut self) {
        let dirs = self.m.live_dirs();
        if dirs.is_empty() {
            return self.mkdir();
        }
        let d = dirs[self.rng.index(dirs.len())];
        let src = (self.m.dirs[d].parent, self.m.dirs[d].name.clone());
        let old = self.m.path(src.0, &src.1);
        let e = dirs[self.rng.index(dirs.len())];
        let unrelated =
            e != d && !self.m.dir_contains(d, Parent::Dir(e)) && !self.m.dir_contains(e, Parent::Dir(d));
        if unrelated && self.rng.chance(30) {
            let dst = (self.m.dirs[e].parent, self.m.dirs[e].name.clone());
            let new = self.m.path(dst.0, &dst.1);
            self.note(format!("rename dir {old} over {new}"));
            let r = self.ns.rename_path(&self.creds, None, &old, &new, RenameFlags::empty());
            if !self.m.is_empty_dir(e) {
                return self.expect(&format!("rename {old} {new}"), r, Err(Errno::NOTEMPTY));
            }
            self.expect(&format!("rename {old} {new}"), r, Ok(()));
            self.count("directory rename over an empty directory");
            self.m.take_entry(&dst);
            self.m.dirs[e].alive = false;
            self.m.take_entry(&src);
            self.m.set_entry(dst, Obj::Dir(d));
            return;
        }
        let np = self.m.random_parent(&mut self.rng);
        let nname = self.m.fresh('d');
        let new = self.m.path(np, &nname);
        self.note(format!("rename dir {old} {new}"));
        let r = self.ns.rename_path(&self.creds, None, &old, &new, RenameFlags::empty());
        if self.m.dir_contains(d, np) {
            return self.expect(&format!("rename {old} {new}"), r, Err(Errno::INVAL));
        }
        self.expect(&format!("rename {old} {new}"), r, Ok(()));
        self.count(if np == src.0 {
            "directory rename in place"
        } else {
            "directory move across directories"
        });
        self.m.take_entry(&src);
        self.m.set_entry((np, nname), Obj::Dir(d));
    }

    fn rmdir(&mut self) {
        let dirs = self.m.live_dirs();
        if dirs.is_empty() {
            return;
        }
        let d = dirs[self.rng.index(dirs.len())];
        let at = (self.m.dirs[d].parent, self.m.dirs[d].name.clone());
        let path = self.m.path(at.0, &at.1);
        self.note(format!("rmdir {path}"));
        let r = self.ns.rmdir_path(&self.creds, None, &path);
        if !self.m.is_empty_dir(d) {
            return self.expect(&format!("rmdir {path}"), r, Err(Errno::NOTEMPTY));
        }
        self.expect(&format!("rmdir {path}"), r, Ok(()));
        self.m.take_entry(&at);
        self.m.dirs[d].alive = false;
    }

    fn close_handle(&mut self) {
        let open: Vec<usize> =
            (0..self.m.files.len()).filter(|&f| self.m.files[f].handle.is_some()).collect();
        if open.is_empty() {
            // Open one instead.
            let files = self.m.named_files();
            if files.is_empty() || self.m.handles() >= MAX_HANDLES {
                return;
            }
            let f = files[self.rng.index(files.len())];
            let (p, name) = self.m.files[f].names[0].clone();
            let path = self.m.path(p, &name);
            self.note(format!("open {path}"));
            let h = self.ns.open_path(&self.creds, None, &path, OpenFlags::READ | OpenFlags::WRITE, 0);
            self.m.files[f].handle = Some(h.unwrap_or_else(|e| self.fail(format!("open {path}: {e:?}"))));
            return;
        }
        let f = open[self.rng.index(open.len())];
        self.note(format!("close file {f}"));
        self.m.files[f].handle = None;
        self.m.reap(f);
    }

    // ----- chaos on unowned entries: outcomes depend on the other threads -----

    fn chaos_dir(&mut self) -> String {
        let base = STATIC_DIRS[self.rng.index(STATIC_DIRS.len())];
        let mut p = format!("{base}/c{}", self.rng.below(CHAOS_DIRS));
        if self.rng.chance(40) {
            p = format!("{p}/c{}", self.rng.below(CHAOS_DIRS));
        }
        p
    }

    fn chaos(&mut self) {
        const RACY: &[Errno] =
            &[Errno::NOENT, Errno::EXIST, Errno::NOTEMPTY, Errno::INVAL, Errno::NOTDIR, Errno::ISDIR];
        let what = self.rng.below(7);
        let (desc, r): (String, Result<(), Errno>) = match what {
            0 => {
                let p = self.chaos_dir();
                (format!("chaos mkdir {p}"), self.ns.mkdir(&self.creds, None, &p, 0o755).map(|_| ()))
            }
            1 => {
                let p = self.chaos_dir();
                (format!("chaos rmdir {p}"), self.ns.rmdir_path(&self.creds, None, &p))
            }
            2 | 3 => {
                let (a, b) = (self.chaos_dir(), self.chaos_dir());
                let flags = match self.rng.below(3) {
                    0 => RenameFlags::EXCHANGE,
                    1 => RenameFlags::NOREPLACE,
                    _ => RenameFlags::empty(),
                };
                (
                    format!("chaos rename {a} {b} {flags:?}"),
                    self.ns.rename_path(&self.creds, None, &a, &b, flags),
                )
            }
            4 => {
                let p = format!("{}/j{}", self.chaos_dir(), self.rng.below(CHAOS_FILES));
                let n = self.rng.index(3000);
                let data = self.rng.bytes(n);
                let flags = OpenFlags::CREAT | OpenFlags::WRITE;
                let r = self.ns.open_path(&self.creds, None, &p, flags, 0o644);
                (format!("chaos write {p}"), r.and_then(|f| f.write_at(&data, 0).map(|_| ())))
            }
            5 => {
                let p = format!("{}/j{}", self.chaos_dir(), self.rng.below(CHAOS_FILES));
                (format!("chaos unlink {p}"), self.ns.unlink_path(&self.creds, None, &p))
            }
            _ => {
                let a = format!("{}/j{}", self.chaos_dir(), self.rng.below(CHAOS_FILES));
                let b = format!("{}/j{}", self.chaos_dir(), self.rng.below(CHAOS_FILES));
                (format!("chaos link {a} {b}"), self.ns.link_path(&self.creds, None, &a, &b).map(|_| ()))
            }
        };
        self.note(desc.clone());
        if what == 2 || what == 3 {
            self.count(if r.is_ok() {
                "chaos directory renames done"
            } else {
                "chaos directory renames refused"
            });
        }
        if let Err(e) = r
            && !RACY.contains(&e)
        {
            self.fail(format!("{desc}: unexpected {e:?}"));
        }
    }
}

// ----- checks on the final tree -----

#[derive(Default)]
struct Found {
    /// Names referring to each inode.
    names: HashMap<u64, u64>,
    /// Every path, with its inode and type.
    paths: BTreeMap<String, (u64, FileType)>,
}

fn list(ns: &MountNamespace, creds: &Creds, path: &str) -> Vec<(Vec<u8>, u64, FileType)> {
    let d = ns
        .open_path(creds, None, path, OpenFlags::READ | OpenFlags::DIRECTORY, 0)
        .unwrap_or_else(|e| panic!("opendir {path}: {e:?}"));
    let mut out = Vec::new();
    d.readdir(&mut |e| {
        out.push((e.name.to_vec(), e.ino, e.kind));
        true
    })
    .unwrap_or_else(|e| panic!("readdir {path}: {e:?}"));
    out
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" { format!("/{name}") } else { format!("{dir}/{name}") }
}

/// Walk the whole tree: every listed name statable with the listed inode and type,
/// `.` and `..` right, nlink of every inode equal to the names found (directories:
/// 2 + subdirectories).
fn walk(ns: &MountNamespace, creds: &Creds) -> Found {
    let mut found = Found::default();
    let root = ns.stat(creds, None, "/", false).expect("stat /");
    found.names.insert(root.ino, 1);
    let mut nlinks: HashMap<u64, (u64, String)> = HashMap::new();
    let mut stack = vec![("/".to_string(), root.ino, root.ino)];
    while let Some((dir, ino, parent_ino)) = stack.pop() {
        let entries = list(ns, creds, &dir);
        let mut subdirs = 0;
        let mut seen = BTreeSet::new();
        for (name, eino, kind) in entries {
            if name == b"." {
                assert_eq!(eino, ino, "{dir}/.: wrong inode");
                continue;
            }
            if name == b".." {
                assert_eq!(eino, parent_ino, "{dir}/..: wrong inode");
                continue;
            }
            let name = String::from_utf8(name).expect("utf-8 names");
            assert!(seen.insert(name.clone()), "{dir}: {name} listed twice");
            let path = join(&dir, &name);
            let a = ns
                .stat(creds, None, &path, false)
                .unwrap_or_else(|e| panic!("{path} is listed but stat fails: {e:?}"));
            assert_eq!((a.ino, a.kind), (eino, kind), "{path}: readdir and stat disagree");
            *found.names.entry(a.ino).or_default() += 1;
            if let Some((n, other)) = nlinks.insert(a.ino, (a.nlink, path.clone())) {
                assert_eq!(n, a.nlink, "{path} and {other}: one inode, two nlinks");
            }
            found.paths.insert(path.clone(), (a.ino, a.kind));
            if kind == FileType::Directory {
                subdirs += 1;
                stack.push((path, a.ino, ino));
            }
        }
        let a = ns.stat(creds, None, &dir, false).expect("stat dir");
        assert_eq!(a.nlink, 2 + subdirs, "{dir}: nlink {} with {subdirs} subdirectories", a.nlink);
    }
    for (ino, (nlink, path)) in &nlinks {
        let names = found.names[ino];
        let kind = found.paths[path].1;
        if kind == FileType::Directory {
            assert_eq!(names, 1, "directory {path} has {names} names");
        } else {
            assert_eq!(*nlink, names, "{path}: nlink {nlink} but {names} names refer to inode {ino}");
        }
    }
    found
}

/// A thread's files have exactly the names and contents its model says.
fn check_model(ns: &MountNamespace, creds: &Creds, m: &Model, found: &Found) {
    let prefix = format!("t{}", m.tid);
    let mut expected: BTreeSet<String> = BTreeSet::new();
    for ((p, name), obj) in &m.entries {
        let path = m.path(*p, name);
        let Some(&(ino, kind)) = found.paths.get(&path) else {
            panic!("thread {}: {path} ({obj:?}) is missing", m.tid);
        };
        match obj {
            Obj::Dir(_) => assert_eq!(kind, FileType::Directory, "{path}"),
            Obj::File(f) => {
                let file = &m.files[*f];
                assert_eq!(kind, FileType::Regular, "{path}");
                let a = ns.stat(creds, None, &path, false).expect("stat");
                assert_eq!(a.nlink, file.names.len() as u64, "{path}: nlink");
                assert_eq!(a.size, file.data.len() as u64, "{path}: size");
                for (q, n) in &file.names {
                    let other = m.path(*q, n);
                    assert_eq!(
                        found.paths.get(&other).map(|x| x.0),
                        Some(ino),
                        "{path} and {other}: same file"
                    );
                }
                let h = ns.open_path(creds, None, &path, OpenFlags::READ, 0).expect("open");
                let mut buf = vec![0u8; file.data.len() + 100];
                let n = h.read_at(&mut buf, 0).expect("read");
                assert!(buf[..n] == file.data[..], "{path}: contents differ from the last write");
            }
        }
        expected.insert(path);
    }
    let actual: BTreeSet<String> = found
        .paths
        .keys()
        .filter(|p| {
            p.rsplit('/').next().is_some_and(|n| {
                n.starts_with(&prefix) && !n[prefix.len()..].starts_with(|c: char| c.is_ascii_digit())
            })
        })
        .cloned()
        .collect();
    let extra: Vec<&String> = actual.difference(&expected).collect();
    assert!(extra.is_empty(), "thread {}: names nobody made: {extra:?}", m.tid);
}

fn remove_all(ns: &MountNamespace, creds: &Creds, dir: &str) {
    for (name, _, kind) in list(ns, creds, dir) {
        if name == b"." || name == b".." {
            continue;
        }
        let path = join(dir, std::str::from_utf8(&name).expect("utf-8"));
        if kind == FileType::Directory {
            remove_all(ns, creds, &path);
            ns.rmdir_path(creds, None, &path).unwrap_or_else(|e| panic!("rmdir {path}: {e:?}"));
        } else {
            ns.unlink_path(creds, None, &path).unwrap_or_else(|e| panic!("unlink {path}: {e:?}"));
        }
    }
}

#[test]
fn stress_shared_directories() {
    let ops = env_u64("STRESS_OPS", DEFAULT_OPS as u64) as usize;
    let seed = env_u64("STRESS_SEED", DEFAULT_SEED);
    let fs = Tmpfs::new_default();
    let ns = MountNamespace::new(fs.clone(), MountFlags::empty());
    let creds = Creds::root();
    for d in STATIC_DIRS {
        ns.mkdir(&creds, None, d, 0o777).expect("mkdir static");
    }

    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    for tid in 0..THREADS {
        let ns = ns.clone();
        let tx = tx.clone();
        let thread_seed = seed ^ (tid as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        std::thread::Builder::new()
            .name(format!("stress-{tid}"))
            .spawn(move || {
                let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    let mut ctx = Ctx {
                        ns: &ns,
                        creds: Creds::root(),
                        rng: Rng(thread_seed),
                        m: Model::new(tid),
                        step: 0,
                        log: Vec::new(),
                    };
                    ctx.run(ops);
                    ctx.m
                }));
                let _ = tx.send((
                    tid,
                    r.map_err(|p| {
                        p.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default()
                    }),
                ));
            })
            .expect("spawn");
    }
    drop(tx);
    let mut models = Vec::new();
    for _ in 0..THREADS {
        match rx.recv_timeout(DEADLINE.saturating_sub(started.elapsed())) {
            Ok((_, Ok(m))) => models.push(m),
            Ok((tid, Err(msg))) => panic!("thread {tid} failed (STRESS_SEED={seed}): {msg}"),
            Err(_) => panic!(
                "deadlock? {} of {THREADS} threads still running after {DEADLINE:?} (STRESS_SEED={seed})",
                THREADS - models.len()
            ),
        }
    }
    let ran = started.elapsed();

    let found = walk(&ns, &creds);
    for m in &models {
        check_model(&ns, &creds, m, &found);
    }
    assert_eq!(
        fs.used_inodes(),
        found.names.len() as u64,
        "used_inodes against the inodes found in the tree"
    );
    let files: usize = models.iter().map(|m| m.files.iter().filter(|f| f.alive).count()).sum();
    let deepest = found.paths.keys().map(|p| p.len()).max().unwrap_or(0);
    eprintln!(
        "stress: {THREADS} threads x {ops} ops in {ran:?}; {} inodes, {} names, {files} owned files at the \
         end, longest path {deepest} bytes",
        found.names.len(),
        found.paths.len()
    );

    let mut stats: BTreeMap<&str, u64> = BTreeMap::new();
    for m in &models {
        for (k, v) in &m.stats {
            *stats.entry(k).or_default() += v;
        }
    }
    eprintln!("stress: {stats:#?}");
    drop(models);
    remove_all(&ns, &creds, "/");
    assert_eq!(fs.used_inodes(), 1, "inodes left after removing everything");
    assert_eq!(fs.used_bytes(), 0, "bytes left after removing everything");
}
