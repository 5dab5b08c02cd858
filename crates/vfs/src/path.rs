//! Path resolution inside a mount namespace: components, `.` and `..` (crossing out
//! of mounts, never above the namespace root), symlinks resolved inside the root
//! (ELOOP after 40), search permission on every directory walked, trailing slashes,
//! and the Linux length limits.

use crate::attr::FileType;
use crate::cache::Recorder;
use crate::creds::{Caps, Creds};
use crate::errno::{Errno, Result};
use crate::mount::{Location, MountNamespace};
use crate::perm::{MAY_EXEC, check_access};
use crate::{MAX_SYMLINKS, NAME_MAX, PATH_MAX};

/// The last component of a path after walking to its directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Last {
    /// A normal name.
    Name(Vec<u8>),
    /// `.`
    Dot,
    /// `..`
    DotDot,
    /// The path had no components (`/`).
    Root,
}

/// A walk in progress: the caller's credentials, the symlink budget, and what the
/// path cache needs to know about the walk.
pub(crate) struct Walker<'a> {
    pub ns: &'a MountNamespace,
    pub creds: &'a Creds,
    links: u32,
    rec: Recorder,
}

fn check_path(path: &[u8]) -> Result<()> {
    if path.is_empty() {
        return Err(Errno::NOENT);
    }
    if path.len() >= PATH_MAX {
        return Err(Errno::NAMETOOLONG);
    }
    Ok(())
}

/// Split into components, dropping empty ones; reports a trailing slash.
fn components(path: &[u8]) -> (Vec<&[u8]>, bool) {
    let comps: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|c| !c.is_empty()).collect();
    let trailing = path.ends_with(b"/") && !comps.is_empty();
    (comps, trailing)
}

/// `..` from `loc`: out of mount roots to their mount points, never above the
/// namespace root.
pub(crate) fn dotdot(ns: &MountNamespace, loc: Location) -> Location {
    dotdot_noting(ns, loc, &mut Recorder::off())
}

/// [`dotdot`], noting for the path cache the filesystem whose parent link it reads.
fn dotdot_noting(ns: &MountNamespace, mut loc: Location, rec: &mut Recorder) -> Location {
    loop {
        if ns.is_root(&loc) {
            // Stay at the root, as seen from above: what is mounted on `/` (as
            // `MountNamespace::root` does), never the directory it covers.
            return loc.cross_mounts();
        }
        if !loc.is_mount_root() {
            break;
        }
        match loc.mount.parent() {
            Some((mount, node)) => loc = Location { mount, node },
            None => return loc,
        }
    }
    rec.note(&loc.mount);
    match loc.node.parent() {
        Some(node) => Location { mount: loc.mount, node }.cross_mounts(),
        None => loc,
    }
}

impl<'a> Walker<'a> {
    pub fn new(ns: &'a MountNamespace, creds: &'a Creds) -> Self {
        Walker { ns, creds, links: 0, rec: Recorder::off() }
    }

    /// A walk that notes the generations a path-cache entry of its result needs.
    pub fn recording(ns: &'a MountNamespace, creds: &'a Creds) -> Self {
        Walker { ns, creds, links: 0, rec: Recorder::on() }
    }

    /// The generations noted by a [`Walker::recording`] walk, if its result may be
    /// cached (every filesystem it read has a generation).
    pub fn into_generations(self) -> Option<Vec<(std::sync::Arc<crate::cache::Generation>, u64)>> {
        self.rec.finish()
    }

    /// Count one symlink traversal.
    pub fn count_link(&mut self) -> Result<()> {
        self.links += 1;
        if self.links > MAX_SYMLINKS { Err(Errno::LOOP) } else { Ok(()) }
    }

    /// Look up one name in `dir` (search permission, ENAMETOOLONG, mount crossing).
    pub fn step(&mut self, dir: &Location, name: &[u8]) -> Result<Location> {
        self.search(dir)?;
        if name.len() > NAME_MAX {
            return Err(Errno::NAMETOOLONG);
        }
        self.step_searched(dir, name)
    }

    /// ENOTDIR unless `dir` is a directory, EACCES without search permission on it.
    fn search(&mut self, dir: &Location) -> Result<()> {
        if dir.node.kind() != FileType::Directory {
            return Err(Errno::NOTDIR);
        }
        // Before reading anything of the directory (its mode here, its entries or
        // parent next).
        self.rec.note(&dir.mount);
        // Either capability grants search on any directory (`check_access`), so a
        // privileged walk needs no attributes: saves a lock per component. (The path
        // cache keys credentials on the same rule: `cache::CredKey`.)
        if self.creds.caps.intersects(Caps::DAC_READ_SEARCH | Caps::DAC_OVERRIDE) {
            return Ok(());
        }
        check_access(self.creds, &dir.node.attr()?, MAY_EXEC)
    }

    /// [`Walker::step`] in a directory already searched, for a name already checked.
    fn step_searched(&mut self, dir: &Location, name: &[u8]) -> Result<Location> {
        match name {
            b"." => return Ok(dir.clone()),
            b".." => return Ok(dotdot_noting(self.ns, dir.clone(), &mut self.rec)),
            _ => {}
        }
        let node = dir.node.lookup(name)?;
        Ok(Location { mount: dir.mount.clone(), node }.cross_mounts())
    }

    /// Step into `name` and, if it is a symlink, follow it to a directory, in place:
    /// `loc` moves to where `name` leads. The hot path of every walk: with no mount
    /// or symlink on the way it swaps the node only, without cloning the mount or
    /// building a new location.
    fn advance(&mut self, loc: &mut Location, name: &[u8]) -> Result<()> {
        self.search(loc)?;
        match name {
            b"." => return Ok(()),
            b".." => {
                *loc = dotdot_noting(self.ns, loc.clone(), &mut self.rec);
                return Ok(());
            }
            _ => {}
        }
        if name.len() > NAME_MAX {
            return Err(Errno::NAMETOOLONG);
        }
        let node = loc.node.lookup(name)?;
        if node.kind() != FileType::Symlink && loc.mount.child_at(&node).is_none() {
            loc.node = node;
            return Ok(());
        }
        let next = Location { mount: loc.mount.clone(), node }.cross_mounts();
        *loc = if next.node.kind() == FileType::Symlink { self.follow(loc, &next, true)? } else { next };
        Ok(())
    }

    fn start(&self, cwd: Option<&Location>, path: &[u8]) -> Location {
        match cwd {
            Some(c) if !path.starts_with(b"/") => c.clone(),
            _ => self.ns.root(),
        }
    }

    /// Walk every component but the last; symlinks on the way are followed.
    pub fn walk_parent(&mut self, cwd: Option<&Location>, path: &[u8]) -> Result<(Location, Last, bool)> {
        let (loc, last, trailing) = self.walk_to_last(cwd, path)?;
        let last = match last {
            None => Last::Root,
            Some(b".") => Last::Dot,
            Some(b"..") => Last::DotDot,
            Some(n) => Last::Name(n.to_vec()),
        };
        Ok((loc, last, trailing))
    }

    /// What [`Walker::walk_parent`] does, with the last component borrowed from
    /// `path` (`None` for `/`): the walk allocates nothing.
    fn walk_to_last<'p>(
        &mut self,
        cwd: Option<&Location>,
        path: &'p [u8],
    ) -> Result<(Location, Option<&'p [u8]>, bool)> {
        check_path(path)?;
        let mut loc = self.start(cwd, path);
        let mut comps = path.split(|&b| b == b'/').filter(|c| !c.is_empty());
        let Some(mut last) = comps.next() else {
            return Ok((loc, None, false));
        };
        for c in comps {
            self.advance(&mut loc, last)?;
            last = c;
        }
        // Linux checks search permission on the directory holding the last component
        // too, whatever that component turns out to be.
        self.search(&loc)?;
        if last.len() > NAME_MAX {
            return Err(Errno::NAMETOOLONG);
        }
        Ok((loc, Some(last), path.ends_with(b"/")))
    }

    /// Follow the symlink `link` found in `dir`.
    pub fn follow(&mut self, dir: &Location, link: &Location, must_dir: bool) -> Result<Location> {
        self.count_link()?;
        self.rec.note(&link.mount);
        let mut target = link.node.readlink()?;
        if target.is_empty() {
            return Err(Errno::NOENT);
        }
        if must_dir {
            target.push(b'/');
        }
        self.resolve(Some(dir), &target, true)
    }

    /// Resolve a whole path. `follow`: follow a final symlink (a trailing slash
    /// always does and requires a directory).
    pub fn resolve(&mut self, cwd: Option<&Location>, path: &[u8], follow: bool) -> Result<Location> {
        let (dir, last, trailing) = self.walk_to_last(cwd, path)?;
        let Some(name) = last else {
            return Ok(dir);
        };
        let loc = self.step_searched(&dir, name)?;
        let kind = loc.node.kind();
        if kind == FileType::Symlink && (follow || trailing) {
            return self.follow(&dir, &loc, trailing);
        }
        if trailing && kind != FileType::Directory {
            return Err(Errno::NOTDIR);
        }
        Ok(loc)
    }
}

/// See [`MountNamespace::make_mount_point`].
pub(crate) fn make_mount_point(ns: &MountNamespace, path: &[u8], kind: FileType) -> Result<Location> {
    check_path(path)?;
    let root = Creds::root();
    let mut w = Walker::new(ns, &root);
    make(&mut w, ns.root(), path, kind)
}

fn make(w: &mut Walker<'_>, start: Location, path: &[u8], kind: FileType) -> Result<Location> {
    let mut loc = if path.starts_with(b"/") { w.ns.root() } else { start };
    let (comps, _) = components(path);
    let n = comps.len();
    for (i, c) in comps.iter().enumerate() {
        let want = if i + 1 == n { kind } else { FileType::Directory };
        if *c == b"." || *c == b".." {
            loc = w.step(&loc, c)?;
            continue;
        }
        loc = match w.step(&loc, c) {
            Ok(child) if child.node.kind() == FileType::Symlink => {
                w.count_link()?;
                let target = child.node.readlink()?;
                make(w, loc, &target, want)?
            }
            Ok(child) => child,
            Err(e) if e == Errno::NOENT => w.ns.create_unchecked(&loc, c, want)?.cross_mounts(),
            Err(e) => return Err(e),
        };
        let is_dir = loc.node.kind() == FileType::Directory;
        if want == FileType::Directory && !is_dir {
            return Err(Errno::NOTDIR);
        }
        if want != FileType::Directory && is_dir {
            return Err(Errno::ISDIR);
        }
    }
    if n == 0 && kind != FileType::Directory {
        return Err(Errno::ISDIR);
    }
    Ok(loc)
}
