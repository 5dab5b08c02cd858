//! End to end on real host directories: a bundle served by in-process gofer servers
//! (the same server code the confined gofer runs), the namespace built, and the host
//! checked afterwards.

use sandfs_container::host::InProcessHost;
use sandfs_container::{RuntimeConfig, Sandbox};
use sandfs_vfs::{Creds, Errno, MountFlags, OpenFlags};
use std::collections::BTreeMap;

#[test]
fn bundle_over_real_host_directories() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path();
    std::fs::create_dir_all(bundle.join("rootfs/etc")).unwrap();
    std::fs::write(bundle.join("rootfs/etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
    let ro = bundle.join("ro-data");
    let rw = bundle.join("rw-data");
    std::fs::create_dir(&ro).unwrap();
    std::fs::create_dir(&rw).unwrap();
    std::fs::write(ro.join("f"), b"ro").unwrap();
    let config = format!(
        r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},"mounts":[
            {{"destination":"/mnt/ro","type":"bind","source":"{}","options":["ro"]}},
            {{"destination":"/mnt/rw","type":"bind","source":"{}"}},
            {{"destination":"/proc","type":"proc"}}]}}"#,
        ro.display(),
        rw.display()
    );
    std::fs::write(bundle.join("config.json"), config).unwrap();
    let mut sb = Sandbox::new(InProcessHost, RuntimeConfig::default(), &BTreeMap::new()).unwrap();
    let c = sb.container_from_bundle("c", bundle).unwrap();
    let r = Creds::root();
    // The overlaid root: the write stays in the sandbox.
    let f = c.ns.open_path(&r, None, "/etc/x", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).unwrap();
    f.write_at(b"hi", 0).unwrap();
    assert!(!bundle.join("rootfs/etc/x").exists());
    assert!(!bundle.join("rootfs/mnt").exists(), "mount points are not made on the host");
    // The read-only bind refuses, the writable bind (no overlay by default) writes through.
    assert_eq!(c.ns.open_path(&r, None, "/mnt/ro/f", OpenFlags::WRITE, 0).unwrap_err(), Errno::ROFS);
    let g = c.ns.open_path(&r, None, "/mnt/rw/g", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).unwrap();
    g.write_at(b"through", 0).unwrap();
    assert_eq!(std::fs::read(rw.join("g")).unwrap(), b"through");
    // /tmp is a fresh tmpfs; proc is left to the sandbox process.
    let tmp = c.ns.resolve(&r, None, "/tmp", true).unwrap();
    assert_eq!(tmp.mount.fs().name(), "tmpfs");
    assert_eq!(tmp.mount.flags(), MountFlags::empty());
    assert_eq!(c.kernel.len(), 1);
    assert_eq!(sb.restore_map().len(), 3);
}

#[test]
fn file_backed_upper_layers_stay_out_of_sight() {
    for medium in ["self", "dir"] {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path();
        let store_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(bundle.join("rootfs/etc")).unwrap();
        std::fs::write(bundle.join("config.json"), r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"}}"#)
            .unwrap();
        let overlay2 = if medium == "self" {
            "root:self,size=8m".to_string()
        } else {
            format!("root:dir={},size=8m", store_dir.path().display())
        };
        let cfg = RuntimeConfig { overlay2: overlay2.parse().unwrap(), ..RuntimeConfig::default() };
        let mut sb = Sandbox::new(InProcessHost, cfg, &BTreeMap::new()).unwrap();
        let c = sb.container_from_bundle("c", bundle).unwrap();
        let r = Creds::root();
        let f =
            c.ns.open_path(&r, None, "/big", OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREAT, 0o644)
                .unwrap();
        let data = vec![42u8; 4 << 20];
        assert_eq!(f.write_at(&data, 0).unwrap(), data.len());
        let mut back = vec![0u8; 4096];
        f.read_at(&mut back, (3 << 20) + 5).unwrap();
        assert!(back.iter().all(|&b| b == 42));
        // The store never shows: not in the container's root, not on the host.
        let root = c.ns.open_path(&r, None, "/", OpenFlags::READ | OpenFlags::DIRECTORY, 0).unwrap();
        let mut names = Vec::new();
        root.readdir(&mut |e| {
            names.push(String::from_utf8_lossy(e.name).into_owned());
            true
        })
        .unwrap();
        names.sort();
        assert_eq!(names, [".", "..", "big", "etc", "tmp"], "{medium}");
        assert_eq!(
            std::fs::read_dir(bundle.join("rootfs")).unwrap().count(),
            1,
            "{medium}: only etc on the host"
        );
        assert_eq!(std::fs::read_dir(store_dir.path()).unwrap().count(), 0, "{medium}");
        // size= caps the upper layer.
        let more = vec![1u8; 8 << 20];
        assert_eq!(f.write_at(&more, 4 << 20).ok().map(|n| n < more.len()), Some(true), "{medium}");
    }
}
