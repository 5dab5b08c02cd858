//! runsc's mount tests, by behaviour, on the recording fake host (no root needed):
//! the plan is built against in-memory "host" trees and every gofer request is
//! recorded.

use sandfs_container::host::{Owners, RecordingHost};
use sandfs_container::{Overlay2, RuntimeConfig, Sandbox, SetupError};
use sandfs_gofer::client::FileAccess;
use sandfs_tmpfs::{Tmpfs, TmpfsOptions};
use sandfs_vfs::{Creds, Errno, FileType, MountFlags, MountNamespace, OpenFlags};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

fn tree(entries: &[&str]) -> Arc<Tmpfs> {
    let fs = Tmpfs::new(&TmpfsOptions { mode: Some(0o755), ..TmpfsOptions::default() }).unwrap();
    let ns = MountNamespace::new(fs.clone(), MountFlags::empty());
    let c = Creds::root();
    for e in entries {
        if let Some(d) = e.strip_suffix('/') {
            ns.mkdir(&c, None, d, 0o755).unwrap();
        } else if let Some((l, t)) = e.split_once(" -> ") {
            ns.symlink(&c, None, t, l).unwrap();
        } else {
            ns.open_path(&c, None, e, OpenFlags::WRITE | OpenFlags::CREAT, 0o644)
                .unwrap()
                .write_at(b"x", 0)
                .unwrap();
        }
    }
    fs
}

fn spec(json: &str) -> oci_spec::runtime::Spec {
    serde_json::from_str(json).expect("spec")
}

fn host_with_root(entries: &[&str]) -> RecordingHost {
    let mut h = RecordingHost::default();
    h.add("/bundle/rootfs", tree(entries));
    h
}

fn mounts(json_mounts: &str, readonly: bool) -> oci_spec::runtime::Spec {
    spec(&format!(
        r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs","readonly":{readonly}}},"mounts":[{json_mounts}]}}"#
    ))
}

fn build(
    host: RecordingHost,
    cfg: RuntimeConfig,
    s: &oci_spec::runtime::Spec,
) -> Result<(Sandbox<RecordingHost>, sandfs_container::ContainerFs), SetupError> {
    let mut sb = Sandbox::new(host, cfg, &BTreeMap::new())?;
    let c = sb.container("c1", s, Path::new("/bundle"))?;
    Ok((sb, c))
}

fn root() -> Creds {
    Creds::root()
}

#[test]
fn read_only_root_gives_erofs_and_mount_points_are_synthetic() {
    let host_root = tree(&["etc/", "etc/passwd"]);
    let mut h = RecordingHost::default();
    h.add("/bundle/rootfs", host_root.clone());
    let s = mounts(r#"{"destination":"/new/deep/dir","type":"tmpfs"}"#, true);
    let (_sb, c) = build(h, RuntimeConfig::default(), &s).unwrap();
    let err =
        c.ns.open_path(&root(), None, "/etc/x", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).unwrap_err();
    assert_eq!(err, Errno::ROFS);
    // The mount point exists in the view, with parents, and the mount works...
    assert_eq!(c.ns.stat(&root(), None, "/new/deep", false).unwrap().mode, 0o755);
    c.ns.open_path(&root(), None, "/new/deep/dir/f", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).unwrap();
    // ...but the host root was never written.
    let hns = MountNamespace::new(host_root, MountFlags::empty());
    assert_eq!(hns.stat(&root(), None, "/new", false).unwrap_err(), Errno::NOENT);
    // The root mount is read-only again after setup.
    assert!(c.ns.root_mount().flags().contains(MountFlags::RDONLY));
}

#[test]
fn read_only_bind_and_bind_as_type_none() {
    let mut h = host_with_root(&["etc/"]);
    h.add("/data", tree(&["f"]));
    h.add("/data2", tree(&["g"]));
    let s = mounts(
        r#"{"destination":"/ro","type":"bind","source":"/data","options":["ro"]},
           {"destination":"/rw","type":"none","source":"/data2","options":["bind"]}"#,
        false,
    );
    let (mut sb, c) = build(h, RuntimeConfig::default(), &s).unwrap();
    assert_eq!(c.ns.open_path(&root(), None, "/ro/f", OpenFlags::WRITE, 0).unwrap_err(), Errno::ROFS);
    c.ns.open_path(&root(), None, "/rw/g", OpenFlags::WRITE, 0).unwrap();
    let calls = &sb.host().calls;
    assert!(calls.contains(&("/data".into(), true, FileAccess::Shared, Owners::Mapped)));
    assert!(calls.contains(&("/data2".into(), false, FileAccess::Shared, Owners::Mapped)));
    // The root is under the memory overlay, which never writes it: read-only.
    assert!(calls.contains(&("/bundle/rootfs".into(), true, FileAccess::Exclusive, Owners::AsStored)));
}

/// The root's gofer is writable only when the container writes the root directly.
#[test]
fn root_gofer_is_writable_only_without_an_overlay() {
    for (overlay2, writable) in [("root:memory", false), ("none", true)] {
        let cfg = RuntimeConfig { overlay2: overlay2.parse().unwrap(), ..RuntimeConfig::default() };
        let (mut sb, _c) = build(host_with_root(&["etc/"]), cfg, &mounts("", false)).unwrap();
        let calls = &sb.host().calls;
        // Exactly one gofer for the root, with the expected flag: a read-only and a
        // writable one side by side would not do.
        let root_ro: Vec<bool> = calls
            .iter()
            .filter(|(src, ..)| src == Path::new("/bundle/rootfs"))
            .map(|(_, ro, _, _)| *ro)
            .collect();
        assert_eq!(
            root_ro,
            [!writable],
            "--overlay2 {overlay2}: read-only flags of /bundle/rootfs in {calls:?}"
        );
    }
}

#[test]
fn mount_onto_a_symlink_stays_inside_the_root() {
    let h = host_with_root(&["real/", "link -> /real", "escape -> ../../../../host"]);
    let s = mounts(
        r#"{"destination":"/link/sub","type":"tmpfs"},{"destination":"/escape","type":"tmpfs"}"#,
        false,
    );
    let (_sb, c) = build(h, RuntimeConfig::default(), &s).unwrap();
    c.ns.open_path(&root(), None, "/real/sub/f", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).unwrap();
    assert!(c.ns.stat(&root(), None, "/host", false).is_ok(), "the climbing link lands inside the root");
}

#[test]
fn root_that_is_not_a_mount_point_and_file_binds() {
    let mut h = host_with_root(&["etc/", "etc/hosts", "dir/"]);
    let f = Tmpfs::new(&TmpfsOptions { root: FileType::Regular, ..TmpfsOptions::default() }).unwrap();
    h.add("/host/resolv.conf", f.clone());
    h.add("/host/resolv2", f);
    let s = mounts(r#"{"destination":"/etc/resolv.conf","type":"bind","source":"/host/resolv.conf"}"#, false);
    let (_sb, c) = build(h, RuntimeConfig::default(), &s).unwrap();
    let a = c.ns.stat(&root(), None, "/etc/resolv.conf", false).unwrap();
    assert_eq!(a.kind, FileType::Regular);
    // A file onto a directory is a clear error naming the field.
    let mut h = host_with_root(&["dir/"]);
    let f = Tmpfs::new(&TmpfsOptions { root: FileType::Regular, ..TmpfsOptions::default() }).unwrap();
    h.add("/host/file", f);
    let s = mounts(r#"{"destination":"/dir","type":"bind","source":"/host/file"}"#, false);
    let err = build(h, RuntimeConfig::default(), &s).err().unwrap().to_string();
    assert!(err.contains("mounts[0].destination") && err.contains("directory"), "{err}");
}

#[test]
fn parents_are_mounted_before_children_whatever_the_order() {
    let h = host_with_root(&[]);
    let s = mounts(
        r#"{"destination":"/a/b/c","type":"tmpfs"},{"destination":"/a","type":"tmpfs"},{"destination":"/a/b","type":"tmpfs"}"#,
        false,
    );
    let (_sb, c) = build(h, RuntimeConfig::default(), &s).unwrap();
    let r = root();
    let dev = |p: &str| c.ns.stat(&r, None, p, false).unwrap().dev;
    let (a, b, cc) = (dev("/a"), dev("/a/b"), dev("/a/b/c"));
    assert!(a != b && b != cc && a != cc, "three distinct tmpfs mounts: the child is not hidden");
    c.ns.open_path(&r, None, "/a/b/c/f", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).unwrap();
}

#[test]
fn tmp_rules() {
    let tmp_dev = |entries: &[&str], extra: &str| -> Option<(u64, u64, u32)> {
        let h = host_with_root(entries);
        let (_sb, c) = build(h, RuntimeConfig::default(), &mounts(extra, false)).unwrap();
        let r = root();
        let rootdev = c.ns.stat(&r, None, "/", false).unwrap().dev;
        c.ns.stat(&r, None, "/tmp", true).ok().map(|a| (a.dev, rootdev, a.mode))
    };
    // Absent: a 01777 tmpfs.
    let (d, r, m) = tmp_dev(&[], "").unwrap();
    assert!(d != r && m == 0o1777);
    // Empty: mounted over.
    let (d, r, _) = tmp_dev(&["tmp/"], "").unwrap();
    assert_ne!(d, r);
    // Not empty: left alone.
    let (d, r, _) = tmp_dev(&["tmp/", "tmp/keep"], "").unwrap();
    assert_eq!(d, r);
    // Not a directory: left alone.
    let (d, r, _) = tmp_dev(&["tmp"], "").unwrap();
    assert_eq!(d, r);
    // Explicitly mounted: that mount, not ours.
    let (d, r, m) = tmp_dev(&[], r#"{"destination":"/tmp","type":"tmpfs","options":["mode=700"]}"#).unwrap();
    assert!(d != r && m == 0o700);
}

#[test]
fn unknown_type_ignored_tmpfs_options_filtered_propagation_refused() {
    let h = host_with_root(&[]);
    let s = mounts(
        r#"{"destination":"/weird","type":"9p","source":"x"},
           {"destination":"/t","type":"tmpfs","options":["nosuid","size=1m","mode=750","huge=always","noexec"]}"#,
        false,
    );
    let (_sb, c) = build(h, RuntimeConfig::default(), &s).unwrap();
    assert!(c.warnings.iter().any(|w| w.contains("9p")), "{:?}", c.warnings);
    assert!(c.warnings.iter().any(|w| w.contains("huge=always")), "{:?}", c.warnings);
    let r = root();
    assert_eq!(c.ns.stat(&r, None, "/t", false).unwrap().mode, 0o750);
    let t = c.ns.resolve(&r, None, "/t", false).unwrap();
    assert_eq!(t.mount.flags(), MountFlags::NOSUID | MountFlags::NOEXEC);
    assert_eq!(t.mount.fs().statfs().unwrap().blocks, 256, "size=1m kept");
    let h = host_with_root(&[]);
    let s = mounts(r#"{"destination":"/p","type":"tmpfs","options":["rshared"]}"#, false);
    let err = build(h, RuntimeConfig::default(), &s).err().unwrap().to_string();
    assert!(err.contains("mounts[0].options") && err.contains("rshared"), "{err}");
}

#[test]
fn kernel_mounts_are_recorded_for_the_sandbox_process() {
    let h = host_with_root(&[]);
    let s = mounts(
        r#"{"destination":"/sys","type":"sysfs","options":["ro","nosuid"]},
           {"destination":"/proc","type":"proc"},{"destination":"/dev/pts","type":"devpts","options":["newinstance"]}"#,
        false,
    );
    let (_sb, c) = build(h, RuntimeConfig::default(), &s).unwrap();
    let k: Vec<_> =
        c.kernel.iter().map(|k| (k.destination.to_str().unwrap().to_string(), k.fstype.clone())).collect();
    assert_eq!(
        k,
        [
            ("/sys".into(), "sysfs".into()),
            ("/proc".into(), "proc".into()),
            ("/dev/pts".into(), "devpts".into())
        ]
    );
    assert!(c.kernel[0].flags.contains(MountFlags::RDONLY));
    assert_eq!(c.kernel[2].data, ["newinstance"]);
    assert!(c.ns.stat(&root(), None, "/dev/pts", false).is_ok(), "mount points exist");
}

#[test]
fn writes_under_the_overlay_never_reach_the_host() {
    let host_root = tree(&["etc/", "etc/passwd"]);
    let mut h = RecordingHost::default();
    h.add("/bundle/rootfs", host_root.clone());
    let (_sb, c) = build(h, RuntimeConfig::default(), &mounts("", false)).unwrap();
    let r = root();
    c.ns.open_path(&r, None, "/etc/x", OpenFlags::WRITE | OpenFlags::CREAT, 0o644)
        .unwrap()
        .write_at(b"hi", 0)
        .unwrap();
    c.ns.unlink_path(&r, None, "/etc/passwd").unwrap();
    let hns = MountNamespace::new(host_root, MountFlags::empty());
    assert_eq!(hns.stat(&r, None, "/etc/x", false).unwrap_err(), Errno::NOENT);
    assert!(hns.stat(&r, None, "/etc/passwd", false).is_ok());
    assert!(c.root_overlay.is_some());
}

#[test]
fn config_validation() {
    assert!("none".parse::<Overlay2>().is_ok());
    assert!("root:memory,size=1g".parse::<Overlay2>().unwrap().size == Some(1 << 30));
    assert!("all:dir=/var/tmp".parse::<Overlay2>().is_ok());
    for bad in ["root:disk", "all:dir=relative", "everything:memory", "none,size=1m", "root:memory,size=x"] {
        let e = bad.parse::<Overlay2>().unwrap_err().to_string();
        assert!(e.contains("--overlay2") && e.contains(bad), "{e}");
    }
    let cfg = RuntimeConfig { file_access: FileAccess::Shared, ..RuntimeConfig::default() };
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("--file-access") && e.contains("shared"), "{e}");
    let cfg = RuntimeConfig {
        file_access: FileAccess::Shared,
        overlay2: "none".parse().unwrap(),
        ..RuntimeConfig::default()
    };
    assert!(cfg.validate().is_ok());
}

#[test]
fn bad_input_names_the_field() {
    let h = host_with_root(&[]);
    let e = build(h, RuntimeConfig::default(), &mounts(r#"{"destination":"rel","type":"tmpfs"}"#, false))
        .err()
        .unwrap();
    assert!(e.to_string().contains("mounts[0].destination") && e.to_string().contains("rel"), "{e}");
    let h = host_with_root(&[]);
    let e = build(
        h,
        RuntimeConfig::default(),
        &mounts(r#"{"destination":"/m","type":"bind","source":"/nope"}"#, false),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("mounts[0].source") && e.to_string().contains("/nope"), "{e}");
    let h = RecordingHost::default();
    let e = build(h, RuntimeConfig::default(), &mounts("", false)).err().unwrap();
    assert!(e.to_string().contains("root.path"), "{e}");
}

fn pod(annotations: &[(&str, &str)]) -> BTreeMap<String, String> {
    annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn pod_volumes_share_one_master() {
    let mut h = host_with_root(&[]);
    h.add("/vol", tree(&[]));
    let ann = pod(&[
        ("dev.gvisor.spec.mount.data.source", "/vol"),
        ("dev.gvisor.spec.mount.data.type", "bind"),
        ("dev.gvisor.spec.mount.data.share", "pod"),
        ("dev.gvisor.spec.mount.data.options", "rw"),
        ("dev.gvisor.spec.mount.scratch.source", "scratch-src"),
        ("dev.gvisor.spec.mount.scratch.type", "tmpfs"),
        ("dev.gvisor.spec.mount.scratch.share", "pod"),
        ("dev.gvisor.spec.mount.broken.source", "/x"),
    ]);
    let mut sb = Sandbox::new(h, RuntimeConfig::default(), &ann).unwrap();
    assert!(sb.warnings.iter().any(|w| w.contains("broken")), "{:?}", sb.warnings);
    let s1 = mounts(
        r#"{"destination":"/d","type":"bind","source":"/vol"},{"destination":"/s","type":"bind","source":"scratch-src"}"#,
        false,
    );
    let s2 = mounts(
        r#"{"destination":"/data","type":"bind","source":"/vol","options":["ro","noexec"]},{"destination":"/s","type":"bind","source":"scratch-src"}"#,
        false,
    );
    let a = sb.container("a", &s1, Path::new("/bundle")).unwrap();
    let b = sb.container("b", &s2, Path::new("/bundle")).unwrap();
    let r = root();
    a.ns.open_path(&r, None, "/d/from-a", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).unwrap();
    a.ns.open_path(&r, None, "/s/scratch-a", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).unwrap();
    assert!(b.ns.stat(&r, None, "/data/from-a", false).is_ok(), "b sees a's write: one master");
    assert!(b.ns.stat(&r, None, "/s/scratch-a", false).is_ok(), "the tmpfs volume is shared too");
    assert_eq!(
        b.ns.open_path(&r, None, "/data/x", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).unwrap_err(),
        Errno::ROFS,
        "b's replica is more restrictive"
    );
    let gofers = sb.host().calls.iter().filter(|c| c.0 == Path::new("/vol")).count();
    assert_eq!(gofers, 1, "one gofer connection per volume");
    // Restore: the volume once, each root once.
    let keys: Vec<String> = sb.restore_map().keys().map(|k| format!("{k:?}")).collect();
    assert_eq!(keys.iter().filter(|k| k.contains("Volume(\"data\")")).count(), 1, "{keys:?}");
    assert_eq!(keys.len(), 3, "{keys:?}");
}

#[test]
fn pod_volume_replicas_may_not_be_less_restrictive_and_sources_are_unique() {
    let mut h = host_with_root(&[]);
    h.add("/vol", tree(&[]));
    let ann = pod(&[
        ("dev.gvisor.spec.mount.data.source", "/vol"),
        ("dev.gvisor.spec.mount.data.type", "bind"),
        ("dev.gvisor.spec.mount.data.share", "pod"),
        ("dev.gvisor.spec.mount.data.options", "ro"),
    ]);
    let mut sb = Sandbox::new(h, RuntimeConfig::default(), &ann).unwrap();
    let s = mounts(r#"{"destination":"/d","type":"bind","source":"/vol"}"#, false);
    let e = sb.container("a", &s, Path::new("/bundle")).err().unwrap().to_string();
    assert!(e.contains("read-only") && e.contains("mounts[0]"), "{e}");
    let dup = pod(&[
        ("dev.gvisor.spec.mount.a.source", "/vol"),
        ("dev.gvisor.spec.mount.a.type", "bind"),
        ("dev.gvisor.spec.mount.a.share", "pod"),
        ("dev.gvisor.spec.mount.b.source", "/vol"),
        ("dev.gvisor.spec.mount.b.type", "bind"),
        ("dev.gvisor.spec.mount.b.share", "pod"),
    ]);
    let e = Sandbox::new(RecordingHost::default(), RuntimeConfig::default(), &dup).err().unwrap().to_string();
    assert!(e.contains("/vol"), "{e}");
}

#[test]
fn malformed_config_json_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), b"{\"root\": {\"path\": 7}}").unwrap();
    let mut sb = Sandbox::new(RecordingHost::default(), RuntimeConfig::default(), &BTreeMap::new()).unwrap();
    let e = sb.container_from_bundle("c", dir.path()).err().unwrap().to_string();
    assert!(e.contains("config.json"), "{e}");
}

#[test]
fn a_container_hint_naming_an_unknown_volume_is_an_error() {
    let h = host_with_root(&[]);
    let mut sb = Sandbox::new(h, RuntimeConfig::default(), &BTreeMap::new()).unwrap();
    let s = spec(
        r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"annotations":{
            "dev.gvisor.spec.mount.ghost.source":"/g","dev.gvisor.spec.mount.ghost.type":"bind",
            "dev.gvisor.spec.mount.ghost.share":"pod"}}"#,
    );
    let e = sb.container("c", &s, Path::new("/bundle")).err().unwrap().to_string();
    assert!(e.contains("ghost") && e.contains("does not declare"), "{e}");
}
