//! The sandbox's cgroup: program, FUSE server and gofers in one group of their own,
//! with the spec's resource limits, on cgroup v2 and v1/hybrid hosts.
//!
//! [`Cgroup::create`] makes the group before any child starts; [`Cgroup::apply`]
//! writes `linux.resources`; [`Cgroup::add_pid`] puts each child in;
//! [`Cgroup::destroy`] (or dropping the value) kills what is left and removes the
//! directories.
//!
//! Where: an OCI `cgroupsPath` if given, absolute from the hierarchy's root or
//! relative to the caller's own cgroup, else `sandfs/<id>` under the caller's own
//! cgroup, as /proc/self/cgroup names it (on v1 the caller may sit at different
//! places in different hierarchies; each hierarchy resolves on its own).
//!
//! v2: one directory in the unified tree. The controllers a setting needs are
//! enabled in `cgroup.subtree_control` of every ancestor that lacks them. A cgroup
//! holding processes cannot enable controllers for its children (the "no internal
//! processes" rule, the root excepted): that is reported naming the field, with the
//! way out (run from a leaf, give an absolute `cgroupsPath`). Processes only ever go
//! into the leaf, which never has children of its own.
//!
//! v1/hybrid: the same relative path in every mounted v1 controller hierarchy
//! (cpuset levels get their parent's cpus/mems, without which they take no task).
//! On hybrid hosts the group is also made in the v2 tree when that is writable: no
//! controller is used there, but it gives `cgroup.kill` to [`Cgroup::destroy`].
//!
//! Hand-written cgroupfs access rather than a crate: a few files per controller;
//! cgroups-rs brings a second, older nix and picks one of v1 or v2 for the whole
//! host, so the hybrid handling would be ours anyway.
//!
//! Device rules are described in [`default_device_rules`]'s module: enforced on
//! v1, checked (warn on extra allows, refuse denies) on v2.

mod devices;
mod flags;
mod mounts;
mod settings;

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

pub use devices::{default_device_rules, device_rule};
pub use flags::{CPU_PERIOD_US, parse_cpus, parse_memory, resources_from_flags};
pub use mounts::{CgroupVersion, detect};

/// How long [`Cgroup::destroy`] and [`Cgroup::freeze`] wait for the kernel.
const SETTLE: Duration = Duration::from_secs(10);

/// What can go wrong with a cgroup; the spec field is named where one is at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupError {
    /// Neither a cgroup v1 controller hierarchy nor a cgroup2 tree is mounted.
    #[error("no cgroup filesystem is mounted (none in /proc/self/mountinfo)")]
    NoCgroupFs,
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A cgroupfs operation (mkdir, rmdir, joining) failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// On what.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The cgroup path (the `cgroupsPath` or the sandbox id) cannot be used.
    #[error("cgroup path {path:?}: {reason}")]
    Path {
        /// The path as given.
        path: String,
        /// Why.
        reason: String,
    },
    /// A spec field has a value that cannot be applied here.
    #[error("{field}: {reason}")]
    Invalid {
        /// The spec field, e.g. `linux.resources.memory.limit`.
        field: String,
        /// Why.
        reason: String,
    },
    /// The kernel refused a value.
    #[error("{field}: writing {value:?} to {path}: {source}")]
    Write {
        /// The spec field the value comes from.
        field: String,
        /// The cgroup file.
        path: PathBuf,
        /// The value.
        value: String,
        /// The kernel's answer.
        source: io::Error,
    },
    /// The cgroup already exists and holds processes of someone else.
    #[error("cgroup {path} already holds processes {pids:?}")]
    Busy {
        /// The cgroup.
        path: PathBuf,
        /// Its processes.
        pids: Vec<i32>,
    },
    /// The cgroup did not settle (empty, frozen) in time.
    #[error("cgroup {path}: {what}")]
    Stuck {
        /// The cgroup.
        path: PathBuf,
        /// What did not happen.
        what: String,
    },
    /// The host lacks what an operation needs.
    #[error("{0}")]
    Unsupported(String),
    /// A command-line flag has a bad value.
    #[error("{flag} {value:?}: {reason}")]
    Flag {
        /// The flag, e.g. `--memory`.
        flag: &'static str,
        /// Its value.
        value: String,
        /// Why.
        reason: String,
    },
}

impl CgroupError {
    /// The spec field (or command-line flag) at fault, if one is.
    pub fn field(&self) -> Option<&str> {
        match self {
            CgroupError::Invalid { field, .. } | CgroupError::Write { field, .. } => Some(field),
            CgroupError::Flag { flag, .. } => Some(flag),
            _ => None,
        }
    }
}

/// The sandbox's cgroup in one hierarchy.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Dir {
    /// The v1 controllers of the hierarchy; `None` for a v2 tree.
    controllers: Option<Vec<String>>,
    /// Where the hierarchy is mounted.
    mount: PathBuf,
    /// The sandbox's cgroup.
    path: PathBuf,
    /// The directories this value made or took over, parents first; removed on
    /// destroy. The leaf is last once it is ours.
    owned: Vec<PathBuf>,
    /// The creating process's own cgroup here, where [`Cgroup::leave`] returns it.
    origin: PathBuf,
}

impl Dir {
    /// Whether the leaf is ours (made, or found empty and taken over).
    fn mine(&self) -> bool {
        self.owned.last() == Some(&self.path)
    }

    /// Whether this is a v1 hierarchy with `controller`.
    fn has(&self, controller: &str) -> bool {
        self.controllers.as_ref().is_some_and(|c| c.iter().any(|c| c == controller))
    }
}

/// One sandbox's cgroup, in every hierarchy the host has; dropping it destroys it.
/// It serializes (a container's state file keeps it for later commands); a value
/// read back is disowned: only [`Cgroup::destroy_now`] removes it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Cgroup {
    id: String,
    version: CgroupVersion,
    /// v2: the one directory; v1/hybrid: one per controller hierarchy.
    dirs: Vec<Dir>,
    /// Hybrid: the group in the v2 tree (membership and `cgroup.kill` only).
    unified: Option<Dir>,
    #[serde(skip, default = "disowned")]
    destroyed: bool,
}

/// A cgroup read back from a state file is not removed by being dropped.
fn disowned() -> bool {
    true
}

/// Where the cgroup goes, within a hierarchy.
enum Target {
    /// From the hierarchy's root.
    Absolute(PathBuf),
    /// From the caller's own cgroup.
    Relative(PathBuf),
}

/// Checks the id and `cgroupsPath`, and says where the cgroup goes.
fn target(path_hint: Option<&Path>, id: &str) -> Result<Target, CgroupError> {
    if id.is_empty() || id == "." || id == ".." || id.contains(['/', '\0']) {
        return Err(CgroupError::Path {
            path: id.to_owned(),
            reason: "the sandbox id must be one non-empty path component".to_owned(),
        });
    }
    let Some(hint) = path_hint.filter(|h| !h.as_os_str().is_empty()) else {
        return Ok(Target::Relative(Path::new("sandfs").join(id)));
    };
    let shown = hint.display().to_string();
    let bad = |reason: &str| CgroupError::Path { path: shown.clone(), reason: reason.to_owned() };
    if !hint.is_absolute() && shown.split(':').count() == 3 {
        return Err(bad("systemd slice:prefix:name paths are not supported; give a cgroupfs path"));
    }
    let mut rel = PathBuf::new();
    for c in hint.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) if !n.as_encoded_bytes().contains(&0) => rel.push(n),
            _ => return Err(bad("only plain names may make up the path (no . or ..)")),
        }
    }
    if rel.as_os_str().is_empty() {
        return Err(bad("the root cgroup cannot be a sandbox's cgroup"));
    }
    Ok(if hint.is_absolute() { Target::Absolute(rel) } else { Target::Relative(rel) })
}

/// The sandbox's cgroup directory in one hierarchy, given the caller's own cgroup.
fn locate(mount: &mounts::Mount, own: &str, target: &Target) -> Result<PathBuf, CgroupError> {
    let bad = |reason: String| CgroupError::Path { path: own.to_owned(), reason };
    if Path::new(own).components().any(|c| !matches!(c, Component::RootDir | Component::Normal(_))) {
        return Err(bad("the caller's own cgroup is outside its cgroup namespace".to_owned()));
    }
    let abs = match target {
        Target::Absolute(p) => Path::new("/").join(p),
        Target::Relative(p) => Path::new("/").join(own.trim_start_matches('/')).join(p),
    };
    let rel = abs.strip_prefix(&mount.root).map_err(|_| {
        bad(format!(
            "{} is outside the part of the hierarchy mounted at {} ({})",
            abs.display(),
            mount.point.display(),
            mount.root
        ))
    })?;
    Ok(mount.point.join(rel))
}

/// Reads a cgroup file, trimmed.
fn read_trim(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| CgroupError::Read { path: path.to_path_buf(), source })
}

/// Writes a value to an existing cgroup file in one write.
fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).truncate(true).open(path)?;
    f.write_all(value.as_bytes())
}

/// The pids in a cgroup; none if the cgroup is gone.
fn read_pids(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let path = dir.join("cgroup.procs");
    match fs::read_to_string(&path) {
        Ok(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(CgroupError::Read { path, source }),
    }
}

/// Gives a new cpuset cgroup its parent's cpus and mems when it has none: an
/// empty cpuset takes no tasks.
fn init_cpuset(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if !read_trim(&dir.join(file))?.is_empty() {
            continue;
        }
        let value = read_trim(&parent.join(file))?;
        write_file(&dir.join(file), &value).map_err(|source| CgroupError::Io {
            op: format!("copying the parent's {file} ({value:?}) into"),
            path: dir.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// Makes `dir.path` and its missing parents below the mount, recording each made
/// directory in `dir.owned` (so a failure part way is cleaned up by the caller).
fn make_dirs(dir: &mut Dir) -> Result<(), CgroupError> {
    let cpuset = dir.has("cpuset");
    let rel = dir.path.strip_prefix(&dir.mount).map(Path::to_path_buf).unwrap_or_default();
    // A concurrent destroy may remove a shared parent (`sandfs/`) between our
    // steps; start again from the top then.
    let mut attempts = 0;
    'again: loop {
        attempts += 1;
        let mut cur = dir.mount.clone();
        for c in rel.components() {
            cur.push(c);
            // 0755 whatever the caller's umask: a cgroup others could write would
            // let them make groups in it or move their own processes about.
            match fs::DirBuilder::new().mode(0o755).create(&cur) {
                Ok(()) => dir.owned.push(cur.clone()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 8 => continue 'again,
                Err(source) => {
                    return Err(CgroupError::Io { op: "making cgroup".to_owned(), path: cur, source });
                }
            }
            if cpuset {
                match init_cpuset(&cur) {
                    // The same race: the directory went between its making and
                    // reading its files (ENODEV from a removed cgroup's files).
                    Err(CgroupError::Read { source, .. } | CgroupError::Io { source, .. })
                        if attempts < 8
                            && (source.kind() == io::ErrorKind::NotFound
                                || source.raw_os_error()
                                    == Some(rustix::io::Errno::NODEV.raw_os_error())) =>
                    {
                        continue 'again;
                    }
                    other => other?,
                }
            }
        }
        return Ok(());
    }
}

impl Cgroup {
    /// Makes the sandbox's cgroup in every hierarchy: at `path_hint` (the spec's
    /// `cgroupsPath`: absolute from the hierarchy root, or relative to the caller's
    /// cgroup) or else at `sandfs/<id>` under the caller's cgroup. An existing
    /// empty cgroup there is taken over; one holding processes is refused.
    pub fn create(path_hint: Option<&Path>, id: &str) -> Result<Cgroup, CgroupError> {
        let target = target(path_hint, id)?;
        let mounts = mounts::mounts()?;
        let version = mounts::version_of(&mounts).ok_or(CgroupError::NoCgroupFs)?;
        let own = mounts::own_cgroups()?;
        let mut cg = Cgroup { id: id.to_owned(), version, dirs: Vec::new(), unified: None, destroyed: false };
        for m in &mounts {
            let membership = own.iter().find(|o| match (&o.controllers, &m.controllers) {
                (None, None) => true,
                (Some(a), Some(b)) => a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>(),
                _ => false,
            });
            let unified_of_hybrid = version == CgroupVersion::Hybrid && m.controllers.is_none();
            let Some(membership) = membership else {
                if unified_of_hybrid {
                    continue;
                }
                return Err(CgroupError::Unsupported(format!(
                    "this process is in no cgroup of the hierarchy mounted at {}",
                    m.point.display()
                )));
            };
            let path = locate(m, &membership.path, &target)?;
            let origin = m.point.join(membership.path.strip_prefix("/").unwrap_or(&membership.path));
            let mut dir = Dir {
                controllers: m.controllers.clone(),
                mount: m.point.clone(),
                path,
                owned: Vec::new(),
                origin,
            };
            let made = make_dirs(&mut dir);
            if made.is_ok() && path_hint.is_none_or(|h| h.as_os_str().is_empty()) {
                // The default parent `sandfs/` is sandfs's whoever made it: the
                // last sandbox to go removes it (it stays while others use it).
                if let Some(parent) = dir.path.parent()
                    && !dir.owned.iter().any(|o| o == parent)
                {
                    dir.owned.insert(0, parent.to_path_buf());
                }
            }
            if unified_of_hybrid {
                // Only a convenience on hybrid hosts: skip the v2 tree if it is
                // not ours to write.
                match made {
                    Ok(()) => {
                        cg.unified = Some(dir);
                        cg.take_leaf(true)?;
                    }
                    Err(e) => {
                        tracing::debug!("hybrid cgroup host, v2 tree not used: {e}");
                        remove_owned(&mut dir, Instant::now() + SETTLE)?;
                    }
                }
                continue;
            }
            cg.dirs.push(dir);
            made?;
            cg.take_leaf(false)?;
        }
        if cg.dirs.is_empty() {
            return Err(CgroupError::NoCgroupFs);
        }
        Ok(cg)
    }

    /// Marks the newest directory's leaf as ours, unless it holds processes.
    fn take_leaf(&mut self, unified: bool) -> Result<(), CgroupError> {
        let dir = if unified { self.unified.as_mut() } else { self.dirs.last_mut() };
        let Some(dir) = dir else {
            return Ok(());
        };
        if dir.mine() {
            return Ok(());
        }
        let pids = read_pids(&dir.path)?;
        if !pids.is_empty() {
            return Err(CgroupError::Busy { path: dir.path.clone(), pids });
        }
        dir.owned.push(dir.path.clone());
        Ok(())
    }

    /// The sandbox id the cgroup was made for.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The host's cgroup layout, as this cgroup uses it.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The cgroup's directories: one per v1 hierarchy (then the v2 tree's on hybrid
    /// hosts), or the one v2 directory.
    pub fn paths(&self) -> Vec<&Path> {
        self.all_dirs().map(|d| d.path.as_path()).collect()
    }

    /// The directory holding `controller`'s files (`memory`, `devices`, ...): the
    /// v1 hierarchy with it, or the v2 directory.
    pub fn path_for(&self, controller: &str) -> Option<&Path> {
        match self.version {
            CgroupVersion::V2 => self.dirs.first().map(|d| d.path.as_path()),
            _ => self.dirs.iter().find(|d| d.has(controller)).map(|d| d.path.as_path()),
        }
    }

    fn all_dirs(&self) -> impl Iterator<Item = &Dir> {
        self.dirs.iter().chain(self.unified.as_ref())
    }

    /// Writes `linux.resources`. Every value is checked before any is written;
    /// returns warnings for what was given but not applied on this host (each
    /// starting with the field), and fails naming the field the kernel refused or
    /// that cannot be applied where leaving it out would loosen the limits.
    pub fn apply(&self, resources: &LinuxResources) -> Result<Vec<String>, CgroupError> {
        let mut warnings = Vec::new();
        if self.version == CgroupVersion::V2 {
            let list = settings::v2(resources, &mut warnings)?;
            let Some(dir) = self.dirs.first() else {
                return Ok(warnings);
            };
            settings::enable_v2(&dir.mount, &dir.path, &list)?;
            for s in &list {
                s.write(&dir.path, &mut warnings)?;
            }
        } else {
            let list = settings::v1(resources, &mut warnings)?;
            for s in &list {
                let Some(ctl) = s.controller.as_deref() else {
                    continue;
                };
                let Some(dir) = self.dirs.iter().find(|d| d.has(ctl)) else {
                    return Err(CgroupError::Invalid {
                        field: s.field.clone(),
                        reason: format!("no {ctl} cgroup hierarchy is mounted"),
                    });
                };
                s.write(&dir.path, &mut warnings)?;
            }
        }
        Ok(warnings)
    }

    /// Moves a process (and so its future children) into the cgroup, in every
    /// hierarchy.
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        self.add_pid_except(pid, &[])
    }

    /// [`Cgroup::add_pid`], leaving out the v1 hierarchies holding any of
    /// `controllers` (the runtime's FUSE server joins for the limits, not for the
    /// container's device rules: its workers open /dev/fuse as they start).
    pub fn add_pid_except(&self, pid: i32, controllers: &[&str]) -> Result<(), CgroupError> {
        for d in self.all_dirs().filter(|d| !controllers.iter().any(|c| d.has(c))) {
            let path = d.path.join("cgroup.procs");
            write_file(&path, &pid.to_string()).map_err(|source| CgroupError::Io {
                op: format!("adding pid {pid} to"),
                path,
                source,
            })?;
        }
        Ok(())
    }

    /// Moves the calling process back to the cgroup it was in when it created this
    /// one (the runtime joins its sandbox's cgroup for the run, so that everything
    /// it starts is counted, and leaves before destroying it).
    pub fn leave(&self) -> Result<(), CgroupError> {
        let me = rustix::process::getpid().as_raw_nonzero().get();
        for d in self.all_dirs() {
            let path = d.origin.join("cgroup.procs");
            write_file(&path, &me.to_string()).map_err(|source| CgroupError::Io {
                op: format!("moving pid {me} back to"),
                path,
                source,
            })?;
        }
        Ok(())
    }

    /// The processes in the cgroup, sorted.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut all = BTreeSet::new();
        for d in self.all_dirs() {
            all.extend(read_pids(&d.path)?);
        }
        Ok(all.into_iter().collect())
    }

    /// How many processes the kernel's OOM killer killed in the cgroup, where the
    /// kernel counts it (v2 memory.events, v1 memory.oom_control `oom_kill`).
    pub fn memory_events_oom(&self) -> Option<u64> {
        let file = match self.version {
            CgroupVersion::V2 => "memory.events",
            _ => "memory.oom_control",
        };
        let text = fs::read_to_string(self.path_for("memory")?.join(file)).ok()?;
        text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok())
    }

    /// The freezer: v1 `freezer.state` where the freezer hierarchy is mounted,
    /// else the v2 directory's `cgroup.freeze`. `true` for v1.
    fn freezer(&self) -> Result<(&Path, bool), CgroupError> {
        if let Some(d) = self.dirs.iter().find(|d| d.has("freezer")) {
            return Ok((&d.path, true));
        }
        self.all_dirs().find(|d| d.controllers.is_none()).map(|d| (d.path.as_path(), false)).ok_or_else(
            || {
                CgroupError::Unsupported(
                    "no freezer: neither a v1 freezer hierarchy nor a v2 tree is mounted".to_owned(),
                )
            },
        )
    }

    /// Freezes every process in the cgroup (for pause) and waits until the kernel
    /// says they are frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        let (dir, v1) = self.freezer()?;
        let deadline = Instant::now() + SETTLE;
        let mut nap = Duration::from_millis(1);
        loop {
            let (file, value) = if v1 { ("freezer.state", "FROZEN") } else { ("cgroup.freeze", "1") };
            let path = dir.join(file);
            write_file(&path, value).map_err(|source| CgroupError::Io {
                op: "freezing".to_owned(),
                path,
                source,
            })?;
            let frozen = if v1 {
                read_trim(&dir.join("freezer.state"))? == "FROZEN"
            } else {
                read_trim(&dir.join("cgroup.events"))?.lines().any(|l| l.trim() == "frozen 1")
            };
            if frozen {
                return Ok(());
            }
            if Instant::now() > deadline {
                // Leave it running rather than half frozen.
                let _ = self.thaw();
                return Err(CgroupError::Stuck {
                    path: dir.to_path_buf(),
                    what: format!("not frozen after {}s", SETTLE.as_secs()),
                });
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(50));
        }
    }

    /// Whether the cgroup is frozen (paused); false without a freezer.
    pub fn is_frozen(&self) -> bool {
        match self.freezer() {
            Ok((dir, true)) => {
                read_trim(&dir.join("freezer.state")).is_ok_and(|s| s == "FROZEN" || s == "FREEZING")
            }
            Ok((dir, false)) => read_trim(&dir.join("cgroup.freeze")).is_ok_and(|s| s == "1"),
            Err(_) => false,
        }
    }

    /// Lets a frozen cgroup run again.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        let (dir, v1) = self.freezer()?;
        let (file, value) = if v1 { ("freezer.state", "THAWED") } else { ("cgroup.freeze", "0") };
        let path = dir.join(file);
        write_file(&path, value).map_err(|source| CgroupError::Io { op: "thawing".to_owned(), path, source })
    }

    /// Kills every process left in the cgroup and removes its directories
    /// (children first; shared parents such as `sandfs/` only when empty).
    pub fn destroy(mut self) -> Result<(), CgroupError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), CgroupError> {
        self.destroyed = true;
        // A caller still inside (a runtime that joined its sandbox's cgroup and then
        // failed) leaves first: cgroup.kill below would kill it too.
        let me = rustix::process::getpid().as_raw_nonzero().get();
        if self.pids().is_ok_and(|p| p.contains(&me)) {
            let _ = self.leave();
        }
        let deadline = Instant::now() + SETTLE;
        let killed = self.kill_all(deadline);
        let removed = self.remove_dirs(deadline);
        killed.and(removed)
    }

    /// Kills the processes of the cgroups that are ours until none is left.
    fn kill_all(&self, deadline: Instant) -> Result<(), CgroupError> {
        let live: Vec<&Dir> = self.all_dirs().filter(|d| d.mine()).collect();
        if live.is_empty() {
            return Ok(());
        }
        let me = rustix::process::getpid().as_raw_nonzero().get();
        if let Some(d) = live.iter().find(|d| read_pids(&d.path).is_ok_and(|p| p.contains(&me))) {
            // Never cgroup.kill ourselves.
            return Err(CgroupError::Busy { path: d.path.clone(), pids: vec![me] });
        }
        for d in &live {
            // Frozen tasks die only once thawed; cgroup.kill (v2, Linux 5.14)
            // kills everything at once, forks included. Both best effort: the
            // loop below is what makes sure.
            if d.controllers.is_none() {
                let _ = write_file(&d.path.join("cgroup.kill"), "1");
                let _ = write_file(&d.path.join("cgroup.freeze"), "0");
            } else if d.has("freezer") {
                let _ = write_file(&d.path.join("freezer.state"), "THAWED");
            }
        }
        let mut nap = Duration::from_millis(1);
        loop {
            let mut pids = BTreeSet::new();
            for d in &live {
                pids.extend(read_pids(&d.path)?);
            }
            let Some(first) = live.first() else {
                return Ok(());
            };
            if pids.is_empty() {
                return Ok(());
            }
            if pids.contains(&me) {
                return Err(CgroupError::Busy { path: first.path.clone(), pids: vec![me] });
            }
            if Instant::now() > deadline {
                return Err(CgroupError::Stuck {
                    path: first.path.clone(),
                    what: format!("processes {pids:?} still there after SIGKILL"),
                });
            }
            for &p in &pids {
                if let Some(pid) = rustix::process::Pid::from_raw(p) {
                    // ESRCH: gone already.
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(20));
        }
    }

    /// Removes the directories this value owns in every hierarchy.
    fn remove_dirs(&mut self, deadline: Instant) -> Result<(), CgroupError> {
        let mut first_err = None;
        for d in self.dirs.iter_mut().chain(self.unified.as_mut()) {
            if let Err(e) = remove_owned(d, deadline) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Removes the directories `d` owns, leaf first. A shared parent that is not empty
/// is left (with its parents); the leaf is retried while exiting tasks still pin it.
fn remove_owned(d: &mut Dir, deadline: Instant) -> Result<(), CgroupError> {
    while let Some(p) = d.owned.pop() {
        let leaf = p == d.path;
        let mut nap = Duration::from_millis(1);
        let res = loop {
            match fs::remove_dir(&p) {
                Err(e)
                    if leaf
                        && e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error())
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(nap);
                    nap = (nap * 2).min(Duration::from_millis(20));
                }
                other => break other,
            }
        };
        match res {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) if !leaf => {
                // In use by another sandbox: so are its parents.
                d.owned.clear();
            }
            Err(source) => {
                return Err(CgroupError::Io { op: "removing cgroup".to_owned(), path: p, source });
            }
        }
    }
    Ok(())
}

impl Cgroup {
    /// This value no longer removes the cgroup when dropped: another process (a
    /// reaper forked with a copy of it) will, with [`Cgroup::destroy_now`].
    pub fn disown(&mut self) {
        self.destroyed = true;
    }

    /// [`Cgroup::destroy`] through a reference (for a forked copy of the value).
    pub fn destroy_now(&mut self) -> Result<(), CgroupError> {
        self.teardown()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if !self.destroyed
            && let Err(e) = self.teardown()
        {
            tracing::warn!("cgroup {}: {e}", self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake v2 tree in a temporary directory: `mount/a/leaf`, every file the
    /// settings touch present and empty, the controllers available at the top.
    fn fake_v2() -> (tempfile::TempDir, Cgroup) {
        let tmp = tempfile::tempdir().unwrap();
        let mount = tmp.path().to_path_buf();
        let leaf = mount.join("a/leaf");
        fs::create_dir_all(&leaf).unwrap();
        for d in [&mount, &mount.join("a")] {
            fs::write(d.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
            fs::write(d.join("cgroup.subtree_control"), "").unwrap();
        }
        for f in ["memory.max", "memory.swap.max", "pids.max", "cpu.max", "cpu.weight"] {
            fs::write(leaf.join(f), "").unwrap();
        }
        let cg = Cgroup {
            id: "fake".to_owned(),
            version: CgroupVersion::V2,
            dirs: vec![Dir {
                controllers: None,
                origin: mount.clone(),
                mount,
                path: leaf,
                owned: Vec::new(),
            }],
            unified: None,
            destroyed: true,
        };
        (tmp, cg)
    }

    #[test]
    fn v2_apply_enables_controllers_and_writes() {
        let (tmp, cg) = fake_v2();
        let mut res = resources_from_flags(Some("32m"), Some(5), Some("0.5")).unwrap();
        if let Some(cpu) = res.cpu_mut() {
            cpu.set_shares(Some(1024));
        }
        let warnings = cg.apply(&res).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let read = |p: &str| fs::read_to_string(tmp.path().join(p)).unwrap();
        // The fake files keep the last write: each ancestor got each controller.
        assert_eq!(read("cgroup.subtree_control"), "+cpu");
        assert_eq!(read("a/cgroup.subtree_control"), "+cpu");
        assert_eq!(read("a/leaf/memory.max"), (32u64 << 20).to_string());
        assert_eq!(read("a/leaf/pids.max"), "5");
        assert_eq!(read("a/leaf/cpu.max"), "50000 100000");
        assert_eq!(read("a/leaf/cpu.weight"), "39");
    }

    #[test]
    fn v2_missing_controller_names_the_field() {
        let (tmp, cg) = fake_v2();
        fs::write(tmp.path().join("a/cgroup.controllers"), "cpu\n").unwrap();
        let res = resources_from_flags(None, Some(5), None).unwrap();
        let e = cg.apply(&res).unwrap_err();
        assert_eq!(e.field(), Some("linux.resources.pids.limit"), "{e}");
        assert!(e.to_string().contains("pids controller is not available"), "{e}");
    }

    #[test]
    fn targets() {
        let t = |h: Option<&str>, id| target(h.map(Path::new), id);
        assert!(matches!(t(None, "x"), Ok(Target::Relative(p)) if p == Path::new("sandfs/x")));
        assert!(matches!(t(Some("/a/b"), "x"), Ok(Target::Absolute(p)) if p == Path::new("a/b")));
        assert!(matches!(t(Some("a/b"), "x"), Ok(Target::Relative(p)) if p == Path::new("a/b")));
        assert!(matches!(t(Some(""), "x"), Ok(Target::Relative(_))));
        for bad in ["/", "a/../b", "system.slice:sandfs:x"] {
            assert!(matches!(t(Some(bad), "x"), Err(CgroupError::Path { .. })), "{bad}");
        }
        for bad in ["", ".", "..", "a/b"] {
            assert!(matches!(t(None, bad), Err(CgroupError::Path { .. })), "{bad}");
        }
    }

    #[test]
    fn located_under_the_mount() {
        let m = mounts::Mount {
            point: PathBuf::from("/sys/fs/cgroup/memory"),
            root: "/".to_owned(),
            controllers: Some(vec!["memory".to_owned()]),
        };
        let rel = Target::Relative(PathBuf::from("sandfs/x"));
        assert_eq!(locate(&m, "/a/b", &rel).unwrap(), Path::new("/sys/fs/cgroup/memory/a/b/sandfs/x"));
        let abs = Target::Absolute(PathBuf::from("top/x"));
        assert_eq!(locate(&m, "/a/b", &abs).unwrap(), Path::new("/sys/fs/cgroup/memory/top/x"));
        let bound = mounts::Mount { root: "/docker/c1".to_owned(), ..m };
        assert_eq!(locate(&bound, "/docker/c1", &rel).unwrap(), Path::new("/sys/fs/cgroup/memory/sandfs/x"));
        assert!(locate(&bound, "/other", &rel).is_err());
        assert!(locate(&bound, "/docker/../x", &rel).is_err());
    }
}
