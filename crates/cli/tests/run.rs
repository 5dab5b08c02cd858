//! `sandfs run` end to end, as root (skipped with a reason otherwise): real programs
//! on the default view (host / under a memory overlay) and on a busybox bundle.

use sandfs_confine::which;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn sandfs() -> &'static str {
    env!("CARGO_BIN_EXE_sandfs")
}

fn root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    eprintln!("SKIP: sandfs run needs root (namespaces, FUSE)");
    false
}

fn run(args: &[&str]) -> Output {
    Command::new(sandfs()).arg("run").args(args).stdin(Stdio::null()).output().expect("run sandfs")
}

fn sh(script: &str) -> Output {
    run(&["--", "sh", "-c", script])
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn writes_stay_in_the_sandbox() {
    if !root() {
        return;
    }
    let name = format!("/etc/sandfs-test-{}", std::process::id());
    let out = sh(&format!("echo hi > {name}; cat {name}"));
    assert_eq!(text(&out.stdout), "hi\n", "stderr: {}", text(&out.stderr));
    assert!(out.status.success());
    assert!(!Path::new(&name).exists(), "the write reached the host");
}

/// The view's readahead is raised to one request's worth (a sequential read of a
/// lower file then takes 1 MiB requests instead of 128 KiB ones), and the view root
/// is the FUSE mount the setting was found for.
#[test]
fn the_view_reads_ahead_a_request_at_a_time() {
    if !root() {
        return;
    }
    let out =
        sh("d=$(grep ' / / ' /proc/self/mountinfo | cut -d' ' -f3); cat /sys/class/bdi/$d/read_ahead_kb");
    assert_eq!(
        text(&out.stdout).trim(),
        sandfs_fuse::READAHEAD_KIB.to_string(),
        "stderr: {}",
        text(&out.stderr)
    );
}

/// Issue 13 inside a sandbox: a host file with two names (under the overlaid host
/// root) stays one file: a write through one name survives the other's lookup and
/// shows through it, chmod too, st_nlink counts the names; the host is unchanged.
#[test]
fn host_hard_links_stay_one_file_in_the_sandbox() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    std::fs::write(dir.path().join("a"), b"linked\n").expect("write");
    std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).expect("ln");
    let d = dir.path().display();
    let out = sh(&format!(
        "cd {d} && echo new >> a && cat a && ls -l b >/dev/null && cat a && chmod 600 b && stat -c '%a %h' a && rm b && stat -c %h a"
    ));
    assert_eq!(text(&out.stdout), "linked\nnew\nlinked\nnew\n600 2\n1\n", "stderr: {}", text(&out.stderr));
    assert!(out.status.success());
    assert_eq!(
        std::fs::read(dir.path().join("a")).expect("host a"),
        b"linked\n",
        "the write reached the host"
    );
    assert!(dir.path().join("b").exists(), "the rm reached the host");
}

#[test]
fn exit_codes_and_signals() {
    if !root() {
        return;
    }
    assert_eq!(sh("exit 7").status.code(), Some(7));
    // The program is pid 1 of its namespace (as under runc): the kernel ignores a
    // signal it sends itself without a handler, even SIGKILL; a child it runs dies.
    let out = sh("kill -9 $$; echo survived");
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(0), "survived\n"));
    assert_eq!(sh("sh -c 'kill -9 $$'; exit $?").status.code(), Some(137));
    // A duration no other test uses: the TERM goes once the program is sleep.
    let secs = format!("{}", 8000 + std::process::id() % 1000);
    let mut child = Reaped(Command::new(sandfs()).args(["run", "--", "sleep", &secs]).spawn().unwrap());
    wait_until_running(&["sleep", &secs]);
    nix_kill(child.0.id(), 15);
    let st = child.0.wait().unwrap();
    assert_eq!(st.code(), Some(143), "SIGTERM is forwarded to the program");
}

/// A spawned `sandfs run`, killed and reaped on drop (when the test fails before
/// waiting for it).
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until a process runs with command line `args` (the program has
/// exec'd), failing the test if none does within a generous bound.
fn wait_until_running(args: &[&str]) {
    let want: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain([0])).collect();
    let is_running = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !is_running() {
        assert!(std::time::Instant::now() < deadline, "the program never became {args:?}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn nix_kill(pid: u32, sig: i32) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

#[test]
fn git_workflow_on_thousands_of_files() {
    if !root() || which("git").is_none() {
        return;
    }
    let script = r#"set -e
        mkdir /work-git && cd /work-git
        for d in $(seq 1 30); do mkdir d$d; for f in $(seq 1 100); do echo "$d $f" > d$d/f$f; done; done
        git -c init.defaultBranch=main init -q
        git add -A
        git -c user.name=t -c user.email=t@t commit -qm first
        echo changed > d1/f1
        git status --porcelain
        git -c user.name=t -c user.email=t@t commit -qam second
        git log --oneline | wc -l
        git ls-files | wc -l"#;
    let out = sh(script);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), " M d1/f1\n2\n3000\n");
    assert!(!Path::new("/work-git").exists());
}

#[test]
fn compile_and_run_c() {
    if !root() || which("gcc").is_none() {
        return;
    }
    let out = sh(
        r#"set -e; cd /tmp && printf '#include <stdio.h>\nint main(void){puts("compiled");return 3;}\n' > t.c && gcc -o t t.c && ./t"#,
    );
    assert_eq!(text(&out.stdout), "compiled\n", "stderr: {}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(3));
}

fn busybox_bundle(readonly: bool) -> Option<tempfile::TempDir> {
    which("busybox")?;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(sandfs());
    cmd.args(["spec", "--rootfs-busybox", "auto", "--bundle"]).arg(dir.path());
    if readonly {
        cmd.arg("--readonly");
    }
    assert!(cmd.status().unwrap().success());
    Some(dir)
}

#[test]
fn bundle_with_read_only_root_binds_and_sized_tmpfs() {
    if !root() {
        return;
    }
    let Some(bundle) = busybox_bundle(true) else {
        eprintln!("SKIP: no busybox");
        return;
    };
    let ro = tempfile::tempdir().unwrap();
    let rw = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("f"), "ro").unwrap();
    let b = bundle.path().to_str().unwrap().to_string();
    let ro_bind = format!("{}:/ro:ro", ro.path().display());
    let rw_bind = format!("{}:/rw", rw.path().display());
    let out = run(&[
        "--bundle",
        &b,
        "--bind",
        &ro_bind,
        "--bind",
        &rw_bind,
        "--tmpfs",
        "/scratch:size=1m",
        "--",
        "sh",
        "-c",
        "touch /newfile 2>&1 | grep -q 'Read-only' && echo rootro; \
         echo x > /ro/g 2>/dev/null || echo bindro; cat /ro/f; echo; \
         echo through > /rw/w && echo rwok; \
         dd if=/dev/zero of=/scratch/big bs=1k count=2048 2>&1 | grep -q 'No space' && echo enospc; \
         hostname",
    ]);
    assert_eq!(
        text(&out.stdout),
        "rootro\nbindro\nro\nrwok\nenospc\nsandfs\n",
        "stderr: {}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(rw.path().join("w")).unwrap(), "through\n");
    assert!(!ro.path().join("g").exists());
}

#[test]
fn diff_and_export_upper() {
    if !root() {
        return;
    }
    let Some(bundle) = busybox_bundle(false) else {
        eprintln!("SKIP: no busybox");
        return;
    };
    let layer = bundle.path().join("layer.tar");
    let b = bundle.path().to_str().unwrap().to_string();
    let out = run(&[
        "--bundle",
        &b,
        "--diff",
        "--export-upper",
        layer.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo new > /added; echo changed >> /etc/passwd; rm /etc/group; rm -r /home; mkdir /home; echo h > /home/x; \
         exec 3>>/etc/hostname; exec 3>&-; echo x > \"/root/a$(printf '\\nb')\"; echo out",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    // The program's output alone on stdout; the diff on stderr.
    assert_eq!(text(&out.stdout), "out\n");
    let diff = text(&out.stderr);
    for line in ["A /added", "M /etc/passwd", "D /etc/group", "M /home/", "A /root/a\\nb"] {
        assert!(diff.lines().any(|l| l == line), "{line:?} missing from diff:\n{diff}");
    }
    // Opened for append and closed unchanged (a copy-up), and the directories
    // copied up for their children: no change to report.
    assert!(!diff.contains("/etc/hostname") && !diff.contains("M /etc/\n"), "{diff}");
    let json = bundle.path().join("diff.json");
    let out = run(&[
        "--bundle",
        &b,
        &format!("--diff={}", json.display()),
        "--diff-format",
        "json",
        "--",
        "sh",
        "-c",
        "echo new > /added",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v, serde_json::json!([{"change": "A", "path": "/added", "kind": "file"}]));
    let tar = Command::new("tar").arg("-tvf").arg(&layer).output().unwrap();
    assert!(tar.status.success());
    let listing = text(&tar.stdout);
    for entry in ["added", "etc/passwd", "etc/.wh.group", "home/.wh..wh..opq", "home/x"] {
        assert!(listing.lines().any(|l| l.ends_with(entry)), "{entry:?} missing from layer:\n{listing}");
    }
    let x = Command::new("tar").arg("-xOf").arg(&layer).arg("etc/passwd").output().unwrap();
    assert!(text(&x.stdout).ends_with("changed\n"));
}

/// --diff lists changes made through a writable --bind too (they reach the host, and
/// the root overlay's upper layer never sees them): after the overlay's entries,
/// each under the bind's destination, coalesced as the overlay's are.
#[test]
fn diff_lists_writes_through_a_bind() {
    if !root() {
        return;
    }
    let vol = tempfile::tempdir().unwrap();
    for f in ["mod", "gone", "old", "chmod"] {
        std::fs::write(vol.path().join(f), "before\n").unwrap();
    }
    let bind = format!("{}:/vol", vol.path().display());
    // (A directory is made and removed: removing a file made since through a bind,
    // with no lookup between, fails with EOVERFLOW, a separate bug.)
    let script = "set -e; mkdir /vol/tmp; rmdir /vol/tmp; echo n > /vol/new; echo more >> /vol/mod; \
                  rm /vol/gone; mv /vol/old /vol/moved; mkdir /vol/d; echo x > /vol/d/f; chmod 600 /vol/chmod; \
                  echo x > \"/vol/a$(printf '\\nb')\"; echo root > /root-added";
    let out = run(&["--bind", &bind, "--diff", "--", "sh", "-c", script]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let diff = text(&out.stderr);
    let lines: Vec<&str> = diff.lines().collect();
    for line in [
        "A /vol/new",
        "M /vol/mod",
        "D /vol/gone",
        "D /vol/old",
        "A /vol/moved",
        "A /vol/d/",
        "A /vol/d/f",
        "M /vol/chmod",
        "A /vol/a\\nb",
    ] {
        assert!(lines.contains(&line), "{line:?} missing from diff:\n{diff}");
    }
    assert!(!diff.contains("/vol/tmp"), "made and removed: not a change\n{diff}");
    // The overlay's entries first, then the bind's.
    let root_at = lines.iter().position(|l| *l == "A /root-added").unwrap_or_else(|| panic!("{diff}"));
    let vol_at = lines.iter().position(|l| *l == "A /vol/new").unwrap();
    assert!(root_at < vol_at, "{diff}");
    // The writes did reach the host.
    assert_eq!(std::fs::read_to_string(vol.path().join("moved")).unwrap(), "before\n");
    assert!(!vol.path().join("gone").exists());

    let json = vol.path().join("../diff-bind.json");
    let out = run(&[
        "--bind",
        &bind,
        &format!("--diff={}", json.display()),
        "--diff-format",
        "json",
        "--",
        "sh",
        "-c",
        "rm /vol/new; mkdir /vol/e",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    let entries = v.as_array().unwrap();
    for want in [
        serde_json::json!({"change": "D", "path": "/vol/new", "kind": "deleted"}),
        serde_json::json!({"change": "A", "path": "/vol/e/", "kind": "directory"}),
    ] {
        assert!(entries.contains(&want), "{want} missing from {v}");
    }
}

#[test]
fn a_killed_gofer_gives_errors_and_a_clear_failure() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for i in 0..50 {
        std::fs::write(dir.path().join(format!("f{i}")), "data").unwrap();
    }
    let bind = format!("{}:/data", dir.path().display());
    let child = Command::new(sandfs())
        .args(["run", "--bind", &bind, "--", "sh", "-c", "sleep 1; cat /data/f49 || echo EIO-SEEN"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    // Kill the gofer serving /data (its --serve argument names the directory).
    let ps = Command::new("pgrep")
        .args(["-f", &format!("gofer --serve .*{}", dir.path().display())])
        .output()
        .unwrap();
    for pid in text(&ps.stdout).split_whitespace() {
        nix_kill(pid.parse().unwrap(), 9);
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        text(&out.stdout).contains("EIO-SEEN"),
        "stdout {} stderr {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("gofer"), "{}", text(&out.stderr));
    let left = Command::new("pgrep").args(["-f", &dir.path().display().to_string()]).output().unwrap();
    assert!(text(&left.stdout).trim().is_empty(), "processes left: {}", text(&left.stdout));
}

#[test]
fn killing_the_runtime_leaves_nothing_behind() {
    if !root() {
        return;
    }
    let marker = format!("sleep 61.{}", std::process::id());
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().count();
    let mut child =
        Command::new(sandfs()).args(["run", "--", "sh", "-c", &format!("{marker}; true")]).spawn().unwrap();
    // Wait until the program runs, then kill the runtime (the FUSE server) outright.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let pattern = format!("^{marker}");
    while text(&Command::new("pgrep").args(["-f", &pattern]).output().unwrap().stdout).trim().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the program never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    nix_kill(child.id(), 9);
    let _ = child.wait();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let left = text(&Command::new("pgrep").args(["-f", &pattern]).output().unwrap().stdout);
        let gofers =
            text(&Command::new("pgrep").args(["-P", &child.id().to_string()]).output().unwrap().stdout);
        if left.trim().is_empty() && gofers.trim().is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "left running: {left} {gofers}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mounts_after = std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().count();
    assert_eq!(mounts_before, mounts_after, "a mount was left in the caller's namespace");
}

/// `sandfs run` raises its own descriptor limit (its FUSE server holds one per open
/// lower file) but gives the program the limits it was started with.
#[test]
fn the_program_keeps_its_descriptor_limit_and_the_server_keeps_up() {
    if !root() {
        return;
    }
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum.unwrap_or(u64::MAX);
    if hard < 1024 || which("python3").is_none() {
        eprintln!("SKIP: needs a hard RLIMIT_NOFILE of at least 1024, and python3");
        return;
    }
    // 500 host files (the lower layer) open at once, from a shell started at 256.
    let script = "ulimit -n; ulimit -S -n $(ulimit -H -n); python3 -c '
import os
fds = []
for d, _, names in os.walk(\"/usr\"):
    for n in names:
        p = os.path.join(d, n)
        if len(fds) < 500 and os.path.isfile(p) and not os.path.islink(p):
            fds.append(os.open(p, os.O_RDONLY))
print(len(fds))'";
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -S -n 256 && exec \"$0\" run -- sh -c \"$1\"")
        .arg(sandfs())
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .expect("run sandfs");
    assert_eq!(text(&out.stdout), "256\n500\n", "stderr: {}", text(&out.stderr));
}

/// `-t`: the program gets a terminal of the container's own devpts (never the
/// caller's), keys typed reach it through the relay and its output comes back; the
/// caller's terminal gets nothing pushed into it.
#[test]
fn a_terminal_of_its_own() {
    if !root() {
        return;
    }
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave = std::fs::OpenOptions::new().read(true).write(true).open(name.to_str().unwrap()).unwrap();
    let mut child = Command::new(sandfs())
        .args(["run", "-t", "--", "sh"])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()))
        .spawn()
        .unwrap();
    drop(slave);
    let script = "echo typed-$((6*7)); readlink /proc/self/fd/0; exit 4\n";
    rustix::io::write(&master, script.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // The caller's terminal closes (EIO) once sandfs, its last holder, exits.
    while let Ok(n) = rustix::io::read(&master, &mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let status = child.wait().unwrap();
    let out = text(&out);
    assert!(out.contains("typed-42"), "{out}");
    assert!(out.contains("\n/dev/pts/0") || out.contains("\r\n/dev/pts/0"), "the container's own pty: {out}");
    assert_eq!(status.code(), Some(4), "{out}");
}

/// Fields sandfs does not apply are refused with the field named, never ignored;
/// `linux.devices` are bound from the host when the host has them as given.
#[test]
fn unsupported_fields_are_refused_and_devices_are_bound() {
    if !root() {
        return;
    }
    let Some(b) = busybox_bundle(false) else { return };
    let config = b.path().join("config.json");
    let base: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    let run_with = |edit: &dyn Fn(&mut serde_json::Value), cmd: &[&str]| {
        let mut c = base.clone();
        edit(&mut c);
        std::fs::write(&config, c.to_string()).unwrap();
        let mut args = vec!["--bundle", b.path().to_str().unwrap(), "--"];
        args.extend_from_slice(cmd);
        run(&args)
    };
    for (field, value) in [
        ("apparmorProfile", serde_json::json!("docker-default")),
        ("selinuxLabel", serde_json::json!("system_u:system_r:container_t:s0")),
    ] {
        let out = run_with(&|c| c["process"][field] = value.clone(), &["true"]);
        assert!(!out.status.success(), "{field} was accepted");
        assert!(text(&out.stderr).contains(field), "{field}: {}", text(&out.stderr));
    }
    let zero = rustix::fs::stat("/dev/zero").unwrap();
    let (maj, min) = (rustix::fs::major(zero.st_rdev), rustix::fs::minor(zero.st_rdev));
    let dev = |minor: u32| {
        move |c: &mut serde_json::Value| {
            c["linux"]["devices"] =
                serde_json::json!([{"path": "/dev/zero", "type": "c", "major": maj, "minor": minor}]);
        }
    };
    let out = run_with(&dev(min), &["head", "-c", "3", "/dev/zero"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, vec![0u8; 3]);
    let out = run_with(&dev(min + 100), &["true"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("linux.devices[0]"), "{}", text(&out.stderr));
    // More the runtime would otherwise have ignored: shared propagation out of the
    // sandbox, another personality, joining a user or mount namespace by path.
    for (edit, field) in [
        (
            Box::new(|c: &mut serde_json::Value| c["linux"]["rootfsPropagation"] = "rshared".into())
                as Box<dyn Fn(&mut serde_json::Value)>,
            "linux.rootfsPropagation",
        ),
        (
            Box::new(|c: &mut serde_json::Value| {
                c["linux"]["personality"] = serde_json::json!({"domain": "LINUX32"})
            }),
            "linux.personality",
        ),
        (
            Box::new(
                |c: &mut serde_json::Value| c["linux"]["namespaces"] = serde_json::json!([{"type": "user", "path": "/proc/1/ns/user"}, {"type": "pid"}, {"type": "mount"}]),
            ),
            "linux.namespaces[0]",
        ),
    ] {
        let out = run_with(&*edit, &["true"]);
        assert!(!out.status.success(), "{field} accepted");
        assert!(text(&out.stderr).contains(field), "{field}: {}", text(&out.stderr));
    }
    // A flag the bundle would silently override is refused too.
    std::fs::write(&config, base.to_string()).unwrap();
    let out = run(&["--bundle", b.path().to_str().unwrap(), "--network", "host", "--", "true"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--network host"), "{}", text(&out.stderr));
}

/// `--network pasta`: the program reaches a service on the host's own (non-loopback)
/// address through pasta, never a service bound to the host's loopback (neither by
/// the gateway address nor by its own 127.0.0.1), and the host's interfaces stay as
/// they were.
#[test]
fn pasta_gives_outbound_access_but_not_the_host_loopback() {
    if !root() || which("pasta").is_none() || which("bash").is_none() {
        eprintln!("SKIP: pasta or bash missing");
        return;
    }
    let route = Command::new("ip").args(["-4", "route", "get", "192.0.2.1"]).output().unwrap();
    let route = text(&route.stdout);
    let Some(addr) = route.split_whitespace().skip_while(|w| *w != "src").nth(1).map(str::to_string) else {
        eprintln!("SKIP: no IPv4 default route");
        return;
    };
    let nets_before: Vec<_> =
        std::fs::read_dir("/sys/class/net").unwrap().map(|e| e.unwrap().file_name()).collect();
    let outside = std::net::TcpListener::bind((addr.as_str(), 0)).unwrap();
    let loopback = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    loopback.set_nonblocking(true).unwrap();
    let (po, pl) = (outside.local_addr().unwrap().port(), loopback.local_addr().unwrap().port());
    let script = format!(
        "(exec 3<>/dev/tcp/{addr}/{po} && echo out-ok >&3) 2>/dev/null; \
         timeout 5 bash -c 'exec 3<>/dev/tcp/10.0.2.2/{pl} && echo gw >&3' 2>/dev/null; \
         timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/{pl} && echo lo >&3' 2>/dev/null; true"
    );
    let child = std::thread::spawn(move || run(&["--network", "pasta", "--", "bash", "-c", &script]));
    // (The timeouts only bound attempts that must fail; the verdict is what the
    // listeners received.)
    let (mut conn, _) = outside.accept().unwrap();
    let mut got = String::new();
    std::io::Read::read_to_string(&mut conn, &mut got).unwrap();
    let out = child.join().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(got, "out-ok\n");
    assert!(loopback.accept().is_err(), "a connection reached the host's loopback");
    let nets_after: Vec<_> =
        std::fs::read_dir("/sys/class/net").unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(nets_before.len(), nets_after.len());
}

/// The program's environment never appears on a command line: any user can read
/// those (`ps`), and secrets live in environments.
#[test]
fn the_environment_is_not_on_any_command_line() {
    if !root() {
        return;
    }
    use std::io::{BufRead, Write};
    let secret = format!("sandfs-secret-{}", std::process::id());
    let mut child = Command::new(sandfs())
        .args(["run", "--", "sh", "-c", "echo started; read x"])
        .env("MY_API_TOKEN", &secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    let mut seen = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(&secret)
        {
            seen.push(e.file_name());
        }
    }
    child.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    child.wait().unwrap();
    assert!(seen.is_empty(), "the secret is on the command line of {seen:?}");
}

/// `kill -SIG <sandfs run>` reaches the program for SIGINT, SIGTERM, SIGHUP,
/// SIGQUIT, SIGUSR1 and SIGUSR2, also when sandfs was started with them ignored (as
/// a shell starts a background job): the program dies of the signal and sandfs
/// exits with 128+N.
#[test]
fn signals_are_forwarded_even_when_the_caller_ignored_them() {
    if !root() {
        return;
    }
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    for (sig, n) in [("INT", 2), ("TERM", 15), ("HUP", 1), ("QUIT", 3), ("USR1", 10), ("USR2", 12)] {
        // A duration no other test uses: the test waits until the program is sleep
        // (a signal to sh before its exec is sh's to handle: dash -c catches SIGINT).
        let secs = format!("{}", 6000 + n as u32 * 7 + std::process::id() % 1000);
        let mut cmd = Command::new(sandfs());
        cmd.args(["run", "--", "sh", "-c", &format!("echo started; exec sleep {secs}")])
            .stdout(Stdio::piped());
        // SAFETY: only sigaction(SIG_IGN) between fork and exec (async-signal-safe).
        unsafe {
            cmd.pre_exec(|| {
                // SIGINT and SIGQUIT, as a shell leaves them for a background job.
                for s in [2, 3] {
                    let _ = nix_ignore(s);
                }
                Ok(())
            });
        }
        let mut child = Reaped(cmd.spawn().unwrap());
        let mut line = String::new();
        std::io::BufReader::new(child.0.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line, "started\n");
        wait_until_running(&["sleep", &secs]);
        nix_kill(child.0.id(), n);
        let st = child.0.wait().unwrap();
        assert_eq!(st.code(), Some(128 + n), "SIG{sig}");
    }
}

/// Ignore signal `n` in this process (rustix's raw sigaction is not public).
fn nix_ignore(n: i32) -> std::io::Result<()> {
    let sig = nix::sys::signal::Signal::try_from(n).map_err(std::io::Error::other)?;
    // SAFETY: SIG_IGN installs no handler code.
    unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigIgn) }
        .map(|_| ())
        .map_err(std::io::Error::other)
}

/// `--rootfs DIR` from a directory that DIR lacks starts in `/` and says so; exec
/// failures name the part that failed and exit as shells do (127 missing, 126 not
/// executable, 127 for a missing interpreter); a bundle's relative `cwd` and a
/// missing `root` are errors naming the field.
#[test]
fn working_directory_and_exec_failures() {
    if !root() {
        return;
    }
    let Some(b) = busybox_bundle(false) else { return };
    let rootfs = b.path().join("rootfs");
    std::fs::write(rootfs.join("script"), "#!/nonexistent/interp\n").unwrap();
    std::fs::set_permissions(rootfs.join("script"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    let here = tempfile::tempdir().unwrap();
    let go = |prog: &str| {
        Command::new(sandfs())
            .args(["run", "--rootfs"])
            .arg(&rootfs)
            .args(["--", prog])
            .current_dir(here.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = Command::new(sandfs())
        .args(["run", "--rootfs"])
        .arg(&rootfs)
        .args(["--", "/bin/sh", "-c", "echo ran; pwd"])
        .current_dir(here.path())
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "ran\n/\n", "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("does not exist in the sandbox; starting in /"),
        "{}",
        text(&out.stderr)
    );
    let out = go("/nonexistent");
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).contains("exec /nonexistent"), "{}", text(&out.stderr));
    let out = go("/etc/passwd");
    assert_eq!(out.status.code(), Some(126));
    let out = go("/script");
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).contains("interpreter"), "{}", text(&out.stderr));

    let config = b.path().join("config.json");
    let base: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    for (edit, field) in [
        (
            Box::new(|c: &mut serde_json::Value| c["process"]["cwd"] = "relative".into())
                as Box<dyn Fn(&mut serde_json::Value)>,
            "process.cwd",
        ),
        (Box::new(|c: &mut serde_json::Value| c["process"]["args"] = serde_json::json!([])), "process.args"),
        (Box::new(|c: &mut serde_json::Value| drop(c.as_object_mut().unwrap().remove("root"))), "root"),
    ] {
        let mut c = base.clone();
        edit(&mut c);
        std::fs::write(&config, c.to_string()).unwrap();
        let out = run(&["--bundle", b.path().to_str().unwrap()]);
        assert!(!out.status.success(), "{field} accepted");
        assert!(text(&out.stderr).contains(field), "{field}: {}", text(&out.stderr));
    }
}

/// User errors are one line in the user's words (no backtrace even with
/// RUST_BACKTRACE set), `sandfs` alone prints the help, `sandfs run PROG ARGS` needs
/// no `--`, and the --file-access error names safe choices.
#[test]
fn errors_and_arguments_in_the_users_words() {
    let out = Command::new(sandfs())
        .args(["run", "--bind", "/tmp:relative", "--", "true"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--bind /tmp:relative: the destination must be an absolute path"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let out = Command::new(sandfs()).output().unwrap();
    assert!(text(&out.stdout).contains("Usage:"), "{}", text(&out.stdout));
    let out = Command::new(sandfs()).args(["run", "--file-access", "shared", "true"]).output().unwrap();
    let err = text(&out.stderr);
    assert!(err.contains("--file-access") && !err.contains("--overlay2 none"), "{err}");
    if !root() {
        return;
    }
    let out = Command::new(sandfs()).args(["run", "echo", "-n", "no-dashes"]).output().unwrap();
    assert_eq!(text(&out.stdout), "no-dashes", "{}", text(&out.stderr));
}

/// Without a bundle the program is container root in its own user namespace
/// (never host root), holds exactly the OCI default capabilities, runs with
/// no_new_privs and a seccomp filter, has its own network namespace, and sees the
/// host's files with their owners as stored (root's are root's).
#[test]
fn the_default_confinement() {
    if !root() {
        return;
    }
    let out =
        sh("id -u; grep -E '^(CapEff|CapBnd|CapPrm|CapInh|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status; \
                  cat /proc/self/uid_map; readlink /proc/self/ns/net; stat -c '%U %u' /etc/passwd");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(lines[0], "0");
    // The set the issue names (the OCI default), by the kernel's numbers.
    let names = [
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "NET_BIND_SERVICE",
        "NET_RAW",
        "SYS_CHROOT",
        "MKNOD",
        "AUDIT_WRITE",
        "SETFCAP",
    ];
    let set: u64 = names.iter().map(|n| rustix::thread::CapabilitySet::from_name(n).unwrap().bits()).sum();
    let set = format!("{set:016x}");
    for want in [
        "CapInh:\t0000000000000000".to_string(),
        format!("CapPrm:\t{set}"),
        format!("CapEff:\t{set}"),
        format!("CapBnd:\t{set}"),
        "CapAmb:\t0000000000000000".to_string(),
        "NoNewPrivs:\t1".to_string(),
        "Seccomp:\t2".to_string(),
    ] {
        assert!(lines.contains(&want.as_str()), "{want:?} missing:\n{o}");
    }
    let map: Vec<&str> = lines[8].split_whitespace().collect();
    assert_eq!(map[0], "0");
    assert_ne!(map[1], "0", "container root is host root: {o}");
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(lines[9], host_net.to_str().unwrap());
    assert_eq!(lines[10], "root 0");
}

/// A file written through a writable bind keeps its container owner after the
/// write (the host's id was shown before: unmapped inside, so `rm` failed with
/// EOVERFLOW), and belongs on the host to the mapped id.
#[test]
fn a_file_written_through_a_bind_keeps_its_owner() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bind = format!("{}:/vol", dir.path().display());
    let out = run(&[
        "--bind",
        &bind,
        "--",
        "sh",
        "-c",
        "echo t > /vol/f; stat -c %u /vol/f; echo u > /vol/g; rm /vol/g && echo removed",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "0\nremoved\n");
    let host = std::fs::metadata(dir.path().join("f")).unwrap();
    assert_ne!(std::os::unix::fs::MetadataExt::uid(&host), 0, "owned by host root");
}

/// `sandfs mount` started by an ordinary user says what it needs instead of
/// failing on a gofer connection.
#[test]
fn mount_as_an_ordinary_user_says_what_it_needs() {
    if !root() || which("setpriv").is_none() {
        return;
    }
    // A copy nobody can run (the build tree may be private to root).
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let bin = dir.path().join("sandfs");
    std::fs::copy(sandfs(), &bin).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(&bin)
        .args(["mount", "/tmp"])
        .current_dir("/")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("sandfs mount needs root") && err.contains("sandfs run"), "{err}");
}

/// Under a memory limit the program is the OOM killer's victim, not sandfs's FUSE
/// server (which holds the memory upper layer): the run ends 137 with a message,
/// and the program starts with the caller's oom_score_adj.
#[test]
fn the_program_not_the_server_is_killed_out_of_memory() {
    if !root() || which("sort").is_none() {
        return;
    }
    let out = run(&[
        "--memory",
        "48m",
        "--",
        "sh",
        "-c",
        "cat /proc/self/oom_score_adj; head -c 200000000 /dev/zero | sort >/dev/null",
    ]);
    assert_eq!(text(&out.stdout), "0\n");
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("hit its memory limit"), "{}", text(&out.stderr));
}

/// Bundle fields applied by sandfs that no other test reads back from inside:
/// process.user.umask, process.oomScoreAdj, domainname and a time namespace with
/// linux.timeOffsets (the monotonic clock, and so /proc/uptime, moves by a day).
#[test]
fn bundle_umask_oom_score_domainname_and_time_namespace() {
    if !root() {
        return;
    }
    let Some(b) = busybox_bundle(false) else { return };
    let config = b.path().join("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["process"]["user"]["umask"] = 0o027.into();
    c["process"]["oomScoreAdj"] = 321.into();
    c["domainname"] = "sandfs.test".into();
    c["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "time"}));
    c["linux"]["timeOffsets"] = serde_json::json!({"monotonic": {"secs": 86400, "nanosecs": 0}, "boottime": {"secs": 86400, "nanosecs": 0}});
    std::fs::write(&config, c.to_string()).unwrap();
    let out = run(&[
        "--bundle",
        b.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "umask; cat /proc/self/oom_score_adj; cat /proc/sys/kernel/domainname; cut -d. -f1 /proc/uptime",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(lines[..3], ["0027", "321", "sandfs.test"], "{o}");
    let host_uptime: u64 =
        std::fs::read_to_string("/proc/uptime").unwrap().split('.').next().unwrap().parse().unwrap();
    let inside: u64 = lines[3].parse().unwrap();
    assert!(inside >= host_uptime + 86400 - 5, "uptime inside {inside}, host {host_uptime}");
}
