//! A client whose descriptor table is full, served by the real `sandfs gofer`
//! process: the descriptor a reply donates is dropped by the kernel, that operation
//! fails with EMFILE (as open(2) would), and the connection carries on — before, one
//! such reply broke the mount for good (every later operation EIO). Alone in its test
//! binary: it lowers this process's RLIMIT_NOFILE.

mod gofer_child;

use gofer_child::{Gofer, skip};
use rustix::process::{Resource, getrlimit, setrlimit};
use sandfs_gofer::client::FileAccess;
use sandfs_vfs::{Creds, Errno, MountFlags, MountNamespace, OpenFlags};

#[test]
fn a_full_descriptor_table_fails_the_open_not_the_mount() {
    if skip("a_full_descriptor_table_fails_the_open_not_the_mount") {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    for i in 0..200 {
        std::fs::write(t.path().join(format!("f{i}")), format!("file {i}\n")).expect("write");
    }
    let (g, fs) = Gofer::start(t.path(), true, FileAccess::Exclusive);
    let ns = MountNamespace::new(fs, MountFlags::empty());
    let c = Creds::root();
    let before = getrlimit(Resource::Nofile);
    // Room for a few dozen more descriptors in this process.
    let open_now = std::fs::read_dir("/proc/self/fd").expect("fds").count() as u64;
    let mut low = before;
    low.current = Some(open_now + 40);
    setrlimit(Resource::Nofile, low).expect("lower RLIMIT_NOFILE");
    let mut held = Vec::new();
    let mut failure = None;
    for i in 0..200 {
        match ns.open_path(&c, None, format!("f{i}"), OpenFlags::READ, 0) {
            Ok(f) => held.push(f),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let opened = held.len();
    drop(held);
    setrlimit(Resource::Nofile, before).expect("restore RLIMIT_NOFILE");
    assert_eq!(failure, Some(Errno::MFILE), "after {opened} opens\n--- gofer log ---\n{}", g.log());
    // The mount still works: the file that failed opens and reads, the root lists.
    let f = ns.open_path(&c, None, format!("f{opened}"), OpenFlags::READ, 0).expect("open after EMFILE");
    let mut buf = [0u8; 64];
    let n = f.read_at(&mut buf, 0).expect("read");
    assert_eq!(&buf[..n], format!("file {opened}\n").as_bytes());
    let dir = ns.open_path(&c, None, "/", OpenFlags::READ | OpenFlags::DIRECTORY, 0).expect("open /");
    let mut names = 0;
    dir.readdir(&mut |e| {
        names += usize::from(e.name != b"." && e.name != b"..");
        true
    })
    .expect("readdir");
    assert_eq!(names, 200);
}
