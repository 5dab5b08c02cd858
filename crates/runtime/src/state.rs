//! The state directory (`--root`): one directory per container holding its state
//! file, a copy of its spec, the monitor's control socket and a lock. The state
//! file is written atomically (a temporary file renamed over it), so it survives
//! every runtime process and is never seen half written; the status a command
//! reports is worked out from it and the live system (a container whose pid 1 has
//! ended is `stopped`, one whose cgroup is frozen is `paused`).

use anyhow::{Context, Result, bail};
use rustix::fs::{Mode, OFlags};
use sandfs_confine::cgroup::Cgroup;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A container's status, as the OCI state reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Set up; the program waits for `start`.
    Created,
    /// The program runs.
    Running,
    /// The cgroup is frozen.
    Paused,
    /// pid 1 has ended.
    Stopped,
}

impl Status {
    /// The name in the state JSON.
    pub fn name(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// What the state file holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct State {
    /// The container id.
    pub id: String,
    /// Created or running, as last recorded (see [`State::status`]).
    pub status: Status,
    /// pid 1 of the container, in the runtime's pid namespace.
    pub pid: i32,
    /// pid 1's start time (clock ticks after boot): a reused pid is not it.
    pub pid_start: u64,
    /// The monitor (FUSE server and gofers' parent).
    pub monitor: i32,
    /// The monitor's start time.
    pub monitor_start: u64,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The root filesystem's path.
    pub rootfs: PathBuf,
    /// The spec's annotations.
    pub annotations: BTreeMap<String, String>,
    /// When it was created (RFC 3339, UTC).
    pub created: String,
    /// The uid that created it.
    pub owner: u32,
    /// Its cgroup, if it has one.
    pub cgroup: Option<Cgroup>,
}

impl State {
    /// The status now: stopped once pid 1 is gone, paused while frozen.
    pub fn status(&self) -> Status {
        if !alive(self.pid, self.pid_start) {
            return Status::Stopped;
        }
        if self.cgroup.as_ref().is_some_and(|c| c.is_frozen()) {
            return Status::Paused;
        }
        self.status
    }

    /// The OCI state JSON (`sandfs state`, hooks' stdin), with runc's `rootfs`,
    /// `created` and `owner` besides.
    pub fn oci(&self) -> serde_json::Value {
        let status = self.status();
        let pid = if status == Status::Stopped { 0 } else { self.pid };
        let mut v = oci_state(&self.id, status.name(), pid, &self.bundle, &self.annotations);
        v["rootfs"] = serde_json::json!(self.rootfs);
        v["created"] = serde_json::json!(self.created);
        v["owner"] = serde_json::json!(owner_name(self.owner));
        v
    }
}

/// The state JSON the OCI runtime spec defines (what hooks read on stdin).
pub fn oci_state(
    id: &str,
    status: &str,
    pid: i32,
    bundle: &Path,
    annotations: &BTreeMap<String, String>,
) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.2.0",
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
        "annotations": annotations,
    })
}

/// The user name of `uid` from /etc/passwd (its number otherwise).
fn owner_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

/// The start time of `pid` and whether it has exited (a zombie), from
/// /proc/PID/stat; `None` when there is no such process.
pub fn proc_start(pid: i32) -> Option<(u64, bool)> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let zombie = matches!(fields.first(), Some(&"Z") | Some(&"X"));
    // starttime is field 22 of the line, the 20th after the command name.
    Some((fields.get(19)?.parse().ok()?, zombie))
}

/// Whether `pid` is still the process that started at `start` and has not exited.
pub fn alive(pid: i32, start: u64) -> bool {
    proc_start(pid).is_some_and(|(s, zombie)| s == start && !zombie)
}

/// The state directory of every container.
pub struct Store {
    root: PathBuf,
}

/// Container ids are one path component of letters, digits and `_.-+`.
fn check_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 1024
        || id.starts_with('.')
        || !id.chars().all(|c| c.is_ascii_alphanumeric() || "_.-+".contains(c))
    {
        bail!("invalid container id {id:?}: letters, digits and _.-+ only, not starting with a dot");
    }
    Ok(())
}

impl Store {
    /// The store at `root`, made if missing, mode 0711: a sandbox (an unprivileged
    /// host id) passes through to its view's mount point; nothing can be listed, and
    /// the files are 0600.
    pub fn open(root: &Path) -> Result<Store> {
        std::fs::create_dir_all(root).with_context(|| format!("--root {}", root.display()))?;
        let _ = std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o711));
        Ok(Store { root: root.to_path_buf() })
    }

    /// The directory of container `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Reserves `id` (its directory made); refused when it exists.
    pub fn reserve(&self, id: &str) -> Result<PathBuf> {
        check_id(id)?;
        let dir = self.dir(id);
        match std::fs::create_dir(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                bail!("container with id exists: {id}")
            }
            Err(e) => Err(e).with_context(|| format!("make {}", dir.display())),
        }
    }

    /// The state of `id` ("container does not exist" otherwise, runc's words, which
    /// engines look for).
    pub fn load(&self, id: &str) -> Result<State> {
        check_id(id)?;
        let path = self.dir(id).join("state.json");
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("container {id} does not exist"),
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        serde_json::from_slice(&text).with_context(|| format!("{}: not a sandfs state file", path.display()))
    }

    /// Writes the state of its container atomically.
    pub fn save(&self, st: &State) -> Result<()> {
        let json = serde_json::to_vec_pretty(st)?;
        write_atomic(&self.dir(&st.id).join("state.json"), &json)
    }

    /// The ids of every container with a state file, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for e in std::fs::read_dir(&self.root).with_context(|| format!("read {}", self.root.display()))? {
            let e = e?;
            if e.path().join("state.json").exists()
                && let Some(n) = e.file_name().to_str()
            {
                ids.push(n.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Takes the container's lock (held until the returned descriptor is dropped):
    /// commands that change a container do so one at a time.
    pub fn lock(&self, id: &str) -> Result<OwnedFd> {
        check_id(id)?;
        let dir = self.dir(id);
        let fd = rustix::fs::open(
            &dir,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| {
            if e == rustix::io::Errno::NOENT {
                anyhow::anyhow!("container {id} does not exist")
            } else {
                anyhow::anyhow!("open {}: {e}", dir.display())
            }
        })?;
        rustix::fs::flock(fd.as_fd(), rustix::fs::FlockOperation::LockExclusive)
            .with_context(|| format!("lock {}", dir.display()))?;
        Ok(fd)
    }
}

/// Writes `data` to `path` atomically (a temporary file, synced, renamed over it),
/// readable by the owner only.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let d = rustix::fs::open(dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .with_context(|| format!("open {}", dir.display()))?;
    let name = path.file_name().with_context(|| format!("{}: no file name", path.display()))?;
    write_atomic_at(&d, Path::new(name), data).with_context(|| format!("write {}", path.display()))
}

/// [`write_atomic`] of `name` in the directory open at `dir` (for a caller that has
/// left the mount namespace the directory's path names it in).
pub fn write_atomic_at(dir: &OwnedFd, name: &Path, data: &[u8]) -> Result<()> {
    let tmp = format!(".{}.{}", name.display(), std::process::id());
    let fd = rustix::fs::openat(
        dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .with_context(|| format!("create {tmp}"))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(data).and_then(|()| f.sync_all()).with_context(|| format!("write {tmp}"))?;
    rustix::fs::renameat(dir, tmp.as_str(), dir, name).with_context(|| format!("rename {tmp}"))?;
    Ok(())
}

/// Now as RFC 3339 in UTC with nanoseconds (`2026-12-06T04:39:15.123456789Z`).
pub fn now_rfc3339() -> String {
    rfc3339(std::time::SystemTime::now())
}

/// `t` as RFC 3339 in UTC with nanoseconds.
fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_safe_component() {
        for bad in ["", ".", "..", "a/b", ".hidden", "a b", "x\0"] {
            assert!(check_id(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["abc", "a-b_c.d+1", "0123456789abcdef"] {
            assert!(check_id(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn a_second_reserve_of_one_id_is_refused_and_state_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        store.reserve("c1").unwrap();
        let e = store.reserve("c1").unwrap_err().to_string();
        assert_eq!(e, "container with id exists: c1");
        assert!(store.load("c1").unwrap_err().to_string().contains("does not exist"));
        let me = std::process::id() as i32;
        let (start, _) = proc_start(me).unwrap();
        let st = State {
            id: "c1".into(),
            status: Status::Running,
            pid: me,
            pid_start: start,
            monitor: me,
            monitor_start: start,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            annotations: BTreeMap::from([("k".into(), "v".into())]),
            created: now_rfc3339(),
            owner: 0,
            cgroup: None,
        };
        store.save(&st).unwrap();
        let back = store.load("c1").unwrap();
        assert_eq!(back.status(), Status::Running, "this process is alive");
        assert_eq!(back.oci()["annotations"]["k"], "v");
        assert_eq!(store.ids().unwrap(), vec!["c1".to_string()]);
        // A pid whose start time differs is another process: stopped.
        let other = State { pid_start: start + 1, ..back };
        assert_eq!(other.status(), Status::Stopped);
        assert_eq!(other.oci()["pid"], 0);
    }

    /// date(1) is the oracle: leap days, century years, month ends.
    #[test]
    fn rfc3339_agrees_with_date() {
        let secs: [u64; 7] =
            [0, 951_782_400, 951_868_799, 1_078_099_199, 4_107_542_400, 1_798_761_599, 1_733_459_955];
        for s in secs {
            let t = std::time::UNIX_EPOCH + std::time::Duration::new(s, 123_456_789);
            let out = std::process::Command::new("date")
                .args(["-u", "-d", &format!("@{s}"), "+%Y-%m-%dT%H:%M:%S.123456789Z"])
                .output()
                .expect("date");
            assert_eq!(rfc3339(t), String::from_utf8_lossy(&out.stdout).trim(), "{s}");
        }
    }
}
