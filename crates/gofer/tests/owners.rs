//! Owners and privileges on host-backed writes, through the raw protocol against a
//! server on a thread of this process: no device node reaches the host (with or
//! without an id map); with the sandbox's map (container 0..65535 = host
//! 100000..165535) every attribute sent is in container ids (65534 for a host id the
//! map lacks), every owner received goes to the mapped host id (EINVAL for one the
//! map lacks, nothing changed), and no host file is left setuid (setgid) to a host
//! id outside the map. The host side is checked with the test's own stat.
//!
//! Giving files other owners needs root: without it those tests are skipped with a
//! printed reason (the device tests run anyway).

mod raw;

use raw::Raw;
use rustix::fs::OFlags;
use rustix::io::Errno;
use sandfs_gofer::proto::{self, Fid, Reply, Request, setattr_valid as v};
use sandfs_gofer::server::{Server, Source};
use sandfs_vfs::idmap::{IdMap, OVERFLOW_ID};
use sandfs_vfs::{Attr, Timespec};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

/// Host id of container id 0.
const BASE: u32 = 100_000;
/// A container id past the map's end.
const UNMAPPED: u32 = 70_000;

fn map() -> IdMap {
    IdMap::shifted(BASE, BASE, 65536)
}

fn skip(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return false;
    }
    eprintln!("SKIP {test}: needs root (gives host files other owners)");
    true
}

fn attach(dir: &Path, map: Option<IdMap>) -> Raw {
    let mut server = Server::new(Source::open(dir, false).expect("source")).expect("server");
    if let Some(m) = map {
        server.map_ids(m);
    }
    Raw::attach_server(server, proto::VERSION).0
}

fn n(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// The host's view of `name` in `dir` (not followed).
fn host(dir: &Path, name: &str) -> std::fs::Metadata {
    std::fs::symlink_metadata(dir.join(name)).unwrap_or_else(|e| panic!("host stat {name}: {e}"))
}

fn owner(m: &std::fs::Metadata) -> (u32, u32) {
    (m.uid(), m.gid())
}

fn mode(m: &std::fs::Metadata) -> u32 {
    m.mode() & 0o7777
}

fn ids(a: &Attr) -> (u32, u32) {
    (a.uid, a.gid)
}

/// A host file with contents, owner and mode set by the test.
fn host_file(dir: &Path, name: &str, uid: u32, gid: u32, mode: u32) {
    let p = dir.join(name);
    std::fs::write(&p, b"#!/bin/sh\n").expect("write");
    std::os::unix::fs::chown(&p, Some(uid), Some(gid)).expect("chown");
    // After the chown, which clears setuid.
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn node(r: Result<Reply, Errno>, what: &str) -> (Fid, Attr) {
    match r {
        Ok(Reply::Node { fid, attr }) => (fid, attr),
        other => panic!("{what}: {other:?}"),
    }
}

fn setattr(raw: &mut Raw, fid: Fid, valid: u32, mode: u32, uid: u32, gid: u32) -> Result<Attr, Errno> {
    let t = Timespec::default();
    let req = Request::Setattr { fid, valid, mode, uid, gid, size: 0, atime: t, mtime: t };
    match raw.call(&req)? {
        Reply::Attr(a) => Ok(a),
        other => panic!("setattr: {other:?}"),
    }
}

fn create(raw: &mut Raw, name: &str, mode: u32, uid: u32, gid: u32) -> Result<Reply, Errno> {
    let req = Request::Create { dir: raw.root, name: n(name), flags: OFlags::RDWR.bits(), mode, uid, gid };
    raw.call(&req)
}

fn mknod(raw: &mut Raw, name: &str, mode: u32, rdev: u64, uid: u32, gid: u32) -> Result<Reply, Errno> {
    raw.call(&Request::Mknod { dir: raw.root, name: n(name), mode, rdev, uid, gid })
}

#[test]
fn device_nodes_are_refused_with_or_without_a_map() {
    for m in [None, Some(map())] {
        let with = m.is_some();
        let t = tempfile::tempdir().expect("tempdir");
        let mut raw = attach(t.path(), m);
        let devices = [
            ("null", 0o020666, rustix::fs::makedev(1, 3)),
            ("sda", 0o060660, rustix::fs::makedev(8, 0)),
            ("whiteout", 0o020000, 0),
        ];
        for (name, mode, rdev) in devices {
            assert_eq!(
                mknod(&mut raw, name, mode, rdev, 0, 0).err(),
                Some(Errno::PERM),
                "{name} (map: {with})"
            );
            assert!(std::fs::symlink_metadata(t.path().join(name)).is_err(), "{name} made on the host");
        }
        // FIFOs and sockets are no device.
        node(mknod(&mut raw, "fifo", 0o010640, 0, 0, 0), "mkfifo");
        assert!(host(t.path(), "fifo").file_type().is_fifo());
        node(mknod(&mut raw, "sock", 0o140640, 0, 0, 0), "mknod socket");
        assert!(host(t.path(), "sock").file_type().is_socket());
        // A rename that leaves a whiteout (a 0/0 character device) behind.
        std::fs::write(t.path().join("f"), b"x").expect("write");
        let req = Request::Rename {
            olddir: raw.root,
            oldname: n("f"),
            newdir: raw.root,
            newname: n("g"),
            flags: 4,
        };
        assert_eq!(raw.call(&req).err(), Some(Errno::PERM), "RENAME_WHITEOUT (map: {with})");
        assert!(host(t.path(), "f").is_file(), "f replaced by a whiteout");
        assert!(std::fs::symlink_metadata(t.path().join("g")).is_err());
        if with && !skip("device_nodes_are_refused_with_or_without_a_map (owners)") {
            assert_eq!(owner(&host(t.path(), "fifo")), (BASE, BASE));
        }
    }
}

#[test]
fn attributes_sent_are_container_ids() {
    if skip("attributes_sent_are_container_ids") {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    host_file(d, "rootfile", 0, 0, 0o644);
    host_file(d, "mine", BASE + 7, BASE + 8, 0o644);
    host_file(d, "other", 5000, 5000, 0o644);
    std::fs::create_dir(d.join("sub")).expect("mkdir");
    host_file(&d.join("sub"), "inner", BASE + 1, BASE + 2, 0o644);

    // Without a map the host's ids pass through.
    let mut raw = attach(d, None);
    let (_, e) = raw.walk(raw.root, &["mine"]);
    assert_eq!(ids(&e[0].1), (BASE + 7, BASE + 8));

    let mut raw = attach(d, Some(map()));
    let root = match raw.call(&Request::Getattr { fid: raw.root }) {
        Ok(Reply::Attr(a)) => a,
        other => panic!("getattr: {other:?}"),
    };
    assert_eq!(ids(&root), (OVERFLOW_ID, OVERFLOW_ID), "the root (host 0) as the kernel shows it");
    let (_, e) = raw.walk(raw.root, &["mine"]);
    assert_eq!(ids(&e[0].1), (7, 8), "walk");
    let mine = e[0].0;
    match raw.call(&Request::Getattr { fid: mine }) {
        Ok(Reply::Attr(a)) => assert_eq!(ids(&a), (7, 8), "getattr"),
        other => panic!("getattr: {other:?}"),
    }
    let (_, e) = raw.walk(raw.root, &["rootfile"]);
    assert_eq!(ids(&e[0].1), (OVERFLOW_ID, OVERFLOW_ID), "host 0");
    let (_, e) = raw.walk(raw.root, &["sub", "inner"]);
    assert_eq!(e.iter().map(|(_, a)| ids(a)).collect::<Vec<_>>(), [(OVERFLOW_ID, OVERFLOW_ID), (1, 2)]);
    let Ok(Reply::Dents { entries, .. }) = raw.call(&Request::Getdents { dir: raw.root, off: 0 }) else {
        panic!("getdents");
    };
    let mut seen: Vec<(String, (u32, u32))> =
        entries.iter().map(|e| (String::from_utf8_lossy(&e.name).into_owned(), ids(&e.attr))).collect();
    seen.sort();
    let o = (OVERFLOW_ID, OVERFLOW_ID);
    let want = [("mine", (7, 8)), ("other", o), ("rootfile", o), ("sub", o)];
    assert_eq!(seen, want.map(|(a, b)| (a.to_string(), b)), "getdents");
    // Listings, made on request and made ahead.
    for i in 1..=20 {
        let mut raw = attach(d, Some(map()));
        assert!(matches!(raw.call(&Request::Getdents { dir: raw.root, off: 0 }), Ok(Reply::Dents { .. })));
        std::thread::sleep(Duration::from_millis(2 * i));
        let Ok(Reply::Listed { attr, entries, ahead, .. }) =
            raw.call(&Request::Listdir { dir: raw.root, name: n("sub"), off: 0 })
        else {
            panic!("listdir");
        };
        assert_eq!(ids(&attr), o, "listdir (ahead: {ahead})");
        assert_eq!(entries.iter().map(|e| ids(&e.attr)).collect::<Vec<_>>(), [(1, 2)], "ahead: {ahead}");
        if ahead {
            return;
        }
    }
    panic!("no listing was ever made ahead");
}

#[test]
fn new_nodes_belong_to_the_mapped_ids() {
    if skip("new_nodes_belong_to_the_mapped_ids") {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    let mut raw = attach(d, Some(map()));
    let (_, a) = node(create(&mut raw, "f", 0o640, 0, 0), "create");
    assert_eq!(ids(&a), (0, 0), "the reply is in container ids");
    assert_eq!((owner(&host(d, "f")), mode(&host(d, "f"))), ((BASE, BASE), 0o640));
    let (_, a) = node(mknod(&mut raw, "dir", 0o040755, 0, 5, 6), "mkdir");
    assert_eq!(ids(&a), (5, 6));
    assert_eq!(owner(&host(d, "dir")), (BASE + 5, BASE + 6));
    let req = Request::Symlink { dir: raw.root, name: n("sl"), target: n("f"), uid: 1, gid: 2 };
    let (_, a) = node(raw.call(&req), "symlink");
    assert_eq!(ids(&a), (1, 2));
    assert_eq!(owner(&host(d, "sl")), (BASE + 1, BASE + 2));
    node(mknod(&mut raw, "fifo", 0o010600, 0, 3, 3), "mkfifo");
    assert_eq!(owner(&host(d, "fifo")), (BASE + 3, BASE + 3));
    node(mknod(&mut raw, "reg", 0o100600, 0, 4, 4), "mknod regular");
    assert_eq!(owner(&host(d, "reg")), (BASE + 4, BASE + 4));
    // Special bits of a node the sandbox owns are kept.
    node(create(&mut raw, "suid", 0o4755, 0, 0), "create setuid");
    assert_eq!((owner(&host(d, "suid")), mode(&host(d, "suid"))), ((BASE, BASE), 0o4755));
    node(mknod(&mut raw, "sgid", 0o042775, 0, 7, 7), "mkdir setgid");
    assert_eq!(mode(&host(d, "sgid")), 0o2775);

    // An owner the map lacks: refused, nothing made (never left to host root).
    let bad: [(&str, Result<Reply, Errno>); 5] = [
        ("c1", create(&mut raw, "c1", 0o644, UNMAPPED, 0)),
        ("c2", create(&mut raw, "c2", 0o644, 0, UNMAPPED)),
        ("m1", mknod(&mut raw, "m1", 0o040755, 0, 65536, 0)),
        ("m2", mknod(&mut raw, "m2", 0o010644, 0, 0, u32::MAX)),
        (
            "s1",
            raw.call(&Request::Symlink {
                dir: raw.root,
                name: n("s1"),
                target: n("f"),
                uid: UNMAPPED,
                gid: 0,
            }),
        ),
    ];
    for (name, r) in bad {
        assert_eq!(r.err(), Some(Errno::INVAL), "{name}");
        assert!(std::fs::symlink_metadata(d.join(name)).is_err(), "{name} made on the host");
    }
}

#[test]
fn chown_goes_through_the_map() {
    if skip("chown_goes_through_the_map") {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    host_file(d, "f", BASE, BASE, 0o644);
    host_file(d, "suid", BASE, BASE, 0o4755);
    host_file(d, "sgid", BASE, BASE, 0o2755);
    host_file(d, "lock", 0, 0, 0o2644);
    let mut raw = attach(d, Some(map()));
    let f = raw.fid("f");
    assert_eq!(setattr(&mut raw, f, v::UID, 0, 5, 0).map(|a| a.uid), Ok(5));
    assert_eq!(owner(&host(d, "f")), (BASE + 5, BASE));
    assert_eq!(setattr(&mut raw, f, v::GID, 0, 0, 9).map(|a| a.gid), Ok(9));
    assert_eq!(owner(&host(d, "f")), (BASE + 5, BASE + 9));
    // Unmapped: EINVAL, and nothing changes (not even the part that maps).
    assert_eq!(setattr(&mut raw, f, v::UID, 0, UNMAPPED, 0).err(), Some(Errno::INVAL));
    assert_eq!(setattr(&mut raw, f, v::UID | v::GID, 0, 1, UNMAPPED).err(), Some(Errno::INVAL));
    assert_eq!(setattr(&mut raw, f, v::UID | v::MODE, 0o600, u32::MAX, 0).err(), Some(Errno::INVAL));
    assert_eq!((owner(&host(d, "f")), mode(&host(d, "f"))), ((BASE + 5, BASE + 9), 0o644));
    // chown clears setuid, and setgid with group execute, on the host as Linux does.
    let s = raw.fid("suid");
    setattr(&mut raw, s, v::UID, 0, 6, 0).expect("chown setuid");
    assert_eq!((owner(&host(d, "suid")), mode(&host(d, "suid"))), ((BASE + 6, BASE), 0o755));
    let s = raw.fid("sgid");
    setattr(&mut raw, s, v::GID, 0, 0, 6).expect("chown setgid");
    assert_eq!(mode(&host(d, "sgid")), 0o755);
    // setgid without group execute survives a chown on Linux; here not while the
    // group stays a host group the sandbox does not own.
    let s = raw.fid("lock");
    setattr(&mut raw, s, v::UID, 0, 3, 0).expect("chown");
    assert_eq!((owner(&host(d, "lock")), mode(&host(d, "lock"))), ((BASE + 3, 0), 0o644));
}

#[test]
fn setuid_and_setgid_stay_only_on_files_the_sandbox_owns() {
    if skip("setuid_and_setgid_stay_only_on_files_the_sandbox_owns") {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    host_file(d, "rootfile", 0, 0, 0o755);
    host_file(d, "mine", BASE + 5, BASE + 5, 0o755);
    host_file(d, "mixed", BASE + 5, 0, 0o755);
    host_file(d, "suidroot", 0, 0, 0o4755);
    host_file(d, "suidroot2", 0, 0, 0o6755);
    host_file(d, "suidmine", BASE, BASE, 0o4755);
    let mut raw = attach(d, Some(map()));
    let f = raw.fid("rootfile");
    assert_eq!(setattr(&mut raw, f, v::MODE, 0o4755, 0, 0).err(), Some(Errno::PERM), "setuid to host root");
    assert_eq!(mode(&host(d, "rootfile")), 0o755);
    // setgid to a group the sandbox does not own is dropped silently, as Linux does.
    assert_eq!(setattr(&mut raw, f, v::MODE, 0o2755, 0, 0).map(|a| a.mode), Ok(0o755));
    assert_eq!(mode(&host(d, "rootfile")), 0o755);
    let f = raw.fid("mine");
    assert_eq!(setattr(&mut raw, f, v::MODE, 0o4755, 0, 0).map(|a| a.mode), Ok(0o4755), "u+s");
    assert_eq!(mode(&host(d, "mine")), 0o4755);
    setattr(&mut raw, f, v::MODE, 0o6755, 0, 0).expect("ug+s");
    assert_eq!(mode(&host(d, "mine")), 0o6755);
    let f = raw.fid("mixed");
    setattr(&mut raw, f, v::MODE, 0o6755, 0, 0).expect("ug+s, group not owned");
    assert_eq!(mode(&host(d, "mixed")), 0o4755);
    // A write to a host file setuid to an id the sandbox does not own clears it
    // (as a write without CAP_FSETID would); reading leaves it.
    let f = raw.fid("suidroot");
    raw.call(&Request::Open { fid: f, flags: OFlags::RDONLY.bits() }).expect("open to read");
    assert_eq!(mode(&host(d, "suidroot")), 0o4755);
    raw.call(&Request::Open { fid: f, flags: OFlags::RDWR.bits() }).expect("open to write");
    assert_eq!(mode(&host(d, "suidroot")), 0o755);
    let f = raw.fid("suidroot2");
    let t0 = Timespec::default();
    let req =
        Request::Setattr { fid: f, valid: v::SIZE, mode: 0, uid: 0, gid: 0, size: 1, atime: t0, mtime: t0 };
    raw.call(&req).expect("truncate");
    assert_eq!(mode(&host(d, "suidroot2")), 0o755);
    // Its own setuid file is the sandbox's to write.
    let f = raw.fid("suidmine");
    raw.call(&Request::Open { fid: f, flags: OFlags::RDWR.bits() }).expect("open to write");
    assert_eq!(mode(&host(d, "suidmine")), 0o4755);

    // Without a map nothing of this applies (the in-process host, the image).
    let mut raw = attach(d, None);
    let f = raw.fid("rootfile");
    setattr(&mut raw, f, v::MODE, 0o4755, 0, 0).expect("u+s without a map");
    assert_eq!(mode(&host(d, "rootfile")), 0o4755);
}
