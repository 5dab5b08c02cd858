//! Listings made ahead (protocol version 4). A cold walk lists a directory, then
//! each of its subdirectories: while the client works through one listing, the
//! server, otherwise idle, lists the subdirectories it named, so the host's getdents
//! and statx of the next directory overlap the client's work on this one.
//!
//! Bounded every way: work is done only while no request waits on the connection,
//! and is paid from a credit that hits earn (a lone `ls` of a big directory wastes at
//! most [`START_CREDIT`] listings); at most [`MAX_READY`] listings and
//! [`MAX_READY_ENTRIES`] entries are held, each for at most [`TTL`]; any change asked
//! for on the connection drops them all. The
//! reply says a listing was made ahead, and the client keeps the attributes of
//! nodes it holds over such a listing's (a write through a donated descriptor sends
//! nothing, so a listing made before it may show the old size).

use crate::proto::Dent;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use sandfs_vfs::{Attr, FileType};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a listing made ahead may wait for its request.
pub const TTL: Duration = Duration::from_millis(50);
/// Most listings held.
pub const MAX_READY: usize = 64;
/// Most entries held in them together (a few MiB at most).
const MAX_READY_ENTRIES: usize = 16384;
/// Most subdirectories waiting to be listed.
const MAX_TODO: usize = 4096;
/// Credit at the start: listings that may be made before any has been used.
pub const START_CREDIT: u32 = 4;
/// Most credit saved up.
const MAX_CREDIT: u32 = 256;

/// A subdirectory by its parent's device and inode and its name.
type Key = (u64, u64, Box<[u8]>);

/// A subdirectory to list: its parent's descriptor and its key.
struct Job {
    parent: Arc<OwnedFd>,
    key: Key,
}

/// A listing made ahead: the directory's `O_PATH` descriptor, its attributes, its
/// first page of entries.
pub struct Made {
    pub fd: OwnedFd,
    pub parent: Arc<OwnedFd>,
    pub attr: Attr,
    pub entries: Vec<Dent>,
    pub eof: bool,
    at: Instant,
}

/// Makes one listing: walks `name` beneath `parent` to a directory and lists it.
pub type Lister<'a> =
    dyn FnMut(BorrowedFd<'_>, &[u8]) -> Result<(OwnedFd, Attr, Vec<Dent>, bool), Errno> + 'a;

/// The listings made ahead for one connection and the subdirectories still to do.
pub struct Ahead {
    ready: HashMap<Key, Made>,
    todo: VecDeque<Job>,
    credit: u32,
    /// Take jobs from the back: the client asked for the newest ones first.
    from_back: bool,
    /// What time it is: [`Instant::now`], or a clock a test moves by hand (the
    /// expiry must not depend on how fast the machine runs the test).
    clock: fn() -> Instant,
}

impl Default for Ahead {
    fn default() -> Ahead {
        Ahead {
            ready: HashMap::new(),
            todo: VecDeque::new(),
            credit: START_CREDIT,
            from_back: false,
            clock: Instant::now,
        }
    }
}

impl Ahead {
    /// Whether a listing made at `at` is too old to hand out.
    fn expired(&self, at: Instant) -> bool {
        (self.clock)().saturating_duration_since(at) > TTL
    }

    /// Entries held in the listings made, all together.
    fn held(&self) -> usize {
        self.ready.values().map(|m| m.entries.len()).sum()
    }

    /// The listing of `name` in the directory (`dev`, `ino`), if one was made ahead
    /// and is still fresh. A hit earns credit; so does a request for a subdirectory
    /// still waiting to be listed (the guess was right, only late), which is then
    /// taken off the list, and whose place there says which end to work from.
    pub fn take(&mut self, dev: u64, ino: u64, name: &[u8]) -> Option<Made> {
        let key: Key = (dev, ino, name.into());
        if let Some(m) = self.ready.remove(&key) {
            if self.expired(m.at) {
                return None;
            }
            self.earn(2);
            return Some(m);
        }
        if let Some(i) = self.todo.iter().position(|j| j.key == key) {
            self.from_back = i > self.todo.len() / 2;
            self.todo.remove(i);
            self.earn(1);
        }
        None
    }

    fn earn(&mut self, n: u32) {
        self.credit = (self.credit + n).min(MAX_CREDIT);
    }

    /// Queue the subdirectories among `entries` of the directory open at `dir`, at
    /// the end work is taken from, in their order: a walk descends into what it just
    /// listed, so its subdirectories are wanted before what was queued earlier (depth
    /// first, as `find` goes). The far end overflows.
    pub fn queue(&mut self, dir: &Arc<OwnedFd>, dev: u64, ino: u64, entries: &[Dent]) {
        let subdirs = entries.iter().filter(|d| d.attr.kind == FileType::Directory);
        let job = |d: &Dent| Job { parent: dir.clone(), key: (dev, ino, d.name.as_ref().into()) };
        if self.from_back {
            for d in subdirs {
                self.todo.push_back(job(d));
            }
            while self.todo.len() > MAX_TODO {
                self.todo.pop_front();
            }
        } else {
            let group: Vec<&Dent> = subdirs.collect();
            for d in group.into_iter().rev() {
                self.todo.push_front(job(d));
            }
            self.todo.truncate(MAX_TODO);
        }
    }

    /// Something changed: every listing made is void (the list of subdirectories to
    /// do stays: they are still likely asked for next).
    pub fn drop_ready(&mut self) {
        self.ready.clear();
    }

    /// Make listings while credit lasts, room remains and `busy` says no request
    /// waits. (A listing's own subdirectories are queued when it is used.)
    pub fn work(&mut self, busy: &dyn Fn() -> bool, list: &mut Lister<'_>) {
        if self.todo.is_empty() || self.credit == 0 {
            return;
        }
        // Expired listings are refused by `take` anyway; here they free room.
        let now = (self.clock)();
        self.ready.retain(|_, m| now.saturating_duration_since(m.at) <= TTL);
        while self.credit > 0 && self.ready.len() < MAX_READY && self.held() < MAX_READY_ENTRIES {
            if self.todo.is_empty() || busy() {
                return;
            }
            let job = if self.from_back { self.todo.pop_back() } else { self.todo.pop_front() };
            let Some(job) = job else { return };
            self.credit -= 1;
            let Ok((fd, attr, entries, eof)) = list(job.parent.as_fd(), &job.key.2) else { continue };
            let made = Made { fd, parent: job.parent, attr, entries, eof, at: (self.clock)() };
            self.ready.insert(job.key, made);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attributes of a `kind` (those of `/`, retyped).
    fn attr(kind: FileType) -> Attr {
        Attr { kind, ..crate::server::stat_fd(fd().as_fd()).expect("stat /") }
    }

    fn dents(names: &[&str], kind: FileType) -> Vec<Dent> {
        names.iter().map(|n| Dent { name: n.as_bytes().into(), off: 1, attr: attr(kind) }).collect()
    }

    fn fd() -> OwnedFd {
        rustix::fs::open("/", rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).expect("open /")
    }

    /// A lister that records what it was asked for and lists `n` regular files.
    fn lister(asked: &mut Vec<String>, n: usize) -> impl FnMut(BorrowedFd<'_>, &[u8]) -> ListResult + '_ {
        move |_, name| {
            asked.push(String::from_utf8_lossy(name).into_owned());
            let names: Vec<String> = (0..n).map(|i| format!("f{i}")).collect();
            let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
            Ok((fd(), attr(FileType::Directory), dents(&names, FileType::Regular), true))
        }
    }

    type ListResult = Result<(OwnedFd, Attr, Vec<Dent>, bool), Errno>;

    #[test]
    fn only_subdirectories_are_listed_and_a_lone_listing_wastes_little() {
        let dir = Arc::new(fd());
        let mut a = Ahead::default();
        let mut entries = dents(&["a", "b", "c", "d", "e", "f"], FileType::Directory);
        entries.extend(dents(&["file"], FileType::Regular));
        a.queue(&dir, 1, 2, &entries);
        let mut asked = Vec::new();
        a.work(&|| false, &mut lister(&mut asked, 1));
        // Depth first from the front, in order; then the credit is spent.
        assert_eq!(asked, ["a", "b", "c", "d"]);
        assert!(a.take(1, 2, b"a").is_some());
        assert!(a.take(1, 2, b"a").is_none(), "taken twice");
        assert!(a.take(9, 2, b"b").is_none(), "another directory's child");
        // The hit earned credit for more.
        let mut asked = Vec::new();
        a.work(&|| false, &mut lister(&mut asked, 1));
        assert_eq!(asked, ["e", "f"]);
    }

    #[test]
    fn no_work_while_a_request_waits_and_nothing_after_a_change() {
        let dir = Arc::new(fd());
        let mut a = Ahead::default();
        a.queue(&dir, 1, 2, &dents(&["a", "b"], FileType::Directory));
        let mut asked = Vec::new();
        a.work(&|| true, &mut lister(&mut asked, 1));
        assert!(asked.is_empty());
        a.work(&|| false, &mut lister(&mut asked, 1));
        assert_eq!(asked, ["a", "b"]);
        a.drop_ready();
        assert!(a.take(1, 2, b"a").is_none() && a.take(1, 2, b"b").is_none());
    }

    #[test]
    fn a_request_from_the_back_turns_the_order() {
        let dir = Arc::new(fd());
        let mut a = Ahead::default();
        a.queue(&dir, 1, 2, &dents(&["a", "b", "c", "d", "e", "f"], FileType::Directory));
        // Asked for the last one before any work: a late guess, from the back now.
        assert!(a.take(1, 2, b"f").is_none());
        let mut asked = Vec::new();
        a.work(&|| false, &mut lister(&mut asked, 1));
        assert_eq!(asked[..2], ["e", "d"]);
    }

    thread_local! {
        /// The time a test's stopped clock shows (each test runs on its own thread).
        static NOW: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
    }

    /// A clock that moves only when the test says so.
    fn stopped() -> Instant {
        NOW.with(|n| match n.get() {
            Some(t) => t,
            None => {
                let t = Instant::now();
                n.set(Some(t));
                t
            }
        })
    }

    fn advance(by: Duration) {
        NOW.with(|n| n.set(Some(stopped() + by)));
    }

    #[test]
    fn listings_expire_by_the_clock_not_by_the_machine() {
        let dir = Arc::new(fd());
        let mut a = Ahead { clock: stopped, ..Ahead::default() };
        a.queue(&dir, 1, 2, &dents(&["d0", "d1"], FileType::Directory));
        let mut asked = Vec::new();
        a.work(&|| false, &mut lister(&mut asked, 1));
        assert_eq!(asked.len(), 2);
        advance(TTL);
        assert!(a.take(1, 2, b"d0").is_some(), "still fresh at TTL");
        assert_eq!(a.held(), 1, "d1 is held");
        advance(Duration::from_millis(1));
        assert!(a.take(1, 2, b"d1").is_none(), "expired after TTL");
    }

    #[test]
    fn held_entries_are_bounded() {
        let dir = Arc::new(fd());
        let mut a = Ahead { clock: stopped, ..Ahead::default() };
        let names: Vec<String> = (0..40).map(|i| format!("d{i}")).collect();
        let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        a.queue(&dir, 1, 2, &dents(&names, FileType::Directory));
        a.credit = MAX_CREDIT;
        let mut asked = Vec::new();
        a.work(&|| false, &mut lister(&mut asked, 4096));
        assert_eq!(asked.len(), MAX_READY_ENTRIES / 4096);
        assert_eq!(a.held(), MAX_READY_ENTRIES);
        assert!(a.take(1, 2, b"d0").is_some());
        assert_eq!(a.held(), MAX_READY_ENTRIES - 4096);
    }
}
