//! Listings made ahead (protocol version 4): after a directory is listed, the server
//! lists its subdirectories while the connection is idle and answers their `Listdir`
//! with that, flagged; a change asked for in between, or age, voids them; older
//! clients never get one. (That a client keeps the attributes it holds over such a
//! listing is tested in the client's module: a walk to a file gives its directory a
//! fid, which is then listed with `Getdents`, never ahead.)

mod raw;

use raw::Raw;
use sandfs_gofer::proto::{self, Reply, Request};
use sandfs_gofer::server::Source;
use std::path::Path;
use std::time::Duration;

/// List the root, wait `idle`, then list `sub`: its names and whether they were
/// listed ahead.
fn root_then(raw: &mut Raw, idle: Duration, sub: &str) -> (Vec<String>, bool) {
    assert!(matches!(raw.call(&Request::Getdents { dir: raw.root, off: 0 }), Ok(Reply::Dents { .. })));
    std::thread::sleep(idle);
    listdir(raw, sub)
}

fn listdir(raw: &mut Raw, sub: &str) -> (Vec<String>, bool) {
    match raw.call(&Request::Listdir { dir: raw.root, name: sub.into(), off: 0 }) {
        Ok(Reply::Listed { entries, ahead, .. }) => {
            let mut names: Vec<String> =
                entries.iter().map(|e| String::from_utf8_lossy(&e.name).into_owned()).collect();
            names.sort();
            (names, ahead)
        }
        other => panic!("listdir {sub}: {other:?}"),
    }
}

fn attach(dir: &Path, version: u32) -> Raw {
    Raw::attach_version(Source::open(dir, false).expect("source"), version)
}

/// `a/` and `b/` with two files each.
fn tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    for d in ["a", "b"] {
        std::fs::create_dir(t.path().join(d)).expect("mkdir");
        for f in ["x", "y"] {
            std::fs::write(t.path().join(d).join(f), d).expect("write");
        }
    }
    t
}

/// Runs `attempt` until it reports a listing made ahead (the server works only
/// while idle, so a busy machine may need a longer pause); how many tries it took.
fn until_ahead(mut attempt: impl FnMut(Duration) -> bool) -> u32 {
    for i in 1..=20 {
        if attempt(Duration::from_millis(2 * i as u64)) {
            return i;
        }
    }
    panic!("no listing was ever made ahead");
}

#[test]
fn a_subdirectory_is_listed_ahead_and_served_flagged() {
    let t = tree();
    until_ahead(|idle| {
        let mut raw = attach(t.path(), proto::VERSION);
        let (names, ahead) = root_then(&mut raw, idle, "a");
        assert_eq!(names, ["x", "y"]);
        // The fid that came with it works like any other.
        ahead
    });
    // Taken once: listing it again is a fresh listing.
    let mut raw = attach(t.path(), proto::VERSION);
    until_ahead(|idle| root_then(&mut raw, idle, "b").1);
    assert_eq!(listdir(&mut raw, "b"), (vec!["x".to_string(), "y".to_string()], false));
}

#[test]
fn a_change_in_between_voids_what_was_listed_ahead() {
    let t = tree();
    let mut n = 0;
    until_ahead(|idle| {
        n += 1;
        let mut raw = attach(t.path(), proto::VERSION);
        // This pause is long enough for work ahead when `a` comes listed ahead.
        if !root_then(&mut raw, idle, "a").1 {
            return false;
        }
        // Again, with a change between the listing of the root and that of `b`.
        assert!(matches!(raw.call(&Request::Getdents { dir: raw.root, off: 0 }), Ok(Reply::Dents { .. })));
        std::thread::sleep(idle);
        let b = match raw.call(&Request::Walk { dir: raw.root, names: vec![b"b".to_vec()] }) {
            Ok(Reply::Walked { entries, .. }) => entries[0].0,
            other => panic!("walk: {other:?}"),
        };
        let name = format!("new{n}");
        let made =
            Request::Mknod { dir: b, name: name.clone().into(), mode: 0o100644, rdev: 0, uid: 0, gid: 0 };
        assert!(raw.call(&made).is_ok());
        let (names, ahead) = listdir(&mut raw, "b");
        assert!(!ahead, "a listing made before the change was served");
        assert!(names.contains(&name), "{names:?}");
        true
    });
}

#[test]
fn listings_made_ahead_expire() {
    let t = tree();
    let mut raw = attach(t.path(), proto::VERSION);
    assert!(!root_then(&mut raw, Duration::from_millis(150), "a").1, "served after its time");
}

#[test]
fn older_clients_get_none() {
    let t = tree();
    let mut raw = attach(t.path(), 3);
    for _ in 0..5 {
        assert!(!root_then(&mut raw, Duration::from_millis(10), "a").1);
    }
}
