//! Differential test of the overlay against kernel overlayfs: a kernel overlay (tmpfs
//! upper over a prepared lower directory, with hard links) and a sandfs overlay (tmpfs upper over a
//! tmpfs lower holding the same tree) get the same generated sequences (see
//! sandfs-testkit); every result, errno, attribute, listing and content is compared,
//! and after every sequence the lower trees must be unchanged.
//!
//! The kernel overlay is mounted with `index=on`, the semantics sandfs has for lower
//! hard links (one inode for all names of a lower file, copied up once; st_nlink
//! counts the merged names). On Linux 6.18 that option alone does it: lower, upper
//! and work directories on one tmpfs (which supports file handles), `uuid`,
//! `redirect_dir` and `nfs_export` at their defaults.
//!
//! Deliberate differences, excluded here and tested on their own (tests/overlay.rs):
//! renaming a merged or lower directory (kernel: EXDEV; sandfs copies it up, as
//! gVisor) — such sequences are discarded; creating a 0/0 character device (kernel:
//! EPERM, it is its whiteout; sandfs allows it) — not generated.

use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use sandfs_overlay::Overlay;
use sandfs_testkit as kit;
use sandfs_tmpfs::Tmpfs;
use sandfs_vfs::ops::Make;
use sandfs_vfs::{Creds, MountFlags, MountNamespace, OpenFlags, SetAttr, XattrFlags};
use std::cell::RefCell;
use std::sync::Arc;

enum E {
    Dir(&'static str, u32, u32, u32),
    File(&'static str, u32, u32, u32, &'static [u8]),
    Link(&'static str, &'static str),
    /// A hard link: (new name, existing file).
    Hard(&'static str, &'static str),
}

/// The lower tree both sides start from (root 0755, owned by root).
const LOWER: &[E] = &[
    E::Dir("b", 0o755, 0, 0),
    E::File("b/f", 0o666, 0, 0, b"bf"),
    E::Dir("b/c", 0o775, 1000, 1000),
    E::File("b/c/a", 0o600, 1000, 1000, b"bca"),
    E::Link("b/l", "../f"),
    E::File("f", 0o644, 0, 0, b"lowerf"),
    E::Dir("g", 0o777, 1000, 1000),
    E::File("g/f", 0o640, 1001, 1000, b"gf"),
    E::Dir("s", 0o1777, 0, 0),
    E::File("s/f", 0o644, 1001, 1001, b"sf"),
    // Hard links: lower `f` has three names in three directories, `b/f` two in one,
    // `g/f` (not root's) two.
    E::Hard("b/a", "f"),
    E::Hard("s/a", "f"),
    E::Hard("b/s", "b/f"),
    E::Hard("g/c", "g/f"),
];

fn build_kernel_lower(root: &str) -> Result<(), String> {
    use rustix::fs as f;
    let e = |x: rustix::io::Errno| x.to_string();
    f::chmod(root, Mode::from_raw_mode(0o755)).map_err(e)?;
    for ent in LOWER {
        match ent {
            E::Dir(p, m, u, g) => {
                let p = format!("{root}/{p}");
                f::mkdir(p.as_str(), Mode::from_raw_mode(*m)).map_err(e)?;
                f::chmod(p.as_str(), Mode::from_raw_mode(*m)).map_err(e)?;
                f::chown(
                    p.as_str(),
                    Some(rustix::process::Uid::from_raw(*u)),
                    Some(rustix::process::Gid::from_raw(*g)),
                )
                .map_err(e)?;
            }
            E::File(p, m, u, g, data) => {
                let p = format!("{root}/{p}");
                std::fs::write(&p, data).map_err(|x| x.to_string())?;
                f::chmod(p.as_str(), Mode::from_raw_mode(*m)).map_err(e)?;
                f::chown(
                    p.as_str(),
                    Some(rustix::process::Uid::from_raw(*u)),
                    Some(rustix::process::Gid::from_raw(*g)),
                )
                .map_err(e)?;
            }
            E::Link(p, t) => f::symlink(*t, format!("{root}/{p}").as_str()).map_err(e)?,
            E::Hard(p, t) => {
                f::link(format!("{root}/{t}").as_str(), format!("{root}/{p}").as_str()).map_err(e)?
            }
        }
    }
    f::setxattr(format!("{root}/f").as_str(), "user.a", b"lx", f::XattrFlags::empty()).map_err(e)?;
    Ok(())
}

fn build_sandfs_lower() -> Arc<Tmpfs> {
    let fs = Tmpfs::new_default();
    let ns = MountNamespace::new(fs.clone(), MountFlags::empty());
    let c = Creds::root();
    ns.setattr_path(&c, None, "/", &SetAttr { mode: Some(0o755), ..Default::default() }, true)
        .expect("chmod /");
    let own = |p: &str, m: u32, u: u32, g: u32| {
        ns.setattr_path(
            &c,
            None,
            p,
            &SetAttr { mode: Some(m), uid: Some(u), gid: Some(g), ..Default::default() },
            false,
        )
        .expect("chown");
    };
    for ent in LOWER {
        match ent {
            E::Dir(p, m, u, g) => {
                ns.mknod(&c, None, p, Make::Dir, *m).expect("mkdir");
                own(p, *m, *u, *g);
            }
            E::File(p, m, u, g, data) => {
                let f = ns.open_path(&c, None, p, OpenFlags::WRITE | OpenFlags::CREAT, *m).expect("create");
                f.write_at(data, 0).expect("write");
                own(p, *m, *u, *g);
            }
            E::Link(p, t) => {
                ns.symlink(&c, None, t, p).expect("symlink");
            }
            E::Hard(p, t) => {
                ns.link_path(&c, None, t, p).expect("link");
            }
        }
    }
    let f = ns.resolve(&c, None, "f", false).expect("f");
    ns.setxattr(&c, &f, b"user.a", b"lx", XattrFlags::empty()).expect("xattr");
    fs
}

thread_local! {
    /// The worker's tmpfs holding lower/, upper/, work/ and merged/.
    static OUTER: RefCell<Option<OwnedFd>> = const { RefCell::new(None) };
}

fn mount_overlay() -> Result<(), String> {
    rustix::mount::mount(
        "overlay",
        "/merged",
        "overlay",
        rustix::mount::MountFlags::empty(),
        c"lowerdir=/lower,upperdir=/upper,workdir=/work,index=on",
    )
    .map_err(|e| format!("mount overlay: {e}"))
}

/// Leave the chroot for the worker's outer tmpfs (root of the worker's view).
fn to_outer() -> Result<(), String> {
    OUTER.with(|o| -> Result<(), String> {
        let o = o.borrow();
        let fd = o.as_ref().ok_or("no outer directory")?;
        rustix::process::fchdir(fd).map_err(|e| e.to_string())?;
        rustix::process::chroot(".").map_err(|e| e.to_string())
    })
}

fn reset() {
    let r = (|| -> Result<(), String> {
        to_outer()?;
        rustix::mount::unmount("/merged", rustix::mount::UnmountFlags::empty())
            .map_err(|e| format!("umount: {e}"))?;
        for d in ["/upper", "/work"] {
            std::fs::remove_dir_all(d).map_err(|e| e.to_string())?;
            std::fs::create_dir(d).map_err(|e| e.to_string())?;
        }
        rustix::fs::chmod("/upper", Mode::from_raw_mode(0o755)).map_err(|e| e.to_string())?;
        mount_overlay()?;
        rustix::process::chroot("/merged").map_err(|e| e.to_string())?;
        rustix::process::chdir("/").map_err(|e| e.to_string())
    })();
    if let Err(e) = r {
        panic!("resetting the kernel overlay: {e}");
    }
}

#[test]
fn differential_against_kernel_overlayfs() {
    if !kit::is_root() {
        eprintln!(
            "SKIP differential_against_kernel_overlayfs: needs root (mounts kernel tmpfs and overlayfs)"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let kernel = kit::Kernel::start(move || {
        rustix::mount::mount("tmpfs", &path, "tmpfs", rustix::mount::MountFlags::empty(), c"mode=755")
            .map_err(|e| format!("mount tmpfs: {e}"))?;
        let outer = rustix::fs::open(&path, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
            .map_err(|e| e.to_string())?;
        OUTER.with(|o| *o.borrow_mut() = Some(outer));
        to_outer()?;
        for d in ["/lower", "/upper", "/work", "/merged"] {
            std::fs::create_dir(d).map_err(|e| e.to_string())?;
        }
        rustix::fs::chmod("/upper", Mode::from_raw_mode(0o755)).map_err(|e| e.to_string())?;
        build_kernel_lower("/lower")?;
        mount_overlay()?;
        Ok("/merged".into())
    })
    .expect("kernel worker");
    let lower = build_sandfs_lower();
    let lower_ns = MountNamespace::new(lower.clone(), MountFlags::empty());
    let lower_before = kit::vtree(&lower_ns);
    let kernel_lower_before = kernel.run(|| {
        to_outer().expect("outer");
        let t = chrooted_tree("/lower");
        rustix::process::chroot("/merged").expect("chroot");
        rustix::process::chdir("/").expect("chdir");
        t
    });
    let cfg = kit::Config { reset, overlay: true, ..kit::Config::new(kit::cases(500)) };
    let (total, stats) = kit::run_with(&kernel, cfg, || {
        // The lower layer must be exactly as built after every sequence.
        assert_eq!(kit::vtree(&lower_ns), lower_before, "the sandfs lower layer changed");
        let upper = Tmpfs::new_default();
        let ov = Overlay::new(upper, vec![lower.clone()]).expect("overlay");
        MountNamespace::new(ov, MountFlags::empty())
    });
    assert_eq!(kit::vtree(&lower_ns), lower_before, "the sandfs lower layer changed");
    let kernel_lower_after = kernel.run(|| {
        to_outer().expect("outer");
        let t = chrooted_tree("/lower");
        rustix::process::chroot("/merged").expect("chroot");
        rustix::process::chdir("/").expect("chdir");
        t
    });
    assert_eq!(kernel_lower_after, kernel_lower_before, "the kernel lower layer changed");
    kit::report("overlay vs kernel overlayfs", total, &stats);
}

/// The tree under `dir` of the worker's current root.
fn chrooted_tree(dir: &str) -> kit::Tree {
    rustix::process::chroot(dir).expect("chroot");
    rustix::process::chdir("/").expect("chdir");
    let t = kit::ktree();
    to_outer().expect("outer");
    t
}

/// A read-only open made before a copy-up reads what is written after it, on kernel
/// overlayfs (since Linux 4.19) as in sandfs. Both sides: a lower file, a reader, a
/// writer that copies the file up and writes, the reader reading again.
#[test]
fn a_reader_opened_before_a_copy_up_reads_the_copy_like_the_kernel() {
    if !kit::is_root() {
        eprintln!(
            "SKIP a_reader_opened_before_a_copy_up_reads_the_copy_like_the_kernel: needs root (mounts overlayfs)"
        );
        return;
    }
    use std::os::unix::fs::FileExt;
    // The kernel side: an overlay on a tmpfs, in the worker's own mount namespace.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let kernel = kit::Kernel::start(move || {
        let e = |x: std::io::Error| x.to_string();
        rustix::mount::mount("tmpfs", &path, "tmpfs", rustix::mount::MountFlags::empty(), c"mode=755")
            .map_err(|x| format!("mount tmpfs: {x}"))?;
        for d in ["l", "u", "w", "m"] {
            std::fs::create_dir(path.join(d)).map_err(e)?;
        }
        std::fs::write(path.join("l/f"), b"lower data\n").map_err(e)?;
        let opts = format!("lowerdir={0}/l,upperdir={0}/u,workdir={0}/w", path.display());
        let opts = std::ffi::CString::new(opts).map_err(|x| x.to_string())?;
        rustix::mount::mount(
            "overlay",
            path.join("m"),
            "overlay",
            rustix::mount::MountFlags::empty(),
            &*opts,
        )
        .map_err(|x| format!("mount overlayfs: {x}"))?;
        Ok(path.join("m"))
    })
    .expect("kernel worker");
    let (first, kernel_after) = kernel.run(|| {
        let r = std::fs::File::open("/f").expect("open reader");
        let mut first = [0u8; 5];
        r.read_exact_at(&mut first, 0).expect("read");
        let w = std::fs::OpenOptions::new().write(true).open("/f").expect("open writer");
        w.write_all_at(b"COPY!", 0).expect("write");
        let mut after = vec![0u8; 11];
        r.read_exact_at(&mut after, 0).expect("read again");
        (first, after)
    });

    let lower = Tmpfs::new_default();
    let lns = MountNamespace::new(lower.clone(), MountFlags::empty());
    let c = Creds::root();
    let f = lns.open_path(&c, None, "f", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).expect("create");
    f.write_at(b"lower data\n", 0).expect("write");
    let ov = Overlay::new(Tmpfs::new_default(), vec![lower]).expect("overlay");
    let ns = MountNamespace::new(ov, MountFlags::empty());
    let r = ns.open_path(&c, None, "f", OpenFlags::READ, 0).expect("open reader");
    let mut sfirst = [0u8; 5];
    r.read_at(&mut sfirst, 0).expect("read");
    let w = ns.open_path(&c, None, "f", OpenFlags::WRITE, 0).expect("open writer");
    w.write_at(b"COPY!", 0).expect("write");
    let mut sandfs = vec![0u8; 11];
    r.read_at(&mut sandfs, 0).expect("read again");
    assert_eq!((&sfirst, String::from_utf8_lossy(&sandfs)), (&first, String::from_utf8_lossy(&kernel_after)));
}
