//! Linux discretionary access control: the rules of `generic_permission`, the sticky
//! bit, setgid inheritance, setuid/setgid clearing, chown/chmod/utimes ownership and
//! protected hard links, written as pure functions of credentials and attributes.

use crate::attr::{Attr, FileType, SetAttr, TimeSet};
use crate::creds::{Caps, Creds};
use crate::errno::{Errno, Result};

/// Read permission.
pub const MAY_READ: u32 = 4;
/// Write permission.
pub const MAY_WRITE: u32 = 2;
/// Execute (files) or search (directories) permission.
pub const MAY_EXEC: u32 = 1;

const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_ISVTX: u32 = 0o1000;
const S_IXGRP: u32 = 0o010;

/// Whether `creds` may access a node with `attr` for `want` (MAY_* bits); EACCES if not.
pub fn check_access(creds: &Creds, attr: &Attr, want: u32) -> Result<()> {
    let bits = if creds.uid == attr.uid {
        attr.mode >> 6
    } else if creds.in_group(attr.gid) {
        attr.mode >> 3
    } else {
        attr.mode
    } & 7;
    if bits & want == want {
        return Ok(());
    }
    let is_dir = attr.kind == FileType::Directory;
    if is_dir {
        if want & MAY_WRITE == 0 && creds.has(Caps::DAC_READ_SEARCH) {
            return Ok(());
        }
        if creds.has(Caps::DAC_OVERRIDE) {
            return Ok(());
        }
    } else {
        if creds.has(Caps::DAC_OVERRIDE) && (want & MAY_EXEC == 0 || attr.mode & 0o111 != 0) {
            return Ok(());
        }
        if want == MAY_READ && creds.has(Caps::DAC_READ_SEARCH) {
            return Ok(());
        }
    }
    Err(Errno::ACCESS)
}

/// Whether the caller owns the node or holds CAP_FOWNER.
pub fn is_owner_or_capable(creds: &Creds, attr: &Attr) -> bool {
    creds.uid == attr.uid || creds.has(Caps::FOWNER)
}

fn in_group_or_capable(creds: &Creds, gid: u32) -> bool {
    creds.in_group(gid) || creds.has(Caps::FSETID)
}

/// Checks for removing or renaming away `victim` from directory `dir` (write+search
/// on the directory, then the sticky bit).
pub fn check_delete(creds: &Creds, dir: &Attr, victim: &Attr) -> Result<()> {
    check_access(creds, dir, MAY_WRITE | MAY_EXEC)?;
    if dir.mode & S_ISVTX != 0 && creds.uid != victim.uid && creds.uid != dir.uid && !creds.has(Caps::FOWNER)
    {
        return Err(Errno::PERM);
    }
    Ok(())
}

/// Owner, group and final mode of a node created in `dir` with requested mode `mode`
/// (umask already applied): setgid directories pass on their group, and their setgid
/// bit to subdirectories; a setgid non-directory created by a non-member loses it.
pub fn new_node_owner(creds: &Creds, dir: &Attr, kind: FileType, mode: u32) -> (u32, u32, u32) {
    let mut mode = mode & 0o7777;
    let gid = if dir.mode & S_ISGID != 0 {
        if kind == FileType::Directory {
            mode |= S_ISGID;
        }
        dir.gid
    } else {
        creds.gid
    };
    if kind != FileType::Directory
        && mode & S_ISGID != 0
        && mode & S_IXGRP != 0
        && !in_group_or_capable(creds, gid)
    {
        mode &= !S_ISGID;
    }
    (creds.uid, gid, mode)
}

/// The setuid/setgid bits an unprivileged write or truncate removes, as a new mode,
/// or `None` when nothing changes (Linux `should_remove_suid`).
pub fn kill_suid_on_write(creds: &Creds, attr: &Attr) -> Option<u32> {
    if attr.kind != FileType::Regular || creds.has(Caps::FSETID) {
        return None;
    }
    let kill = kill_bits(creds, attr);
    (kill != 0).then_some(attr.mode & !kill)
}

fn kill_bits(creds: &Creds, attr: &Attr) -> u32 {
    let mut kill = attr.mode & S_ISUID;
    if attr.mode & S_ISGID != 0 && (attr.mode & S_IXGRP != 0 || !in_group_or_capable(creds, attr.gid)) {
        kill |= S_ISGID;
    }
    kill
}

/// The mode a chown leaves on a non-directory (setuid, and setgid per
/// `setattr_should_drop_sgid`, dropped even for root), or `None` when it stays.
pub fn kill_suid_on_chown(creds: &Creds, attr: &Attr) -> Option<u32> {
    if attr.kind == FileType::Directory {
        return None;
    }
    let kill = kill_bits(creds, attr);
    (kill != 0).then_some(attr.mode & !kill)
}

/// Validate a setattr by `creds` on a node with `attr` and return the change to apply:
/// ownership and mode rules of Linux `setattr_prepare`, the setgid strip on chmod by a
/// non-member, setuid/setgid clearing on chown and unprivileged truncate, and the
/// utimes rules (explicit times need ownership; UTIME_NOW needs ownership or write
/// permission).
pub fn prepare_setattr(creds: &Creds, attr: &Attr, set: &SetAttr) -> Result<SetAttr> {
    let mut out = *set;
    let owner = is_owner_or_capable(creds, attr);
    if let Some(uid) = set.uid
        && !creds.has(Caps::CHOWN)
        && (creds.uid != attr.uid || uid != attr.uid)
    {
        return Err(Errno::PERM);
    }
    if let Some(gid) = set.gid
        && !creds.has(Caps::CHOWN)
        && (creds.uid != attr.uid || (gid != attr.gid && !creds.in_group(gid)))
    {
        return Err(Errno::PERM);
    }
    if let Some(mode) = set.mode {
        if !owner {
            return Err(Errno::PERM);
        }
        let gid = set.gid.unwrap_or(attr.gid);
        let mut mode = mode & 0o7777;
        if mode & S_ISGID != 0 && !in_group_or_capable(creds, gid) {
            mode &= !S_ISGID;
        }
        out.mode = Some(mode);
    }
    // utimensat: both UTIME_NOW is a "touch" (owner, or write permission); anything
    // else (an explicit time, or one UTIME_OMIT) needs ownership.
    let touch = set.atime == Some(TimeSet::Now) && set.mtime == Some(TimeSet::Now);
    if (set.atime.is_some() || set.mtime.is_some()) && !owner {
        if !touch {
            return Err(Errno::PERM);
        }
        check_access(creds, attr, MAY_WRITE)?;
    }
    if set.size.is_some() && attr.kind == FileType::Directory {
        return Err(Errno::ISDIR);
    }
    if set.size.is_some() && attr.kind != FileType::Regular {
        return Err(Errno::INVAL);
    }
    if attr.kind != FileType::Directory && out.mode.is_none() {
        // chown drops setuid (and setgid per should_drop_sgid) even for root; an
        // unprivileged truncate drops them like a write.
        let chown = set.uid.is_some() || set.gid.is_some();
        let truncate = set.size.is_some() && !creds.has(Caps::FSETID);
        let kill = if chown || truncate { kill_bits(creds, attr) } else { 0 };
        if kill != 0 {
            out.mode = Some(attr.mode & !kill);
        }
    }
    Ok(out)
}

/// Linux `protected_hardlinks`: an unprivileged caller may link only files it owns, or
/// regular files it can read and write that are not setuid or executable-setgid.
pub fn check_hardlink(creds: &Creds, attr: &Attr) -> Result<()> {
    if is_owner_or_capable(creds, attr) {
        return Ok(());
    }
    let safe = attr.kind == FileType::Regular
        && attr.mode & S_ISUID == 0
        && attr.mode & (S_ISGID | S_IXGRP) != (S_ISGID | S_IXGRP)
        && check_access(creds, attr, MAY_READ | MAY_WRITE).is_ok();
    if safe { Ok(()) } else { Err(Errno::PERM) }
}
