//! OCI bundle features checked from inside `sandfs run --bundle`: capabilities,
//! no_new_privs, seccomp, masked and read-only paths, sysctls, joined, shared and
//! own network namespaces, id maps and cgroup limits. sandfs claims to run a bundle
//! as runc does, so each case also runs the same bundle under `runc run` and
//! compares what the container saw (printed as `runc: ...`); where runc refuses or
//! fails, its outcome is recorded, not asserted. Without runc only the sandfs half
//! runs. Root only (skipped with a reason otherwise).

use sandfs_confine::which;
use serde_json::{Value, json};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const SETS: [&str; 5] = ["bounding", "effective", "permitted", "inheritable", "ambient"];

fn sandfs() -> &'static str {
    env!("CARGO_BIN_EXE_sandfs")
}

/// A unique name for host objects (runc ids, network namespaces).
fn unique(what: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("sandfs-bundles-{what}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// What a run gave.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn of(cmd: &mut Command) -> Outcome {
        Outcome::from(cmd.stdin(Stdio::null()).output().expect("start the runtime"))
    }

    fn from(out: std::process::Output) -> Outcome {
        Outcome {
            code: out
                .status
                .code()
                .or_else(|| std::os::unix::process::ExitStatusExt::signal(&out.status).map(|s| 128 + s)),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// One line: the exit status and the first line of output or error.
    fn summary(&self) -> String {
        let line = |s: &str| s.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        format!(
            "exit {}; stdout {:?}; stderr {:?}",
            self.code.map_or("?".into(), |c| c.to_string()),
            line(&self.stdout),
            line(&self.stderr)
        )
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\nstdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Deletes a runc container however the test ends.
struct RuncContainer(String);

impl Drop for RuncContainer {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .args(["delete", "-f", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Removes a network namespace however the test ends.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).stderr(Stdio::null()).status();
    }
}

/// A busybox bundle in a tempdir of its own, running `sh -c SCRIPT`.
struct Bundle {
    dir: tempfile::TempDir,
    config: Value,
}

impl Bundle {
    /// None (with the reason printed) unless root with busybox.
    fn new(script: &str) -> Option<Bundle> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIP: sandfs run and runc need root");
            return None;
        }
        if which("busybox").is_none() {
            eprintln!("SKIP: no busybox (install busybox-static)");
            return None;
        }
        let dir = tempfile::Builder::new().prefix("sandfs-bundles-").tempdir().unwrap();
        // runc with a user namespace reaches the bundle as the mapped root.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let st = Command::new(sandfs())
            .args(["spec", "--rootfs-busybox", "auto", "--bundle"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "sandfs spec failed");
        let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        let mut config: Value = serde_json::from_str(&text).unwrap();
        config["process"]["args"] = json!(["sh", "-c", script]);
        config["process"]["terminal"] = json!(false);
        Some(Bundle { dir, config })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self) {
        let text = serde_json::to_string_pretty(&self.config).unwrap();
        std::fs::write(self.path().join("config.json"), text).unwrap();
    }

    /// Keep only the namespaces not of type `typ`.
    fn drop_namespace(&mut self, typ: &str) {
        let ns = self.config["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != typ);
    }

    fn add_namespace(&mut self, ns: Value) {
        self.config["linux"]["namespaces"].as_array_mut().unwrap().push(ns);
    }

    fn sandfs(&self) -> Outcome {
        self.write();
        let child = Command::new(sandfs())
            .arg("run")
            .arg("--bundle")
            .arg(self.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sandfs");
        let pid = child.id();
        let out = Outcome::from(child.wait_with_output().expect("wait for sandfs"));
        // A runtime killed outright (by the OOM killer: it is charged to the
        // cgroup it limits) cannot remove its cgroup: noted, and removed here.
        for d in leftover_cgroups(pid) {
            println!("sandfs left its cgroup {} behind (exit {:?})", d.display(), out.code);
            let _ = std::fs::remove_dir(&d);
        }
        out
    }

    /// The same bundle under runc; None (with `runc: SKIP` printed) without runc.
    fn runc(&self) -> Option<Outcome> {
        if which("runc").is_none() {
            println!("runc: SKIP (runc is not installed)");
            return None;
        }
        self.write();
        let id = RuncContainer(unique("runc"));
        Some(Outcome::of(Command::new("runc").arg("run").arg("--bundle").arg(self.path()).arg(&id.0)))
    }

    /// The same bundle under runc, which must succeed and print what sandfs printed
    /// (`out`); the outcome for further checks, None without runc.
    fn runc_agrees(&self, out: &Outcome) -> Option<Outcome> {
        let r = self.runc()?;
        println!("runc: {}", r.summary());
        assert!(r.ok(), "runc: {r}");
        assert_eq!(r.stdout, out.stdout, "runc printed something else");
        Some(r)
    }
}

/// The cgroup directories `sandfs/run-PID` (sandfs's name for the run of `pid`)
/// still there, in every hierarchy, at any depth up to 6.
fn leftover_cgroups(pid: u32) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, name: &str, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let p = e.path();
            if e.file_name() == "sandfs" && p.join(name).is_dir() {
                found.push(p.join(name));
            } else if depth > 0 {
                walk(&p, depth - 1, name, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), 6, &format!("run-{pid}"), &mut found);
    found
}

/// `CapXxx` lines of /proc/self/status, sorted.
fn cap_lines(status: &str) -> Vec<String> {
    let mut v: Vec<String> = status.lines().filter(|l| l.starts_with("Cap")).map(String::from).collect();
    v.sort();
    v
}

#[test]
fn capabilities_are_the_listed_ones() {
    let Some(mut b) = Bundle::new("grep Cap /proc/self/status") else { return };
    for set in SETS {
        b.config["process"]["capabilities"][set] = json!(["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]);
    }
    let out = b.sandfs();
    assert!(out.ok(), "{out}");
    let caps = cap_lines(&out.stdout);
    // CAP_CHOWN is 0, CAP_NET_BIND_SERVICE 10.
    for set in ["CapAmb", "CapBnd", "CapEff", "CapInh", "CapPrm"] {
        assert!(caps.contains(&format!("{set}:\t0000000000000401")), "{set}: {caps:?}");
    }
    if let Some(r) = b.runc() {
        println!("runc: {}", r.summary());
        assert!(r.ok(), "runc: {r}");
        assert_eq!(cap_lines(&r.stdout), caps, "runc gives other sets");
    }
}

#[test]
fn an_unknown_capability_is_refused() {
    let Some(mut b) = Bundle::new("grep CapEff /proc/self/status") else { return };
    for set in SETS {
        b.config["process"]["capabilities"][set] = json!(["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_BOGUS"]);
    }
    let out = b.sandfs();
    assert!(!out.ok(), "CAP_BOGUS accepted: {out}");
    assert!(out.stdout.is_empty(), "the program ran: {out}");
    assert!(out.stderr.contains("process.capabilities."), "the error names no field: {out}");
    assert!(out.stderr.contains("CAP_BOGUS"), "the error names no capability: {out}");
    println!("sandfs: {}", out.summary());
    if let Some(r) = b.runc() {
        // runc 1.1 only warns ("ignoring unknown or unavailable capabilities") and
        // runs with the rest: recorded, not compared.
        println!("runc: {}", r.summary());
    }
}

#[test]
fn no_new_privileges_on_and_off() {
    for (nnp, want) in [(true, "NoNewPrivs:\t1"), (false, "NoNewPrivs:\t0")] {
        let Some(mut b) = Bundle::new("grep NoNewPrivs /proc/self/status") else { return };
        b.config["process"]["noNewPrivileges"] = json!(nnp);
        let out = b.sandfs();
        assert!(out.ok(), "{out}");
        assert_eq!(out.stdout.trim(), want);
        if let Some(r) = b.runc() {
            println!("runc (noNewPrivileges {nnp}): {}", r.summary());
            assert!(r.ok(), "runc: {r}");
            assert_eq!(r.stdout.trim(), want);
        }
    }
}

#[test]
fn seccomp_errno_rule() {
    let Some(mut b) = Bundle::new("mkdir /tmp/x; echo status=$?; test -d /tmp/x || echo absent") else {
        return;
    };
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]
    });
    let out = b.sandfs();
    assert!(out.ok(), "{out}");
    assert_eq!(out.stdout, "status=1\nabsent\n", "{out}");
    // errno 42 is ENOMSG.
    assert!(out.stderr.contains("No message of desired type"), "{out}");
    if let Some(r) = b.runc_agrees(&out) {
        assert!(r.stderr.contains("No message of desired type"), "runc: {r}");
    }
}

#[test]
fn seccomp_unknown_action_is_refused() {
    let Some(mut b) = Bundle::new("mkdir /tmp/x && echo made") else { return };
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_BOGUS"}]
    });
    let out = b.sandfs();
    assert!(!out.ok() && out.stdout.is_empty(), "an unknown action was accepted: {out}");
    assert!(out.stderr.contains("linux.seccomp"), "the error names no field: {out}");
    println!("sandfs: {}", out.summary());
    if let Some(r) = b.runc() {
        println!("runc: {}", r.summary());
        assert!(!r.ok() && r.stdout.is_empty(), "runc accepted it: {r}");
    }
}

#[test]
fn masked_and_read_only_paths() {
    let files: Vec<&str> =
        ["/proc/keys", "/proc/timer_list"].into_iter().filter(|p| Path::new(p).exists()).collect();
    let dirs: Vec<&str> = ["/proc/acpi", "/proc/scsi", "/sys/firmware"]
        .into_iter()
        .filter(|p| std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_some()))
        .collect();
    let mut script = String::new();
    for f in &files {
        script.push_str(&format!("echo \"{f} $(wc -c < {f})\"; "));
    }
    for d in &dirs {
        script.push_str(&format!("echo \"{d} $(ls -A {d} | wc -l)\"; "));
    }
    script.push_str("echo 1 > /proc/sys/kernel/shmmax && echo written; cat /proc/sys/kernel/shmmax");
    let Some(mut b) = Bundle::new(&script) else { return };
    let masked: Vec<&str> = files.iter().chain(&dirs).copied().collect();
    b.config["linux"]["maskedPaths"] = json!(masked);
    b.config["linux"]["readonlyPaths"] = json!(["/proc/sys"]);
    let out = b.sandfs();
    assert!(out.ok(), "{out}");
    let mut want: String = masked.iter().map(|p| format!("{p} 0\n")).collect();
    let shmmax = std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    // A new ipc namespace starts from the kernel's default, not the host's value.
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), masked.len() + 1, "{out}");
    assert_ne!(lines[masked.len()], "1", "the write to /proc/sys went through");
    want.push_str(lines[masked.len()]);
    want.push('\n');
    assert_eq!(out.stdout, want, "masked paths show content, or the write went through");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    println!("masked {masked:?}; host shmmax {}", shmmax.trim());
    if let Some(r) = b.runc_agrees(&out) {
        assert!(r.stderr.contains("Read-only file system"), "runc: {r}");
    }
}

#[test]
fn namespaced_sysctl() {
    let host = || std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    let before = host();
    let Some(mut b) = Bundle::new("cat /proc/sys/kernel/shmmax") else { return };
    assert!(b.config["linux"]["namespaces"].as_array().unwrap().iter().any(|n| n["type"] == "ipc"));
    b.config["linux"]["sysctl"] = json!({"kernel.shmmax": "123456"});
    let out = b.sandfs();
    assert!(out.ok(), "{out}");
    assert_eq!(out.stdout, "123456\n");
    assert_eq!(host(), before, "the host's kernel.shmmax changed");
    if b.runc_agrees(&out).is_some() {
        assert_eq!(host(), before, "runc changed the host's kernel.shmmax");
    }
}

#[test]
fn a_host_sysctl_is_refused() {
    let host = || std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let before = host();
    let Some(mut b) = Bundle::new("echo ran") else { return };
    b.config["linux"]["sysctl"] = json!({"kernel.core_pattern": "|/bin/false"});
    let out = b.sandfs();
    assert!(!out.ok() && out.stdout.is_empty(), "kernel.core_pattern accepted: {out}");
    assert!(out.stderr.contains("kernel.core_pattern"), "the error does not name it: {out}");
    assert_eq!(host(), before);
    println!("sandfs: {}", out.summary());
    if let Some(r) = b.runc() {
        println!("runc: {}", r.summary());
        assert!(!r.ok() && r.stdout.is_empty(), "runc accepted it: {r}");
        assert_eq!(host(), before);
    }
}

/// A network namespace with an interface `d0` (dummy, or a bridge where the
/// kernel has no dummy driver).
fn netns_with_d0() -> Option<Netns> {
    let ns = Netns(unique("net"));
    if !Command::new("ip").args(["netns", "add", &ns.0]).status().is_ok_and(|s| s.success()) {
        eprintln!("SKIP: ip netns add failed");
        return None;
    }
    let added = ["dummy", "bridge"].iter().any(|t| {
        Command::new("ip")
            .args(["-n", &ns.0, "link", "add", "d0", "type", t])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(added, "no dummy or bridge interface could be made");
    Some(ns)
}

fn ns_link(path: &str) -> String {
    std::fs::read_link(path).unwrap().to_string_lossy().into_owned()
}

#[test]
fn joined_network_namespace() {
    if which("ip").is_none() {
        eprintln!("SKIP: no ip (iproute2)");
        return;
    }
    let Some(mut b) = Bundle::new("readlink /proc/self/ns/net; grep -o 'd0:' /proc/net/dev") else {
        return;
    };
    let Some(ns) = netns_with_d0() else { return };
    let path = format!("/var/run/netns/{}", ns.0);
    b.drop_namespace("network");
    b.add_namespace(json!({"type": "network", "path": path}));
    let want = format!("net:[{}]\nd0:\n", std::fs::metadata(&path).unwrap().ino());
    let out = b.sandfs();
    assert!(out.ok(), "{out}");
    assert_eq!(out.stdout, want);
    b.runc_agrees(&out);
}

#[test]
fn no_network_namespace_listed_is_the_hosts() {
    let Some(mut b) = Bundle::new("readlink /proc/self/ns/net") else { return };
    b.drop_namespace("network");
    let want = format!("{}\n", ns_link("/proc/self/ns/net"));
    let out = b.sandfs();
    assert!(out.ok(), "{out}");
    assert_eq!(out.stdout, want);
    b.runc_agrees(&out);
}

#[test]
fn a_listed_network_namespace_is_new_with_loopback_up() {
    let Some(b) = Bundle::new("readlink /proc/self/ns/net; ip -o link show | cut -d' ' -f2,3") else {
        return;
    };
    assert!(b.config["linux"]["namespaces"].as_array().unwrap().iter().any(|n| n["type"] == "network"));
    let host = ns_link("/proc/self/ns/net");
    let check = |o: &Outcome| {
        let mut lines = o.stdout.lines();
        assert_ne!(lines.next(), Some(host.as_str()), "the host's network namespace: {o}");
        let links: Vec<&str> = lines.collect();
        assert_eq!(links.len(), 1, "more than loopback: {o}");
        assert!(links[0].starts_with("lo: <LOOPBACK,UP"), "loopback is not up: {o}");
    };
    let out = b.sandfs();
    assert!(out.ok(), "{out}");
    check(&out);
    if let Some(r) = b.runc() {
        println!("runc: {}", r.summary());
        assert!(r.ok(), "runc: {r}");
        check(&r);
    }
}

const MAPPED: u32 = 2_000_000_000;

/// A bundle with a user namespace mapping container 0.. onto `host`.. (65536 ids).
fn mapped_bundle(script: &str, host: u32) -> Option<Bundle> {
    let mut b = Bundle::new(script)?;
    b.add_namespace(json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": host, "size": 65536}]);
    b.config["linux"]["uidMappings"] = map.clone();
    b.config["linux"]["gidMappings"] = map;
    Some(b)
}

/// A host directory anyone may write, bound at /data.
fn bind_data(b: &mut Bundle) -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix("sandfs-bundles-data-").tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let m = json!({"destination": "/data", "type": "bind", "source": d.path(), "options": ["rbind", "rw"]});
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| m["destination"] != "/data");
    mounts.push(m);
    d
}

#[test]
fn uid_and_gid_mappings() {
    let script = "cat /proc/self/uid_map /proc/self/gid_map | tr -s ' ' | sed 's/^ //'; touch /data/made";
    let Some(mut b) = mapped_bundle(script, MAPPED) else { return };
    // runc makes the container's mounts as the mapped root: the root filesystem
    // must belong to the mapped range (sandfs does not need it; it does no harm).
    let st = Command::new("chown")
        .args(["-R", "-h", &format!("{MAPPED}:{MAPPED}")])
        .arg(b.path().join("rootfs"))
        .status()
        .unwrap();
    assert!(st.success());
    let want = format!("0 {MAPPED} 65536\n0 {MAPPED} 65536\n");
    let owner = |d: &tempfile::TempDir| {
        let m = std::fs::metadata(d.path().join("made")).unwrap();
        (m.uid(), m.gid())
    };
    let data = bind_data(&mut b);
    let out = b.sandfs();
    assert!(out.ok(), "{out}");
    assert_eq!(out.stdout, want);
    assert_eq!(owner(&data), (MAPPED, MAPPED), "the file the container made has the wrong owner");
    let data = bind_data(&mut b);
    if let Some(r) = b.runc() {
        println!("runc: {}", r.summary());
        if r.ok() {
            assert_eq!(r.stdout, want);
            assert_eq!(owner(&data), (MAPPED, MAPPED));
        } else {
            println!("runc failed (not held against sandfs): {r}");
        }
    }
}

#[test]
fn a_mapping_onto_host_root_is_refused() {
    let Some(b) = mapped_bundle("cat /proc/self/uid_map", 0) else { return };
    let out = b.sandfs();
    assert!(!out.ok() && out.stdout.is_empty(), "a map onto host root was accepted: {out}");
    assert!(out.stderr.contains("linux.uidMappings"), "the error does not name the field: {out}");
    println!("sandfs: {}", out.summary());
    if let Some(r) = b.runc() {
        // runc allows it (container root is then host root): recorded only.
        println!("runc: {}", r.summary());
    }
}

#[test]
fn memory_limit() {
    // sort holds its whole input (one 100 MB line) in memory.
    let script = "head -c 100000000 /dev/zero | tr '\\0' a | sort > /dev/null; s=$?; echo sort=$s; exit $s";
    let Some(mut b) = Bundle::new(script) else { return };
    let limit = 32 << 20;
    let swap_limits = Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
        || Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    b.config["linux"]["resources"] = if swap_limits {
        json!({"memory": {"limit": limit, "swap": limit}})
    } else {
        json!({"memory": {"limit": limit}})
    };
    // The program killed (sort=137), or the whole run (sandfs's server is charged
    // to the same cgroup and may be the one chosen): never a completed allocation.
    let failed = |o: &Outcome| !o.ok() && !o.stdout.contains("sort=0");
    let out = b.sandfs();
    println!("sandfs: {}", out.summary());
    assert!(failed(&out), "the allocation went through: {out}");
    if let Some(r) = b.runc() {
        println!("runc: {}", r.summary());
        assert!(failed(&r), "runc: {r}");
    }
}

#[test]
fn pids_limit() {
    // 40 tasks for the whole sandbox: sandfs's own (server threads, gofers, the
    // sandbox process and init, about a dozen) count too; 60 sleepers cannot fit.
    let script = "for i in $(seq 60); do sleep 1000 & done; echo all-started";
    let Some(mut b) = Bundle::new(script) else { return };
    b.config["linux"]["resources"] = json!({"pids": {"limit": 40}});
    let refused = |o: &Outcome| {
        !o.ok() && !o.stdout.contains("all-started") && o.stderr.to_lowercase().contains("can't fork")
    };
    let out = b.sandfs();
    println!("sandfs: {}", out.summary());
    assert!(refused(&out), "{out}");
    if let Some(r) = b.runc() {
        println!("runc: {}", r.summary());
        assert!(refused(&r), "runc: {r}");
    }
}
