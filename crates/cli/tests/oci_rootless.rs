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
/// directory may not be reachable), a busybox bundle, the runtime directory.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Option<Setup> {
        if !rustix::process::geteuid().is_root() {
            println!("SKIP rootless OCI: the test switches to nobody, which needs root");
            return None;
        }
        if !Path::new("/usr/bin/setpriv").exists() && !Path::new("/bin/setpriv").exists() {
            println!("SKIP rootless OCI: no setpriv");
            return None;
        }
        // As distributions ship it: users may open /dev/fuse.
        std::fs::set_permissions("/dev/fuse", PermissionsExt::from_mode(0o666)).ok()?;
        let dir = tempfile::Builder::new().prefix("sandfs-oci-rootless-").tempdir().ok()?;
        let st = Command::new(env!("CARGO_BIN_EXE_sandfs"))
            .args(["spec", "--rootfs-busybox", "auto", "--bundle"])
            .arg(dir.path().join("b"))
            .stdout(Stdio::null())
            .status()
            .ok()?;
        if !st.success() {
            println!("SKIP rootless OCI: no busybox bundle");
            return None;
        }
        std::fs::copy(env!("CARGO_BIN_EXE_sandfs"), dir.path().join("sandfs")).ok()?;
        std::fs::create_dir(dir.path().join("run")).ok()?;
        let st = Command::new("chown")
            .arg("-R")
            .arg(format!("{NOBODY}:{NOBODY}"))
            .arg(dir.path())
            .status()
            .ok()?;
        assert!(st.success());
        std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).ok()?;
        Some(Setup { dir })
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
    // The exec'd process runs as nobody on the host, seen from outside.
    let out = s.sandfs(&["ps", "--format", "json", "r1"]);
    let pids: Vec<i32> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(!pids.is_empty(), "ps: {}", String::from_utf8_lossy(&out.stderr));
    for p in &pids {
        let st = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        let uid = st.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
        assert!(uid.split_whitespace().skip(1).all(|u| u == "65534"), "pid {p}: {uid}");
    }

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
