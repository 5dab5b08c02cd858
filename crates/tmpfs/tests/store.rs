//! A tmpfs whose pages live in a store file: same behaviour as the heap one, data in
//! the host file, nothing visible in the store's directory.

use sandfs_tmpfs::{StoreFile, Tmpfs, TmpfsOptions};
use sandfs_vfs::{Creds, Errno, FallocFlags, MountFlags, MountNamespace, OpenFlags, Whence};

#[test]
fn pages_in_a_store_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreFile::create_in(dir.path()).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the store file is unnamed");
    let fs = Tmpfs::with_store(&TmpfsOptions { size: Some(1 << 20), ..TmpfsOptions::default() }, Some(store))
        .unwrap();
    let ns = MountNamespace::new(fs.clone(), MountFlags::empty());
    let c = Creds::root();
    let f =
        ns.open_path(&c, None, "f", OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREAT, 0o644).unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    f.write_at(&data, 10).unwrap();
    f.write_at(b"far", 500_000).unwrap();
    let mut back = vec![0u8; data.len()];
    assert_eq!(f.read_at(&mut back, 10).unwrap(), data.len());
    assert_eq!(back, data);
    // Holes stay holes.
    assert_eq!(f.seek_data(200_000, Whence::Data).unwrap(), 499_712);
    let mut hole = [1u8; 16];
    f.read_at(&mut hole, 300_000).unwrap();
    assert_eq!(hole, [0u8; 16]);
    // Punch and truncate give pages back, and they come back zeroed.
    let used = fs.used_bytes();
    f.fallocate(FallocFlags::PUNCH_HOLE | FallocFlags::KEEP_SIZE, 0, 65536).unwrap();
    assert!(fs.used_bytes() < used);
    f.truncate(20).unwrap();
    f.truncate(100_000).unwrap();
    let mut z = vec![1u8; 1000];
    f.read_at(&mut z, 30_000).unwrap();
    assert!(z.iter().all(|&b| b == 0), "a reused slot leaked old data");
    // The size cap holds.
    let big = vec![7u8; 2 << 20];
    let n = f.write_at(&big, 0).unwrap();
    assert!(n <= 1 << 20);
    assert_eq!(f.write_at(&big, n as u64).unwrap_err(), Errno::NOSPC);
    drop(f);
    ns.unlink_path(&c, None, "f").unwrap();
    assert_eq!(fs.used_bytes(), 0);
}
