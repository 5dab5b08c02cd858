//! The escape suite: real escape attempts from inside `sandfs run`, each asserting
//! the refusal and that the host is unchanged. This test binary is its own probe:
//! run as `escape __probe NAME ARGS` (inside the sandbox) it makes one attempt
//! (sandfs_testkit::probe) and prints the outcome. Where the probe can succeed
//! somewhere (on the host, with the host network), that control runs too, so a
//! probe that cannot tell refusal from success fails the suite.
//!
//! Root only (skipped with a reason otherwise); rootless mode is exercised from the
//! root run by `rootless.rs`. Prints a table: probe, outcome, verdict.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn sandfs() -> &'static str {
    env!("CARGO_BIN_EXE_sandfs")
}

fn me() -> PathBuf {
    std::fs::canonicalize("/proc/self/exe").expect("own path")
}

struct Suite {
    rows: Vec<(String, String, bool)>,
    filter: Option<String>,
    mode: Mode,
}

/// How sandfs is started: by root, or (rootless) by `nobody` through setpriv, with
/// copies of the binaries that user can reach.
struct Mode {
    label: &'static str,
    prefix: Vec<String>,
    sandfs: PathBuf,
    probe: PathBuf,
    map: sandfs_vfs::IdMap,
    _dir: Option<tempfile::TempDir>,
    /// Rootless: /dev/fuse's mode, put back when the mode's suite is done.
    _fuse: Option<sandfs_testkit::devfuse::OpenToUsers>,
}

impl Mode {
    fn root() -> Mode {
        Mode {
            label: "root",
            prefix: Vec::new(),
            sandfs: sandfs().into(),
            probe: me(),
            map: sandfs_confine::userns::for_caller().0,
            _dir: None,
            _fuse: None,
        }
    }

    /// Rootless as `nobody`: /dev/fuse made usable by users first, as distributions
    /// ship it.
    fn rootless() -> Option<Mode> {
        if !Path::new("/usr/bin/setpriv").exists() && !Path::new("/bin/setpriv").exists() {
            println!("SKIP rootless escape suite: no setpriv");
            return None;
        }
        let Some(fuse) = sandfs_testkit::devfuse::OpenToUsers::new().expect("make /dev/fuse mode 0666")
        else {
            println!("SKIP rootless escape suite: no /dev/fuse");
            return None;
        };
        let dir = tempfile::Builder::new().prefix("sandfs-rootless-").tempdir().expect("temporary directory");
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod the directory");
        let (s, p) = (dir.path().join("sandfs"), dir.path().join("probe"));
        std::fs::copy(sandfs(), &s).expect("copy sandfs");
        std::fs::copy(me(), &p).expect("copy the probe");
        let prefix = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"];
        Some(Mode {
            label: "rootless",
            prefix: prefix.iter().map(|x| x.to_string()).collect(),
            sandfs: s,
            probe: p,
            map: sandfs_confine::userns::rootless_map(65534, 65534, None),
            _dir: Some(dir),
            _fuse: Some(fuse),
        })
    }

    fn command(&self) -> Command {
        let mut cmd = match self.prefix.split_first() {
            Some((p, rest)) => {
                let mut c = Command::new(p);
                c.args(rest).arg(&self.sandfs);
                c
            }
            None => Command::new(&self.sandfs),
        };
        cmd.current_dir("/");
        cmd
    }
}

impl Suite {
    fn check(&mut self, name: &str, outcome: String, ok: bool) {
        let name = format!("[{}] {name}", self.mode.label);
        println!("{:<54} {:<32} {}", name, outcome, if ok { "pass" } else { "FAILED" });
        self.rows.push((name, outcome, ok));
    }

    /// Run probe `what` inside `sandfs run FLAGS`; its printed outcome (or the failure).
    fn inside(&self, flags: &[&str], what: &str, args: &[&str], setup: impl FnOnce(&mut Command)) -> String {
        let mut cmd = self.mode.command();
        cmd.arg("run").args(flags).arg("--").arg(&self.mode.probe).arg("__probe").arg(what).args(args);
        cmd.stdin(Stdio::null());
        setup(&mut cmd);
        let out = cmd.output().expect("run sandfs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        match stdout.lines().last() {
            Some(l) if out.status.success() => l.to_string(),
            _ => format!("run failed: {} {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        }
    }

    fn wants(&self, name: &str) -> bool {
        self.filter.as_ref().is_none_or(|f| name.contains(f.as_str()))
    }
}

/// The same probe made directly on the host (controls; only harmless ones).
fn on_host(what: &str, args: &[&str]) -> String {
    let out = Command::new(me()).arg("__probe").arg(what).args(args).output().expect("run probe");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn refused(o: &str) -> bool {
    !o.is_empty() && !o.starts_with("run failed") && o.split(' ').all(|w| w != "ok")
}

/// The "unfiltered" probe's verdict: inside, it read at least its own status,
/// its own Seccomp mode is 2 (filter) and no other process is unfiltered; on the
/// host the same probe read its own status and found unfiltered processes.
fn unfiltered_ok(inside: &str, host: &str) -> bool {
    // `read N self S others none|pids K` as (N, S, others).
    fn parse(o: &str) -> Option<(usize, &str, &str)> {
        let rest = o.strip_prefix("read ")?;
        let (n, rest) = rest.split_once(" self ")?;
        let (own, others) = rest.split_once(" others ")?;
        Some((n.parse().ok()?, own, others))
    }
    let inside_ok = matches!(parse(inside), Some((n, "2", "none")) if n >= 1);
    let host_ok = matches!(parse(host), Some((n, _, others)) if n >= 2 && others.starts_with("pids "));
    inside_ok && host_ok
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__probe") {
        println!("{}", sandfs_testkit::probe::probe(&args[2], &args[3..]));
        return;
    }
    if !rustix::process::geteuid().is_root() {
        println!("SKIP escape suite: sandfs run needs root here (rootless runs are tested from root)");
        return;
    }
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned();
    let mut rows = Vec::new();
    for mode in [Some(Mode::root()), Mode::rootless()].into_iter().flatten() {
        let mut s = Suite { rows: Vec::new(), filter: filter.clone(), mode };
        suite(&mut s);
        rows.append(&mut s.rows);
    }
    let failed: Vec<_> = rows.iter().filter(|r| !r.2).collect();
    println!("\n{} probes, {} failed", rows.len(), failed.len());
    if !failed.is_empty() {
        for f in failed {
            eprintln!("FAILED: {} -> {}", f.0, f.1);
        }
        std::process::exit(1);
    }
}

fn suite(s: &mut Suite) {
    println!("{:<54} {:<32} verdict", "probe", "outcome");
    if s.wants("whoami") {
        let o = s.inside(&[], "whoami", &[], |_| {});
        s.check("(control) the program is uid 0 inside", o.clone(), o == "0 0");
    }

    if s.wants("core_pattern") {
        let before = std::fs::read("/proc/sys/kernel/core_pattern").unwrap();
        let o = s.inside(&[], "write-back", &["/proc/sys/kernel/core_pattern"], |_| {});
        let after = std::fs::read("/proc/sys/kernel/core_pattern").unwrap();
        // The same value written back by host root: harmless, and it works.
        let control = on_host("write-back", &["/proc/sys/kernel/core_pattern"]);
        s.check(
            "write /proc/sys/kernel/core_pattern",
            format!("{o} (host root: {control})"),
            refused(&o) && before == after && control == "ok",
        );
    }
    if s.wants("mount") {
        let o = s.inside(&[], "mount-tmpfs", &["/tmp"], |_| {});
        s.check("mount a tmpfs", o.clone(), o == "EPERM");
        let o = s.inside(&[], "remount-rw", &["/sys"], |_| {});
        s.check("remount /sys read-write", o.clone(), o == "EPERM");
        let o = s.inside(&[], "remount-rw", &["/proc/sys"], |_| {});
        s.check("remount /proc/sys read-write", o.clone(), o == "EPERM");
    }
    if s.wants("mknod") {
        // The host's root disk, by its device number.
        let st = rustix::fs::stat("/").unwrap();
        let (maj, min) = (rustix::fs::major(st.st_dev).to_string(), rustix::fs::minor(st.st_dev).to_string());
        let o = s.inside(&[], "mknod-mount", &["/tmp/disk", &maj, &min, "ext4"], |_| {});
        s.check("mknod the host disk and mount it", o.clone(), refused(&o) && o.starts_with("EPERM"));
    }
    if s.wants("release_agent") {
        let o = s.inside(&[], "release-agent", &[], |_| {});
        s.check("mount cgroup v1, write release_agent", o.clone(), refused(&o));
    }
    if s.wants("handle") {
        let o = s.inside(&[], "open-by-handle", &[], |_| {});
        let control = on_host("open-by-handle", &[]);
        s.check(
            "open_by_handle_at",
            format!("{o} (host: {control})"),
            refused(o.split(' ').nth(1).unwrap_or("ok")) && control.ends_with("ok"),
        );
    }
    for (probe, label) in [
        ("bpf", "load a BPF program"),
        ("perf", "system-wide perf_event_open"),
        ("init-module", "init_module with a junk image"),
        ("reboot", "reboot with a wrong magic"),
        ("unshare-user", "create a user namespace"),
    ] {
        if !s.wants(probe) {
            continue;
        }
        let o = s.inside(&[], probe, &[], |_| {});
        // On the host the kernel answers (ok, or a format error): never EPERM from
        // root, so EPERM inside is the sandbox's refusal.
        let control = if probe == "unshare-user" { "ok".to_string() } else { on_host(probe, &[]) };
        s.check(label, format!("{o} (host: {control})"), o == "EPERM" && control != "EPERM");
    }
    if s.wants("ptrace") {
        // The program is pid 1: no sandfs process without the filter (an init, a
        // supervisor) is in its pid namespace to attach to. The probe says how many
        // /proc status files it read, its own included, and its own Seccomp mode:
        // "none" counts only when it read its own status and found itself filtered
        // (2), so a /proc that is masked or shows nothing cannot pass. The control:
        // the host shows such processes to the same probe.
        let o = s.inside(&[], "unfiltered", &[], |_| {});
        let host = on_host("unfiltered", &[]);
        s.check(
            "an unfiltered process to ptrace in the sandbox",
            format!("{o} (host: {host})"),
            unfiltered_ok(&o, &host),
        );
    }
    if s.wants("network") {
        let o = s.inside(&[], "lo-down", &[], |_| {});
        s.check("take the loopback down (net admin)", o.clone(), o == "EPERM");
        // A bridge: the kinds of device this kernel has (it has no dummy driver).
        let add = ["ip", "link", "add", "sandfs-esc0", "type", "bridge"];
        let inside = s.mode.command().arg("run").arg("--").args(add).stdin(Stdio::null()).output().unwrap();
        let control = Command::new("unshare").arg("--net").args(add).output().unwrap();
        let host_has = Path::new("/sys/class/net/sandfs-esc0").exists();
        let why = String::from_utf8_lossy(&inside.stderr).trim().to_string();
        s.check(
            "create a network interface",
            format!("{why} (own netns as host root: {})", control.status),
            !inside.status.success()
                && why.contains("Operation not permitted")
                && control.status.success()
                && !host_has,
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        let o = s.inside(&[], "connect", &[&port], |_| {});
        let control = s.inside(&["--network", "host"], "connect", &[&port], |_| {});
        s.check(
            "connect to a host loopback port",
            format!("{o} (--network host: {control})"),
            o == "ECONNREFUSED" && control == "ok",
        );
    }
    if s.wants("inherited") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "host\n").unwrap();
        let f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        let raw = f.as_raw_fd();
        let o = s.inside(&[], "write-fd", &["5"], |cmd| {
            // SAFETY: dup2 in the child before exec: async-signal-safe, and fd 5 is
            // meant to be inherited (no close-on-exec), as a careless caller leaves it.
            unsafe {
                cmd.pre_exec(move || {
                    use std::os::fd::FromRawFd;
                    let mut five = std::os::fd::OwnedFd::from_raw_fd(5);
                    let r = rustix::io::dup2(std::os::fd::BorrowedFd::borrow_raw(raw), &mut five);
                    std::mem::forget(five);
                    r?;
                    Ok(())
                });
            }
        });
        let after = std::fs::read_to_string(&path).unwrap();
        s.check("write through an inherited descriptor", o.clone(), o == "EBADF" && after == "host\n");
    }
    if s.wants("tiocsti") {
        let master =
            rustix::pty::openpt(rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY).unwrap();
        rustix::pty::grantpt(&master).unwrap();
        rustix::pty::unlockpt(&master).unwrap();
        let name = rustix::pty::ptsname(&master, Vec::new()).unwrap();
        let slave = std::fs::OpenOptions::new().read(true).write(true).open(name.to_str().unwrap()).unwrap();
        let o = s.inside(&[], "tiocsti", &["0"], |cmd| {
            cmd.stdin(Stdio::from(slave.try_clone().unwrap()));
        });
        // Whatever was pushed would now be input waiting on the terminal.
        rustix::fs::fcntl_setfl(&slave, rustix::fs::OFlags::NONBLOCK).unwrap();
        let mut buf = [0u8; 16];
        let pending = rustix::io::read(&slave, &mut buf).unwrap_or(0);
        s.check(
            "TIOCSTI into the terminal",
            o.clone(),
            o.starts_with("EPERM") && refused(&o) && pending == 0,
        );
    }
    if s.wants("bind") {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        // The volume belongs to whoever runs sandfs (a rootless user binds their own
        // directories; the kernel refuses writes to a directory whose owner has no
        // id inside the user namespace).
        if let Some(host) = s.mode.map.uid_to_host(0) {
            std::os::unix::fs::chown(dir.path(), Some(host), s.mode.map.gid_to_host(0)).unwrap();
        }
        let bind = format!("{}:/vol", dir.path().display());
        let o = s.inside(&["--bind", &bind], "mknod-char", &["/vol/null"], |_| {});
        s.check(
            "mknod a device on a writable bind",
            o.clone(),
            o == "EPERM" && !dir.path().join("null").exists(),
        );
        let o = s.inside(&["--bind", &bind], "mkfifo", &["/vol/fifo"], |_| {});
        s.check("(control) mkfifo on a writable bind works", o.clone(), o == "ok");
        let o = s.inside(&["--bind", &bind], "setuid-file", &["/vol/suid", "0"], |_| {});
        let o5 = s.inside(&["--bind", &bind], "setuid-file", &["/vol/suid5", "5"], |_| {});
        // From the host: nothing in the volume is a device, nothing is setuid or
        // setgid to an id outside the sandbox's range, nothing belongs to host root.
        let map = s.mode.map.clone();
        let mut bad = Vec::new();
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let e = e.unwrap();
            let st = rustix::fs::lstat(e.path()).unwrap();
            let kind = st.st_mode & 0o170000;
            let owned = map.uid_from_host(st.st_uid).is_some() && map.gid_from_host(st.st_gid).is_some();
            // Not owned covers "setuid or setgid to an id it does not own".
            if kind == 0o020000 || kind == 0o060000 || !owned {
                bad.push(format!("{} {:o} {}:{}", e.path().display(), st.st_mode, st.st_uid, st.st_gid));
            }
        }
        let suid = rustix::fs::stat(dir.path().join("suid")).ok();
        let host_owner = suid.as_ref().map(|st| st.st_uid);
        s.check(
            "setuid files on a writable bind (host view)",
            format!("{o} / {o5}; owner {host_owner:?}; bad {bad:?}"),
            bad.is_empty() && host_owner == map.uid_to_host(0),
        );
    }
    // Rootless without subordinate ids has only container id 0: no uid 1000.
    if s.wants("setuid_helper") && s.mode.prefix.is_empty() {
        setuid_helper(s);
    }
}

/// A non-root bundle that ships a setuid-root helper (here: a setuid copy of this
/// probe in its root filesystem, the host root): the helper becomes container root,
/// which is nobody on the host, and holds only the bundle's capabilities.
fn setuid_helper(s: &mut Suite) {
    let dir = tempfile::Builder::new().prefix("sandfs-suid-").tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let helper = dir.path().join("helper");
    std::fs::copy(me(), &helper).unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    let bundle = tempfile::tempdir().unwrap();
    let caps: Vec<&str> = sandfs_confine::caps::DEFAULT.to_vec();
    let config = |args: Vec<String>| {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "user": {"uid": 1000, "gid": 1000},
                "args": args,
                "env": ["PATH=/usr/bin:/bin"],
                "cwd": "/",
                "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
                "noNewPrivileges": false
            },
            "root": {"path": "/", "readonly": true},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro", "nosuid", "nodev", "noexec"]}
            ],
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}]}
        })
    };
    let run = |probe: &str, args: &[&str]| -> String {
        let mut a = vec![helper.display().to_string(), "__probe".into(), probe.into()];
        a.extend(args.iter().map(|x| x.to_string()));
        std::fs::write(bundle.path().join("config.json"), config(a).to_string()).unwrap();
        let out = Command::new(sandfs())
            .args(["run", "--bundle"])
            .arg(bundle.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let o = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").to_string();
        if out.status.success() {
            o
        } else {
            format!("run failed: {}", String::from_utf8_lossy(&out.stderr).trim())
        }
    };
    let who = run("whoami", &[]);
    s.check("(control) setuid helper runs as container root", who.clone(), who == "1000 0");
    let before = std::fs::read("/proc/sys/kernel/core_pattern").unwrap();
    let o = run("write-back", &["/proc/sys/kernel/core_pattern"]);
    s.check(
        "setuid helper: write core_pattern",
        o.clone(),
        refused(&o) && before == std::fs::read("/proc/sys/kernel/core_pattern").unwrap(),
    );
    let o = run("mount-tmpfs", &["/tmp"]);
    s.check("setuid helper: mount a tmpfs", o.clone(), o == "EPERM");
    // This bundle has no seccomp profile (as with runc, none is added): the kernel
    // itself refuses; which errno depends on the kernel (ENOSYS without modules).
    let o = run("init-module", &[]);
    s.check("setuid helper: init_module", o.clone(), refused(&o));
    let o = run("remount-rw", &["/sys"]);
    s.check("setuid helper: remount /sys read-write", o.clone(), o == "EPERM");
    let _ = std::io::stdout().flush();
}
