//! `sandfs mount`: the real binary serving a host directory over FUSE, used by real
//! programs; the overlay keeps writes off the host; SIGTERM, an external umount and
//! `--daemon` end or detach cleanly, and the gofer child is reaped.
//!
//! Needs root and /dev/fuse (mount(2) of fuse, the gofer's namespaces): otherwise
//! every test is skipped with a printed reason. Each test uses its own temporary
//! directory, and its guard unmounts (MNT_DETACH) and kills the server even when the
//! test fails.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn skip(test: &str) -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIP {test}: needs root (FUSE mount without fusermount, gofer namespaces)");
        return true;
    }
    if !Path::new("/dev/fuse").exists() {
        eprintln!("SKIP {test}: no /dev/fuse");
        return true;
    }
    false
}

fn mounted(path: &Path) -> bool {
    let p = path.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| m.lines().any(|l| l.split(' ').nth(4) == Some(&*p)))
        .unwrap_or(false)
}

/// Processes whose command line mentions `needle` (the gofer serving a test's dir).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return found };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().filter(|s| s.bytes().all(|b| b.is_ascii_digit())) else { continue };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            // Zombies have an empty command line; a live gofer names the directory.
            if cmd.contains(needle) && cmd.contains("gofer") {
                found.push(format!("{pid}: {cmd}"));
            }
        }
    }
    found
}

/// A test's directories: `host` (the served root), `mnt` (the mount point), and a
/// running `sandfs mount`; unmounted and killed on drop.
struct Fixture {
    dir: tempfile::TempDir,
    host: PathBuf,
    mnt: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = dir.path().join("host");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&host).expect("mkdir host");
        std::fs::create_dir(&mnt).expect("mkdir mnt");
        let log = dir.path().join("sandfs.log");
        Fixture { dir, host, mnt, child: None, log }
    }

    fn cmd(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sandfs"));
        c.arg("mount").arg("--rootfs").arg(&self.host).args(extra).arg(&self.mnt);
        c.env("SANDFS_LOG", "info");
        c
    }

    /// Start in the foreground (as a child) and wait for the mount.
    fn start(&mut self, extra: &[&str]) {
        let cmd = self.cmd(extra);
        self.start_cmd(cmd);
    }

    /// [`Fixture::start`] with a command of the caller's making.
    fn start_cmd(&mut self, mut cmd: Command) {
        let log = std::fs::File::create(&self.log).expect("log");
        let child =
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).spawn().expect("spawn sandfs mount");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !mounted(&self.mnt) {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("sandfs mount exited with {st} before mounting:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "no mount after 20 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn sh(&self, script: &str) -> String {
        let out = Command::new("sh").arg("-c").arg(script).current_dir(&self.mnt).output().expect("sh");
        assert!(
            out.status.success(),
            "script failed: {script}\nstdout: {}\nstderr: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn sh_fails(&self, script: &str) -> String {
        let out = Command::new("sh").arg("-c").arg(script).current_dir(&self.mnt).output().expect("sh");
        assert!(!out.status.success(), "script should fail: {script}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Wait for the foreground server to exit; its status.
    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().expect("a running server");
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                self.child = None;
                return st;
            }
            assert!(Instant::now() < deadline, "server did not exit:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn tag(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.mnt, rustix::mount::UnmountFlags::DETACH);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn host_tree(dir: &Path) -> Vec<(String, u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            let rel = p.strip_prefix(dir).expect("prefix").to_string_lossy().into_owned();
            let data = if m.is_file() { std::fs::read(&p).expect("read") } else { Vec::new() };
            out.push((rel, m.mode() as u64, data));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn overlay_keeps_writes_off_the_host_and_sigterm_unmounts() {
    if skip("overlay_keeps_writes_off_the_host_and_sigterm_unmounts") {
        return;
    }
    let mut f = Fixture::new();
    std::fs::create_dir_all(f.host.join("etc/sub")).expect("mkdir");
    std::fs::write(f.host.join("etc/conf"), b"original\n").expect("write");
    std::fs::write(f.host.join("etc/sub/deep"), b"deep\n").expect("write");
    std::fs::write(f.host.join("victim"), b"v\n").expect("write");
    let before = host_tree(&f.host);
    f.start(&[]);
    let out = f.sh("set -e
         cat etc/conf
         echo changed >> etc/conf
         cat etc/conf
         mkdir -p new/dir && echo n > new/dir/file
         cp etc/sub/deep copy && mv copy moved
         ln -s moved link && cat link
         chmod 600 etc/sub/deep && stat -c %a etc/sub/deep
         rm victim && rm -r etc/sub
         dd if=/dev/zero of=blob bs=1M count=4 status=none && stat -c %s blob
         find . | sort");
    assert_eq!(
        out,
        "original\noriginal\nchanged\ndeep\n600\n4194304\n.\n./blob\n./etc\n./etc/conf\n./link\n./moved\n./new\n./new/dir\n./new/dir/file\n"
    );
    assert_eq!(host_tree(&f.host), before, "the host directory changed");
    // SIGTERM: unmounts and exits 0; the gofer is reaped.
    let pid = rustix::process::Pid::from_raw(f.child.as_ref().expect("child").id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("kill");
    let st = f.wait_exit(Duration::from_secs(10));
    assert!(st.success(), "exit status {st}:\n{}", f.log());
    assert!(!mounted(&f.mnt), "still mounted after SIGTERM");
    assert!(processes_mentioning(&f.tag()).is_empty(), "gofer left: {:?}", processes_mentioning(&f.tag()));
}

/// Issue 13, as reported: a host file with two names. A write through one name is
/// kept when the other is looked up and shows through it, as do chmod and truncate;
/// st_nlink counts the names; the host files stay as they were.
#[test]
fn host_hard_links_stay_one_file() {
    if skip("host_hard_links_stay_one_file") {
        return;
    }
    let mut f = Fixture::new();
    std::fs::write(f.host.join("a"), b"linked\n").expect("write");
    std::fs::hard_link(f.host.join("a"), f.host.join("b")).expect("ln");
    let before = host_tree(&f.host);
    f.start(&[]);
    let out = f.sh("set -e
         echo new >> a; cat a
         ls -l b >/dev/null
         cat a; cat b
         [ $(stat -c %i a) = $(stat -c %i b) ] && echo same inode
         stat -c %h a b
         chmod 600 b; stat -c %a a
         truncate -s 3 a; cat b; echo
         rm a; stat -c %h b");
    assert_eq!(out, "linked\nnew\nlinked\nnew\nlinked\nnew\nsame inode\n2\n2\n600\nlin\n1\n");
    assert_eq!(host_tree(&f.host), before, "the host directory changed");
}

/// Copy-up of a big host file (kernel-side copy into the upper layer's memfd): the
/// data, a hole and the size survive, the change stays off the host, and reads after
/// the copy-up see the change.
#[test]
fn big_files_copy_up_with_their_holes() {
    if skip("big_files_copy_up_with_their_holes") {
        return;
    }
    let mut f = Fixture::new();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8 ^ (i >> 12) as u8).collect();
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::create(f.host.join("big")).expect("create");
        file.write_all_at(&data, 0).expect("write");
        // A hole of 8 MiB, then a tail.
        file.write_all_at(b"tail", 11_000_000).expect("write tail");
    }
    let before = host_tree(&f.host);
    f.start(&[]);
    let out = f.sh("set -e; printf X | dd of=big bs=1 seek=5 conv=notrunc status=none; stat -c %s big");
    assert_eq!(out, "11000004\n");
    let got = std::fs::read(f.mnt.join("big")).expect("read big");
    let mut want = data.clone();
    want[5] = b'X';
    want.resize(11_000_000, 0);
    want.extend_from_slice(b"tail");
    assert!(got == want, "copied-up contents differ");
    let blocks = std::fs::metadata(f.mnt.join("big")).map(|m| std::os::unix::fs::MetadataExt::blocks(&m));
    assert!(blocks.expect("stat") * 512 < 8_000_000, "the hole was filled in");
    assert_eq!(host_tree(&f.host), before, "the host file changed");
}

#[test]
fn large_directories_list_completely() {
    if skip("large_directories_list_completely") {
        return;
    }
    let mut f = Fixture::new();
    // Listings with attributes of this size need gofer messages near the protocol's
    // 256 KiB maximum (past the default socket send buffer).
    let big = f.host.join("big");
    std::fs::create_dir(&big).expect("mkdir");
    for i in 0..1500 {
        std::fs::write(big.join(format!("{i:04}-{}", "n".repeat(200))), b"").expect("create");
    }
    f.start(&[]);
    assert_eq!(f.sh("ls big | wc -l").trim(), "1500");
    assert_eq!(f.sh("ls -l big | grep -c '^-'").trim(), "1500");
    assert!(!f.log().contains("broken"), "gofer connection broke:\n{}", f.log());
}

#[test]
fn external_umount_ends_a_daemon() {
    if skip("external_umount_ends_a_daemon") {
        return;
    }
    let f = Fixture::new();
    std::fs::write(f.host.join("hello"), b"hi\n").expect("write");
    let out = f.cmd(&["--daemon"]).stdin(Stdio::null()).stderr(Stdio::piped()).output().expect("daemon");
    assert!(out.status.success(), "--daemon failed: {}", String::from_utf8_lossy(&out.stderr));
    // The mount is live when --daemon returns.
    assert!(mounted(&f.mnt), "--daemon returned before the mount was live");
    let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("daemon pid on stdout");
    assert_eq!(f.sh("cat hello"), "hi\n");
    let st = Command::new("umount").arg(&f.mnt).status().expect("umount");
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() || !processes_mentioning(&f.tag()).is_empty() {
        // Not our child: it is reaped by init; a zombie has no cmdline.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.contains(") Z") && processes_mentioning(&f.tag()).is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "daemon {pid} or its gofer still running after umount");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_failing_daemon_reports_why() {
    if skip("a_failing_daemon_reports_why") {
        return;
    }
    let f = Fixture::new();
    let out = f.cmd(&["--daemon", "--overlay2", "bogus"]).stdin(Stdio::null()).output().expect("daemon");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus"), "error message: {err}");
    assert!(!mounted(&f.mnt));
}

#[test]
fn permissions_hold_for_other_users() {
    if skip("permissions_hold_for_other_users") {
        return;
    }
    let mut f = Fixture::new();
    std::fs::write(f.host.join("secret"), b"s\n").expect("write");
    std::fs::set_permissions(f.host.join("secret"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    std::fs::write(f.host.join("public"), b"p\n").expect("write");
    std::fs::set_permissions(f.host.join("public"), std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    f.start(&[]);
    f.sh("cat secret public >/dev/null; mkdir -m 777 shared; mkdir -m 700 private; echo x > private/f");
    let user = |script: &str| {
        Command::new("setpriv")
            .args(["--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c", script])
            .current_dir(&f.mnt)
            .output()
            .expect("setpriv")
    };
    assert!(user("cat public").status.success());
    let o = user("cat secret");
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("Permission denied"));
    let o = user("cat private/f");
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("Permission denied"));
    assert!(user("echo mine > shared/f && cat shared/f").status.success());
    assert_eq!(f.sh("stat -c '%u %g' shared/f"), "1000 1000\n");
}

#[test]
fn binds_tmpfs_and_read_only_root() {
    if skip("binds_tmpfs_and_read_only_root") {
        return;
    }
    let mut f = Fixture::new();
    std::fs::write(f.host.join("file"), b"root file\n").expect("write");
    let rw = f.dir.path().join("rwsrc");
    let ro = f.dir.path().join("rosrc");
    std::fs::create_dir(&rw).expect("mkdir");
    std::fs::create_dir(&ro).expect("mkdir");
    std::fs::write(ro.join("r"), b"read me\n").expect("write");
    // The root is served read-only: the mount points must exist on the host.
    for d in ["data/rw", "data/ro", "scratch"] {
        std::fs::create_dir_all(f.host.join(d)).expect("mkdir mount point");
    }
    let bind_rw = format!("{}:/data/rw", rw.display());
    let bind_ro = format!("{}:/data/ro:ro", ro.display());
    f.start(&["--overlay2", "none", "--bind", &bind_rw, "--bind", &bind_ro, "--tmpfs", "/scratch:size=1M"]);
    // Root without overlay and without --rw: read-only.
    assert_eq!(f.sh("cat file"), "root file\n");
    assert!(f.sh_fails("echo x > newfile").contains("Read-only file system"));
    // Writable bind: writes reach the host.
    f.sh("echo w > data/rw/new");
    assert_eq!(std::fs::read(rw.join("new")).expect("host file"), b"w\n");
    // Read-only bind.
    assert_eq!(f.sh("cat data/ro/r"), "read me\n");
    assert!(f.sh_fails("echo x > data/ro/x").contains("Read-only file system"));
    // tmpfs with a size cap.
    let err = f.sh_fails("dd if=/dev/zero of=scratch/big bs=64k count=64 status=none");
    assert!(err.contains("No space left"), "dd past the cap: {err}");
    // Passthrough: read-only gofer files are handed to the kernel when it accepts.
    f.sh("cat data/ro/r file > /dev/null");
    let pid = rustix::process::Pid::from_raw(f.child.as_ref().expect("child").id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("kill");
    let st = f.wait_exit(Duration::from_secs(10));
    assert!(st.success(), "exit status {st}:\n{}", f.log());
    let log = f.log();
    eprintln!("server log:\n{log}");
    assert!(log.contains("passthrough:"), "the server reports passthrough:\n{log}");
    if log.contains("passthrough offered by the kernel: true") {
        // Files of read-only gofer mounts were handed to the kernel.
        assert!(
            !log.contains("passthrough: 0 accepted"),
            "the kernel offered passthrough, none used:\n{log}"
        );
        assert!(log.contains(", 0 refused"), "the kernel refused a backing file:\n{log}");
    }
}

/// The server raises its soft descriptor limit to the hard one: started with 256, it
/// serves more lower files open at once than that (each open holds a descriptor the
/// gofer donated).
/// The mount reads ahead a request's worth (1 MiB, not the kernel's 128 KiB) for
/// files it does not pass through.
#[test]
fn the_mount_reads_ahead_a_request_at_a_time() {
    if skip("the_mount_reads_ahead_a_request_at_a_time") {
        return;
    }
    let mut f = Fixture::new();
    f.start(&[]);
    let dev = std::fs::metadata(&f.mnt).expect("stat the mount").dev();
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    let kib = std::fs::read_to_string(format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb")).expect("bdi");
    assert_eq!(kib.trim(), sandfs_fuse::READAHEAD_KIB.to_string(), "server log:\n{}", f.log());
}

#[test]
fn the_server_raises_its_descriptor_limit() {
    if skip("the_server_raises_its_descriptor_limit") {
        return;
    }
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum.unwrap_or(u64::MAX);
    if hard < 1024 {
        eprintln!("SKIP the_server_raises_its_descriptor_limit: hard RLIMIT_NOFILE {hard} < 1024");
        return;
    }
    let mut f = Fixture::new();
    for i in 0..400 {
        std::fs::write(f.host.join(format!("f{i}")), format!("{i}\n")).expect("write");
    }
    let inner = f.cmd(&[]);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -S -n 256 && exec \"$0\" \"$@\"")
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    f.start_cmd(cmd);
    let pid = f.child.as_ref().expect("server").id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("nofile line").to_string();
    let nums: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(nums[0], nums[1], "soft limit not raised: {line}");
    let held: Vec<std::fs::File> =
        (0..400).map(|i| std::fs::File::open(f.mnt.join(format!("f{i}"))).expect("open")).collect();
    for (i, mut file) in held.into_iter().enumerate() {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut file, &mut s).expect("read");
        assert_eq!(s, format!("{i}\n"));
    }
}
