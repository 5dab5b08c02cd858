//! The OCI commands run by an ordinary user (`nobody`, through setpriv, from a root
//! test run): the state directory defaults to $XDG_RUNTIME_DIR/sandfs, container
//! root is that user on the host, and the lifecycle works without a cgroup of its
//! own. Root only (it switches to nobody); skipped with a reason otherwise.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const NOBODY: u32 = 65534;

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Everything nobody needs, in one directory it owns: a copy of sandfs (the build
/// directory may not be reachable), a busybox bundle, the runtime directory; and
/// /dev/fuse open to users for the test's length.
struct Setup {
    dir: tempfile::TempDir,
    // Dropped after Setup's own drop (the forced delete) and the directory: puts
    // /dev/fuse's mode back.
    _fuse: sandfs_testkit::devfuse::OpenToUsers,
}

impl Setup {
    /// `None` (with a SKIP reason) without root or without /dev/fuse; any other
    /// failure to set up fails the test.
    fn new() -> Option<Setup> {
        if !rustix::process::geteuid().is_root() {
            println!("SKIP rootless OCI: the test switches to nobody, which needs root");
            return None;
        }
        assert!(
            Path::new("/usr/bin/setpriv").exists() || Path::new("/bin/setpriv").exists(),
            "no setpriv (util-linux; scripts/install-deps.sh installs it)"
        );
        // As distributions ship it: users may open /dev/fuse.
        let Some(fuse) = sandfs_testkit::devfuse::OpenToUsers::new().expect("make /dev/fuse mode 0666")
        else {
            println!("SKIP rootless OCI: no /dev/fuse");
            return None;
        };
        let dir =
            tempfile::Builder::new().prefix("sandfs-oci-rootless-").tempdir().expect("temporary directory");
        let st = Command::new(env!("CARGO_BIN_EXE_sandfs"))
            .args(["spec", "--rootfs-busybox", "auto", "--bundle"])
            .arg(dir.path().join("b"))
            .stdout(Stdio::null())
            .status()
            .expect("run sandfs spec");
        assert!(
            st.success(),
            "sandfs spec --rootfs-busybox auto: {st} (busybox-static: scripts/install-deps.sh)"
        );
        std::fs::copy(env!("CARGO_BIN_EXE_sandfs"), dir.path().join("sandfs")).expect("copy sandfs");
        std::fs::create_dir(dir.path().join("run")).expect("create run/");
        let st = Command::new("chown")
            .arg("-R")
            .arg(format!("{NOBODY}:{NOBODY}"))
            .arg(dir.path())
            .status()
            .expect("run chown");
        assert!(st.success(), "chown -R nobody: {st}");
        std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).expect("chmod the directory");
        Some(Setup { dir, _fuse: fuse })
    }

    /// `sandfs ARGS` as nobody, with XDG_RUNTIME_DIR in the setup's directory.
    fn sandfs(&self, args: &[&str]) -> Output {
        let mut cmd = self.command(args);
        // The container keeps create's stdout and stderr (they are its own): a
        // create's output is not captured, or reading it would last the container.
        if args.first() == Some(&"create") {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
            let st = cmd.status().expect("run sandfs as nobody");
            return Output { status: st, stdout: Vec::new(), stderr: Vec::new() };
        }
        cmd.output().expect("run sandfs as nobody")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "env"])
            .arg(format!("XDG_RUNTIME_DIR={}", self.dir.path().join("run").display()))
            .arg(self.dir.path().join("sandfs"))
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.sandfs(&["delete", "--force", "r1"]);
    }
}

/// SIGKILLs a process of the test's on drop (a detached exec, not its child).
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(p) = rustix::process::Pid::from_raw(self.0) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
}

fn status(s: &Setup) -> String {
    let out = s.sandfs(&["state", "r1"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["status"].as_str().unwrap_or("").to_string()
}

#[test]
fn an_ordinary_user_runs_the_lifecycle_and_its_root_is_that_user() {
    let Some(s) = Setup::new() else { return };
    let bundle = s.dir.path().join("b");
    let b = bundle.to_str().unwrap();
    // The bundle's program waits for a TERM it traps.
    let cfg = bundle.join("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    c["process"]["args"] =
        serde_json::json!(["sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.05; done"]);
    c["process"]["terminal"] = false.into();
    std::fs::write(&cfg, c.to_string()).unwrap();

    let out = s.sandfs(&["create", "--bundle", b, "r1"]);
    assert!(out.status.success(), "create: {}", String::from_utf8_lossy(&out.stderr));
    // The default state directory of a user.
    assert!(s.dir.path().join("run/sandfs/r1/state.json").is_file());
    assert_eq!(status(&s), "created");
    let out = s.sandfs(&["start", "r1"]);
    assert!(out.status.success(), "start: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(status(&s), "running");

    // Container root is nobody on the host: the only id the namespace maps.
    let out = s.sandfs(&["exec", "r1", "sh", "-c", "id -u; cat /proc/self/uid_map"]);
    assert!(out.status.success(), "exec: {}", String::from_utf8_lossy(&out.stderr));
    let t = text(&out);
    let mut lines = t.lines();
    assert_eq!(lines.next(), Some("0"), "{t}");
    let map: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(map, ["0", "65534", "1"], "{t}");
    // An exec'd process runs as nobody on the host, seen from outside: one that
    // stays (detached) for its /proc status to be read.
    let pid_file = s.dir.path().join("exec.pid");
    let st = s
        .command(&["exec", "--detach", "--pid-file", pid_file.to_str().unwrap(), "r1", "sleep", "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run sandfs exec --detach as nobody");
    assert!(st.success(), "exec --detach: {st}");
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let sleeper = KillOnDrop(pid);
    // The pid may be written before its process has exec'd: wait for the program.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default() != b"sleep\x001000\x00" {
        assert!(std::time::Instant::now() < deadline, "the detached process {pid} is not sleep 1000");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // The container's pid 1 too (it runs until the TERM below).
    let state: serde_json::Value = serde_json::from_slice(&s.sandfs(&["state", "r1"]).stdout).unwrap();
    let init = state["pid"].as_i64().unwrap() as i32;
    for p in [pid, init] {
        let st = std::fs::read_to_string(format!("/proc/{p}/status")).expect("a container process's status");
        let uid: Vec<&str> =
            st.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap_or("").split_whitespace().collect();
        assert_eq!(uid, ["65534"; 4], "pid {p}: real, effective, saved and filesystem uid");
    }
    let out = s.sandfs(&["ps", "--format", "json", "r1"]);
    let pids: Vec<i32> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(pids.contains(&pid), "ps lists {pids:?}, not {pid}: {}", String::from_utf8_lossy(&out.stderr));
    drop(sleeper);

    let out = s.sandfs(&["delete", "r1"]);
    assert!(!out.status.success(), "a running container was deleted without --force");
    let out = s.sandfs(&["kill", "r1", "TERM"]);
    assert!(out.status.success(), "kill: {}", String::from_utf8_lossy(&out.stderr));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while status(&s) != "stopped" {
        assert!(std::time::Instant::now() < deadline, "still {} after TERM", status(&s));
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = s.sandfs(&["delete", "r1"]);
    assert!(out.status.success(), "delete: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!s.dir.path().join("run/sandfs/r1").exists());
}
