//! The client gives fids back: walking and opening more files than the fid budget
//! keeps the gofer's descriptors bounded, and nodes whose fid was given back walk
//! to a new one when used again.

use sandfs_gofer::client::{FileAccess, GoferFs, MAX_HELD_FIDS};
use sandfs_gofer::server::{Server, Source};
use sandfs_gofer::transport::Conn;
use sandfs_vfs::{Creds, MountFlags, MountNamespace, OpenFlags};

/// The tests count this process's descriptors: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn fids_are_given_back_and_walked_again() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let n = MAX_HELD_FIDS * 2 + 100;
    for d in 0..10 {
        std::fs::create_dir(dir.path().join(format!("d{d}"))).unwrap();
    }
    for i in 0..n {
        std::fs::write(dir.path().join(format!("d{}/f{i}", i % 10)), i.to_string()).unwrap();
    }
    let before = open_fds();
    let server = Server::new(Source::open(dir.path(), false).unwrap()).unwrap();
    let (client, conn) = Conn::pair().unwrap();
    std::thread::spawn(move || server.serve(conn));
    let ns =
        MountNamespace::new(GoferFs::attach(client, FileAccess::Exclusive).unwrap(), MountFlags::empty());
    let c = Creds::root();
    let read = |p: &str| {
        let f = ns.open_path(&c, None, p, OpenFlags::READ, 0).unwrap();
        let mut buf = [0u8; 16];
        let k = f.read_at(&mut buf, 0).unwrap();
        String::from_utf8_lossy(&buf[..k]).into_owned()
    };
    let mut peak = 0;
    for i in 0..n {
        assert_eq!(read(&format!("/d{}/f{i}", i % 10)), i.to_string());
        if i % 500 == 0 {
            peak = peak.max(open_fds());
        }
    }
    assert!(peak - before < MAX_HELD_FIDS + 200, "descriptors grew to {} over {before}", peak - before);
    // The first files' fids were given back: they are walked to again.
    for i in 0..20 {
        assert_eq!(read(&format!("/d{}/f{i}", i % 10)), i.to_string());
    }
}

#[test]
fn missing_names_stay_enoent_after_fids_are_given_back() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let n = MAX_HELD_FIDS + 500;
    std::fs::create_dir(dir.path().join("d")).unwrap();
    for i in 0..n {
        std::fs::write(dir.path().join(format!("d/f{i}")), b"x").unwrap();
    }
    let server = Server::new(Source::open(dir.path(), false).unwrap()).unwrap();
    let (client, conn) = Conn::pair().unwrap();
    std::thread::spawn(move || server.serve(conn));
    let ns =
        MountNamespace::new(GoferFs::attach(client, FileAccess::Exclusive).unwrap(), MountFlags::empty());
    let c = Creds::root();
    assert_eq!(ns.stat(&c, None, "/d/missing", false).unwrap_err(), sandfs_vfs::Errno::NOENT);
    for i in 0..n {
        ns.open_path(&c, None, format!("/d/f{i}"), OpenFlags::READ, 0).unwrap();
    }
    assert_eq!(ns.stat(&c, None, "/d/missing", false).unwrap_err(), sandfs_vfs::Errno::NOENT);
    assert_eq!(ns.stat(&c, None, "/missing", false).unwrap_err(), sandfs_vfs::Errno::NOENT);
}
