//! The OCI runtime commands (`create`, `start`, `state`, `kill`, `delete`, `exec`,
//! `list`, `ps`, `pause`, `resume`, `update`) driven through the built `sandfs`
//! binary, as an engine drives them. sandfs stands in for runc, so wherever the
//! outcome is the runtime's business (statuses, which requests are refused, what
//! the program and exec'd processes see) the same steps also run under runc on the
//! same bundle, with the same assertions; where runc differs by design or is racy,
//! its outcome is printed (`runc: ...`), not asserted. Without runc only the sandfs
//! half runs.
//!
//! Root only (skipped with a reason otherwise). Every test has its own tempdir and
//! `--root` state directories (one per runtime), unique container ids, and guards
//! that `delete --force` its containers however it ends, so tests run in parallel.
//! Nothing waits a fixed time to decide an assertion: conditions are polled, with
//! a generous bound ([`BOUND`]).

use serde_json::{Value, json};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a condition may take before the test fails.
const BOUND: Duration = Duration::from_secs(20);

fn sandfs() -> &'static str {
    env!("CARGO_BIN_EXE_sandfs")
}

use sandfs_confine::which;

/// A container id no other test (or run of this file) uses.
fn unique(what: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("oci-{what}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Polls `f` until it gives a value; fails the test after [`BOUND`].
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + BOUND;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "still waiting after {BOUND:?} for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `f` until it finds nothing; fails the test after [`BOUND`] with what it
/// still found.
fn settle<T: std::fmt::Debug>(what: &str, mut f: impl FnMut() -> Vec<T>) {
    let deadline = Instant::now() + BOUND;
    loop {
        let left = f();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "after {BOUND:?}, still {what}: {left:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a runtime command gave.
#[derive(Debug, Clone)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn of(cmd: &mut Command) -> Outcome {
        let out = cmd.output().expect("start the runtime");
        Outcome {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\nstdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr)
    }
}

/// One runtime (sandfs or runc) with its own state directory; the files a
/// container's stdio goes to are kept beside it.
#[derive(Clone)]
struct Rt {
    name: &'static str,
    bin: PathBuf,
    root: PathBuf,
    /// Where create's stdout and stderr go (`ID.out`, `ID.err`).
    files: PathBuf,
    /// Global flags given before the command (`--log F --log-format json`).
    global: Vec<String>,
}

impl Rt {
    fn sandfs(dir: &Path) -> Rt {
        Rt::new("sandfs", PathBuf::from(sandfs()), dir)
    }

    /// runc, or None (with `runc: SKIP` printed) when it is not installed.
    fn runc(dir: &Path) -> Option<Rt> {
        let Some(bin) =
            which("runc").or_else(|| Some(PathBuf::from("/usr/sbin/runc")).filter(|p| p.is_file()))
        else {
            println!("runc: SKIP (runc is not installed)");
            return None;
        };
        Some(Rt::new("runc", bin, dir))
    }

    fn new(name: &'static str, bin: PathBuf, dir: &Path) -> Rt {
        let files = dir.join(format!("{name}-files"));
        std::fs::create_dir_all(&files).unwrap();
        Rt { name, bin, root: dir.join(format!("{name}-root")), files, global: Vec::new() }
    }

    /// This runtime writing its errors to `log` as JSON lines.
    fn logging_to(&self, log: &Path) -> Rt {
        let mut r = self.clone();
        r.global = vec!["--log".into(), log.display().to_string(), "--log-format".into(), "json".into()];
        r
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root).args(&self.global).args(args).stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Outcome {
        Outcome::of(&mut self.cmd(args))
    }

    /// Like [`Rt::run`], failing the test unless the command succeeds.
    fn must(&self, args: &[&str]) -> Outcome {
        let o = self.run(args);
        assert!(o.ok(), "{}: {args:?}: {o}", self.name);
        o
    }

    /// `create` of `id` from `bundle`, its stdout and stderr (the container's too)
    /// in `ID.out` and `ID.err`; what create said, and the guard that deletes it.
    fn create(&self, bundle: &Path, id: &str, extra: &[&str]) -> (Outcome, Ctr) {
        let guard = Ctr { rt: self.clone(), id: id.to_string() };
        let out = std::fs::File::create(self.file(id, "out")).unwrap();
        let err = std::fs::File::create(self.file(id, "err")).unwrap();
        let mut cmd = self.cmd(&["create", "--bundle"]);
        cmd.arg(bundle).args(extra).arg(id).stdout(out).stderr(err);
        let st = cmd.status().expect("start the runtime");
        let o = Outcome { code: st.code(), stdout: String::new(), stderr: self.err_of(id) };
        (o, guard)
    }

    /// `create` that must succeed.
    fn created(&self, bundle: &Path, id: &str, extra: &[&str]) -> Ctr {
        let (o, guard) = self.create(bundle, id, extra);
        assert!(o.ok(), "{}: create {id}: {o}", self.name);
        guard
    }

    /// The file `ID.EXT` beside the state directory (an invalid id's `/` as `_`).
    fn file(&self, id: &str, ext: &str) -> PathBuf {
        self.files.join(format!("{}.{ext}", id.replace('/', "_")))
    }

    /// What the container `id` (and its create) wrote to stdout so far.
    fn out_of(&self, id: &str) -> String {
        std::fs::read_to_string(self.file(id, "out")).unwrap_or_default()
    }

    fn err_of(&self, id: &str) -> String {
        std::fs::read_to_string(self.file(id, "err")).unwrap_or_default()
    }

    fn state(&self, id: &str) -> Value {
        let o = self.must(&["state", id]);
        serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{}: state {id}: {e}: {o}", self.name))
    }

    fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap_or("").to_string()
    }

    /// Waits until `state` says `want`.
    fn wait_status(&self, id: &str, want: &str) {
        wait_for(&format!("{}: {id} to be {want}", self.name), || (self.status(id) == want).then_some(()));
    }

    /// `list --format json`, as a list.
    fn list(&self) -> Vec<Value> {
        let o = self.must(&["list", "--format", "json"]);
        match serde_json::from_str(&o.stdout) {
            Ok(Value::Array(v)) => v,
            Ok(Value::Null) => Vec::new(),
            other => panic!("{}: list --format json: {other:?}: {o}", self.name),
        }
    }

    /// Waits for the container's stdout to hold `want`.
    fn wait_output(&self, id: &str, want: &str) -> String {
        wait_for(&format!("{}: {id} to print {want:?}", self.name), || {
            let out = self.out_of(id);
            out.contains(want).then_some(out)
        })
    }
}

/// Deletes a container (`delete --force`) however the test ends.
struct Ctr {
    rt: Rt,
    id: String,
}

impl Drop for Ctr {
    fn drop(&mut self) {
        let _ = Command::new(&self.rt.bin)
            .arg("--root")
            .arg(&self.rt.root)
            .args(["delete", "--force", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A test's directory with a busybox bundle in it.
struct Env {
    dir: tempfile::TempDir,
    config: Value,
}

impl Env {
    /// None (with the reason printed) unless root with busybox. The bundle's
    /// program is `args`.
    fn new(args: &[&str]) -> Option<Env> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIP: the OCI commands (and runc) need root here");
            return None;
        }
        if which("busybox").is_none() {
            eprintln!("SKIP: no busybox (install busybox-static)");
            return None;
        }
        let dir = tempfile::Builder::new().prefix("sandfs-oci-").tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bundle = dir.path().join("bundle");
        let st = Command::new(sandfs())
            .args(["spec", "--rootfs-busybox", "auto", "--bundle"])
            .arg(&bundle)
            .status()
            .unwrap();
        assert!(st.success(), "sandfs spec failed");
        let text = std::fs::read_to_string(bundle.join("config.json")).unwrap();
        let mut config: Value = serde_json::from_str(&text).unwrap();
        config["process"]["args"] = json!(args);
        config["process"]["terminal"] = json!(false);
        let env = Env { dir, config };
        env.write();
        Some(env)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn bundle(&self) -> PathBuf {
        self.path().join("bundle")
    }

    /// Writes config.json (after changes to `config`).
    fn write(&self) {
        let text = serde_json::to_string_pretty(&self.config).unwrap();
        std::fs::write(self.bundle().join("config.json"), text).unwrap();
    }

    fn sandfs(&self) -> Rt {
        Rt::sandfs(self.path())
    }

    /// sandfs, then runc when installed.
    fn runtimes(&self) -> Vec<Rt> {
        let mut v = vec![self.sandfs()];
        v.extend(Rt::runc(self.path()));
        v
    }
}

/// `sh -c SCRIPT`.
fn sh(script: &str) -> Vec<&str> {
    vec!["sh", "-c", script]
}

fn cmdline(pid: i32) -> Option<String> {
    std::fs::read(format!("/proc/{pid}/cmdline")).ok().map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The fields of /proc/PID/stat after the command name (state first).
fn stat(pid: i32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(s[s.rfind(')')? + 2..].split(' ').map(String::from).collect())
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|f| !matches!(f[0].as_str(), "Z" | "X"))
}

/// `pid`'s start time: with the pid, names one process (pids are reused).
fn start_time(pid: i32) -> Option<u64> {
    stat(pid)?.get(19)?.parse().ok()
}

fn pid_of(state: &Value) -> i32 {
    state["pid"].as_i64().unwrap_or(0) as i32
}

/// Processes whose command line mentions `needle` (a zombie has none).
fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if let Some(c) = cmdline(pid)
            && c.contains(needle)
        {
            found.push((pid, c.replace('\0', " ")));
        }
    }
    found
}

/// Every cgroup directory, in every hierarchy, down to depth 6.
fn cgroup_dirs() -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                found.push(e.path());
                if depth > 0 {
                    walk(&e.path(), depth - 1, found);
                }
            }
        }
    }
    let mut found = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), 6, &mut found);
    found
}

/// The cgroup directories named `name`, anywhere.
fn cgroups_named(name: &str) -> Vec<PathBuf> {
    cgroup_dirs().into_iter().filter(|d| d.file_name().is_some_and(|n| n == name)).collect()
}

/// The file `file` of the pids controller's cgroup of `pid` (cgroup v1's pids
/// hierarchy, else the v2 unified one).
fn pids_file(pid: i32, file: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for l in text.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctl, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        if ctl.split(',').any(|c| c == "pids") {
            return Path::new("/sys/fs/cgroup/pids").join(path.trim_start_matches('/')).join(file);
        }
    }
    let v2 = text.lines().find_map(|l| l.strip_prefix("0::")).expect("no pids cgroup");
    Path::new("/sys/fs/cgroup").join(v2.trim_start_matches('/')).join(file)
}

/// Whether the kernel's freezer says `pid`'s cgroup is frozen: cgroup v1's
/// freezer.state is FROZEN, or (v2) cgroup.events has `frozen 1`.
fn frozen(pid: i32) -> bool {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for l in text.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctl, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        if ctl.split(',').any(|c| c == "freezer") {
            let file =
                Path::new("/sys/fs/cgroup/freezer").join(path.trim_start_matches('/')).join("freezer.state");
            let state = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            return state.trim() == "FROZEN";
        }
    }
    let v2 = text.lines().find_map(|l| l.strip_prefix("0::")).expect("no freezer cgroup");
    let file = Path::new("/sys/fs/cgroup").join(v2.trim_start_matches('/')).join("cgroup.events");
    let events = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    events.lines().any(|l| l == "frozen 1")
}

/// Lines of /proc/PID/status (or `text`) starting with one of `keys` and a colon.
fn status_lines(text: &str, keys: &[&str]) -> Vec<String> {
    text.lines().filter(|l| keys.iter().any(|k| l.starts_with(&format!("{k}:")))).map(String::from).collect()
}

const CONFINEMENT: [&str; 3] = ["CapEff", "NoNewPrivs", "Seccomp"];

// ---------------------------------------------------------------------------
// 1. The lifecycle.

/// One runtime through create, start, kill `sig`, delete, with a program that
/// traps SIGTERM and prints its pid.
fn lifecycle(env: &Env, rt: &Rt, sig: &str) {
    let n = rt.name;
    let id = unique("life");
    let pid_file = rt.file(&id, "pid");
    let _c = rt.created(&env.bundle(), &id, &["--pid-file", pid_file.to_str().unwrap()]);
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let st = rt.state(&id);
    assert_eq!(st["status"], "created", "{n}: {st}");
    assert_eq!(pid_of(&st), pid, "{n}: state's pid is not --pid-file's");
    assert_eq!(st["id"], id.as_str(), "{n}: {st}");
    assert!(alive(pid), "{n}: pid 1 ({pid}) is not alive after create");
    let before = cmdline(pid).unwrap();
    assert!(!before.contains("got-term"), "{n}: pid 1 already runs the program before start: {before:?}");
    assert_eq!(rt.out_of(&id), "", "{n}: the program ran before start");

    rt.must(&["start", &id]);
    let out = rt.wait_output(&id, "ready\n");
    // The program is pid 1 of its pid namespace.
    assert_eq!(out, "pid=1\nready\n", "{n}");
    assert_eq!(rt.status(&id), "running", "{n}");
    let now = cmdline(pid).unwrap();
    assert!(now.contains("got-term"), "{n}: pid 1 ({pid}) is not the program: {now:?}");

    rt.must(&["kill", &id, sig]);
    rt.wait_status(&id, "stopped");
    assert_eq!(rt.out_of(&id), "pid=1\nready\ngot-term\n", "{n}: the trap did not run");
    assert_eq!(pid_of(&rt.state(&id)), 0, "{n}: a stopped container has pid 0");
    assert!(!alive(pid), "{n}");

    rt.must(&["delete", &id]);
    assert!(!rt.root.join(&id).exists(), "{n}: the state directory is still there");
    let o = rt.run(&["state", &id]);
    assert!(!o.ok() && o.stderr.contains("does not exist"), "{n}: state after delete: {o}");
}

#[test]
fn lifecycle_create_start_kill_delete() {
    let script = "trap 'echo got-term; exit 3' TERM; echo pid=$$; echo ready; while :; do sleep 0.1; done";
    let Some(env) = Env::new(&sh(script)) else { return };
    for rt in env.runtimes() {
        for sig in ["TERM", "15"] {
            lifecycle(&env, &rt, sig);
            println!("{}: create, start, kill {sig}, delete as expected", rt.name);
        }
    }
}

// ---------------------------------------------------------------------------
// 2. Refusals.

/// The error lines of a JSON `--log` file: their msg.
fn logged_errors(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not a JSON line: {l:?}: {e}")))
        .filter(|v| v["level"] == "error")
        .map(|v| v["msg"].as_str().expect("an error line without msg").to_string())
        .collect()
}

/// A step of the refusal sequence: what it was, whether it succeeded, what it said.
struct Step {
    what: String,
    ok: bool,
    stderr: String,
    log: PathBuf,
}

/// One runtime through the sequence of refusals; each step's outcome, with each
/// command writing its errors to a log file of its own.
fn refusals(env: &Env, rt: &Rt) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut n = 0;
    let mut step = |what: &str, run: &dyn Fn(&Rt) -> Outcome| {
        n += 1;
        let log = rt.files.join(format!("step{n}.log"));
        let o = run(&rt.logging_to(&log));
        steps.push(Step { what: what.to_string(), ok: o.ok(), stderr: o.stderr, log });
    };
    let (c, d) = (unique("refuse"), unique("refuse"));
    let bundle = env.bundle();
    let guards = std::cell::RefCell::new(Vec::new());
    let create = |id: &str| {
        let id = id.to_string();
        let (b, g) = (bundle.clone(), &guards);
        move |r: &Rt| {
            let (o, guard) = r.create(&b, &id, &[]);
            g.borrow_mut().push(guard);
            o
        }
    };
    step("create", &create(&c));
    step("create with the same id", &create(&c));
    step("create with an invalid id", &create("bad/id"));
    step("start", &|r| r.run(&["start", &c]));
    step("start a running container", &|r| r.run(&["start", &c]));
    step("delete a running container", &|r| r.run(&["delete", &c]));
    step("delete --force a running container", &|r| r.run(&["delete", "--force", &c]));
    step("state of the deleted container", &|r| r.run(&["state", &c]));
    step("create another", &create(&d));
    step("start it", &|r| r.run(&["start", &d]));
    step("kill it with KILL", &|r| r.run(&["kill", &d, "KILL"]));
    rt.wait_status(&d, "stopped");
    step("kill a stopped container", &|r| r.run(&["kill", &d, "TERM"]));
    step("start a stopped container", &|r| r.run(&["start", &d]));
    step("exec in a stopped container", &|r| r.run(&["exec", &d, "true"]));
    step("delete the stopped container", &|r| r.run(&["delete", &d]));
    step("state of an invalid id", &|r| r.run(&["state", "bad/id"]));
    steps
}

#[test]
fn refusals_as_runc_refuses_them() {
    let Some(env) = Env::new(&["sleep", "1000"]) else { return };
    let rts = env.runtimes();
    let sandfs = refusals(&env, &rts[0]);
    let expect: &[(&str, bool, &str)] = &[
        ("create", true, ""),
        ("create with the same id", false, "exists"),
        ("create with an invalid id", false, "invalid container id"),
        ("start", true, ""),
        ("start a running container", false, "already running"),
        ("delete a running container", false, "not stopped"),
        ("delete --force a running container", true, ""),
        ("state of the deleted container", false, "does not exist"),
        ("create another", true, ""),
        ("start it", true, ""),
        ("kill it with KILL", true, ""),
        ("kill a stopped container", false, "not running"),
        ("start a stopped container", false, "stopped"),
        ("exec in a stopped container", false, "stopped"),
        ("delete the stopped container", true, ""),
        ("state of an invalid id", false, "invalid container id"),
    ];
    assert_eq!(sandfs.len(), expect.len());
    for (s, (what, ok, words)) in sandfs.iter().zip(expect) {
        assert_eq!(&s.what, what);
        let errors = logged_errors(&s.log);
        if *ok {
            assert!(s.ok, "sandfs: {what}: failed: {}", s.stderr);
            assert!(errors.is_empty(), "sandfs: {what}: succeeded but logged errors {errors:?}");
            continue;
        }
        assert!(!s.ok, "sandfs: {what}: succeeded");
        let lines: Vec<&str> = s.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "sandfs: {what}: the error is not one line: {:?}", s.stderr);
        assert!(lines[0].contains(words), "sandfs: {what}: {:?} does not say {words:?}", lines[0]);
        assert_eq!(errors.len(), 1, "sandfs: {what}: --log holds {errors:?}");
        assert_eq!(lines[0], format!("sandfs: {}", errors[0]), "sandfs: {what}: stderr and --log differ");
        println!("sandfs: {what}: {}", lines[0]);
    }
    if let Some(runc) = rts.get(1) {
        let theirs = refusals(&env, runc);
        for (s, r) in sandfs.iter().zip(&theirs) {
            println!("runc: {}: {}: {}", r.what, if r.ok { "ok" } else { "refused" }, r.stderr.trim());
            assert_eq!(s.ok, r.ok, "{}: sandfs {} but runc {}", s.what, ok_word(s.ok), ok_word(r.ok));
            if !r.ok {
                // runc logs its refusals the same way.
                assert!(!logged_errors(&r.log).is_empty(), "runc: {}: nothing in --log", r.what);
            }
        }
    }
}

fn ok_word(ok: bool) -> &'static str {
    if ok { "succeeded" } else { "failed" }
}

// ---------------------------------------------------------------------------
// 3. The state outlives the runtime processes.

fn state_outlives(env: &Env, rt: &Rt) {
    let n = rt.name;
    let id = unique("state");
    let pid_file = rt.file(&id, "pid");
    let guard = Ctr { rt: rt.clone(), id: id.clone() };
    let mut create = rt.cmd(&["create", "--bundle"]);
    create.arg(env.bundle()).args(["--pid-file", pid_file.to_str().unwrap(), &id]);
    let out = std::fs::File::create(rt.file(&id, "out")).unwrap();
    let mut child = create.stdout(out).stderr(Stdio::null()).spawn().unwrap();
    assert!(child.wait().unwrap().success(), "{n}: create failed");
    // The create process is gone (waited for); everything after is a fresh
    // process reading what create left.
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert!(alive(pid), "{n}: pid 1 did not outlive create");
    let st = rt.state(&id);
    assert_eq!((st["status"].as_str(), pid_of(&st)), (Some("created"), pid), "{n}: {st}");
    let listed = rt.list();
    let me: Vec<&Value> = listed.iter().filter(|c| c["id"] == id.as_str()).collect();
    assert_eq!(me.len(), 1, "{n}: list: {listed:?}");
    assert_eq!((me[0]["status"].as_str(), pid_of(me[0])), (Some("created"), pid), "{n}: {listed:?}");

    rt.must(&["start", &id]);
    assert_eq!(rt.status(&id), "running", "{n}");
    // Killed from the host: the runtime is not told.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    rt.wait_status(&id, "stopped");
    assert_eq!(pid_of(&rt.state(&id)), 0, "{n}: a stopped container has pid 0");
    let listed = rt.list();
    let me = listed.iter().find(|c| c["id"] == id.as_str()).unwrap_or_else(|| panic!("{n}: {listed:?}"));
    assert_eq!((me["status"].as_str(), pid_of(me)), (Some("stopped"), 0), "{n}: {listed:?}");
    rt.must(&["delete", &id]);
    assert!(rt.list().iter().all(|c| c["id"] != id.as_str()), "{n}: still listed after delete");
    drop(guard);
}

#[test]
fn state_outlives_the_runtime_processes() {
    let Some(env) = Env::new(&["sleep", "1000"]) else { return };
    for rt in env.runtimes() {
        state_outlives(&env, &rt);
        println!("{}: state from fresh processes; SIGKILL from the host: stopped, pid 0", rt.name);
    }
}

/// Runs `args` as the unprivileged user nobody (setpriv).
fn as_nobody(args: &[&str]) -> Outcome {
    Outcome::of(
        Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .args(args)
            .current_dir("/")
            .stdin(Stdio::null()),
    )
}

/// The state directory keeps other users out: the root and each container's
/// directory are 0711, the files in it 0600 (config.json holds the container's
/// environment, secrets maybe), its control socket not writable by others. So
/// another user (nobody) can neither read the state nor list the containers, nor
/// start, kill, exec in, pause, update or delete one, nor talk to its control
/// socket. sandfs only: runc's state layout differs.
#[test]
fn the_state_directory_keeps_other_users_out() {
    let Some(env) = Env::new(&["sleep", "1000"]) else { return };
    if which("setpriv").is_none() {
        println!("SKIP: no setpriv");
        return;
    }
    let rt = env.sandfs();
    let id = unique("perms");
    // Created under umask 000: the modes below are the runtime's, not the caller's.
    let _c = Ctr { rt: rt.clone(), id: id.clone() };
    let mut create = rt.cmd(&["create", "--bundle", env.bundle().to_str().unwrap(), &id]);
    // SAFETY: umask(2) only, between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut create, || {
            rustix::process::umask(rustix::fs::Mode::empty());
            Ok(())
        })
    };
    // Output to files, as Rt::create: the monitor keeps its stdio open.
    let err = std::fs::File::create(rt.file(&id, "err")).unwrap();
    let st = create.stdout(Stdio::null()).stderr(err).status().expect("start the runtime");
    assert!(st.success(), "create under umask 000: {st}: {}", rt.err_of(&id));
    let dir = rt.root.join(&id);
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&rt.root), 0o711, "the state root");
    assert_eq!(mode(&dir), 0o711, "the container's state directory");
    let mut files = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let (p, t) = (e.path(), e.file_type().unwrap());
        files.push(format!("{} {:o}", e.file_name().to_string_lossy(), mode(&p)));
        if t.is_file() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    println!("sandfs: {}: {files:?}", dir.display());
    let (config, state, sock) = (dir.join("config.json"), dir.join("state.json"), dir.join("ctl.sock"));
    assert!(config.is_file() && state.is_file(), "{files:?}");
    assert_eq!(mode(&sock), 0o600, "ctl.sock open to others");
    // Nor does the umask reach the container's cgroups.
    let cgs = cgroups_named(&id);
    assert!(!cgs.is_empty(), "no cgroup named {id}");
    for d in &cgs {
        assert_eq!(mode(d) & 0o022, 0, "{} writable by others", d.display());
    }

    // A copy of sandfs nobody can run (the build directory may not be reachable).
    let bin_dir = tempfile::Builder::new().prefix("sandfs-oci-bin-").tempdir().unwrap();
    std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = bin_dir.path().join("sandfs");
    std::fs::copy(sandfs(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (bin, root) = (bin.to_str().unwrap(), rt.root.to_str().unwrap());
    let o = as_nobody(&[bin, "--version"]);
    assert!(o.ok(), "nobody cannot run sandfs: {o}");

    // The same reads as root: the files are there, and readable to their owner.
    let (config, state, sock) = (config.to_str().unwrap(), state.to_str().unwrap(), sock.to_str().unwrap());
    for f in [config, state] {
        let o = Outcome::of(Command::new("cat").arg(f));
        assert!(o.ok() && o.stdout.starts_with('{'), "root: cat {f}: {o}");
        let o = as_nobody(&["cat", f]);
        assert!(!o.ok() && o.stderr.contains("Permission denied"), "nobody: cat {f}: {o}");
    }
    let o = as_nobody(&["ls", root]);
    assert!(!o.ok() && o.stderr.contains("Permission denied"), "nobody: ls {root}: {o}");
    let connect = "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])";
    let o = Outcome::of(Command::new("/usr/bin/python3").args(["-c", connect, sock]));
    assert!(o.ok(), "root: connect to {sock}: {o}");
    let o = as_nobody(&["/usr/bin/python3", "-c", connect, sock]);
    assert!(!o.ok() && o.stderr.contains("PermissionError"), "nobody: connect to {sock}: {o}");
    assert_eq!(rt.status(&id), "created");

    // What nobody's exec would leave, looked for by root's exec (the host cannot
    // read pid 1's /proc root); the control: root's exec leaves its file there.
    let exists_inside = |f: &str| {
        let o =
            rt.must(&["exec", &id, "sh", "-c", &format!("if [ -e {f} ]; then echo yes; else echo no; fi")]);
        match o.stdout.trim() {
            "yes" => true,
            "no" => false,
            _ => panic!("root: exec [ -e {f} ]: {o}"),
        }
    };
    rt.must(&["exec", &id, "touch", "/tmp/root-was-here"]);
    assert!(exists_inside("/tmp/root-was-here"), "root's exec left no /tmp/root-was-here");
    assert_eq!(rt.status(&id), "created", "after root's exec");
    let pid = pid_of(&rt.state(&id));
    // A limit nobody's update would change, and the file it would give it in.
    let max = pids_file(pid, "pids.max");
    let max_before = std::fs::read_to_string(&max).unwrap();
    let res = bin_dir.path().join("resources.json");
    std::fs::write(&res, json!({"pids": {"limit": 42}}).to_string()).unwrap();
    std::fs::set_permissions(&res, std::fs::Permissions::from_mode(0o644)).unwrap();
    let res = res.to_str().unwrap();

    let attempts: [&[&str]; 6] = [
        &["start", &id],
        &["kill", &id, "KILL"],
        &["exec", &id, "touch", "/tmp/nobody-was-here"],
        &["pause", &id],
        &["update", "--resources", res, &id],
        &["delete", "--force", &id],
    ];
    for args in attempts {
        let mut v = vec![bin, "--root", root];
        v.extend(args);
        let o = as_nobody(&v);
        println!("nobody: sandfs {}: exit {:?}: {}", args.join(" "), o.code, o.stderr.trim());
        assert!(!o.ok(), "nobody: sandfs {args:?} succeeded: {o}");
        assert_eq!(rt.status(&id), "created", "after nobody's {args:?}");
    }
    assert!(!exists_inside("/tmp/nobody-was-here"), "nobody's exec made /tmp/nobody-was-here");
    assert_eq!(
        std::fs::read_to_string(&max).unwrap(),
        max_before,
        "nobody's update changed {}",
        max.display()
    );
    assert!(dir.is_dir() && std::path::Path::new(config).is_file(), "the state went");
}

// ---------------------------------------------------------------------------
// 4. Hooks.

/// A hook that appends `NAME STATUS PID MNTNS` to `log` (the status and pid from
/// the state JSON on its stdin, its own mount namespace) with /bin/sh: the host's
/// dash, or busybox inside the container.
fn logging_hook(name: &str, log: &str) -> Value {
    let script = format!(
        r#"j=$(cat); s=$(echo "$j" | sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p'); p=$(echo "$j" | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p'); echo "{name} $s ${{p:-0}} $(readlink /proc/self/ns/mnt)" >> {log}"#
    );
    json!({"path": "/bin/sh", "args": ["sh", "-c", script], "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]})
}

fn failing_hook(code: i32) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", format!("exit {code}")]})
}

/// A directory for the hooks' log, bound at /hooks in the container. The log in
/// it is writable by anyone ([`fresh_log`]): the container's root, which runs the
/// createContainer hook, is a mapped id under sandfs. The directory itself is
/// root's alone (0755), as a directory holding what root's hooks use should be.
fn hooks_dir(env: &mut Env) -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix("sandfs-oci-hooks-").tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let m = json!({"destination": "/hooks", "type": "bind", "source": d.path(), "options": ["rbind", "rw"]});
    env.config["mounts"].as_array_mut().unwrap().push(m);
    d
}

/// A fresh, empty log anyone may append to.
fn fresh_log(path: &Path) {
    std::fs::write(path, "").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).unwrap();
}

/// The hooks' log lines as (name, status, pid, mount namespace).
fn hook_lines(path: &Path) -> Vec<(String, String, i32, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 4, "{l:?}");
            (f[0].to_string(), f[1].to_string(), f[2].parse().unwrap_or(-1), f[3].to_string())
        })
        .collect()
}

/// One runtime through create, start, delete --force; the hooks' log. The program
/// sleeps: poststart sees it running.
fn hooked_run(env: &Env, rt: &Rt, log: &Path) -> (Vec<(String, String, i32, String)>, i32) {
    fresh_log(log);
    let id = unique("hooks");
    let pid_file = rt.file(&id, "pid");
    let _c = rt.created(&env.bundle(), &id, &["--pid-file", pid_file.to_str().unwrap()]);
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    rt.must(&["start", &id]);
    // startContainer runs before the exec (runc's start does not wait for it).
    wait_for(&format!("{}: pid 1 to be the program", rt.name), || {
        cmdline(pid)?.starts_with("sleep").then_some(())
    });
    rt.must(&["delete", "--force", &id]);
    (hook_lines(log), pid)
}

#[test]
fn hooks_run_in_order_with_the_state() {
    let Some(mut env) = Env::new(&["sleep", "1000"]) else { return };
    let dir = hooks_dir(&mut env);
    let log = dir.path().join("log");
    let host = log.to_str().unwrap();
    env.config["hooks"] = json!({
        "prestart": [logging_hook("prestart", host)],
        "createRuntime": [logging_hook("createRuntime", host)],
        "createContainer": [logging_hook("createContainer", host)],
        // After pivot_root: the container's path to the same file.
        "startContainer": [logging_hook("startContainer", "/hooks/log")],
        "poststart": [logging_hook("poststart", host)],
        "poststop": [logging_hook("poststop", host)],
    });
    env.write();
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt").unwrap().to_string_lossy().into_owned();
    let rts = env.runtimes();
    let (lines, pid) = hooked_run(&env, &rts[0], &log);
    let got: Vec<(&str, &str, i32)> = lines.iter().map(|l| (l.0.as_str(), l.1.as_str(), l.2)).collect();
    assert_eq!(
        got,
        [
            ("prestart", "creating", pid),
            ("createRuntime", "creating", pid),
            ("createContainer", "creating", pid),
            ("startContainer", "created", pid),
            ("poststart", "running", pid),
            ("poststop", "stopped", 0),
        ],
        "sandfs: {lines:?}"
    );
    check_namespaces("sandfs", &lines, &host_mnt);
    println!("sandfs: {lines:?}");
    let Some(runc) = rts.get(1) else { return };
    let (theirs, _) = hooked_run(&env, runc, &log);
    println!("runc: {theirs:?}");
    let names = |l: &[(String, String, i32, String)]| {
        let mut v: Vec<String> = l.iter().map(|l| l.0.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(names(&theirs), names(&lines), "runc ran other hooks");
    let at = |name: &str| theirs.iter().position(|l| l.0 == name).unwrap();
    // runc 1.1 runs poststart at the end of create, before start (status
    // "created"; opencontainers/runc#1710, moved to start in runc#5186), and gives
    // createContainer and startContainer pid 1's pid in its own namespace (1):
    // only this much order and those statuses are compared.
    assert!(at("prestart") < at("createContainer") && at("createRuntime") < at("createContainer"));
    assert!(at("createContainer") < at("startContainer") && at("createContainer") < at("poststart"));
    assert_eq!(at("poststop"), theirs.len() - 1);
    for (name, status) in [
        ("prestart", "creating"),
        ("createRuntime", "creating"),
        ("createContainer", "creating"),
        ("startContainer", "created"),
        ("poststop", "stopped"),
    ] {
        assert_eq!(theirs[at(name)].1, status, "runc: {name}'s status");
    }
    check_namespaces("runc", &theirs, &host_mnt);
}

/// createContainer and startContainer run in the container's mount namespace,
/// the others in the host's.
fn check_namespaces(rt: &str, lines: &[(String, String, i32, String)], host: &str) {
    let mnt = |name: &str| lines.iter().find(|l| l.0 == name).map(|l| l.3.as_str()).unwrap();
    for name in ["prestart", "createRuntime", "poststart", "poststop"] {
        assert_eq!(mnt(name), host, "{rt}: {name} is not in the host's mount namespace");
    }
    assert_ne!(mnt("createContainer"), host, "{rt}: createContainer ran in the host's mount namespace");
    assert_eq!(mnt("createContainer"), mnt("startContainer"), "{rt}: two container mount namespaces");
}

/// A createContainer hook's path resolves, and it runs, where the runtime's
/// paths are seen (the runtime spec: "the path MUST resolve in the runtime
/// namespace"; runc runs it in the container's mount namespace before pivot_root,
/// where the host's paths are all there). sandfs mounts the view on an empty
/// directory of the container's state directory, covering no host path; it once
/// mounted a scratch tmpfs over /tmp for it, and a hook under /tmp was not found.
#[test]
fn a_create_container_hook_sees_the_hosts_tmp() {
    let Some(mut env) = Env::new(&["true"]) else { return };
    // Under the host's /tmp itself (not wherever TMPDIR points); root's alone, as
    // a directory holding a hook root runs must be (the log in it is anyone's).
    let dir = tempfile::Builder::new().prefix("sandfs-oci-tmphook-").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (hook, log) = (dir.path().join("hook.sh"), dir.path().join("log"));
    std::fs::write(&hook, format!("#!/bin/sh\necho ran >> {}\n", log.display())).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.config["hooks"] = json!({"createContainer": [{"path": hook}]});
    env.write();
    for rt in env.runtimes() {
        fresh_log(&log);
        let id = unique("tmphook");
        let (o, _c) = rt.create(&env.bundle(), &id, &[]);
        assert!(o.ok(), "{}: {o}", rt.name);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "ran\n", "{}", rt.name);
    }
}

#[test]
fn a_failing_create_runtime_hook_leaves_nothing() {
    let Some(mut env) = Env::new(&["sh", "-c", "echo ran"]) else { return };
    env.config["hooks"] = json!({"createRuntime": [failing_hook(3)]});
    env.write();
    for rt in env.runtimes() {
        let n = rt.name;
        let id = unique("hookfail");
        let (o, _c) = rt.create(&env.bundle(), &id, &[]);
        assert!(!o.ok(), "{n}: create succeeded: {o}");
        println!("{n}: {}", o.stderr.trim());
        assert!(!rt.root.join(&id).exists(), "{n}: the state directory is left");
        let st = rt.run(&["state", &id]);
        assert!(!st.ok() && st.stderr.contains("does not exist"), "{n}: {st}");
        assert!(rt.list().is_empty(), "{n}: listed");
        let root = rt.root.to_str().unwrap().to_string();
        let bundle = env.bundle().to_str().unwrap().to_string();
        settle(&format!("{n}: processes of the failed create"), || {
            let mut left = processes_mentioning(&root);
            left.extend(processes_mentioning(&bundle));
            left
        });
        // No cgroup: nothing runs in it either (pid 1 joins it before the hooks).
        assert_eq!(cgroups_named(&id), Vec::<PathBuf>::new(), "{n}: cgroup left");
        if n == "sandfs" {
            assert_eq!(o.stderr.lines().count(), 1, "{o}");
            assert!(o.stderr.contains("createRuntime") && o.stderr.contains("exit status 3"), "{o}");
        }
        assert_eq!(rt.out_of(&id), "", "{n}: the program ran");
    }
}

/// A hook's `timeout` is honoured: a createRuntime hook that would sleep a minute
/// is killed after its second, and create fails (runc too) leaving nothing: no
/// container, no process of the container, nor the hook's (its shell forks the
/// sleep: that too). runc 1.1 kills the shell but then waits for the end of the
/// hook's output, which the orphaned sleep holds, a minute: its hook `exec`s the
/// sleep instead.
#[test]
fn a_hook_that_outlasts_its_timeout_fails_create() {
    let Some(mut env) = Env::new(&["sh", "-c", "echo ran"]) else { return };
    for rt in env.runtimes() {
        let n = rt.name;
        let script = if n == "sandfs" { "sleep 60" } else { "exec sleep 60" };
        // Marks the hook's processes (their environment), to look for them after.
        let mark = format!("SANDFS_OCI_HOOK={}", unique("hookmark"));
        env.config["hooks"] = json!({"createRuntime": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", script],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", mark],
            "timeout": 1,
        }]});
        env.write();
        let id = unique("hooktimeout");
        let _c = Ctr { rt: rt.clone(), id: id.clone() };
        let mut child = rt
            .cmd(&["create", "--bundle"])
            .arg(env.bundle())
            .arg(&id)
            .stdout(std::fs::File::create(rt.file(&id, "out")).unwrap())
            .stderr(std::fs::File::create(rt.file(&id, "err")).unwrap())
            .spawn()
            .unwrap();
        // The hook runs (its sleep is seen) while create waits for it.
        let running = wait_for(&format!("{n}: the hook to run or create to end"), || {
            let p = processes_with_env(&mark);
            let done = child.try_wait().unwrap().is_some();
            (done || p.iter().any(|p| p.1.starts_with("sleep 60"))).then_some(p)
        });
        assert!(!running.is_empty(), "{n}: the hook's sleep was never seen running");
        let st = child.wait().unwrap();
        let o = Outcome { code: st.code(), stdout: String::new(), stderr: rt.err_of(&id) };
        assert!(!o.ok(), "{n}: create succeeded: {o}");
        println!("{n}: {}", o.stderr.trim());
        if n == "sandfs" {
            assert!(o.stderr.contains("createRuntime") && o.stderr.contains("timed out"), "{o}");
        }
        assert!(!rt.root.join(&id).exists(), "{n}: the state directory is left");
        let st = rt.run(&["state", &id]);
        assert!(!st.ok() && st.stderr.contains("does not exist"), "{n}: {st}");
        let root = rt.root.to_str().unwrap().to_string();
        let bundle = env.bundle().to_str().unwrap().to_string();
        settle(&format!("{n}: processes of the failed create"), || {
            let mut left = processes_mentioning(&root);
            left.extend(processes_mentioning(&bundle));
            left
        });
        settle(&format!("{n}: the timed-out hook's processes"), || processes_with_env(&mark));
        assert_eq!(cgroups_named(&id), Vec::<PathBuf>::new(), "{n}: cgroup left");
        assert_eq!(rt.out_of(&id), "", "{n}: the program ran");
    }
}

/// Processes whose environment holds `entry` (`NAME=VALUE`), with their command lines.
fn processes_with_env(entry: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
        if env.split(|b| *b == 0).any(|v| v == entry.as_bytes()) && alive(pid) {
            found.push((pid, cmdline(pid).unwrap_or_default().replace('\0', " ")));
        }
    }
    found
}

#[test]
fn a_failing_poststart_hook_only_warns() {
    let Some(mut env) = Env::new(&["sleep", "1000"]) else { return };
    let dir = hooks_dir(&mut env);
    let log = dir.path().join("log");
    env.config["hooks"] =
        json!({"poststart": [failing_hook(4), logging_hook("poststart2", log.to_str().unwrap())]});
    env.write();
    let rts = env.runtimes();
    let sandfs = &rts[0];
    fresh_log(&log);
    let id = unique("poststart");
    let _c = sandfs.created(&env.bundle(), &id, &[]);
    let o = sandfs.run(&["start", &id]);
    assert!(o.ok(), "a failing poststart hook failed start: {o}");
    assert!(o.stderr.contains("warning") && o.stderr.contains("poststart"), "no warning: {o}");
    assert_eq!(sandfs.status(&id), "running");
    let lines = hook_lines(&log);
    assert_eq!(lines.len(), 1, "the next poststart hook did not run: {lines:?}");
    assert_eq!((lines[0].0.as_str(), lines[0].1.as_str()), ("poststart2", "running"));
    println!("sandfs: start: exit 0; {}", o.stderr.trim());
    if let Some(runc) = rts.get(1) {
        // runc 1.1 runs poststart hooks in create (opencontainers/runc#1710), and
        // a failing one fails create: recorded, not compared.
        fresh_log(&log);
        let id = unique("poststart");
        let (c, _g) = runc.create(&env.bundle(), &id, &[]);
        if !c.ok() {
            println!("runc: create: exit {:?}: {}", c.code, c.stderr.trim());
            return;
        }
        let o = runc.run(&["start", &id]);
        let status = runc.run(&["state", &id]).stdout;
        let status = serde_json::from_str::<Value>(&status).map(|v| v["status"].clone()).unwrap_or_default();
        println!("runc: start: exit {:?}: {}; then {status}", o.code, o.stderr.trim());
    }
}

// ---------------------------------------------------------------------------
// 5. exec.

/// One runtime: a container whose program wrote a file and sleeps, and execs into
/// it; what each printed, for comparison.
fn execs(env: &Env, rt: &Rt) -> Vec<String> {
    let n = rt.name;
    let id = unique("exec");
    let pid_file = rt.file(&id, "pid");
    let _c = rt.created(&env.bundle(), &id, &["--pid-file", pid_file.to_str().unwrap()]);
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    rt.must(&["start", &id]);
    // The file is written once pid 1 has become sleep.
    wait_for(&format!("{n}: pid 1 to sleep"), || (cmdline(pid)? == "sleep\x001000\x00").then_some(()));
    // `exec [FLAGS] ID sh -c SCRIPT`, SCRIPT last in `args`; its stdout.
    let exec = |args: &[&str], code: i32| -> String {
        let (script, flags) = args.split_last().unwrap();
        let mut all = vec!["exec"];
        all.extend(flags);
        all.extend([id.as_str(), "sh", "-c", script]);
        let o = rt.run(&all);
        assert_eq!(o.code, Some(code), "{n}: exec {args:?}: {o}");
        o.stdout
    };
    let mut seen = Vec::new();
    for (args, code, want) in [
        (&["echo out; echo err >&2; exit 7"][..], 7, "out\n"),
        (&["--env", "FOO=bar", "echo $FOO"], 0, "bar\n"),
        (&["--user", "1000:1000", "id -u; id -g"], 0, "1000\n1000\n"),
        (&["--cwd", "/tmp", "pwd"], 0, "/tmp\n"),
        // The program's writes are seen.
        (&["cat /tmp/from-program"], 0, "made\n"),
        // Its pid 1 is the program.
        (&["cat /proc/1/cmdline | tr '\\0' ' '"], 0, "sleep 1000 "),
    ] {
        let out = exec(args, code);
        assert_eq!(out, want, "{n}: exec {args:?}");
        seen.push(format!("{args:?}: exit {code}, {out:?}"));
    }
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    let theirs = exec(&["readlink /proc/self/ns/pid"], 0);
    assert_eq!(theirs.trim(), ns.to_str().unwrap(), "{n}: another pid namespace");
    let status = exec(&["cat /proc/self/status"], 0);
    let pid1 = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let (mine, program) = (status_lines(&status, &CONFINEMENT), status_lines(&pid1, &CONFINEMENT));
    assert_eq!(mine.len(), 3, "{n}: {status}");
    assert_eq!(mine, program, "{n}: the exec'd process is confined otherwise than pid 1");
    seen.push(format!("confinement {mine:?}"));

    // --process: the whole process from a file (args, env, cwd, user).
    let mut process = env.config["process"].clone();
    process["args"] = json!(["sh", "-c", "echo $FOO $(pwd) $(id -u)"]);
    process["env"] = json!(["PATH=/bin:/usr/bin", "FOO=from-file"]);
    process["cwd"] = json!("/proc");
    process["user"] = json!({"uid": 1000, "gid": 1000});
    let file = rt.file(&id, "process.json");
    std::fs::write(&file, process.to_string()).unwrap();
    let o = rt.must(&["exec", "--process", file.to_str().unwrap(), &id]);
    assert_eq!(o.stdout, "from-file /proc 1000\n", "{n}: exec --process");
    seen.push(format!("--process: {:?}", o.stdout));
    // Its oomScoreAdj is applied: it is the process's field. (runc 1.1.5 leaves the
    // exec'd process at 0: printed, not compared.)
    let mut oom = process.clone();
    oom["args"] = json!(["cat", "/proc/self/oom_score_adj"]);
    oom["oomScoreAdj"] = json!(500);
    std::fs::write(&file, oom.to_string()).unwrap();
    let o = rt.must(&["exec", "--process", file.to_str().unwrap(), &id]);
    if n == "sandfs" {
        assert_eq!(o.stdout, "500\n", "{n}: exec --process with oomScoreAdj");
    }
    println!("{n}: exec --process with oomScoreAdj 500: {}", o.stdout.trim());
    // A console socket for a process without a terminal is refused, not dropped
    // (the socket named does not even exist: a runtime that ignored it would run).
    let o = rt.run(&["exec", "--console-socket", "/nonexistent/console.sock", &id, "true"]);
    assert!(!o.ok(), "{n}: exec --console-socket without a terminal ran: {o}");
    seen.push("--console-socket without a terminal refused".to_string());
    if n == "sandfs" {
        // A command after the id beside --process: refused, not silently preferred.
        std::fs::write(&file, process.to_string()).unwrap();
        let o = rt.run(&["exec", "--process", file.to_str().unwrap(), &id, "echo", "other"]);
        assert!(!o.ok() && o.stderr.contains("--process"), "{n}: --process and a command: {o}");
    }
    if n == "sandfs" {
        // A --process file gets a bundle's checks: what sandfs does not apply is
        // refused, not ignored, and capability names are checked (runc 1.1 ignores
        // ioPriority: not compared).
        for (field, value) in [
            ("ioPriority", json!({"class": "IOPRIO_CLASS_RT", "priority": 1})),
            ("apparmorProfile", json!("docker-default")),
            ("capabilities", json!({"bounding": ["CAP_NOPE"]})),
        ] {
            let mut bad = process.clone();
            bad[field] = value;
            std::fs::write(&file, bad.to_string()).unwrap();
            let o = rt.run(&["exec", "--process", file.to_str().unwrap(), &id]);
            assert!(!o.ok() && o.stderr.contains(field), "{n}: exec --process with {field}: {o}");
        }
    }

    // A program that is not there: refused, attached or detached (the runtime
    // waits for the exec to say so).
    for flags in [&[][..], &["--detach"]] {
        let mut args = vec!["exec"];
        args.extend(flags);
        args.extend([id.as_str(), "/no/such/program"]);
        let o = Outcome::of(rt.cmd(&args).stdout(Stdio::null()).stderr(Stdio::piped()));
        assert!(!o.ok(), "{n}: exec {flags:?} of a missing program succeeded: {o}");
        assert!(o.stderr.contains("/no/such/program"), "{n}: the error does not name it: {o}");
        seen.push(format!("exec {flags:?} of a missing program refused"));
    }

    // Detached: the runtime returns at once; the process goes on.
    let dpid_file = rt.file(&id, "exec.pid");
    // Its stdio is the detached process's: not a pipe this test would wait on.
    let st = rt
        .cmd(&["exec", "--detach", "--pid-file", dpid_file.to_str().unwrap(), &id, "sleep", "777"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "{n}: exec --detach: {st}");
    let dpid: i32 = std::fs::read_to_string(&dpid_file).unwrap().trim().parse().unwrap();
    // runc may write the pid before its process has exec'd: wait for the program.
    wait_for(&format!("{n}: the detached process {dpid} to be sleep 777"), || {
        (cmdline(dpid)? == "sleep\x00777\x00").then_some(())
    });
    assert!(alive(dpid), "{n}: the detached process is not running");
    assert_eq!(std::fs::read_link(format!("/proc/{dpid}/ns/pid")).unwrap(), ns, "{n}");
    let ps: Vec<i32> = serde_json::from_str(&rt.must(&["ps", "--format", "json", &id]).stdout).unwrap();
    assert!(ps.contains(&pid) && ps.contains(&dpid), "{n}: ps lists {ps:?}, not {pid} and {dpid}");
    let dstatus = std::fs::read_to_string(format!("/proc/{dpid}/status")).unwrap();
    assert_eq!(
        status_lines(&dstatus, &CONFINEMENT),
        program,
        "{n}: the detached process is confined otherwise"
    );
    // kill --all reaches every process: SIGTERM ends the detached one; pid 1 has
    // no handler for it, and a pid namespace's init only gets signals it handles
    // (SIGKILL aside), so it goes on.
    rt.must(&["kill", "--all", &id, "TERM"]);
    wait_for(&format!("{n}: kill --all to end the detached process"), || (!alive(dpid)).then_some(()));
    assert!(alive(pid), "{n}: pid 1 died of a SIGTERM it does not handle");
    assert_eq!(rt.status(&id), "running", "{n}");
    seen
}

#[test]
fn exec_joins_the_container() {
    let Some(env) = Env::new(&sh("echo made > /tmp/from-program && exec sleep 1000")) else { return };
    let rts = env.runtimes();
    let ours = execs(&env, &rts[0]);
    for l in &ours {
        println!("sandfs: {l}");
    }
    if let Some(runc) = rts.get(1) {
        let theirs = execs(&env, runc);
        assert_eq!(ours, theirs, "runc's exec'd processes saw something else");
        println!("runc: the same");
    }
}

// ---------------------------------------------------------------------------
// 6. The console socket.

/// Waits for the runtime's connection on `listener` (while `child`, the create,
/// has not failed) and receives the terminal's master from it.
fn receive_master(listener: &std::os::unix::net::UnixListener, child: &mut std::process::Child) -> OwnedFd {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    use std::mem::MaybeUninit;
    listener.set_nonblocking(true).unwrap();
    let stream = wait_for("the runtime to connect to the console socket", || match listener.accept() {
        Ok((s, _)) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            if let Some(st) = child.try_wait().unwrap() {
                assert!(st.success(), "create failed before sending the terminal ({st})");
            }
            None
        }
        Err(e) => panic!("accept: {e}"),
    });
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut buf = [0u8; 4096];
    recvmsg(&stream, &mut [std::io::IoSliceMut::new(&mut buf)], &mut control, RecvFlags::CMSG_CLOEXEC)
        .expect("receive the terminal's master");
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(r) = m {
            fds.extend(r);
        }
    }
    assert_eq!(fds.len(), 1, "want one descriptor over SCM_RIGHTS");
    fds.pop().unwrap()
}

/// Reads `master` until what came holds `want`.
fn read_until(master: &OwnedFd, want: &str) -> String {
    rustix::fs::fcntl_setfl(master, rustix::fs::OFlags::NONBLOCK).unwrap();
    let mut got = Vec::new();
    wait_for(&format!("{want:?} on the terminal"), || {
        let mut buf = [0u8; 4096];
        match rustix::io::read(master, &mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(rustix::io::Errno::AGAIN) => {}
            Err(e) => panic!("read the master: {e} (got {:?})", String::from_utf8_lossy(&got)),
        }
        let s = String::from_utf8_lossy(&got);
        s.contains(want).then(|| s.into_owned())
    })
}

/// One runtime: create with a console socket, start; the program's terminal (its
/// `tty`) and that terminal's size (`stty size`: "ROWS COLUMNS").
fn console(env: &Env, rt: &Rt) -> (String, String) {
    let n = rt.name;
    let id = unique("tty");
    let sock = rt.files.join("console.sock");
    let _ = std::fs::remove_file(&sock);
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let guard = Ctr { rt: rt.clone(), id: id.clone() };
    let mut child = rt
        .cmd(&["create", "--console-socket", sock.to_str().unwrap(), "--bundle"])
        .arg(env.bundle())
        .arg(&id)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(rt.file(&id, "err")).unwrap())
        .spawn()
        .unwrap();
    let master = receive_master(&listener, &mut child);
    let st = child.wait().unwrap();
    assert!(st.success(), "{n}: create: {st}: {}", rt.err_of(&id));
    assert_eq!(rt.status(&id), "created", "{n}");
    rt.must(&["start", &id]);
    let got = read_until(&master, "end\r\n");
    let lines: Vec<String> = got.lines().map(|l| l.trim_end_matches('\r').to_string()).collect();
    assert!(lines.len() >= 3 && lines[0].starts_with("/dev/pts/"), "{n}: the program's tty: {got:?}");
    drop(guard);
    (lines[0].clone(), lines[1].clone())
}

#[test]
fn console_socket_gets_the_terminal() {
    let Some(mut env) = Env::new(&sh("tty; stty size; echo end; exec sleep 1000")) else { return };
    env.config["process"]["terminal"] = json!(true);
    // Applied to the terminal before the program runs, not ignored (which leaves
    // a new pty's 0 0).
    env.config["process"]["consoleSize"] = json!({"height": 33, "width": 101});
    env.write();
    let rts = env.runtimes();
    let (ours, size) = console(&env, &rts[0]);
    println!("sandfs: the program's terminal is {ours}, of size {size}");
    assert_eq!(size, "33 101", "sandfs: process.consoleSize not applied");
    if let Some(runc) = rts.get(1) {
        let (theirs, size) = console(&env, runc);
        println!("runc: the program's terminal is {theirs}, of size {size}");
        assert_eq!(size, "33 101", "runc: process.consoleSize not applied");
    }
    // Without a console socket, a terminal cannot be handed to anyone: refused.
    for rt in &rts {
        let id = unique("tty");
        let (o, _c) = rt.create(&env.bundle(), &id, &[]);
        assert!(!o.ok(), "{}: terminal without --console-socket accepted", rt.name);
        println!("{}: terminal without --console-socket: {}", rt.name, o.stderr.trim());
        assert!(rt.run(&["state", &id]).stderr.contains("does not exist"), "{}: left a container", rt.name);
        if rt.name == "sandfs" {
            assert_eq!(o.stderr.lines().count(), 1, "{o}");
            assert!(o.stderr.contains("--console-socket"), "{o}");
        }
    }
    // And a console socket without a terminal.
    env.config["process"]["terminal"] = json!(false);
    env.write();
    for rt in &rts {
        let id = unique("tty");
        let sock = rt.files.join("unused.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let (o, _c) = rt.create(&env.bundle(), &id, &["--console-socket", sock.to_str().unwrap()]);
        assert!(!o.ok(), "{}: --console-socket without a terminal accepted", rt.name);
        println!("{}: --console-socket without a terminal: {}", rt.name, o.stderr.trim());
    }
}

// ---------------------------------------------------------------------------
// 7. pause, resume, ps, list, update.

fn pause_and_update(env: &Env, rt: &Rt) {
    let n = rt.name;
    let id = unique("pause");
    let pid_file = rt.file(&id, "pid");
    let _c = rt.created(&env.bundle(), &id, &["--pid-file", pid_file.to_str().unwrap()]);
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    rt.must(&["start", &id]);
    wait_for(&format!("{n}: pid 1 to be the program"), || cmdline(pid)?.starts_with("sleep").then_some(()));

    let ps: Vec<i32> = serde_json::from_str(&rt.must(&["ps", "--format", "json", &id]).stdout).unwrap();
    assert_eq!(ps, [pid], "{n}: ps --format json");
    // The table: ps -ef's header and pid 1's line.
    let table = rt.must(&["ps", &id]).stdout;
    let mut lines = table.lines();
    let col = lines.next().and_then(|h| h.split_whitespace().position(|c| c == "PID"));
    let col = col.unwrap_or_else(|| panic!("{n}: ps: no PID column: {table}"));
    let listed: Vec<&str> = lines.filter_map(|l| l.split_whitespace().nth(col)).collect();
    assert_eq!(listed, [pid.to_string()], "{n}: ps: {table}");
    let quiet = rt.must(&["list", "--quiet"]).stdout;
    assert_eq!(quiet, format!("{id}\n"), "{n}: list --quiet");
    let table = rt.must(&["list"]).stdout;
    let row = table.lines().find(|l| l.split_whitespace().next() == Some(id.as_str()));
    let row: Vec<&str> = row.unwrap_or_else(|| panic!("{n}: list: {table}")).split_whitespace().collect();
    assert_eq!(row[1..3], [pid.to_string().as_str(), "running"], "{n}: {table}");

    assert!(!frozen(pid), "{n}: pid 1's cgroup is frozen before pause");
    rt.must(&["pause", &id]);
    assert_eq!(rt.status(&id), "paused", "{n}");
    // The kernel's word, not only the runtime's: pid 1's cgroup is frozen.
    assert!(frozen(pid), "{n}: paused, but the kernel's freezer does not say pid 1's cgroup is frozen");
    let listed = rt.list();
    assert!(listed.iter().any(|c| c["id"] == id.as_str() && c["status"] == "paused"), "{n}: {listed:?}");
    rt.must(&["resume", &id]);
    assert_eq!(rt.status(&id), "running", "{n}");
    assert!(!frozen(pid), "{n}: resumed, but pid 1's cgroup is still frozen");
    let o = rt.run(&["resume", &id]);
    assert!(!o.ok(), "{n}: resume of a running container succeeded");

    let max = pids_file(pid, "pids.max");
    let before = std::fs::read_to_string(&max).unwrap();
    let res = rt.files.join("resources.json");
    std::fs::write(&res, json!({"pids": {"limit": 42}}).to_string()).unwrap();
    rt.must(&["update", "--resources", res.to_str().unwrap(), &id]);
    assert_eq!(
        std::fs::read_to_string(&max).unwrap().trim(),
        "42",
        "{n}: {} (was {before:?})",
        max.display()
    );
    // And from stdin.
    let mut upd = rt.cmd(&["update", "--resources", "-", &id]);
    let mut child = upd.stdin(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(br#"{"pids": {"limit": 43}}"#).unwrap();
    assert!(child.wait().unwrap().success(), "{n}: update --resources -");
    assert_eq!(std::fs::read_to_string(&max).unwrap().trim(), "43", "{n}: {}", max.display());
    println!("{n}: update wrote {}", max.display());

    // SIGKILL ends a paused container (a frozen process does not die until it is
    // thawed: the runtime thaws it, as runc does).
    rt.must(&["pause", &id]);
    rt.must(&["kill", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
}

#[test]
fn pause_resume_ps_list_update() {
    let Some(env) = Env::new(&["sleep", "1000"]) else { return };
    for rt in env.runtimes() {
        pause_and_update(&env, &rt);
    }
}

// ---------------------------------------------------------------------------
// 8. Many containers leave nothing behind.

/// Removes the cgroupsPath parent made for the test in every hierarchy.
struct CgroupParent(String);

impl Drop for CgroupParent {
    fn drop(&mut self) {
        for d in cgroups_named(&self.0) {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn fifty_containers_leave_nothing_behind() {
    let Some(mut env) = Env::new(&["true"]) else { return };
    let rt = env.sandfs();
    let parent = CgroupParent(format!("sandfs-oci-test-{}", std::process::id()));
    let (mut ids, mut pids) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for i in 0..50 {
        let id = unique("loop");
        // Half with the default cgroup (sandfs/ID), half at a cgroupsPath; half
        // that end by themselves, half killed by delete --force.
        if i % 2 == 0 {
            env.config["linux"].as_object_mut().unwrap().remove("cgroupsPath");
            env.config["process"]["args"] = json!(["true"]);
        } else {
            env.config["linux"]["cgroupsPath"] = json!(format!("/{}/{id}", parent.0));
            env.config["process"]["args"] = json!(["sleep", "1000"]);
        }
        env.write();
        let pid_file = rt.file(&id, "pid");
        let c = rt.created(&env.bundle(), &id, &["--pid-file", pid_file.to_str().unwrap()]);
        let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        pids.push((pid, start_time(pid).expect("pid 1 is gone after create")));
        rt.must(&["start", &id]);
        rt.must(&["delete", "--force", &id]);
        // Its guard's delete --force of a deleted container is a no-op.
        drop(c);
        ids.push(id);
    }
    println!("sandfs: 50 containers created, started and deleted in {:?}", started.elapsed());
    let left: Vec<_> = std::fs::read_dir(&rt.root).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "state left in {}: {left:?}", rt.root.display());
    // Monitors and gofers name the state directory or the bundle; pid 1s are
    // known by pid and start time.
    let needle = env.path().to_str().unwrap().to_string();
    settle("processes of the deleted containers", || processes_mentioning(&needle));
    settle("pid 1s of the deleted containers", || {
        pids.iter().filter(|&&(p, t)| alive(p) && start_time(p) == Some(t)).copied().collect::<Vec<_>>()
    });
    // Under sandfs/ (the default) or the cgroupsPath's parent, in any hierarchy.
    let dirs = cgroup_dirs();
    let left: Vec<&PathBuf> = dirs
        .iter()
        .filter(|d| d.file_name().and_then(|n| n.to_str()).is_some_and(|n| ids.iter().any(|i| i == n)))
        .collect();
    assert!(left.is_empty(), "cgroups left: {left:?}");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let ours: Vec<&str> = mounts.lines().filter(|l| l.contains(&needle)).collect();
    assert!(ours.is_empty(), "mounts left: {ours:?}");
}
