//! The sandbox cgroup on this host's real cgroupfs: limits that bite, destroy,
//! placement, errors. Needs root and a writable cgroup fs: each test says why it
//! skips otherwise (set SANDFS_CGROUP_TESTS=require to fail instead).
//!
//! Children that must be in the group before they act are this test binary run
//! again as `helper_child` with SANDFS_CGROUP_HELPER set: it waits for a line on
//! stdin, which is sent once the pid is in the group.

use std::io::{self, BufRead, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemoryBuilder, LinuxPidsBuilder,
    LinuxResources, LinuxResourcesBuilder,
};
use sandfs_confine::cgroup::{Cgroup, CgroupError, CgroupVersion, detect, resources_from_flags};

const HELPER_ENV: &str = "SANDFS_CGROUP_HELPER";
/// What the allocating helper exits with if it got its 200 MiB.
const SURVIVED: i32 = 17;
/// What the forking helper exits with when fork failed with EAGAIN.
const FORK_EAGAIN: i32 = 42;
const EPERM: i32 = 1;
const EAGAIN: i32 = 11;
const EACCES: i32 = 13;
const EROFS: i32 = 30;

/// A unique name for this test's cgroup.
fn unique(name: &str) -> String {
    format!("sandfs-test-{}-{name}", std::process::id())
}

/// The test's cgroup, or `None` (with the reason printed) where the host has no
/// cgroup fs this process may write.
fn cgroup(name: &str, hint: Option<&Path>) -> Option<Cgroup> {
    let require = std::env::var("SANDFS_CGROUP_TESTS").is_ok_and(|v| v == "require");
    let skip = |why: String| {
        assert!(!require, "{name}: {why}");
        eprintln!("skipping {name}: {why}");
        None
    };
    if !rustix::process::geteuid().is_root() {
        return skip("not root".to_owned());
    }
    match Cgroup::create(hint, &unique(name)) {
        Ok(cg) => Some(cg),
        Err(e @ CgroupError::NoCgroupFs) => skip(e.to_string()),
        Err(CgroupError::Io { source, path, .. })
            if source.raw_os_error().is_some_and(|e| [EPERM, EACCES, EROFS].contains(&e)) =>
        {
            skip(format!("cgroup fs not writable at {}: {source}", path.display()))
        }
        Err(e) => panic!("{name}: creating the cgroup: {e}"),
    }
}

/// Runs this binary as the helper `mode`, stopped until [`go`].
fn helper(mode: &str) -> Child {
    let exe = std::env::current_exe().expect("test binary path");
    Command::new(exe)
        .args(["--exact", "helper_child", "--nocapture", "--test-threads=1"])
        .env(HELPER_ENV, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawning the helper")
}

/// Lets a helper go on, now that it is in the cgroup.
fn go(child: &mut Child) {
    let mut stdin = child.stdin.take().expect("helper stdin");
    stdin.write_all(b"go\n").expect("writing to the helper");
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.join(file).display()))
        .trim()
        .to_owned()
}

/// Not a test: the child side of the tests below, doing nothing unless run as
/// a helper.
#[test]
fn helper_child() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line).expect("waiting for go");
    match mode.as_str() {
        "alloc" => {
            // Touch every page of 200 MiB.
            let mut v: Vec<u8> = Vec::new();
            v.resize(200 << 20, 1);
            std::hint::black_box(&v);
            std::process::exit(SURVIVED);
        }
        "fork" => {
            let mut kids = Vec::new();
            for _ in 0..16 {
                match Command::new("cat").stdin(Stdio::piped()).spawn() {
                    Ok(k) => kids.push(k),
                    Err(e) if e.raw_os_error() == Some(EAGAIN) => std::process::exit(FORK_EAGAIN),
                    Err(e) => {
                        eprintln!("fork failed otherwise: {e}");
                        std::process::exit(1);
                    }
                }
            }
            std::process::exit(0);
        }
        other => panic!("unknown helper mode {other}"),
    }
}

#[test]
fn memory_limit_oom_kills_the_child() {
    let Some(cg) = cgroup("oom", None) else {
        return;
    };
    let limit = 32i64 << 20;
    let res = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().limit(limit).swap(limit).build().unwrap())
        .build()
        .unwrap();
    let warnings = cg.apply(&res).expect("applying the memory limit");
    eprintln!("warnings: {warnings:?}");
    let mut child = helper("alloc");
    cg.add_pid(child.id() as i32).expect("adding the helper");
    go(&mut child);
    let status = child.wait().expect("waiting for the helper");
    assert_ne!(status.code(), Some(SURVIVED), "the child got 200 MiB past a 32 MiB limit");
    assert!(
        matches!(status.signal(), Some(9 | 6)),
        "expected SIGKILL (OOM) or SIGABRT (allocation failed), got {status}"
    );
    match cg.memory_events_oom() {
        Some(n) => assert!(n >= 1, "oom_kill count {n}"),
        None => eprintln!("this kernel does not count OOM kills per cgroup"),
    }
    // This process is fine, and can still allocate.
    let v = std::hint::black_box(vec![7u8; 64 << 20]);
    assert_eq!(v[v.len() - 1], 7);
    cg.destroy().expect("destroy");
}

#[test]
fn pids_limit_makes_fork_fail() {
    let Some(cg) = cgroup("pids", None) else {
        return;
    };
    let res = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(5).build().unwrap())
        .build()
        .unwrap();
    cg.apply(&res).expect("applying pids.max");
    let mut child = helper("fork");
    cg.add_pid(child.id() as i32).expect("adding the helper");
    go(&mut child);
    let status = child.wait().expect("waiting for the helper");
    assert_eq!(status.code(), Some(FORK_EAGAIN), "fork did not fail with EAGAIN: {status}");
    cg.destroy().expect("destroy");
}

#[test]
fn flag_limits_are_written() {
    let Some(cg) = cgroup("flags", None) else {
        return;
    };
    let mut res = resources_from_flags(Some("64m"), Some(10), Some("1.5")).unwrap();
    if let Some(cpu) = res.cpu_mut() {
        cpu.set_shares(Some(512));
    }
    let warnings = cg.apply(&res).expect("apply");
    assert!(warnings.is_empty(), "{warnings:?}");
    let mem = cg.path_for("memory").unwrap();
    let cpu = cg.path_for("cpu").unwrap();
    let pids = cg.path_for("pids").unwrap();
    assert_eq!(read(pids, "pids.max"), "10");
    if cg.version() == CgroupVersion::V2 {
        assert_eq!(read(mem, "memory.max"), (64u64 << 20).to_string());
        assert_eq!(read(cpu, "cpu.max"), "150000 100000");
        assert_eq!(read(cpu, "cpu.weight"), "20");
    } else {
        assert_eq!(read(mem, "memory.limit_in_bytes"), (64u64 << 20).to_string());
        assert_eq!(read(cpu, "cpu.cfs_quota_us"), "150000");
        assert_eq!(read(cpu, "cpu.cfs_period_us"), "100000");
        assert_eq!(read(cpu, "cpu.shares"), "512");
    }
    // Applying again (an update) lifts the quota.
    let res = LinuxResourcesBuilder::default()
        .cpu(LinuxCpuBuilder::default().quota(-1i64).build().unwrap())
        .build()
        .unwrap();
    cg.apply(&res).expect("apply again");
    if cg.version() == CgroupVersion::V2 {
        assert_eq!(read(cpu, "cpu.max"), "max 100000");
    } else {
        assert_eq!(read(cpu, "cpu.cfs_quota_us"), "-1");
    }
}

fn dev_rule(allow: bool, typ: LinuxDeviceType, major: i64, minor: i64, access: &str) -> LinuxDeviceCgroup {
    sandfs_confine::cgroup::device_rule(allow, Some(typ), Some(major), Some(minor), access)
}

fn deny_all() -> LinuxDeviceCgroup {
    sandfs_confine::cgroup::device_rule(false, None, None, None, "rwm")
}

#[test]
fn device_rules_reach_the_v1_list() {
    let Some(cg) = cgroup("devices", None) else {
        return;
    };
    let Some(dir) = cg.path_for("devices").filter(|_| cg.version() != CgroupVersion::V2) else {
        eprintln!("skipping device_rules_reach_the_v1_list: no v1 devices hierarchy");
        return;
    };
    let mut res = LinuxResources::default();
    res.set_devices(Some(vec![
        deny_all(),
        dev_rule(true, LinuxDeviceType::C, 10, 200, "rwm"),
        dev_rule(false, LinuxDeviceType::C, 1, 9, "rwm"),
    ]));
    cg.apply(&res).expect("apply");
    let list = read(dir, "devices.list");
    let lines: Vec<&str> = list.lines().collect();
    for want in ["c 1:3 rwm", "c 10:200 rwm", "c 136:* rwm", "c *:* m"] {
        assert!(lines.contains(&want), "{want} missing from {lines:?}");
    }
    for gone in ["a *:* rwm", "c 1:9 rwm"] {
        assert!(!lines.contains(&gone), "{gone} still in {lines:?}");
    }
}

#[test]
fn destroy_kills_and_removes() {
    let Some(cg) = cgroup("destroy", None) else {
        return;
    };
    let mut child = Command::new("sleep").arg("1000").spawn().expect("spawning sleep");
    let pid = child.id() as i32;
    cg.add_pid(pid).expect("add_pid");
    assert_eq!(cg.pids().expect("pids"), vec![pid]);
    let dirs: Vec<PathBuf> = cg.paths().iter().map(|p| p.to_path_buf()).collect();
    assert!(dirs.iter().all(|d| d.is_dir()));
    cg.destroy().expect("destroy");
    let status = child.wait().expect("waiting for sleep");
    assert_eq!(status.signal(), Some(9), "{status}");
    // The shared parent `sandfs/` goes only when empty, which it may not be
    // while other tests run; the sandbox's own directories must be gone.
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn freeze_and_thaw() {
    let Some(cg) = cgroup("freeze", None) else {
        return;
    };
    let mut child = Command::new("sleep").arg("1000").spawn().expect("spawning sleep");
    cg.add_pid(child.id() as i32).expect("add_pid");
    cg.freeze().expect("freeze");
    cg.thaw().expect("thaw");
    // Frozen or not, destroy gets rid of it.
    cg.freeze().expect("freeze again");
    cg.destroy().expect("destroy while frozen");
    assert_eq!(child.wait().expect("wait").signal(), Some(9));
}

/// Whether `dir` is `rel` under the caller's own cgroup in one of its hierarchies.
fn under_own_cgroup(dir: &Path, rel: &str) -> bool {
    let text = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    text.lines().any(|l| {
        let own = l.splitn(3, ':').nth(2).unwrap_or("");
        dir.to_string_lossy().ends_with(&format!("{}/{rel}", own.trim_end_matches('/')))
    })
}

#[test]
fn cgroups_path_placement() {
    // Relative: under the caller's cgroup, in each hierarchy.
    let rel = format!("{}/leaf", unique("rel"));
    let Some(cg) = cgroup("placement-rel", Some(Path::new(&rel))) else {
        return;
    };
    let paths: Vec<PathBuf> = cg.paths().iter().map(|p| p.to_path_buf()).collect();
    assert!(!paths.is_empty());
    for d in &paths {
        assert!(under_own_cgroup(d, &rel), "{} not under the caller's cgroup", d.display());
    }
    // The memory hierarchy here puts the caller below the root: check that one.
    if let Some(mem) = cg.path_for("memory") {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        if let Some(l) = own.lines().find(|l| l.split(':').nth(1) == Some("memory")) {
            let own_path = l.splitn(3, ':').nth(2).unwrap().trim_start_matches('/');
            assert!(mem.to_string_lossy().contains(own_path), "{}", mem.display());
        }
    }
    drop(cg);
    for d in &paths {
        let made = d.parent().unwrap();
        assert!(!made.exists(), "the parent it made, {}, was left", made.display());
    }

    // Default: sandfs/<id> under the caller's cgroup.
    let Some(cg) = cgroup("placement-default", None) else {
        return;
    };
    let id = unique("placement-default");
    for d in cg.paths() {
        assert!(under_own_cgroup(d, &format!("sandfs/{id}")), "{}", d.display());
    }
    drop(cg);

    // Absolute: from the hierarchy's root, i.e. right under its mount point.
    let abs = format!("/{}", unique("abs"));
    let Some(cg) = cgroup("placement-abs", Some(Path::new(&abs))) else {
        return;
    };
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for d in cg.paths() {
        let parent = d.parent().unwrap().to_string_lossy().into_owned();
        assert!(
            mounts.lines().any(|l| l.split(' ').nth(4) == Some(parent.as_str())),
            "{} is not at the root of a mounted hierarchy",
            d.display()
        );
    }
}

#[test]
fn errors_name_fields() {
    let Some(cg) = cgroup("errors", None) else {
        return;
    };
    // Refused before anything is written.
    let res = LinuxResourcesBuilder::default()
        .cpu(LinuxCpuBuilder::default().shares(1u64).build().unwrap())
        .build()
        .unwrap();
    let e = cg.apply(&res).unwrap_err();
    assert_eq!(e.field(), Some("linux.resources.cpu.shares"), "{e}");
    assert!(e.to_string().starts_with("linux.resources.cpu.shares: "), "{e}");
    let res = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().swap(1i64 << 20).build().unwrap())
        .build()
        .unwrap();
    let e = cg.apply(&res).unwrap_err();
    assert_eq!(e.field(), Some("linux.resources.memory.swap"), "{e}");
    // Refused by the kernel: no such CPU.
    let res = LinuxResourcesBuilder::default()
        .cpu(LinuxCpuBuilder::default().cpus("4000").build().unwrap())
        .build()
        .unwrap();
    let e = cg.apply(&res).unwrap_err();
    assert_eq!(e.field(), Some("linux.resources.cpu.cpus"), "{e}");
    assert!(e.to_string().starts_with("linux.resources.cpu.cpus: "), "{e}");
    // A device deny rule: enforced on v1, refused on v2.
    let mut res = LinuxResources::default();
    res.set_devices(Some(vec![deny_all(), dev_rule(false, LinuxDeviceType::C, 1, 3, "rwm")]));
    if cg.version() == CgroupVersion::V2 {
        let e = cg.apply(&res).unwrap_err();
        assert_eq!(e.field(), Some("linux.resources.devices[1]"), "{e}");
    } else {
        cg.apply(&res).expect("v1 enforces deny rules");
    }
}

#[test]
fn busy_cgroup_is_refused() {
    let Some(cg) = cgroup("busy", None) else {
        return;
    };
    let mut child = Command::new("sleep").arg("1000").spawn().expect("spawning sleep");
    cg.add_pid(child.id() as i32).expect("add_pid");
    let again = Cgroup::create(None, &unique("busy"));
    assert!(matches!(again, Err(CgroupError::Busy { .. })), "{again:?}");
    // The refused attempt left the first sandbox's process alone.
    assert_eq!(cg.pids().expect("pids"), vec![child.id() as i32]);
    drop(cg);
    assert_eq!(child.wait().expect("wait").signal(), Some(9));
}

#[test]
fn layout_is_detected() {
    match detect() {
        Ok(v) => eprintln!("cgroup layout: {v}"),
        Err(e) => eprintln!("no cgroup layout: {e}"),
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let is_mount = |point: &str, fs: &str| {
        mounts.lines().any(|l| l.split(' ').nth(4) == Some(point) && l.contains(&format!(" - {fs} ")))
    };
    if is_mount("/sys/fs/cgroup", "cgroup2") {
        assert_eq!(detect().expect("detect"), CgroupVersion::V2);
    } else if is_mount("/sys/fs/cgroup/unified", "cgroup2") && is_mount("/sys/fs/cgroup/memory", "cgroup") {
        assert_eq!(detect().expect("detect"), CgroupVersion::Hybrid);
    }
}
