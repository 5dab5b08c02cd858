//! The real, confined `sandfs gofer` process against privilege planting through a
//! host mount: device nodes (refused on every mount), owners through the sandbox's
//! id map (`--uid-map`/`--gid-map 0:100000:65536`: a host volume of a sandbox whose
//! root is host 100000), and setuid bits to host ids the sandbox does not own. Each
//! attempt goes through the protocol as a hostile client would send it, or through
//! the vfs client; the host side is checked with this process's own stat.
//!
//! Confinement needs root (namespaces, pivot_root, bind mounts): without it every
//! test here is skipped with a printed reason.

mod gofer_child;

use gofer_child::{Gofer, skip};
use rustix::fs::OFlags;
use rustix::io::Errno;
use sandfs_gofer::client::FileAccess;
use sandfs_gofer::proto::{self, Fid, Reply, Request, WalkEnd, setattr_valid as v};
use sandfs_gofer::transport::Conn;
use sandfs_vfs::idmap::OVERFLOW_ID;
use sandfs_vfs::{Attr, Creds, MountFlags, MountNamespace, OpenFlags, SetAttr, Timespec};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

const BASE: u32 = 100_000;
const MAP: [&str; 4] = ["--uid-map", "0:100000:65536", "--gid-map", "0:100000:65536"];

/// A raw protocol client of a real gofer.
struct Raw {
    g: Gofer,
    conn: Conn,
    tag: u32,
    root: Fid,
}

impl Raw {
    fn start(src: &Path, extra: &[&str]) -> Raw {
        let (g, conn) = Gofer::spawn_with(src, false, extra);
        let mut raw = Raw { g, conn, tag: 0, root: 0 };
        match raw.call(Request::Attach { version: proto::VERSION }) {
            Ok(Reply::Attached { root, .. }) => raw.root = root,
            other => panic!("attach: {other:?}"),
        }
        raw
    }

    fn call(&mut self, req: Request) -> Result<Reply, Errno> {
        self.tag += 1;
        self.conn.send(&req.encode(self.tag), &[]).expect("send");
        let (mut buf, mut fds) = (Vec::new(), Vec::new());
        if self.conn.recv(&mut buf, &mut fds).is_err() {
            panic!("the gofer hung up on {req:?}\n--- gofer log ---\n{}", self.g.log());
        }
        let (t, r) = proto::decode_reply(&buf).expect("reply");
        assert_eq!(t, self.tag);
        r.map_err(Errno::from_raw_os_error)
    }

    fn walk(&mut self, name: &str) -> (Fid, Attr) {
        match self.call(Request::Walk { dir: self.root, names: vec![name.into()] }) {
            Ok(Reply::Walked { end: WalkEnd::Complete, entries }) if entries.len() == 1 => entries[0],
            other => panic!("walk {name}: {other:?}"),
        }
    }

    fn setattr(&mut self, fid: Fid, valid: u32, mode: u32, uid: u32, gid: u32) -> Result<Attr, Errno> {
        let t = Timespec::default();
        match self.call(Request::Setattr { fid, valid, mode, uid, gid, size: 0, atime: t, mtime: t })? {
            Reply::Attr(a) => Ok(a),
            other => panic!("setattr: {other:?}"),
        }
    }

    fn mknod(&mut self, name: &str, mode: u32, rdev: u64) -> Result<Reply, Errno> {
        self.call(Request::Mknod { dir: self.root, name: name.into(), mode, rdev, uid: 0, gid: 0 })
    }
}

fn host(dir: &Path, name: &str) -> std::fs::Metadata {
    std::fs::symlink_metadata(dir.join(name)).unwrap_or_else(|e| panic!("host stat {name}: {e}"))
}

fn absent(dir: &Path, name: &str) -> bool {
    std::fs::symlink_metadata(dir.join(name)).is_err()
}

/// (uid, gid, mode bits) of a host file.
fn host_owner_mode(dir: &Path, name: &str) -> (u32, u32, u32) {
    let m = host(dir, name);
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

fn host_file(dir: &Path, name: &str, uid: u32, gid: u32, mode: u32) {
    let p = dir.join(name);
    std::fs::write(&p, b"#!/bin/sh\n").expect("write");
    std::os::unix::fs::chown(&p, Some(uid), Some(gid)).expect("chown");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn the_real_gofer_makes_no_device_nodes() {
    if skip("the_real_gofer_makes_no_device_nodes") {
        return;
    }
    for extra in [&[][..], &MAP[..]] {
        let src = tempfile::tempdir().expect("tempdir");
        let d = src.path();
        let mut raw = Raw::start(d, extra);
        let what = format!("flags {extra:?}");
        let null = rustix::fs::makedev(1, 3);
        assert_eq!(raw.mknod("null", 0o020666, null).err(), Some(Errno::PERM), "char 1,3; {what}");
        assert!(absent(d, "null"), "{what}");
        let sda = rustix::fs::makedev(8, 0);
        assert_eq!(raw.mknod("sda", 0o060660, sda).err(), Some(Errno::PERM), "block 8,0; {what}");
        assert!(absent(d, "sda"), "{what}");
        assert_eq!(raw.mknod("wh", 0o020000, 0).err(), Some(Errno::PERM), "char 0,0; {what}");
        assert!(absent(d, "wh"), "{what}");
        assert!(matches!(raw.mknod("fifo", 0o010644, 0), Ok(Reply::Node { .. })), "mkfifo; {what}");
        assert!(host(d, "fifo").file_type().is_fifo());
        // No file capabilities either (CAP_SETFCAP is not kept): a valid v2
        // security.capability granting CAP_SETUID, effective.
        std::fs::write(d.join("f"), b"x").expect("write");
        let (f, _) = raw.walk("f");
        let mut cap = Vec::new();
        for w in [0x0200_0001u32, 1 << 7, 0, 0, 0] {
            cap.extend_from_slice(&w.to_le_bytes());
        }
        let req = Request::Setxattr { fid: f, name: b"security.capability".to_vec(), value: cap, flags: 0 };
        assert_eq!(raw.call(req).err(), Some(Errno::PERM), "file capability; {what}");
        let mut buf = [0u8; 64];
        assert!(rustix::fs::lgetxattr(d.join("f").as_path(), "security.capability", &mut buf).is_err());
    }
    // Through the vfs client too.
    let src = tempfile::tempdir().expect("tempdir");
    let (_g, fs) = Gofer::start_with(src.path(), false, FileAccess::Exclusive, &MAP);
    let ns = MountNamespace::new(fs, MountFlags::empty());
    let make = sandfs_vfs::ops::Make::CharDev(rustix::fs::makedev(1, 3));
    assert_eq!(ns.mknod(&Creds::root(), None, "/null", make, 0o666).err(), Some(Errno::PERM));
    assert!(absent(src.path(), "null"));
}

#[test]
fn the_real_gofer_maps_owners_and_keeps_setuid_to_owned_files() {
    if skip("the_real_gofer_maps_owners_and_keeps_setuid_to_owned_files") {
        return;
    }
    let src = tempfile::tempdir().expect("tempdir");
    let d = src.path();
    host_file(d, "rootfile", 0, 0, 0o755);
    let mut raw = Raw::start(d, &MAP);
    let log = raw.g.log();

    // A host file owned by host 0 shows as the overflow id.
    let (root_f, a) = raw.walk("rootfile");
    assert_eq!((a.uid, a.gid), (OVERFLOW_ID, OVERFLOW_ID), "{log}");
    // Created as container root: host 100000.
    let req = Request::Create {
        dir: raw.root,
        name: b"new".to_vec(),
        flags: OFlags::RDWR.bits(),
        mode: 0o755,
        uid: 0,
        gid: 0,
    };
    let Ok(Reply::Node { fid: new, attr }) = raw.call(req) else { panic!("create") };
    assert_eq!((attr.uid, attr.gid), (0, 0));
    assert_eq!(host_owner_mode(d, "new"), (BASE, BASE, 0o755));
    // chown to container 5: host 100005.
    assert_eq!(raw.setattr(new, v::UID, 0, 5, 0).map(|a| a.uid), Ok(5));
    assert_eq!(host_owner_mode(d, "new"), (BASE + 5, BASE, 0o755));
    // chown to an id the map lacks: EINVAL, the host owner unchanged.
    assert_eq!(raw.setattr(new, v::UID, 0, 70_000, 0).err(), Some(Errno::INVAL));
    assert_eq!(raw.setattr(new, v::GID, 0, 0, 65_536).err(), Some(Errno::INVAL));
    assert_eq!(host_owner_mode(d, "new"), (BASE + 5, BASE, 0o755));
    // setuid on a file whose host owner is outside the map: not on the host.
    assert_eq!(raw.setattr(root_f, v::MODE, 0o4755, 0, 0).err(), Some(Errno::PERM));
    assert_eq!(host_owner_mode(d, "rootfile"), (0, 0, 0o755));
    // chmod u+s on a file the sandbox owns on the host: kept.
    assert_eq!(raw.setattr(new, v::MODE, 0o4755, 0, 0).map(|a| a.mode), Ok(0o4755));
    assert_eq!(host_owner_mode(d, "new"), (BASE + 5, BASE, 0o4755));
    // chown of a setuid file clears the bit on the host, as Linux does.
    raw.setattr(new, v::UID, 0, 6, 0).expect("chown");
    assert_eq!(host_owner_mode(d, "new"), (BASE + 6, BASE, 0o755));

    // The vfs client on a mapped gofer: the same, in container ids.
    let (_g, fs) = Gofer::start_with(d, false, FileAccess::Exclusive, &MAP);
    let ns = MountNamespace::new(fs, MountFlags::empty());
    let c = Creds::root();
    let st = ns.stat(&c, None, "/rootfile", true).expect("stat");
    assert_eq!((st.uid, st.gid), (OVERFLOW_ID, OVERFLOW_ID));
    drop(ns.open_path(&c, None, "/byvfs", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).expect("create"));
    assert_eq!(host_owner_mode(d, "byvfs"), (BASE, BASE, 0o644));
    ns.setattr_path(&c, None, "/byvfs", &SetAttr { uid: Some(5), gid: Some(7), ..Default::default() }, true)
        .expect("chown");
    assert_eq!(host_owner_mode(d, "byvfs"), (BASE + 5, BASE + 7, 0o644));
    let st = ns.stat(&c, None, "/byvfs", true).expect("stat");
    assert_eq!((st.uid, st.gid), (5, 7));
}

#[test]
fn a_half_map_is_refused() {
    if skip("a_half_map_is_refused") {
        return;
    }
    let src = tempfile::tempdir().expect("tempdir");
    let (mut g, _conn) = Gofer::spawn_with(src.path(), false, &MAP[..2]);
    let status = g.child.wait().expect("wait");
    assert!(!status.success(), "a gofer with uid ranges and no gid ranges served");
    assert!(g.log().contains("--uid-map and --gid-map go together"), "log: {}", g.log());
}
