//! The host-backed filesystem: a vfs [`Filesystem`] whose nodes are fids on a gofer
//! connection. Caching follows the mount's file-access mode, as in runsc:
//! `exclusive` (sandfs is the only writer: names and attributes are cached for the
//! life of the mount and kept current by our own operations) and `shared` (cached
//! entries and attributes are revalidated against the host after [`SHARED_TTL`]).
//! File data moves through the host descriptors the gofer donates (pread/pwrite
//! here, FUSE passthrough in the front end), never through messages. A broken
//! connection fails every pending and later operation with EIO.

use crate::journal::Journal;
use crate::proto::{self, Dent, Fid, Reply, Request, WalkEnd};
use crate::transport::{Conn, RecvError};
use parking_lot::Mutex;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use sandfs_vfs::{
    Attr, DirEntry, FallocFlags, FileType, Filesystem, Handle, NewNode, Node, NodeRef, OpenFlags,
    RenameFlags, Result, SetAttr, StatFs, Whence, XattrFlags,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long a cached entry or attribute is trusted in `shared` mode.
pub const SHARED_TTL: Duration = Duration::from_millis(100);

/// Who else may change the files behind a mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileAccess {
    /// sandfs is the only writer: cache everything.
    Exclusive,
    /// The host may change files: revalidate.
    Shared,
}

impl std::str::FromStr for FileAccess {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "exclusive" => Ok(FileAccess::Exclusive),
            "shared" => Ok(FileAccess::Shared),
            _ => Err(format!("unknown file access mode {s:?} (exclusive or shared)")),
        }
    }
}

/// One connection, used by one request at a time.
struct Client {
    conn: Mutex<(Conn, Vec<u8>, Vec<OwnedFd>)>,
    tag: AtomicU32,
    broken: AtomicBool,
}

impl Client {
    fn call(&self, req: &Request) -> Result<(Reply, Option<OwnedFd>)> {
        if self.broken.load(Ordering::Acquire) {
            return Err(Errno::IO);
        }
        let tag = self.tag.fetch_add(1, Ordering::Relaxed);
        let msg = req.encode(tag);
        let mut guard = self.conn.lock();
        let (conn, buf, fds) = &mut *guard;
        let fail = |why: &str| {
            tracing::error!("gofer connection broken: {why}");
            self.broken.store(true, Ordering::Release);
            Errno::IO
        };
        if self.broken.load(Ordering::Acquire) {
            return Err(Errno::IO);
        }
        if let Err(e) = conn.send(&msg, &[]) {
            return Err(fail(&format!("send: {e}")));
        }
        let lost = match conn.recv(buf, fds) {
            Ok(()) => false,
            Err(RecvError::FdsLost) => true,
            Err(RecvError::Closed) => return Err(fail("gofer closed the connection")),
            Err(RecvError::Malformed(w)) => return Err(fail(w)),
            Err(RecvError::Io(e)) => return Err(fail(&format!("receive: {e}"))),
        };
        let (rtag, reply) = match proto::decode_reply(buf) {
            Ok(x) => x,
            Err(e) => return Err(fail(&format!("malformed reply: {e}"))),
        };
        if rtag != tag {
            return Err(fail("reply tag mismatch"));
        }
        if lost {
            // This process has no descriptor free for the one the gofer donated: the
            // operation fails as open(2) would (EMFILE); a fid the reply made is
            // given back, and the connection carries on.
            if let Ok(Reply::Node { fid, .. }) = reply {
                let close =
                    Request::Close { fids: vec![fid] }.encode(self.tag.fetch_add(1, Ordering::Relaxed));
                if conn.send(&close, &[]).is_err() || conn.recv(buf, fds).is_err() {
                    return Err(fail("closing a fid after a lost descriptor"));
                }
            }
            return Err(Errno::MFILE);
        }
        let fd = fds.pop();
        match reply {
            Ok(r) => Ok((r, fd)),
            Err(e) => Err(Errno::from_raw_os_error(e)),
        }
    }
}

struct Inner {
    client: Client,
    /// The protocol version agreed on at attach.
    version: u32,
    access: FileAccess,
    dev: u64,
    root_dev: u64,
    inos: Mutex<HashMap<(u64, u64), u64>>,
    next_ino: AtomicU64,
    closing: Mutex<Vec<Fid>>,
    /// Nodes holding a fid (oldest first), to give fids back when too many are held:
    /// each is a descriptor in the gofer, and a node can walk to a new one later.
    held: Mutex<std::collections::VecDeque<std::sync::Weak<GNode>>>,
    nfids: std::sync::atomic::AtomicUsize,
    /// Whole listings of the directories listed last (see [`Listing`]).
    listings: Mutex<std::collections::VecDeque<Listing>>,
    /// Moved by every change to a directory: a listing read while one happened is
    /// not kept (it may miss the change).
    dir_changes: AtomicU64,
    /// The paths changed through this client, once asked for (see [`GoferFs::journal`]).
    journal: OnceLock<Arc<Journal>>,
    /// A read-only mount in `exclusive` mode: nothing changes a directory once listed,
    /// so a whole listing answers every lookup in it (see [`GNode::lookup`]).
    frozen: bool,
}

/// The rest of a directory's listing, kept for a while after it was read: the kernel
/// reads a directory in several calls (a page each) and once more to see its end,
/// and each would otherwise be a message. What the caller did not take of the
/// messages read (the entries after cookie `from`) is kept, up to cookie `end`, and
/// whether the directory ends there. Dropped when this client changes the
/// directory, and in `shared` mode after the revalidation bound.
#[derive(Clone)]
struct Listing {
    dir: std::sync::Weak<GNode>,
    at: Instant,
    from: u64,
    entries: Entries,
    end: u64,
    eof: bool,
}

/// One entry of a kept listing: name, inode number, kind, resume cookie.
type Listed = (Arc<[u8]>, u64, FileType, u64);
/// The kept rest of a listing.
type Entries = Arc<[Listed]>;

/// A lookup miss lists the whole directory once the misses times this reach its
/// estimated entries (see [`GNode::list_instead`]).
const LIST_AFTER_MISSES_PER: u64 = 64;

/// Listings kept.
const LISTINGS_KEPT: usize = 16;

/// Fids one mount keeps before giving back the least recently resolved ones.
pub const MAX_HELD_FIDS: usize = 4096;

impl Inner {
    fn call(&self, req: &Request) -> Result<(Reply, Option<OwnedFd>)> {
        self.flush_closes();
        self.client.call(req)
    }

    /// Record that `node` now holds a fid; release the oldest idle ones over the
    /// limit (never the root, never one an operation is using).
    fn track(&self, node: &Arc<GNode>) {
        if node.origin.lock().is_none() {
            return;
        }
        let mut held = self.held.lock();
        held.push_back(Arc::downgrade(node));
        let n = self.nfids.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= MAX_HELD_FIDS {
            return;
        }
        for _ in 0..held.len().min(64) {
            if self.nfids.load(Ordering::Relaxed) <= MAX_HELD_FIDS {
                break;
            }
            let Some(w) = held.pop_front() else { break };
            let Some(old) = w.upgrade() else { continue };
            let mut fid = old.fid.lock();
            if old.busy.load(Ordering::Acquire) == 0 {
                if let Some(f) = fid.take() {
                    self.closing.lock().push(f);
                    self.nfids.fetch_sub(1, Ordering::Relaxed);
                }
            } else {
                drop(fid);
                held.push_back(w);
            }
        }
    }

    fn flush_closes(&self) {
        let fids = {
            let mut c = self.closing.lock();
            if c.len() < 64 {
                return;
            }
            std::mem::take(&mut *c)
        };
        for chunk in fids.chunks(proto::MAX_CLOSE) {
            let _ = self.client.call(&Request::Close { fids: chunk.to_vec() });
        }
    }

    /// The inode number sandfs shows for a host (dev, ino): the host number on the
    /// mount source's device, a private number for files on other devices.
    fn ino(&self, dev: u64, ino: u64) -> u64 {
        if dev == self.root_dev {
            return ino;
        }
        *self.inos.lock().entry((dev, ino)).or_insert_with(|| self.next_ino.fetch_add(1, Ordering::Relaxed))
    }

    fn view(&self, mut a: Attr) -> Attr {
        a.ino = self.ino(a.dev, a.ino);
        a.dev = self.dev;
        a
    }

    /// The kept listing of `dir`, while fresh.
    fn listing(&self, dir: &GNode) -> Option<Listing> {
        let l = self.listings.lock();
        l.iter().find(|x| std::ptr::eq(x.dir.as_ptr(), dir)).filter(|x| self.fresh(x.at)).cloned()
    }

    /// Keep `listing`, unless a directory changed since `changes` was read.
    fn keep_listing(&self, changes: u64, listing: Listing) {
        let mut l = self.listings.lock();
        if self.dir_changes.load(Ordering::Acquire) != changes {
            return;
        }
        l.retain(|x| !x.dir.ptr_eq(&listing.dir));
        if l.len() >= LISTINGS_KEPT {
            l.pop_front();
        }
        l.push_back(listing);
    }

    fn forget_listing(&self, dir: &GNode) {
        let mut l = self.listings.lock();
        self.dir_changes.fetch_add(1, Ordering::AcqRel);
        if !l.is_empty() {
            l.retain(|x| !std::ptr::eq(x.dir.as_ptr(), dir));
        }
    }

    fn fresh(&self, at: Instant) -> bool {
        match self.access {
            FileAccess::Exclusive => true,
            FileAccess::Shared => at.elapsed() < SHARED_TTL,
        }
    }
}

/// A filesystem served by a gofer.
pub struct GoferFs {
    inner: Arc<Inner>,
    root: Arc<GNode>,
    readonly: bool,
}

static NEXT_DEV: AtomicU64 = AtomicU64::new(1);

impl GoferFs {
    /// Attach to the mount served on `conn`.
    pub fn attach(conn: Conn, access: FileAccess) -> Result<Arc<GoferFs>> {
        let client = Client {
            conn: Mutex::new((conn, Vec::new(), Vec::new())),
            tag: AtomicU32::new(1),
            broken: AtomicBool::new(false),
        };
        let (reply, _) = client.call(&Request::Attach { version: proto::VERSION })?;
        let Reply::Attached { version, root, attr, readonly } = reply else { return Err(Errno::PROTO) };
        if !(proto::MIN_VERSION..=proto::VERSION).contains(&version) {
            return Err(Errno::PROTO);
        }
        let minor = NEXT_DEV.fetch_add(1, Ordering::Relaxed);
        let inner = Arc::new(Inner {
            client,
            version,
            access,
            dev: (minor & 0xff) | ((minor & !0xff) << 12) | (2 << 44),
            root_dev: attr.dev,
            inos: Mutex::new(HashMap::new()),
            next_ino: AtomicU64::new(1 << 62),
            closing: Mutex::new(Vec::new()),
            held: Mutex::new(std::collections::VecDeque::new()),
            nfids: std::sync::atomic::AtomicUsize::new(0),
            listings: Mutex::new(std::collections::VecDeque::new()),
            dir_changes: AtomicU64::new(0),
            journal: OnceLock::new(),
            frozen: readonly && access == FileAccess::Exclusive,
        });
        let root = GNode::new(&inner, Some(root), attr, None, None, Instant::now());
        Ok(Arc::new(GoferFs { inner, root, readonly }))
    }

    /// Whether the gofer serves this mount read-only.
    pub fn readonly(&self) -> bool {
        self.readonly
    }

    /// Messages sent to the gofer so far (each is one round trip).
    #[cfg(test)]
    fn round_trips(&self) -> u64 {
        u64::from(self.inner.client.tag.load(Ordering::Relaxed)) - 1
    }

    /// The journal of the paths changed through this client from now on (started by
    /// the first call; later calls return the same one).
    pub fn journal(&self) -> Arc<Journal> {
        self.inner.journal.get_or_init(Default::default).clone()
    }

    /// [`GoferFs::journal`] of `fs` if it is a gofer client (known by its root node).
    pub fn journal_of(fs: &dyn Filesystem) -> Option<Arc<Journal>> {
        let root = sandfs_vfs::downcast::<GNode>(&fs.root()).ok()?;
        Some(root.inner.journal.get_or_init(Default::default).clone())
    }
}

impl Drop for GoferFs {
    fn drop(&mut self) {
        // Directories and their cached children point at each other: empty every
        // cache so the nodes (and with the last of them, the connection) go away.
        // Only directories have children: other nodes go with their directory's map.
        let mut stack = vec![self.root.clone()];
        while let Some(n) = stack.pop() {
            let children = std::mem::take(&mut *n.children.lock());
            stack.extend(
                children.into_values().filter_map(|(c, _)| (c.kind == FileType::Directory).then_some(c)),
            );
        }
    }
}

impl Filesystem for GoferFs {
    fn root(&self) -> NodeRef {
        self.root.clone()
    }
    fn statfs(&self) -> Result<StatFs> {
        match self.inner.call(&Request::Statfs { fid: self.root.fid()?.id() })?.0 {
            Reply::StatFs(s) => Ok(s),
            _ => Err(Errno::PROTO),
        }
    }
    fn name(&self) -> &str {
        "gofer"
    }
    fn revalidate_after(&self) -> Option<Duration> {
        (self.inner.access == FileAccess::Shared).then_some(SHARED_TTL)
    }
}

/// A directory and a name in it (the name shared with the directory's cache key).
type Origin = (std::sync::Weak<GNode>, Arc<[u8]>);

/// Cached directory entries: name → (node, when it was last confirmed).
type Children = HashMap<Arc<[u8]>, (Arc<GNode>, Instant)>;

/// A host file reached through the gofer.
pub struct GNode {
    me: std::sync::Weak<GNode>,
    inner: Arc<Inner>,
    /// The server's fid; `None` for a node first seen in a directory listing, until
    /// an operation needs it (then it is walked from `origin`).
    fid: Mutex<Option<Fid>>,
    /// Directory and name this node can be walked from.
    origin: Mutex<Option<Origin>>,
    /// Operations using the fid right now (it is not given back while any are).
    busy: std::sync::atomic::AtomicU32,
    ino: u64,
    kind: FileType,
    parent: Mutex<Option<Arc<GNode>>>,
    attr: Mutex<(Attr, Option<Instant>)>,
    children: Mutex<Children>,
    target: OnceLock<Vec<u8>>,
    spare: Mutex<Option<OwnedFd>>,
    /// A directory of a frozen mount whose every entry is in `children`: a name
    /// missing there does not exist.
    complete: AtomicBool,
    /// Lookups of names this directory's cache did not hold.
    misses: AtomicU32,
}

impl Drop for GNode {
    fn drop(&mut self) {
        if let Some(fid) = *self.fid.get_mut() {
            self.inner.closing.lock().push(fid);
            if self.origin.get_mut().is_some() {
                self.inner.nfids.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

fn want<T>(
    r: Result<(Reply, Option<OwnedFd>)>,
    f: impl FnOnce(Reply, Option<OwnedFd>) -> Option<T>,
) -> Result<T> {
    let (reply, fd) = r?;
    f(reply, fd).ok_or(Errno::PROTO)
}

impl GNode {
    fn new(
        inner: &Arc<Inner>,
        fid: Option<Fid>,
        attr: Attr,
        parent: Option<Arc<GNode>>,
        origin: Option<Origin>,
        now: Instant,
    ) -> Arc<GNode> {
        let attr = inner.view(attr);
        Arc::new_cyclic(|me| GNode {
            me: me.clone(),
            inner: inner.clone(),
            fid: Mutex::new(fid),
            origin: Mutex::new(origin),
            busy: std::sync::atomic::AtomicU32::new(0),
            ino: attr.ino,
            kind: attr.kind,
            parent: Mutex::new(parent),
            attr: Mutex::new((attr, Some(now))),
            children: Mutex::new(HashMap::new()),
            target: OnceLock::new(),
            spare: Mutex::new(None),
            complete: AtomicBool::new(false),
            misses: AtomicU32::new(0),
        })
    }

    /// The server's fid, walking to it from `origin` when it has none (first use,
    /// or given back). The fid stays valid while the returned use is alive.
    fn fid(&self) -> Result<FidUse<'_>> {
        {
            let mine = self.fid.lock();
            if let Some(f) = *mine {
                self.busy.fetch_add(1, Ordering::AcqRel);
                return Ok(FidUse { node: self, id: f });
            }
        }
        let (parent, name) = self.origin.lock().clone().ok_or(Errno::STALE)?;
        let parent = parent.upgrade().ok_or(Errno::STALE)?;
        let (end, entries) = {
            let pfid = parent.fid()?;
            let req = Request::Walk { dir: pfid.id(), names: vec![name.to_vec()] };
            want(self.inner.call(&req), |r, _| match r {
                Reply::Walked { end, entries } => Some((end, entries)),
                _ => None,
            })?
        };
        if let WalkEnd::Stopped { errno, .. } = end {
            return Err(Errno::from_raw_os_error(errno));
        }
        let &(fid, attr) = entries.first().ok_or(Errno::PROTO)?;
        let id = self.install(fid, &attr, true)?;
        Ok(FidUse { node: self, id })
    }

    /// Take `fid`, just walked to from `origin` with attributes `attr`, as this
    /// node's (or give it back if the node got one meanwhile); the fid the node
    /// holds, marked in use if `use_it`. ESTALE if the name now refers to another file.
    fn install(&self, fid: Fid, attr: &Attr, use_it: bool) -> Result<Fid> {
        if self.inner.ino(attr.dev, attr.ino) != self.ino {
            // The name now refers to another file: this one is gone from the host.
            // Its directory forgets it under that name, so the kernel's retry of the
            // walk (it walks again once after ESTALE) finds the new file.
            self.inner.closing.lock().push(fid);
            self.forget_name();
            return Err(Errno::STALE);
        }
        let (id, fresh) = {
            let mut mine = self.fid.lock();
            if use_it {
                self.busy.fetch_add(1, Ordering::AcqRel);
            }
            match *mine {
                Some(f) => {
                    self.inner.closing.lock().push(fid);
                    (f, false)
                }
                None => {
                    *mine = Some(fid);
                    (fid, true)
                }
            }
        };
        if fresh && let Ok(me) = self.me() {
            self.inner.track(&me);
        }
        Ok(id)
    }

    /// This node's path from the mount root (empty for the root), when a journal
    /// is kept and every directory up to the root is still known.
    fn journal_path(&self) -> Option<(&Journal, Vec<u8>)> {
        let j = self.inner.journal.get()?;
        let mut names: Vec<Arc<[u8]>> = Vec::new();
        let mut cur = self.origin.lock().clone();
        while let Some((dir, name)) = cur {
            names.push(name);
            cur = dir.upgrade()?.origin.lock().clone();
        }
        let mut path = Vec::new();
        for n in names.iter().rev() {
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(n);
        }
        Some((j, path))
    }

    /// This directory's child `name`'s path, as [`GNode::journal_path`].
    fn journal_child(&self, name: &[u8]) -> Option<(&Journal, Vec<u8>)> {
        let (j, mut path) = self.journal_path()?;
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        Some((j, path))
    }

    /// Record a change of this node's content or metadata in the journal, if kept.
    fn journal_modified(&self) {
        if let Some((j, p)) = self.journal_path() {
            j.modified(&p, self.kind);
        }
    }

    /// On a lookup miss in a directory of a frozen mount, whether to list the whole
    /// directory (one round trip, every entry with its attributes) instead of walking
    /// to the one name; lists it if so, and says whether the listing is complete.
    /// A program that looks up one name after another in a directory it has not
    /// listed (git's lstat of its index, a loader's search, a compiler's includes)
    /// would otherwise pay a round trip each. The second miss lists a directory whose
    /// size suggests up to about 128 entries (4 KiB on ext4); a bigger one waits for
    /// proportionally more misses, so a lone lookup in a huge directory does not pay
    /// for all of it.
    fn list_instead(&self) -> Result<bool> {
        let misses = self.misses.fetch_add(1, Ordering::Relaxed) + 1;
        // ext4 and tmpfs report a directory's size in bytes of entries (about 32 each
        // for short names; tmpfs counts 20 per entry): a rough count is enough.
        let entries = self.attr.lock().0.size / 32;
        if misses < 2 || u64::from(misses) * LIST_AFTER_MISSES_PER < entries {
            return Ok(false);
        }
        self.readdir(0, &mut |_| true)?;
        Ok(self.complete.load(Ordering::Acquire))
    }

    /// Drop this node from its directory's cache, if it is still there under its name.
    fn forget_name(&self) {
        let Some((parent, name)) = self.origin.lock().clone() else { return };
        let Some(parent) = parent.upgrade() else { return };
        let mut ch = parent.children.lock();
        if ch.get(&name).is_some_and(|(n, _)| std::ptr::eq(Arc::as_ptr(n), self)) {
            ch.remove(&name);
            // The host changed under a mount it was not to change: walk again.
            parent.complete.store(false, Ordering::Release);
        }
    }

    /// Directory entries after cookie `off`, whether they are the last, and whether
    /// the server listed them ahead of the request (version 4: then attributes the
    /// client holds win). A directory without a fid is walked to and listed in one
    /// round trip (protocol version 2).
    fn list(&self, off: u64) -> Result<(Vec<Dent>, bool, bool)> {
        let listed = self.by_name(
            2,
            |dir, name| Request::Listdir { dir, name, off },
            |r, _| match r {
                Reply::Listed { fid, attr, entries, eof, ahead } => Some((fid, attr, (entries, eof, ahead))),
                _ => None,
            },
        )?;
        if let Some(l) = listed {
            return Ok(l);
        }
        want(self.inner.call(&Request::Getdents { dir: self.fid()?.id(), off }), |r, _| match r {
            Reply::Dents { entries, eof } => Some((entries, eof, false)),
            _ => None,
        })
    }

    /// For a node without a fid, known by name from a listing, one request that walks
    /// to it and does more (protocol version `since` on): `request(parent fid, name)`,
    /// whose reply `pick` splits into the new fid, the node's attributes and the rest.
    /// `None` when the node has a fid, no origin, or the peer is older.
    fn by_name<T>(
        &self,
        since: u32,
        request: impl FnOnce(Fid, Vec<u8>) -> Request,
        pick: impl FnOnce(Reply, Option<OwnedFd>) -> Option<(Fid, Attr, T)>,
    ) -> Result<Option<T>> {
        if self.inner.version < since || self.fid.lock().is_some() {
            return Ok(None);
        }
        let Some((parent, name)) = self.origin.lock().clone() else { return Ok(None) };
        let parent = parent.upgrade().ok_or(Errno::STALE)?;
        let (fid, attr, rest) = {
            let pfid = parent.fid()?;
            want(self.inner.call(&request(pfid.id(), name.to_vec())), pick)?
        };
        self.install(fid, &attr, false)?;
        self.set_attr(attr);
        Ok(Some(rest))
    }

    /// Forget what is cached of this node's attributes (and, for a directory, its
    /// kept listing): it changed.
    fn stale(&self) {
        self.attr.lock().1 = None;
        if self.kind == FileType::Directory {
            self.inner.forget_listing(self);
        }
    }

    fn set_attr(&self, a: Attr) -> Attr {
        self.set_attr_at(a, Instant::now())
    }

    fn set_attr_at(&self, a: Attr, now: Instant) -> Attr {
        let a = self.inner.view(a);
        *self.attr.lock() = (a, Some(now));
        a
    }

    fn me(&self) -> Result<Arc<GNode>> {
        self.me.upgrade().ok_or(Errno::STALE)
    }

    /// A node of this same mount (EXDEV otherwise).
    fn downcast(&self, n: &NodeRef) -> Result<Arc<GNode>> {
        let g = sandfs_vfs::downcast::<GNode>(n)?;
        if !Arc::ptr_eq(&g.inner, &self.inner) {
            return Err(Errno::XDEV);
        }
        Ok(g)
    }

    /// Cache `child` under `name`, keeping an existing node for the same file.
    fn remember(&self, name: &[u8], fid: Option<Fid>, attr: Attr) -> Arc<GNode> {
        let mut ch = self.children.lock();
        let (node, track) = self.remember_in(&mut ch, name, || name.into(), fid, attr, Instant::now());
        drop(ch);
        if track {
            self.inner.track(&node);
        }
        node
    }

    /// [`GNode::remember`] of a listed entry (no fid), with the children locked: one
    /// hash lookup, and the entry's name becomes the key. A node already held keeps
    /// its attributes over a listing made `ahead` (they may predate a write).
    fn remember_listed(&self, ch: &mut Children, d: &Dent, now: Instant, ahead: bool) {
        use std::collections::hash_map::Entry;
        let ino = self.inner.ino(d.attr.dev, d.attr.ino);
        match ch.entry(d.name.clone()) {
            Entry::Occupied(mut e) => {
                let (old, at) = e.get_mut();
                if old.ino == ino && old.kind == d.attr.kind {
                    if !ahead {
                        old.set_attr_at(d.attr, now);
                        *at = now;
                    }
                } else {
                    let node = self.new_child(e.key().clone(), None, d.attr, now);
                    e.insert((node, now));
                }
            }
            Entry::Vacant(e) => {
                let node = self.new_child(e.key().clone(), None, d.attr, now);
                e.insert((node, now));
            }
        }
    }

    /// A new node for `attr` found under `name` in this directory.
    fn new_child(&self, name: Arc<[u8]>, fid: Option<Fid>, attr: Attr, now: Instant) -> Arc<GNode> {
        let parent = if attr.kind == FileType::Directory { self.me().ok() } else { None };
        GNode::new(&self.inner, fid, attr, parent, Some((self.me.clone(), name)), now)
    }

    /// [`GNode::remember`] with the children locked; `key` makes the shared name
    /// for a new entry. Whether the returned node just took `fid` (the caller then
    /// tracks it, with the children unlocked).
    fn remember_in(
        &self,
        ch: &mut Children,
        name: &[u8],
        key: impl FnOnce() -> Arc<[u8]>,
        fid: Option<Fid>,
        attr: Attr,
        now: Instant,
    ) -> (Arc<GNode>, bool) {
        let ino = self.inner.ino(attr.dev, attr.ino);
        if let Some((old, at)) = ch.get_mut(name)
            && old.ino == ino
            && old.kind == attr.kind
        {
            old.set_attr_at(attr, now);
            *at = now;
            if let Some(fid) = fid {
                let mut mine = old.fid.lock();
                if mine.is_none() {
                    *mine = Some(fid);
                    return (old.clone(), true);
                }
                self.inner.closing.lock().push(fid);
            }
            return (old.clone(), false);
        }
        let key = key();
        let node = self.new_child(key.clone(), fid, attr, now);
        ch.insert(key, (node.clone(), now));
        (node, fid.is_some())
    }
}

impl Node for GNode {
    fn ino(&self) -> u64 {
        self.ino
    }

    fn kind(&self) -> FileType {
        self.kind
    }

    fn attr(&self) -> Result<Attr> {
        {
            let a = self.attr.lock();
            if let (attr, Some(at)) = &*a
                && self.inner.fresh(*at)
            {
                return Ok(*attr);
            }
        }
        let a = want(self.inner.call(&Request::Getattr { fid: self.fid()?.id() }), |r, _| match r {
            Reply::Attr(a) => Some(a),
            _ => None,
        })?;
        Ok(self.set_attr(a))
    }

    fn setattr(&self, set: &SetAttr) -> Result<Attr> {
        let (mut valid, mode, uid, gid, size, atime, mtime) = proto::setattr_fields(set);
        if valid == 0 {
            // An empty change still moves ctime (chown(-1, -1)); the host does it.
            valid = proto::setattr_valid::CTIME;
        }
        let req = Request::Setattr { fid: self.fid()?.id(), valid, mode, uid, gid, size, atime, mtime };
        let a = want(self.inner.call(&req), |r, _| match r {
            Reply::Attr(a) => Some(a),
            _ => None,
        })?;
        self.journal_modified();
        Ok(self.set_attr(a))
    }

    fn lookup(&self, name: &[u8]) -> Result<NodeRef> {
        if self.kind != FileType::Directory {
            return Err(Errno::NOTDIR);
        }
        if let Some((n, at)) = self.children.lock().get(name)
            && self.inner.fresh(*at)
        {
            return Ok(n.clone());
        }
        if self.inner.frozen && (self.complete.load(Ordering::Acquire) || self.list_instead()?) {
            // The whole directory is known: the name is there or nowhere.
            return self.children.lock().get(name).map(|(n, _)| n.clone() as NodeRef).ok_or(Errno::NOENT);
        }
        let req = Request::Walk { dir: self.fid()?.id(), names: vec![name.to_vec()] };
        let (end, entries) = want(self.inner.call(&req), |r, _| match r {
            Reply::Walked { end, entries } => Some((end, entries)),
            _ => None,
        })?;
        if let WalkEnd::Stopped { errno, .. } = end {
            self.children.lock().remove(name);
            return Err(Errno::from_raw_os_error(errno));
        }
        let &(fid, attr) = entries.first().ok_or(Errno::PROTO)?;
        Ok(self.remember(name, Some(fid), attr))
    }

    fn parent(&self) -> Option<NodeRef> {
        self.parent.lock().clone().map(|p| p as NodeRef)
    }

    fn create(self: Arc<Self>, name: &[u8], new: &NewNode) -> Result<NodeRef> {
        let (fid, attr, fd) = match new.kind {
            FileType::Regular => {
                let req = Request::Create {
                    dir: self.fid()?.id(),
                    name: name.to_vec(),
                    flags: (rustix::fs::OFlags::RDWR).bits(),
                    mode: new.mode,
                    uid: new.uid,
                    gid: new.gid,
                };
                want(self.inner.call(&req), |r, fd| match r {
                    Reply::Node { fid, attr } => Some((fid, attr, fd)),
                    _ => None,
                })?
            }
            FileType::Symlink => {
                let req = Request::Symlink {
                    dir: self.fid()?.id(),
                    name: name.to_vec(),
                    target: new.target.clone(),
                    uid: new.uid,
                    gid: new.gid,
                };
                want(self.inner.call(&req), |r, _| match r {
                    Reply::Node { fid, attr } => Some((fid, attr, None)),
                    _ => None,
                })?
            }
            kind => {
                let req = Request::Mknod {
                    dir: self.fid()?.id(),
                    name: name.to_vec(),
                    mode: kind.mode_bits() | new.mode,
                    rdev: new.rdev,
                    uid: new.uid,
                    gid: new.gid,
                };
                want(self.inner.call(&req), |r, _| match r {
                    Reply::Node { fid, attr } => Some((fid, attr, None)),
                    _ => None,
                })?
            }
        };
        self.stale();
        if let Some((j, p)) = self.journal_child(name) {
            j.added(&p, new.kind);
        }
        let node = self.remember(name, Some(fid), attr);
        *node.spare.lock() = fd;
        Ok(node)
    }

    fn link(&self, name: &[u8], target: &NodeRef) -> Result<()> {
        let t = self.downcast(target)?;
        let req = Request::Link { dir: self.fid()?.id(), name: name.to_vec(), target: t.fid()?.id() };
        let (fid, attr) = want(self.inner.call(&req), |r, _| match r {
            Reply::Node { fid, attr } => Some((fid, attr)),
            _ => None,
        })?;
        self.inner.closing.lock().push(fid);
        t.set_attr(attr);
        self.stale();
        if let Some((j, p)) = self.journal_child(name) {
            j.added(&p, t.kind);
        }
        self.children.lock().insert(name.into(), (t, Instant::now()));
        Ok(())
    }

    fn unlink(&self, name: &[u8]) -> Result<()> {
        self.remove(name, false)
    }

    fn rmdir(&self, name: &[u8]) -> Result<()> {
        self.remove(name, true)
    }

    fn rename(
        self: Arc<Self>,
        name: &[u8],
        new_dir: &NodeRef,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<()> {
        let nd = self.downcast(new_dir)?;
        let req = Request::Rename {
            olddir: self.fid()?.id(),
            oldname: name.to_vec(),
            newdir: nd.fid()?.id(),
            newname: new_name.to_vec(),
            flags: flags.bits(), // the vfs bits are Linux's RENAME_* values
        };
        self.inner.call(&req)?;
        if let (Some((j, old)), Some((_, new))) = (self.journal_child(name), nd.journal_child(new_name)) {
            let kind = self.children.lock().get(name).map_or(FileType::Regular, |(n, _)| n.kind);
            j.renamed(&old, &new, kind, flags.contains(RenameFlags::EXCHANGE));
        }
        let src = self.children.lock().remove(name);
        let dst = nd.children.lock().remove(new_name);
        if let Some((s, _)) = &src {
            s.stale();
            *s.origin.lock() = Some((nd.me.clone(), new_name.into()));
            if s.kind == FileType::Directory {
                *s.parent.lock() = Some(nd.clone());
            }
            nd.children.lock().insert(new_name.into(), (s.clone(), Instant::now()));
        }
        if let Some((d, _)) = dst {
            d.stale();
            if flags.contains(RenameFlags::EXCHANGE) {
                *d.origin.lock() = Some((self.me.clone(), name.into()));
                if d.kind == FileType::Directory {
                    *d.parent.lock() = Some(self.clone());
                }
                self.children.lock().insert(name.into(), (d, Instant::now()));
            }
        }
        self.stale();
        nd.stale();
        Ok(())
    }

    fn readdir(&self, after: u64, sink: &mut dyn FnMut(DirEntry<'_>) -> bool) -> Result<()> {
        let mut after = after;
        if let Some(l) = self.inner.listing(self) {
            // Resume after the entry whose cookie is `after`.
            let start = if after == l.end {
                Some(l.entries.len())
            } else if after == l.from {
                Some(0)
            } else {
                l.entries.iter().position(|e| e.3 == after).map(|i| i + 1)
            };
            if let Some(start) = start {
                for (name, ino, kind, off) in &l.entries[start..] {
                    if !sink(DirEntry { name, ino: *ino, kind: *kind, offset: *off }) {
                        return Ok(());
                    }
                }
                if l.eof {
                    return Ok(());
                }
                // The kept part is used up and the directory goes on: read on.
                after = l.end;
            }
        }
        let at = Instant::now();
        let changes = self.inner.dir_changes.load(Ordering::Acquire);
        let mut off = after;
        // What the sink did not take of the messages read is kept, with `from` the
        // cookie of the last entry it took. Once the sink is full no further message
        // is asked for: a big directory is read a message at a time, never again
        // from its start.
        let mut keep: Vec<Listed> = Vec::new();
        let mut from = after;
        let mut sink_done = false;
        loop {
            let (entries, eof, ahead) = self.list(off)?;
            // The listing carries every entry's attributes: cache them as nodes
            // (fids are walked to only when an operation needs one), so a stat of
            // each entry after a readdir costs no round trip.
            {
                let now = Instant::now();
                let mut ch = self.children.lock();
                ch.reserve(entries.len());
                for d in &entries {
                    self.remember_listed(&mut ch, d, now, ahead);
                }
            }
            for d in &entries {
                let ino = self.inner.ino(d.attr.dev, d.attr.ino);
                if !sink_done {
                    if sink(DirEntry { name: &d.name, ino, kind: d.attr.kind, offset: d.off }) {
                        from = d.off;
                    } else {
                        sink_done = true;
                    }
                }
                if sink_done {
                    keep.push((d.name.clone(), ino, d.attr.kind, d.off));
                }
                off = d.off;
            }
            let end = eof || entries.is_empty();
            if end && after == 0 && self.inner.frozen {
                self.complete.store(true, Ordering::Release);
            }
            if end || sink_done {
                let l = Listing { dir: self.me.clone(), at, from, entries: keep.into(), end: off, eof: end };
                self.inner.keep_listing(changes, l);
                return Ok(());
            }
        }
    }

    /// The host records accesses itself: reads go through the donated descriptor and
    /// listings through the gofer's own getdents.
    fn touch_atime(&self) {}

    fn readlink(&self) -> Result<Vec<u8>> {
        if self.kind != FileType::Symlink {
            return Err(Errno::INVAL);
        }
        if self.inner.access == FileAccess::Exclusive
            && let Some(t) = self.target.get()
        {
            return Ok(t.clone());
        }
        let t = want(self.inner.call(&Request::Readlink { fid: self.fid()?.id() }), |r, _| match r {
            Reply::Data(d) => Some(d),
            _ => None,
        })?;
        let _ = self.target.set(t.clone());
        Ok(t)
    }

    fn open(self: Arc<Self>, flags: OpenFlags) -> Result<Arc<dyn Handle>> {
        if flags.intersects(OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::TRUNC) {
            // Data written through the donated descriptor sends nothing: an open
            // for writing is what the journal sees of it.
            let h = self.clone().open_now(flags)?;
            self.journal_modified();
            return Ok(h);
        }
        self.open_now(flags)
    }

    fn getxattr(&self, name: &[u8]) -> Result<Vec<u8>> {
        want(self.inner.call(&Request::Getxattr { fid: self.fid()?.id(), name: name.to_vec() }), |r, _| {
            match r {
                Reply::Data(d) => Some(d),
                _ => None,
            }
        })
    }

    fn setxattr(&self, name: &[u8], value: &[u8], flags: XattrFlags) -> Result<()> {
        let fl = (if flags.contains(XattrFlags::CREATE) { 1 } else { 0 })
            | (if flags.contains(XattrFlags::REPLACE) { 2 } else { 0 });
        self.inner.call(&Request::Setxattr {
            fid: self.fid()?.id(),
            name: name.to_vec(),
            value: value.to_vec(),
            flags: fl,
        })?;
        self.stale();
        self.journal_modified();
        Ok(())
    }

    fn listxattr(&self) -> Result<Vec<Vec<u8>>> {
        want(self.inner.call(&Request::Listxattr { fid: self.fid()?.id() }), |r, _| match r {
            Reply::Names(n) => Some(n),
            _ => None,
        })
    }

    fn removexattr(&self, name: &[u8]) -> Result<()> {
        self.inner.call(&Request::Removexattr { fid: self.fid()?.id(), name: name.to_vec() })?;
        self.stale();
        self.journal_modified();
        Ok(())
    }
}

impl GNode {
    /// [`Node::open`], unrecorded.
    fn open_now(self: Arc<Self>, flags: OpenFlags) -> Result<Arc<dyn Handle>> {
        use rustix::fs::OFlags;
        if self.kind != FileType::Regular {
            return Err(if self.kind == FileType::Directory { Errno::ISDIR } else { Errno::NXIO });
        }
        let mut f = match (flags.contains(OpenFlags::READ), flags.contains(OpenFlags::WRITE)) {
            (_, false) => OFlags::RDONLY,
            (false, true) => OFlags::WRONLY,
            (true, true) => OFlags::RDWR,
        };
        if flags.contains(OpenFlags::APPEND) {
            f |= OFlags::APPEND;
        }
        if !flags.contains(OpenFlags::APPEND) {
            let spare = self.spare.lock().take();
            if let Some(fd) = spare {
                return Ok(self.opened(fd));
            }
        }
        // A file first seen in a listing has no fid yet: walk to it and open it in
        // one round trip (protocol version 3).
        let opened = self.by_name(
            3,
            |dir, name| Request::Openat { dir, name, flags: f.bits() },
            |r, fd| match r {
                Reply::Node { fid, attr } => Some((fid, attr, fd?)),
                _ => None,
            },
        )?;
        if let Some(fd) = opened {
            return Ok(self.opened(fd));
        }
        let fd = want(
            self.inner.call(&Request::Open { fid: self.fid()?.id(), flags: f.bits() }),
            |r, fd| match r {
                Reply::Opened => fd,
                _ => None,
            },
        )?;
        Ok(self.opened(fd))
    }

    /// An open of this file on `fd`. Its size and times, read from `fd` (no
    /// message), become the node's: an open sees the file's content as it is when
    /// opened, size and data of one state, though the host changed it after the
    /// attributes were cached (`exclusive` mode included). Owner and mode stay as
    /// the gofer told them (it translates ids; the descriptor shows host ones).
    fn opened(self: Arc<Self>, fd: OwnedFd) -> Arc<dyn Handle> {
        match crate::server::stat_fd(fd.as_fd()) {
            Ok(a) if self.inner.ino(a.dev, a.ino) == self.ino => {
                let mut cached = self.attr.lock();
                let c = &mut cached.0;
                (c.size, c.blocks, c.atime, c.mtime, c.ctime) = (a.size, a.blocks, a.atime, a.mtime, a.ctime);
            }
            _ => self.stale(),
        }
        Arc::new(GHandle { fd, node: self })
    }

    fn remove(&self, name: &[u8], rmdir: bool) -> Result<()> {
        self.inner.call(&Request::Unlink { dir: self.fid()?.id(), name: name.to_vec(), rmdir })?;
        if let Some((j, p)) = self.journal_child(name) {
            j.removed(&p, if rmdir { FileType::Directory } else { FileType::Regular });
        }
        if let Some((n, _)) = self.children.lock().remove(name) {
            n.stale();
        }
        self.stale();
        Ok(())
    }
}

/// An open host file.
struct GHandle {
    fd: OwnedFd,
    node: Arc<GNode>,
}

impl GHandle {
    /// After a write: the attributes from the descriptor itself (no message; the
    /// next write's setuid check would otherwise ask the gofer), or stale. The
    /// owner stays as the gofer told it: the descriptor shows host ids, the gofer
    /// translates them (a host id shown as is would be unmapped in the sandbox's
    /// user namespace, and the kernel refuses to touch such a file: EOVERFLOW).
    fn refresh(&self) {
        match crate::server::stat_fd(self.fd.as_fd()) {
            Ok(mut a) if self.node.inner.ino(a.dev, a.ino) == self.node.ino => {
                {
                    let cached = self.node.attr.lock();
                    (a.uid, a.gid) = (cached.0.uid, cached.0.gid);
                }
                self.node.set_attr(a);
            }
            _ => self.node.stale(),
        }
    }
}

impl Handle for GHandle {
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        rustix::io::pread(&self.fd, buf, off)
    }

    fn write_at(&self, data: &[u8], off: u64) -> Result<usize> {
        let n = rustix::io::pwrite(&self.fd, data, off)?;
        self.refresh();
        Ok(n)
    }

    fn append(&self, data: &[u8]) -> Result<(usize, u64)> {
        // The descriptor was opened O_APPEND: the host places the data at the end.
        let n = rustix::io::write(&self.fd, data)?;
        self.refresh();
        Ok((n, rustix::fs::seek(&self.fd, rustix::fs::SeekFrom::Current(0))?))
    }

    fn fsync(&self, datasync: bool) -> Result<()> {
        if datasync { rustix::fs::fdatasync(&self.fd) } else { rustix::fs::fsync(&self.fd) }
    }

    fn fallocate(&self, flags: FallocFlags, off: u64, len: u64) -> Result<()> {
        use rustix::fs::FallocateFlags as F;
        let mut f = F::empty();
        if flags.contains(FallocFlags::KEEP_SIZE) {
            f |= F::KEEP_SIZE;
        }
        if flags.contains(FallocFlags::PUNCH_HOLE) {
            f |= F::PUNCH_HOLE;
        }
        if flags.contains(FallocFlags::ZERO_RANGE) {
            f |= F::ZERO_RANGE;
        }
        rustix::fs::fallocate(&self.fd, f, off, len)?;
        self.node.stale();
        self.node.journal_modified();
        Ok(())
    }

    fn seek(&self, off: u64, whence: Whence) -> Result<u64> {
        let w = match whence {
            Whence::Data => rustix::fs::SeekFrom::Data(off),
            Whence::Hole => rustix::fs::SeekFrom::Hole(off),
        };
        rustix::fs::seek(&self.fd, w)
    }

    fn host_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.fd.as_fd())
    }
}

/// A fid in use by one operation: it is not given back until this is dropped.
struct FidUse<'a> {
    node: &'a GNode,
    id: Fid,
}

impl FidUse<'_> {
    fn id(&self) -> Fid {
        self.id
    }
}

impl Drop for FidUse<'_> {
    fn drop(&mut self) {
        self.node.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{Server, Source};

    /// A listing made ahead may predate a write through a donated descriptor: a node
    /// the client holds keeps its attributes over it, and takes an ordinary listing's.
    #[test]
    fn held_attributes_win_over_a_listing_made_ahead() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::write(t.path().join("f"), b"abc").expect("write");
        let (client, server_end) = Conn::pair().expect("socketpair");
        let server = Server::new(Source::open(t.path(), false).expect("source")).expect("server");
        std::thread::spawn(move || server.serve(server_end));
        let fs = GoferFs::attach(client, FileAccess::Exclusive).expect("attach");
        let f = fs.root().lookup(b"f").expect("lookup");
        assert_eq!(f.attr().expect("attr").size, 3);
        // As the server lists it: the host's device and inode numbers.
        use std::os::unix::fs::MetadataExt;
        let host = std::fs::metadata(t.path().join("f")).expect("stat");
        let mut listed = f.attr().expect("attr");
        (listed.dev, listed.ino, listed.size) = (host.dev(), host.ino(), 1);
        let d = Dent { name: b"f"[..].into(), off: 1, attr: listed };
        let now = Instant::now();
        fs.root.remember_listed(&mut fs.root.children.lock(), &d, now, true);
        assert_eq!(f.attr().expect("attr").size, 3, "a listing made ahead replaced held attributes");
        fs.root.remember_listed(&mut fs.root.children.lock(), &d, now, false);
        assert_eq!(f.attr().expect("attr").size, 1, "an ordinary listing is news");
    }
}

#[cfg(test)]
mod lookup_tests {
    use super::*;
    use crate::server::{Server, Source};

    fn mount(dir: &std::path::Path, readonly: bool, access: FileAccess) -> Arc<GoferFs> {
        let (client, server_end) = Conn::pair().expect("socketpair");
        let server = Server::new(Source::open(dir, readonly).expect("source")).expect("server");
        std::thread::spawn(move || server.serve(server_end));
        GoferFs::attach(client, access).expect("attach")
    }

    /// `d/` with `n` files `f0`..; the round trips of looking up each, then a
    /// missing name (which must fail with ENOENT), on a mount of that kind.
    fn lookups(n: usize, readonly: bool, access: FileAccess) -> u64 {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(t.path().join("d")).expect("mkdir");
        for i in 0..n {
            std::fs::write(t.path().join("d").join(format!("f{i}")), b"x").expect("write");
        }
        let fs = mount(t.path(), readonly, access);
        let d = fs.root().lookup(b"d").expect("d");
        let before = fs.round_trips();
        for i in 0..n {
            let f = d.lookup(format!("f{i}").as_bytes()).expect("lookup");
            assert_eq!(f.attr().expect("attr").size, 1);
        }
        assert_eq!(d.lookup(b"nope").err(), Some(Errno::NOENT));
        fs.round_trips() - before
    }

    /// On a read-only mount in exclusive mode the second miss lists the directory and
    /// the listing answers the rest, a missing name included; where the host or this
    /// client may change the directory, each name is walked to.
    #[test]
    fn lookup_misses_list_a_frozen_directory_once() {
        assert_eq!(lookups(20, true, FileAccess::Exclusive), 2, "one walk, one listing");
        assert_eq!(lookups(20, false, FileAccess::Exclusive), 21, "writable: a walk per name");
        assert_eq!(lookups(20, true, FileAccess::Shared), 21, "shared: a walk per name");
    }

    /// A directory read a page at a time, as the kernel reads one, costs a message
    /// per message's worth of entries, not a listing from the start per page (a
    /// directory of 20,000 entries used to take a listing of up to 4,096 entries,
    /// each stat'd, per page of about 100), and every entry comes once.
    #[test]
    fn a_big_directory_is_read_once_a_page_at_a_time() {
        let t = tempfile::tempdir().expect("tempdir");
        let n = 20_000;
        for i in 0..n {
            std::fs::write(t.path().join(format!("{i:05}")), b"").expect("write");
        }
        let fs = mount(t.path(), true, FileAccess::Exclusive);
        let root = fs.root();
        let before = fs.round_trips();
        let (mut names, mut after) = (Vec::new(), 0);
        loop {
            let mut page = 0;
            root.readdir(after, &mut |e| {
                if page == 100 {
                    return false;
                }
                page += 1;
                names.push(e.name.to_vec());
                after = e.offset;
                true
            })
            .expect("readdir");
            if page == 0 {
                break;
            }
        }
        let trips = fs.round_trips() - before;
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "entries missing or repeated");
        assert!(trips <= 2 * (n as u64) / 1000, "{trips} messages for {n} entries read 100 at a time");
    }

    /// A big directory is listed only after misses in proportion to its size.
    #[test]
    fn a_big_directory_waits_for_more_misses() {
        let t = tempfile::tempdir().expect("tempdir");
        for i in 0..3000 {
            std::fs::write(t.path().join(format!("file-with-a-name-{i:05}")), b"").expect("write");
        }
        let fs = mount(t.path(), true, FileAccess::Exclusive);
        let root = fs.root();
        let size = root.attr().expect("attr").size;
        let before = fs.round_trips();
        for i in 0..3 {
            root.lookup(format!("file-with-a-name-{i:05}").as_bytes()).expect("lookup");
        }
        assert_eq!(fs.round_trips() - before, 3, "a directory of {size} bytes was listed after 3 misses");
        for i in 3..3000 {
            root.lookup(format!("file-with-a-name-{i:05}").as_bytes()).expect("lookup");
        }
        let trips = fs.round_trips() - before;
        assert!(trips < 200, "{trips} round trips for 3000 names: never listed");
    }
}
