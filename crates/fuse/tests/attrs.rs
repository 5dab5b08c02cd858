//! File attributes through FUSE against kernel tmpfs: one shell script (chown with
//! neither owner nor group, fallocate and `du`-style block counts, chattr/lsattr and
//! what immutable and append-only files refuse, as root and as a user) runs on a
//! kernel tmpfs in a private mount namespace and on sandfs served through FUSE (a
//! tmpfs, and an overlay), and the transcripts must be equal.
//!
//! Not compared: access(W_OK) on an immutable file. The mount uses
//! default_permissions, so the kernel answers access(2) from the mode alone and
//! never asks sandfs (FUSE has no way to mark an inode immutable to the kernel);
//! the vfs itself answers EPERM (tmpfs tests), and writes are refused at open.
//!
//! Needs root, /dev/fuse, unshare, setpriv, chattr and lsattr; otherwise skipped.

mod mnt;

use mnt::Mnt;
use sandfs_fuse::CachePolicy;
use sandfs_vfs::Filesystem;
use std::path::Path;
use std::process::Command;

const SCRIPT: &str = r#"
r() { if out=$("$@" 2>&1); then echo "ok: $*"; else echo "FAIL: $* (${out##*: })"; fi; }
umask 022
# (a) chown with neither owner nor group: ctime moves, setuid goes, even by others.
echo x > s; chmod 6755 s; echo x > o
a=$(stat -c %z s); sleep 0.02; chown : s; b=$(stat -c %z s)
[ "$a" != "$b" ] && echo "ctime moved"; stat -c %A s
a=$(stat -c %z o); sleep 0.02
r setpriv --reuid=1000 --regid=1000 --clear-groups chown : o
b=$(stat -c %z o); [ "$a" != "$b" ] && echo "ctime moved for a user"
# (b) preallocated space counts.
fallocate -l 1M p; stat -c '%s %b' p
fallocate -n -o 2M -l 1M p; stat -c '%s %b' p
fallocate -p -o 0 -l 512K p; stat -c '%s %b' p
fallocate -l 64K q; stat -c '%s %b' q; truncate -s 8K q; stat -c '%s %b' q
fallocate -n -l 8K e; stat -c '%s %b' e
# (c) flags.
echo x > i; echo x > a; mkdir D; echo y > D/f; echo z > n; echo u > u; chown 1000:1000 u
r chattr +i i; r chattr +a a; r chattr +i D; r chattr +dA n
lsattr i a n | tr -s ' '; lsattr -d D | tr -s ' '
r sh -c 'echo more >> i'; r sh -c 'echo more > i'; r truncate -s 0 i; r rm -f i
r mv i j; r ln i k; r chmod 600 i; r chown 1 i; r touch i; r touch -d @1 i; r chown : i
r sh -c 'echo more >> a'; r sh -c 'echo more > a'; r truncate -s 0 a; r rm -f a
r mv a b; r ln a c; r chmod 600 a; r touch a; r touch -d @1 a; r fallocate -l 1M a
r fallocate -p -o 0 -l 4K a
cat a
r touch D/g; r rm D/f; r mv D/f f2; r mv n D/n; r mv D D2; r mkdir D2; r mv D D2/D
r sh -c 'echo w > D/f'; cat D/f
r setpriv --reuid=1000 --regid=1000 --clear-groups chattr +d u
r setpriv --reuid=1000 --regid=1000 --clear-groups chattr +i u
r setpriv --reuid=1000 --regid=1000 --clear-groups chattr +d n
r setpriv --reuid=1000 --regid=1000 --clear-groups lsattr n
lsattr u | tr -s ' '
r chattr +s u; r chattr +c u
r chattr -i i; r rm i; r chattr -a a; r rm a; r chattr -i D; r rm -r D
lsattr -d . | tr -s ' '
"#;

fn skip(test: &str) -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIP {test}: needs root (mounts FUSE and a kernel tmpfs)");
        return true;
    }
    for p in ["/dev/fuse", "/usr/bin/chattr", "/usr/bin/lsattr", "/usr/bin/setpriv", "/usr/bin/unshare"] {
        if !Path::new(p).exists() {
            eprintln!("SKIP {test}: no {p}");
            return true;
        }
    }
    false
}

fn transcript(out: std::process::Output) -> String {
    assert!(out.status.success(), "script: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The script on a fresh kernel tmpfs (root mode 0755, as sandfs's root).
fn on_kernel_tmpfs() -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = format!(
        "mount -t tmpfs -o mode=0755 t '{}' && cd '{}' && {SCRIPT}",
        dir.path().display(),
        dir.path().display()
    );
    transcript(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &run])
            .output()
            .expect("unshare"),
    )
}

fn on(m: &Mnt) -> String {
    transcript(Command::new("sh").arg("-c").arg(SCRIPT).current_dir(&m.path).output().expect("sh"))
}

fn compare(kernel: &str, sandfs: &str, what: &str) {
    for (i, (k, s)) in kernel.lines().zip(sandfs.lines()).enumerate() {
        assert_eq!(s, k, "{what}: line {} differs\nkernel:\n{kernel}\nsandfs:\n{sandfs}", i + 1);
    }
    assert_eq!(
        sandfs.lines().count(),
        kernel.lines().count(),
        "{what}\nkernel:\n{kernel}\nsandfs:\n{sandfs}"
    );
}

#[test]
fn attributes_match_kernel_tmpfs_through_fuse() {
    if skip("attributes_match_kernel_tmpfs_through_fuse") {
        return;
    }
    let kernel = on_kernel_tmpfs();
    assert!(kernel.contains("ctime moved for a user"), "{kernel}");
    let m = Mnt::new(sandfs_tmpfs::Tmpfs::new_default(), CachePolicy::Exclusive);
    compare(&kernel, &on(&m), "tmpfs");
}

#[test]
fn attributes_match_kernel_tmpfs_through_fuse_on_an_overlay() {
    if skip("attributes_match_kernel_tmpfs_through_fuse_on_an_overlay") {
        return;
    }
    let kernel = on_kernel_tmpfs();
    let lower = sandfs_tmpfs::Tmpfs::new_default();
    lower.root().setattr(&sandfs_vfs::SetAttr { mode: Some(0o755), ..Default::default() }).expect("chmod");
    let upper = sandfs_tmpfs::Tmpfs::new_default();
    let fs = sandfs_overlay::Overlay::new(upper, vec![lower]).expect("overlay");
    let m = Mnt::new(fs, CachePolicy::Exclusive);
    compare(&kernel, &on(&m), "overlay");
}
