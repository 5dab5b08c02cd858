//! `sandfs run`: start the gofers, build the container's namespace, serve it over
//! FUSE inside a private mount namespace, run the program in new mount, pid, ipc and
//! uts namespaces pivot_rooted into the view, and exit with its status.
//!
//! Nothing is left on the host: the runtime first enters a private mount namespace
//! (the FUSE mount and its scratch tmpfs live only there and vanish with it), gofers
//! die with the runtime (parent-death signal) and are killed on exit, the container
//! dies with the runtime, and the overlay upper lives in memory.

use crate::host::ProcessHost;
use crate::sandbox::{KMount, Params, msg};
use anyhow::{Context, Result, bail};
use clap::Args;
use sandfs_confine::caps::Sets;
use sandfs_confine::cgroup::Cgroup;
use sandfs_confine::{paths, userns};
use sandfs_container::{RuntimeConfig, Sandbox};
use sandfs_vfs::IdMap;
use sandfs_vfs::{FileType, MountFlags};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

/// `--overlay2` unless given.
pub const DEFAULT_OVERLAY2: &str = "root:memory";
/// `--file-access` unless given.
pub const DEFAULT_FILE_ACCESS: &str = "exclusive";
/// `--file-access-mounts` unless given.
pub const DEFAULT_FILE_ACCESS_MOUNTS: &str = "shared";

/// Flags of `run` that shape the filesystem.
#[derive(Args, Debug, Clone)]
pub struct FsArgs {
    /// An OCI bundle: config.json and its rootfs.
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// The host directory to use as the root's lower layer (default `/`).
    #[arg(long, value_name = "DIR", conflicts_with = "bundle")]
    pub rootfs: Option<PathBuf>,
    /// Bind a host path into the sandbox (repeatable).
    #[arg(long, value_name = "SRC:DST[:ro]")]
    pub bind: Vec<String>,
    /// Mount a tmpfs (repeatable).
    #[arg(long, value_name = "DST[:size=N]")]
    pub tmpfs: Vec<String>,
    /// The global `--overlay2`.
    #[arg(skip = String::from(DEFAULT_OVERLAY2))]
    pub overlay2: String,
    /// The global `--file-access`.
    #[arg(skip = String::from(DEFAULT_FILE_ACCESS))]
    pub file_access: String,
    /// The global `--file-access-mounts`.
    #[arg(skip = String::from(DEFAULT_FILE_ACCESS_MOUNTS))]
    pub file_access_mounts: String,
}

/// Arguments of `sandfs run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub fs: FsArgs,
    /// After exit, list the paths added (A), changed (M) and deleted (D): to stderr,
    /// or to FILE with --diff=FILE.
    #[arg(long, value_name = "FILE", num_args = 0..=1, require_equals = true, default_missing_value = "-")]
    pub diff: Option<PathBuf>,
    /// How --diff writes: text (`X /path` lines) or json.
    #[arg(long, value_enum, default_value = "text")]
    pub diff_format: crate::export::DiffFormat,
    /// After exit, write the upper layer's changes as an OCI image layer tar.
    #[arg(long, value_name = "FILE")]
    pub export_upper: Option<PathBuf>,
    /// Give the program a terminal of its own: a new pty that sandfs relays to and
    /// from this one (the program never holds the caller's terminal).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The program's network: none (its own namespace, loopback only; the default),
    /// host, or pasta (its own namespace with outbound access through pasta). A
    /// bundle's linux.namespaces decide instead; only pasta adds to its own.
    #[arg(long, value_enum)]
    pub network: Option<Network>,
    /// Memory limit of the whole sandbox (program, FUSE server with the memory
    /// upper layer, gofers), e.g. 512m or 2g.
    #[arg(long, value_name = "BYTES")]
    pub memory: Option<String>,
    /// Most processes and threads the sandbox may have.
    #[arg(long, value_name = "N")]
    pub pids_limit: Option<i64>,
    /// CPU time, in CPUs (1.5 = one and a half CPUs' worth per period).
    #[arg(long, value_name = "CPUS")]
    pub cpus: Option<String>,
    /// The program and its arguments (default: the bundle's process, or $SHELL); the
    /// first word that is not a flag starts it (`sandfs run ls -l`), or after `--`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = false)]
    pub cmd: Vec<String>,
}

impl FsArgs {
    /// The runtime configuration these flags give.
    pub fn config(&self) -> Result<RuntimeConfig> {
        let cfg = RuntimeConfig {
            overlay2: self.overlay2.parse()?,
            file_access: self.file_access.parse().map_err(anyhow::Error::msg).context("--file-access")?,
            file_access_mounts: self
                .file_access_mounts
                .parse()
                .map_err(anyhow::Error::msg)
                .context("--file-access-mounts")?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The spec to set up, and the bundle directory relative paths are under.
    pub fn spec(&self) -> Result<(oci_spec::runtime::Spec, PathBuf)> {
        let (mut spec, bundle) = match &self.bundle {
            Some(b) => {
                let b = std::fs::canonicalize(b).with_context(|| format!("--bundle {}", b.display()))?;
                let config = b.join("config.json");
                let text = std::fs::read_to_string(&config)
                    .with_context(|| format!("config.json: {}", config.display()))?;
                let raw: serde_json::Value = serde_json::from_str(&text)
                    .with_context(|| format!("config.json: {}", config.display()))?;
                precheck(&raw)?;
                // serde names the bad value, not where it is: add its JSON path.
                let spec = serde_json::from_str::<oci_spec::runtime::Spec>(&text).map_err(|j| {
                    anyhow::anyhow!("{}: config.json: {j}", json_path_at(&text, j.line(), j.column()))
                })?;
                (spec, b)
            }
            None => {
                let root = self.rootfs.clone().unwrap_or_else(|| PathBuf::from("/"));
                let root =
                    std::fs::canonicalize(&root).with_context(|| format!("--rootfs {}", root.display()))?;
                let json = serde_json::json!({
                    "ociVersion": "1.0.2",
                    "root": {"path": root},
                    "mounts": [
                        {"destination": "/proc", "type": "proc"},
                        {"destination": "/sys", "type": "sysfs", "options": ["ro", "nosuid", "nodev", "noexec"]},
                    ],
                });
                (serde_json::from_value(json).context("default spec")?, PathBuf::from("/"))
            }
        };
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        for b in &self.bind {
            let mut parts = b.splitn(3, ':');
            let (Some(src), Some(dst)) = (parts.next(), parts.next()) else {
                bail!("--bind {b:?}: want SRC:DST[:ro]")
            };
            let mut options = vec!["rbind".to_string()];
            match parts.next() {
                Some("ro") => options.push("ro".into()),
                Some("rw") | None => {}
                Some(o) => bail!("--bind {b:?}: unknown option {o:?}"),
            }
            if !dst.starts_with('/') {
                bail!("--bind {b}: the destination must be an absolute path");
            }
            let src = std::fs::canonicalize(src).with_context(|| format!("--bind {b}: source {src}"))?;
            let m =
                serde_json::json!({"destination": dst, "type": "bind", "source": src, "options": options});
            mounts.push(serde_json::from_value(m)?);
        }
        for t in &self.tmpfs {
            let (dst, opts) = t.split_once(':').unwrap_or((t.as_str(), ""));
            if !dst.starts_with('/') {
                bail!("--tmpfs {t}: the destination must be an absolute path");
            }
            let options: Vec<&str> = opts.split(',').filter(|o| !o.is_empty()).collect();
            let m = serde_json::json!({"destination": dst, "type": "tmpfs", "source": "tmpfs", "options": options});
            mounts.push(serde_json::from_value(m)?);
        }
        spec.set_mounts(Some(mounts));
        Ok((spec, bundle))
    }
}

/// The security fields of a config.json checked on its raw JSON first, so that an
/// unknown capability or seccomp action is an error naming its field (the typed
/// parse would only say which value it did not know).
pub(crate) fn precheck(v: &serde_json::Value) -> Result<()> {
    if let Some(caps) = v.pointer("/process/capabilities").and_then(|c| c.as_object()) {
        for (set, names) in caps {
            let names: Vec<String> = names
                .as_array()
                .map(|a| a.iter().map(|n| n.as_str().unwrap_or("").to_string()).collect())
                .unwrap_or_default();
            sandfs_confine::caps::mask(&names, &format!("process.capabilities.{set}"))
                .map_err(anyhow::Error::msg)?;
        }
    }
    if let Some(sc) = v.pointer("/linux/seccomp") {
        // Checked here, compiled once later (libseccomp takes ~15 ms for an engine's
        // profile).
        sandfs_confine::seccomp::check_json(sc)?;
    }
    refuse_unsupported(v)
}

/// Fields sandfs does not apply are refused, never ignored: a spec that asks for an
/// AppArmor profile, an SELinux label or a hook and silently runs without it would
/// run less confined (or less set up) than asked.
fn refuse_unsupported(v: &serde_json::Value) -> Result<()> {
    let present = |ptr: &str| {
        v.pointer(ptr).is_some_and(|x| match x {
            serde_json::Value::Null => false,
            serde_json::Value::String(s) => !s.is_empty(),
            serde_json::Value::Array(a) => !a.is_empty(),
            serde_json::Value::Object(o) => !o.is_empty(),
            _ => true,
        })
    };
    for (ptr, field, why) in [
        ("/process/apparmorProfile", "process.apparmorProfile", "sandfs applies no AppArmor profile"),
        ("/process/selinuxLabel", "process.selinuxLabel", "sandfs applies no SELinux label"),
        ("/linux/mountLabel", "linux.mountLabel", "sandfs applies no SELinux label"),
        ("/linux/intelRdt", "linux.intelRdt", "not supported"),
        ("/linux/memoryPolicy", "linux.memoryPolicy", "not supported"),
        ("/linux/netDevices", "linux.netDevices", "not supported"),
        ("/process/ioPriority", "process.ioPriority", "not supported"),
        ("/process/scheduler", "process.scheduler", "not supported"),
        ("/process/execCPUAffinity", "process.execCPUAffinity", "not supported"),
    ] {
        if present(ptr) {
            bail!("{field}: {why}; remove it from config.json to run without it");
        }
    }
    if let Some(p) = v.pointer("/linux/personality/domain").and_then(|d| d.as_str())
        && p != "LINUX"
    {
        bail!("linux.personality.domain {p:?}: only LINUX is supported");
    }
    if let Some(p) = v.pointer("/linux/rootfsPropagation").and_then(|d| d.as_str())
        && p.contains("shared")
    {
        bail!("linux.rootfsPropagation {p:?}: shared propagation out of the sandbox is refused");
    }
    Ok(())
}

/// A bundle's `linux.devices`: each must be a device node of the host at the same
/// path with the same type and numbers (a user namespace cannot make device nodes;
/// the host's is bound into the container's /dev, as rootless runtimes do).
fn devices(spec: &oci_spec::runtime::Spec) -> Result<Vec<PathBuf>> {
    use oci_spec::runtime::LinuxDeviceType as D;
    let list = spec.linux().as_ref().and_then(|l| l.devices().clone()).unwrap_or_default();
    let mut out = Vec::new();
    for (i, d) in list.iter().enumerate() {
        let field = format!("linux.devices[{i}]");
        let path = d.path();
        if !path.starts_with("/dev/") || path.components().any(|c| c == std::path::Component::ParentDir) {
            bail!("{field}: {} is not a path under /dev", path.display());
        }
        let st = rustix::fs::stat(path)
            .with_context(|| format!("{field}: {} is not a device of this host", path.display()))?;
        let kind = match st.st_mode & 0o170000 {
            0o020000 => "c",
            0o060000 => "b",
            _ => bail!("{field}: {} on the host is not a device node", path.display()),
        };
        let want = match d.typ() {
            D::C | D::U => "c",
            D::B => "b",
            other => bail!("{field}: type {other:?} cannot be bound from the host"),
        };
        let (maj, min) = (rustix::fs::major(st.st_rdev) as i64, rustix::fs::minor(st.st_rdev) as i64);
        if kind != want || maj != d.major() || min != d.minor() {
            bail!(
                "{field}: {} is {kind} {maj}:{min} on the host, the spec wants {want} {}:{}",
                path.display(),
                d.major(),
                d.minor()
            );
        }
        out.push(path.clone());
    }
    Ok(out)
}

/// The JSON path (`process.capabilities.bounding[2]`) of the value being read at
/// `line`:`column` (serde_json's 1-based position of an error) in `text`.
fn json_path_at(text: &str, line: usize, column: usize) -> String {
    enum Frame {
        Obj(Option<String>, bool),
        Arr(usize),
    }
    let start: usize = text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
    let end = (start + column).min(text.len());
    let b = text.as_bytes();
    let mut stack = Vec::new();
    let mut i = 0;
    while i < end {
        match b[i] {
            b'{' => stack.push(Frame::Obj(None, true)),
            b'[' => stack.push(Frame::Arr(0)),
            b'}' | b']' => drop(stack.pop()),
            b',' => match stack.last_mut() {
                Some(Frame::Obj(key, want_key)) => (*key, *want_key) = (None, true),
                Some(Frame::Arr(n)) => *n += 1,
                None => {}
            },
            b':' => {
                if let Some(Frame::Obj(_, want_key)) = stack.last_mut() {
                    *want_key = false;
                }
            }
            b'"' => {
                let s = i + 1;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                if let Some(Frame::Obj(key, true)) = stack.last_mut() {
                    *key = text.get(s..i.min(b.len())).map(String::from);
                }
            }
            _ => {}
        }
        i += 1;
    }
    let mut path = String::new();
    for f in &stack {
        match f {
            Frame::Obj(Some(k), _) if path.is_empty() => path.push_str(k),
            Frame::Obj(Some(k), _) => path.push_str(&format!(".{k}")),
            Frame::Obj(None, _) => {}
            Frame::Arr(n) => path.push_str(&format!("[{n}]")),
        }
    }
    path
}

/// /dev belongs to the sandbox process (a minimal one, with real device nodes):
/// the spec's own /dev mounts are replaced by it.
pub fn split_dev(spec: &mut oci_spec::runtime::Spec) {
    let keep: Vec<_> = spec
        .mounts()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| !m.destination().starts_with("/dev"))
        .collect();
    spec.set_mounts(Some(keep));
}

fn kmount(k: &sandfs_container::KernelMount) -> KMount {
    KMount {
        destination: k.destination.clone(),
        fstype: k.fstype.clone(),
        data: k.data.clone(),
        ro: k.flags.contains(MountFlags::RDONLY),
        nosuid: k.flags.contains(MountFlags::NOSUID),
        nodev: k.flags.contains(MountFlags::NODEV),
        noexec: k.flags.contains(MountFlags::NOEXEC),
    }
}

/// The process to run and its confinement: from the bundle, or the caller's
/// command (same cwd and environment) as container root with the OCI defaults.
fn process(
    spec: &oci_spec::runtime::Spec,
    from_bundle: bool,
    cmd: &[String],
    network: Network,
) -> Result<Params> {
    let mut p = Params {
        root: PathBuf::from("/tmp/view"),
        own_mount_point: false,
        fuse_channel: -1,
        userns_sync: (-1, -1),
        mounts: Vec::new(),
        cwd: std::env::current_dir().unwrap_or_else(|_| "/".into()),
        cwd_fallback: !from_bundle,
        env: std::env::vars().map(|(k, v)| format!("{k}={v}")).collect(),
        args: cmd.to_vec(),
        uid: 0,
        gid: 0,
        groups: Vec::new(),
        hostname: None,
        domainname: None,
        rlimits: Vec::new(),
        caps: Sets::default_container(),
        no_new_privs: true,
        umask: None,
        oom_score_adj: None,
        devices: Vec::new(),
        masked: paths::DEFAULT_MASKED.iter().map(|s| s.to_string()).collect(),
        readonly: paths::DEFAULT_READONLY.iter().map(|s| s.to_string()).collect(),
        sysctl: Vec::new(),
        join: Vec::new(),
        new_ns: ["mount", "pid", "ipc", "uts", "cgroup"]
            .into_iter()
            .chain((network != Network::Host).then_some("network"))
            .map(String::from)
            .collect(),
        time_offsets: Vec::new(),
        tty: false,
        attached: false,
        start_hooks: Vec::new(),
        console_size: None,
        // The default profile (a bundle gets its own, or none, as with runc).
        seccomp: if from_bundle { None } else { Some(sandfs_confine::seccomp::default_filter()?.filter) },
    };
    if from_bundle {
        if spec.root().is_none() {
            bail!("root: missing (the bundle names no root filesystem)");
        }
        if let Some(proc_) = spec.process() {
            p.cwd = proc_.cwd().clone();
            if !p.cwd.is_absolute() {
                bail!("process.cwd {:?}: must be an absolute path", p.cwd.display().to_string());
            }
            p.env = proc_.env().clone().unwrap_or_default();
            if p.args.is_empty() {
                p.args = proc_.args().clone().unwrap_or_default();
            }
            p.uid = proc_.user().uid();
            p.gid = proc_.user().gid();
            p.groups = proc_.user().additional_gids().clone().unwrap_or_default();
            p.umask = proc_.user().umask();
            for r in proc_.rlimits().clone().unwrap_or_default() {
                p.rlimits.push((r.typ().to_string(), r.soft(), r.hard()));
            }
            p.caps = Sets::from_oci(proc_.capabilities().as_ref()).map_err(anyhow::Error::msg)?;
            p.no_new_privs = proc_.no_new_privileges().unwrap_or(false);
            p.oom_score_adj = proc_.oom_score_adj();
        } else {
            p.caps = Sets::default();
            p.no_new_privs = false;
        }
        p.hostname = spec.hostname().clone();
        p.domainname = spec.domainname().clone();
        p.masked = Vec::new();
        p.readonly = Vec::new();
        if let Some(linux) = spec.linux() {
            namespaces(&mut p, linux)?;
            p.masked = linux.masked_paths().clone().unwrap_or_default();
            p.readonly = linux.readonly_paths().clone().unwrap_or_default();
            if let Some(sc) = linux.seccomp() {
                let json = serde_json::to_value(sc).context("linux.seccomp")?;
                let compiled = sandfs_confine::seccomp::compile_json(&json)?;
                for w in &compiled.warnings {
                    tracing::debug!("{w}");
                }
                p.seccomp = Some(compiled.filter);
            }
            for (k, v) in linux.sysctl().clone().unwrap_or_default() {
                let own: Vec<&str> =
                    p.new_ns.iter().map(String::as_str).chain(p.join.iter().map(|j| j.0.as_str())).collect();
                sandfs_confine::sysctl::check(&k, &own).map_err(anyhow::Error::msg)?;
                p.sysctl.push((k, v));
            }
        }
    }
    if p.args.is_empty() {
        if from_bundle {
            bail!("process.args: empty (the bundle names no program to run)");
        }
        p.args = vec![std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into())];
    }
    Ok(p)
}

/// `net.ipv4.ping_group_range` names groups as the sandbox's user namespace sees
/// them, and the kernel refuses a range reaching past its gid map. Engines write
/// "all groups" as `0 2147483647` (docker; runc has no user namespace): the range is
/// cut to the groups the namespace has, which is all of them there.
fn clamp_ping_range(sysctl: &mut [(String, String)], map: &IdMap) {
    let top = map.gids.iter().map(|r| r.inside.saturating_add(r.count.saturating_sub(1))).max().unwrap_or(0);
    for (k, v) in sysctl.iter_mut() {
        if k != "net.ipv4.ping_group_range" {
            continue;
        }
        let nums: Vec<u64> = v.split_whitespace().filter_map(|n| n.parse().ok()).collect();
        if let [lo, hi] = nums[..]
            && hi > top as u64
        {
            *v = format!("{} {}", lo.min(top as u64), top);
        }
    }
}

/// The parameters of a process exec'd into a running container: its spec's
/// process (identity, capabilities, rlimits, no_new_privs) and seccomp profile,
/// `cmd` replacing the args when given.
pub fn exec_params(spec: &oci_spec::runtime::Spec, cmd: &[String]) -> Result<Params> {
    process(spec, true, cmd, Network::None)
}

/// The bundle's `linux.namespaces`: new ones, joined ones (by path), the network
/// shared with the host when none is listed (as runc). A user namespace is made
/// always, and mount and pid namespaces too: sandfs's view and its init need them.
fn namespaces(p: &mut Params, linux: &oci_spec::runtime::Linux) -> Result<()> {
    use oci_spec::runtime::LinuxNamespaceType as T;
    let list = linux.namespaces().clone().unwrap_or_default();
    p.new_ns = vec!["mount".into(), "pid".into()];
    for (i, n) in list.iter().enumerate() {
        let name = match n.typ() {
            T::Mount => "mount",
            T::Pid => "pid",
            T::Ipc => "ipc",
            T::Uts => "uts",
            T::Cgroup => "cgroup",
            T::Network => "network",
            T::Time => "time",
            T::User => "user",
        };
        match (n.path(), name) {
            (None, "user") => {}
            (None, _) => {
                if !p.new_ns.iter().any(|t| t == name) {
                    p.new_ns.push(name.to_string());
                }
            }
            (Some(path), "user" | "mount") => bail!(
                "linux.namespaces[{i}]: joining an existing {name} namespace ({}) is not supported: sandfs makes its own",
                path.display()
            ),
            (Some(path), _) => {
                if name == "pid" {
                    p.new_ns.retain(|t| t != "pid");
                }
                p.join.push((name.to_string(), path.clone()));
            }
        }
    }
    if let Some(offsets) = linux.time_offsets() {
        if !p.new_ns.iter().any(|t| t == "time") {
            bail!("linux.timeOffsets: given without a new time namespace in linux.namespaces");
        }
        for (clock, o) in offsets {
            p.time_offsets.push((clock.clone(), o.secs().unwrap_or(0), o.nanosecs().unwrap_or(0)));
        }
    }
    Ok(())
}

/// The id map of a bundle that gives `linux.uidMappings`/`gidMappings`; host id 0
/// is refused: root in the sandbox is never root on the host.
fn bundle_map(spec: &oci_spec::runtime::Spec) -> Result<Option<IdMap>> {
    let Some(linux) = spec.linux() else { return Ok(None) };
    let (Some(u), Some(g)) = (linux.uid_mappings(), linux.gid_mappings()) else {
        if linux.uid_mappings().is_some() || linux.gid_mappings().is_some() {
            bail!("linux.uidMappings and linux.gidMappings: give both or neither");
        }
        return Ok(None);
    };
    let conv = |v: &Vec<oci_spec::runtime::LinuxIdMapping>,
                field: &str|
     -> Result<Vec<sandfs_vfs::IdRange>> {
        v.iter()
            .enumerate()
            .map(|(i, m)| {
                let r =
                    sandfs_vfs::IdRange { inside: m.container_id(), outside: m.host_id(), count: m.size() };
                if r.count == 0 {
                    bail!("{field}[{i}]: size 0");
                }
                if r.outside == 0 {
                    bail!("{field}[{i}]: maps onto host id 0; root in the sandbox is never root on the host");
                }
                Ok(r)
            })
            .collect()
    };
    Ok(Some(IdMap { uids: conv(u, "linux.uidMappings")?, gids: conv(g, "linux.gidMappings")? }))
}

/// Which network the program gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Network {
    /// Its own network namespace with only loopback (the default).
    None,
    /// The host's network namespace.
    Host,
    /// Its own namespace with outbound access through pasta (package passt).
    Pasta,
}

/// The sandbox process, started inside a new user namespace whose maps this
/// process writes, and the runtime's end of its FUSE channel.
struct Started {
    child: std::process::Child,
    fuse: sandfs_gofer::transport::Conn,
    /// pasta, attached to the sandbox's network namespace (`--network pasta`).
    _pasta: Option<sandfs_confine::pasta::Pasta>,
}

/// Start `sandfs __sandbox`, which makes a new user namespace (container 0 =
/// `map`'s first id, written here when it says it is ready), then new mount, pid,
/// ipc, uts, cgroup and, unless `own_network` is false, network namespaces owned by
/// it.
fn start_sandbox(
    params: &mut Params,
    map: &IdMap,
    how: &userns::Writer,
    pasta: bool,
    cgroup: Option<&Cgroup>,
    stdio: Option<[std::os::fd::OwnedFd; 3]>,
) -> Result<Started> {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let (ours, theirs) = sandfs_gofer::transport::Conn::pair().context("socketpair")?;
    let theirs = theirs.into_fd();
    params.fuse_channel = theirs.as_raw_fd();
    let (mut ready_r, ready_w) = std::io::pipe().context("pipe")?;
    let (go_r, mut go_w) = std::io::pipe().context("pipe")?;
    params.userns_sync = (ready_w.as_raw_fd(), go_r.as_raw_fd());
    let json = serde_json::to_vec(&params)?;
    let (params_r, mut params_w) = std::io::pipe().context("pipe")?;
    // By /proc/self/exe: the binary's own path may not be reachable by name.
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg("__sandbox").arg(params_r.as_raw_fd().to_string());
    let inherit = [theirs.as_raw_fd(), ready_w.as_raw_fd(), go_r.as_raw_fd(), params_r.as_raw_fd()];
    // SAFETY: the closure runs in the child between fork and exec and only clears
    // close-on-exec on four descriptors the parent keeps open until spawn returns
    // (fcntl is async-signal-safe).
    unsafe {
        cmd.pre_exec(move || {
            for raw in inherit {
                let fd = std::os::fd::BorrowedFd::borrow_raw(raw);
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
            }
            Ok(())
        });
    }
    if let Some([i, o, e]) = stdio {
        cmd.stdin(i).stdout(o).stderr(e);
    }
    let mut child = cmd.spawn().context("start the sandbox process")?;
    drop(params_r);
    // Through a pipe, not the command line: the environment may hold secrets.
    let sent = params_w.write_all(&json);
    drop(params_w);
    if let Err(e) = sent {
        let _ = child.kill();
        let _ = child.wait();
        return Err(anyhow::Error::from(e).context("hand the sandbox its parameters"));
    }
    drop(ready_w);
    drop(go_r);
    drop(theirs);
    let mut b = [0u8; 1];
    let mut attached = None;
    let mapped = (|| -> Result<()> {
        if ready_r.read(&mut b).context("wait for the user namespace")? != 1 {
            bail!(
                "the sandbox process could not make a user namespace (are user namespaces allowed? see `sandfs info`)"
            );
        }
        // /dev/fuse is open: the cgroup's device rules may apply from here, to it
        // and the container it forks.
        if let Some(cg) = cgroup {
            cg.add_pid(child.id() as i32).context("move the sandbox process into its cgroup")?;
        }
        if let Some(adj) = params.oom_score_adj {
            // Written by the runtime, with its privileges (lowering it needs them).
            std::fs::write(format!("/proc/{}/oom_score_adj", child.id()), adj.to_string())
                .with_context(|| format!("process.oomScoreAdj {adj}"))?;
        }
        userns::write_maps(child.id() as i32, map, how).map_err(anyhow::Error::msg)?;
        go_w.write_all(&[1]).context("release the sandbox process")?;
        if ready_r.read(&mut b).context("wait for the sandbox's namespaces")? != 1 {
            bail!("the sandbox process could not make its namespaces");
        }
        if pasta {
            let pid = child.id() as i32;
            let (net, user) = (format!("/proc/{pid}/ns/net"), format!("/proc/{pid}/ns/user"));
            let p = sandfs_confine::pasta::attach(
                pid,
                std::path::Path::new(&net),
                Some(std::path::Path::new(&user)),
            )
            .map_err(anyhow::Error::msg)?;
            attached = Some(p);
        }
        go_w.write_all(&[1]).context("release the sandbox process")?;
        Ok(())
    })();
    if let Err(e) = mapped {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    Ok(Started { child, fuse: ours, _pasta: attached })
}

/// Make this process (the FUSE server, which holds the memory upper layer) the
/// OOM killer's last choice in the sandbox's cgroup, now that the sandbox process
/// has started with the caller's setting: a program that runs the sandbox out of
/// memory is the one killed (exit 137), not the server under every file it has.
/// Needs CAP_SYS_RESOURCE (root); rootless keeps the setting it has.
fn protect_from_oom() {
    if rustix::process::geteuid().is_root()
        && let Err(e) = std::fs::write("/proc/self/oom_score_adj", "-999")
    {
        tracing::debug!("oom_score_adj of the runtime: {e}");
    }
}

/// Mark every descriptor this process inherited close-on-exec: the gofers, the
/// sandbox and the program get only what is passed to them by name.
pub fn seal_inherited() {
    let _ = sandfs_confine::fds::cloexec_from(3);
}

/// Everything a container needs before its sandbox process starts: the spec, the
/// composed filesystem (gofers running), the sandbox's parameters and id map.
pub struct Prepared {
    /// The container's spec (its /dev mounts taken out: the sandbox makes /dev).
    pub spec: oci_spec::runtime::Spec,
    /// The bundle directory (`/` without one).
    pub bundle: PathBuf,
    /// The runtime flags.
    pub cfg: RuntimeConfig,
    /// What the sandbox process is told.
    pub params: Params,
    /// The user namespace's id map.
    pub map: IdMap,
    /// Who writes the map.
    pub how: userns::Writer,
    /// The gofers.
    pub sb: Sandbox<ProcessHost>,
    /// The composed mount namespace.
    pub container: sandfs_container::ContainerFs,
    /// pasta is to be attached to the sandbox's network namespace.
    pub pasta: bool,
    /// The container's stdin, stdout and stderr when they are not this process's
    /// (a monitor gives its own up, so that gofers and it never hold an engine's
    /// pipes).
    pub stdio: Option<[std::os::fd::OwnedFd; 3]>,
}

/// What a run asks for beyond the spec.
pub struct Ask<'a> {
    /// The command overriding the spec's `process.args` (or the whole process
    /// without a bundle).
    pub cmd: &'a [String],
    /// `--network`.
    pub network: Option<Network>,
    /// `-t`.
    pub tty: bool,
    /// `sandfs run` (see [`Params::attached`]).
    pub attached: bool,
}

/// Composes the container's filesystem (starting its gofers) and its sandbox
/// parameters. The caller has joined the container's cgroup, if any, first.
pub fn prepare(
    fs: &FsArgs,
    cfg: RuntimeConfig,
    spec: oci_spec::runtime::Spec,
    bundle: PathBuf,
    ask: &Ask,
) -> Result<Prepared> {
    let annotations: BTreeMap<String, String> =
        spec.annotations().clone().unwrap_or_default().into_iter().collect();
    let (mut map, how) = userns::for_caller();
    if let Some(m) = bundle_map(&spec)? {
        if how != userns::Writer::Direct || !rustix::process::geteuid().is_root() {
            bail!("linux.uidMappings: only a root-started sandfs can apply a bundle's own id maps");
        }
        map = m;
    }
    let host = ProcessHost::new(Some(map.clone()));
    let mut sb = Sandbox::new(host, cfg.clone(), &annotations)?;
    let container = sb.container("sandfs", &spec, &bundle)?;
    for w in sb.warnings.iter().chain(&container.warnings) {
        crate::warn(w);
    }
    container.ns.make_mount_point(b"/dev", FileType::Directory).context("make /dev in the view")?;
    let from_bundle = fs.bundle.is_some();
    if let Some(n @ (Network::None | Network::Host)) = ask.network
        && from_bundle
    {
        bail!(
            "--network {}: a bundle's linux.namespaces decide its network (a network namespace \
             listed: its own; none: the host's); only --network pasta adds to a bundle's own",
            clap::ValueEnum::to_possible_value(&n).map(|v| v.get_name().to_string()).unwrap_or_default()
        );
    }
    let network = ask.network.unwrap_or(Network::None);
    let mut params = process(&spec, from_bundle, ask.cmd, network)?;
    params.attached = ask.attached;
    clamp_ping_range(&mut params.sysctl, &map);
    if !params.rlimits.iter().any(|r| r.0 == "RLIMIT_NOFILE") {
        let (soft, hard) = crate::limits::original_nofile();
        params.rlimits.push(("RLIMIT_NOFILE".into(), soft, hard));
    }
    params.mounts.push(KMount {
        destination: "/dev".into(),
        fstype: "sandfs-dev".into(),
        data: Vec::new(),
        ro: false,
        nosuid: true,
        nodev: false,
        noexec: true,
    });
    params.mounts.extend(container.kernel.iter().map(kmount));
    params.devices = devices(&spec)?;
    params.tty =
        ask.tty || (from_bundle && spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false));
    if params.tty
        && let Some(size) = spec.process().as_ref().and_then(|p| p.console_size())
    {
        params.console_size = Some((size.height() as u16, size.width() as u16));
    }
    params.start_hooks = crate::hooks::Point::StartContainer.of(&spec);
    let pasta = network == Network::Pasta;
    if pasta && !params.own_network() {
        bail!("--network pasta: the bundle lists no network namespace of its own (it shares the host's)");
    }
    Ok(Prepared { spec, bundle, cfg, params, map, how, sb, container, pasta, stdio: None })
}

/// A container whose pid 1 is set up and waits for [`Launched::start`].
pub struct Launched {
    /// The sandbox process (attached: it exits with the program's status).
    pub sandbox: std::process::Child,
    /// pid 1 of the container, in this process's pid namespace.
    pub pid1: i32,
    chan: sandfs_gofer::transport::Conn,
    /// The FUSE server of the view.
    pub fuse: sandfs_fuse::Background,
    /// The master of the program's terminal, when it has one.
    pub master: Option<std::os::fd::OwnedFd>,
    _pasta: Option<sandfs_confine::pasta::Pasta>,
}

/// A launch that failed: why, and the sandbox's exit status if it ended.
pub struct Failed {
    /// What went wrong.
    pub error: anyhow::Error,
    /// The status to exit with (the sandbox's: 127 for a program not found).
    pub status: Option<i32>,
}

impl<E: Into<anyhow::Error>> From<E> for Failed {
    fn from(e: E) -> Failed {
        Failed { error: e.into(), status: None }
    }
}

/// The next message from the sandbox, which must be `want`: its payload and
/// descriptors. An error message, or the channel closing, ends the launch.
fn expect_msg(
    chan: &sandfs_gofer::transport::Conn,
    want: u8,
    child: &mut std::process::Child,
) -> Result<(Vec<u8>, Vec<std::os::fd::OwnedFd>), Failed> {
    let (mut buf, mut fds) = (Vec::new(), Vec::new());
    let got = chan.recv(&mut buf, &mut fds);
    let why = match (got, buf.split_first()) {
        (Ok(()), Some((&t, rest))) if t == want => return Ok((rest.to_vec(), fds)),
        (Ok(()), Some((&msg::ERROR, rest))) => String::from_utf8_lossy(rest).into_owned(),
        (Ok(()), _) => "unexpected message from the sandbox".to_string(),
        (Err(sandfs_gofer::transport::RecvError::Closed), _) => String::new(),
        (Err(e), _) => format!("the sandbox channel: {e:?}"),
    };
    // The sandbox ends after an error (attached: with pid 1's status).
    let status = child.wait().ok();
    let code = status.and_then(|s| {
        s.code().or_else(|| std::os::unix::process::ExitStatusExt::signal(&s).map(|n| 128 + n))
    });
    let why = if why.is_empty() {
        format!("the sandbox ended during setup ({})", status.map_or("?".into(), |s| s.to_string()))
    } else {
        why
    };
    Err(Failed { error: anyhow::anyhow!(why), status: code })
}

/// Starts the sandbox process and serves its view until pid 1 is set up and waits
/// for `start`. The createRuntime (and prestart) hooks run here, in this process's
/// namespaces, and the createContainer hooks in the container's, both before
/// pivot_root; `state` gives their stdin for pid 1's pid.
pub fn launch(
    prep: &mut Prepared,
    cgroup: Option<&Cgroup>,
    state: &dyn Fn(i32) -> Vec<u8>,
) -> Result<Launched, Failed> {
    use crate::hooks::{Point, run_all};
    let started =
        start_sandbox(&mut prep.params, &prep.map, &prep.how, prep.pasta, cgroup, prep.stdio.take())?;
    if let Some(cg) = cgroup {
        // The gofers, born in the cgroup, into its devices hierarchy too.
        for pid in prep.sb.host().pids() {
            cg.add_pid(pid).context("move the gofers into the sandbox's cgroup")?;
        }
    }
    protect_from_oom();
    let mut child = started.child;
    let chan = started.fuse;
    let (_, mut fds) = expect_msg(&chan, msg::FUSE, &mut child)?;
    let fuse_fd = fds.pop().ok_or_else(|| anyhow::anyhow!("the sandbox sent no FUSE descriptor"))?;
    let opts = sandfs_fuse::Options {
        cache: if prep.cfg.file_access == sandfs_gofer::client::FileAccess::Shared {
            sandfs_fuse::CachePolicy::Shared
        } else {
            sandfs_fuse::CachePolicy::Exclusive
        },
        ids: Some(prep.map.clone()),
        // Handing the kernel backing files needs CAP_SYS_ADMIN: not rootless.
        passthrough: rustix::process::geteuid().is_root(),
        ..sandfs_fuse::Options::default()
    };
    let server = sandfs_fuse::Server::from_fd(prep.container.ns.clone(), fuse_fd, &prep.params.root, &opts)
        .context("serve the FUSE view")?;
    let fuse = server.spawn().context("serve the FUSE view")?;
    // The view, as the sandbox's mount namespace has it.
    let view = std::path::Path::new(&format!("/proc/{}/root", child.id()))
        .join(prep.params.root.strip_prefix("/").unwrap_or(&prep.params.root));
    if let Err(e) = sandfs_fuse::raise_readahead(&view) {
        tracing::debug!("the view's readahead stays the kernel's: {e}");
    }
    let (pid, _) = expect_msg(&chan, msg::PID, &mut child)?;
    let pid1 = pid.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i32).unwrap_or(0);
    expect_msg(&chan, msg::MOUNTED, &mut child)?;
    let early: Vec<_> =
        Point::Prestart.of(&prep.spec).into_iter().chain(Point::CreateRuntime.of(&prep.spec)).collect();
    let in_container = Point::CreateContainer.of(&prep.spec);
    if !early.is_empty() || !in_container.is_empty() {
        let st = state(pid1);
        let hooks = (|| -> Result<()> {
            run_all(Point::CreateRuntime, &early, &st)?;
            if !in_container.is_empty() {
                crate::hooks::run_in_container(pid1, &in_container, &st)?;
            }
            Ok(())
        })();
        if let Err(e) = hooks {
            let _ = child.kill();
            let _ = rustix::process::Pid::from_raw(pid1)
                .map(|p| rustix::process::kill_process(p, rustix::process::Signal::KILL));
            let _ = child.wait();
            return Err(e.into());
        }
    }
    chan.send(&[msg::PIVOT], &[]).context("tell the sandbox")?;
    let master = if prep.params.tty {
        let (_, mut fds) = expect_msg(&chan, msg::TERMINAL, &mut child)?;
        Some(fds.pop().ok_or_else(|| anyhow::anyhow!("the sandbox sent no terminal"))?)
    } else {
        None
    };
    expect_msg(&chan, msg::CREATED, &mut child)?;
    if !prep.params.attached {
        // It has left pid 1 to the caller's reaper and ends.
        let _ = child.wait();
    }
    Ok(Launched { sandbox: child, pid1, chan, fuse, master, _pasta: started._pasta })
}

impl Launched {
    /// Lets pid 1 run the startContainer hooks (with `state` on their stdin) and
    /// exec the program; returns once it has (the channel closes at exec), or why
    /// not.
    pub fn start(&self, state: &[u8]) -> Result<()> {
        let mut m = vec![msg::START];
        m.extend_from_slice(state);
        self.chan.send(&m, &[]).context("tell the container to start")?;
        let (mut buf, mut fds) = (Vec::new(), Vec::new());
        match self.chan.recv(&mut buf, &mut fds) {
            Err(sandfs_gofer::transport::RecvError::Closed) => Ok(()),
            Ok(()) => match buf.split_first() {
                Some((&msg::ERROR, why)) => bail!("{}", String::from_utf8_lossy(why)),
                _ => bail!("unexpected message from the container"),
            },
            Err(e) => bail!("the container channel: {e:?}"),
        }
    }
}

/// The OCI state JSON of a container, as hooks read it on stdin.
pub fn hook_state(
    id: &str,
    status: &str,
    pid: i32,
    bundle: &std::path::Path,
    spec: &oci_spec::runtime::Spec,
) -> Vec<u8> {
    let annotations = spec.annotations().clone().unwrap_or_default().into_iter().collect();
    serde_json::to_vec(&crate::state::oci_state(id, status, pid, bundle, &annotations)).unwrap_or_default()
}

/// Run `sandfs run`; returns the exit status to exit with.
pub fn run(args: RunArgs) -> Result<i32> {
    seal_inherited();
    // Signals to forward are blocked before any thread exists; one thread waits.
    let sigs = crate::sandbox::take_signals(&[])?;
    crate::limits::raise_nofile();
    // Opened now: the path is the caller's, and a bad one should fail before the run.
    let diff_out: Option<Option<std::fs::File>> = match &args.diff {
        Some(p) if p.as_os_str() == "-" => Some(None),
        Some(p) => Some(Some(std::fs::File::create(p).with_context(|| format!("--diff={}", p.display()))?)),
        None => None,
    };
    let export = match &args.export_upper {
        Some(p) => Some(std::fs::File::create(p).with_context(|| format!("--export-upper {}", p.display()))?),
        None => None,
    };
    if args.network == Some(Network::Pasta) && sandfs_confine::pasta::available().is_none() {
        bail!("--network pasta: pasta is not installed (install the `passt` package)");
    }
    let cfg = args.fs.config()?;
    let (mut spec, bundle) = args.fs.spec()?;
    split_dev(&mut spec);
    let limits = Limits { memory: args.memory.clone(), pids: args.pids_limit, cpus: args.cpus.clone() };
    let id = format!("run-{}", std::process::id());
    let cgroup = sandbox_cgroup(&limits, &spec, &id, true)?;
    let ask = Ask { cmd: &args.cmd, network: args.network, tty: args.tty, attached: true };
    let mut prep = prepare(&args.fs, cfg, spec, bundle, &ask)?;
    // Mounts that write to the host have no upper layer for --diff to walk: their
    // gofer clients journal the paths changed through them, from before the program
    // starts.
    let journals: Vec<(PathBuf, std::sync::Arc<sandfs_gofer::journal::Journal>)> = match args.diff {
        Some(_) => prep
            .container
            .host_writes
            .iter()
            .filter_map(|(dest, fs)| Some((dest.clone(), sandfs_gofer::client::GoferFs::journal_of(&**fs)?)))
            .collect(),
        None => Vec::new(),
    };
    let mut raw = if prep.params.tty { Some(crate::tty::Raw::enter()?) } else { None };
    let (spec_bundle, spec_copy) = (prep.bundle.clone(), prep.spec.clone());
    let state = |pid: i32, status: &str| hook_state(&id, status, pid, &spec_bundle, &spec_copy);
    let launched = match launch(&mut prep, cgroup.as_ref(), &|pid| state(pid, "created")) {
        Ok(l) => l,
        Err(f) => {
            drop(raw);
            eprintln!("sandfs: {:#}", f.error);
            return Ok(f.status.unwrap_or(125));
        }
    };
    let mut launched = launched;
    // With -t the sandbox sent the master of the program's terminal.
    let (relay, output) = match launched.master.take() {
        Some(master) => {
            let relay = crate::tty::Relay::new(master, raw.take().context("the terminal")?);
            let out = relay.start()?;
            (Some(relay), Some(out))
        }
        None => (None, None),
    };
    let pid = nix::unistd::Pid::from_raw(launched.sandbox.id() as i32);
    let resize = relay.as_ref().map(|r| r.resizer()).transpose()?;
    std::thread::spawn(move || {
        while let Ok(sig) = sigs.wait() {
            match (&resize, sig) {
                // With -t the program's terminal follows the caller's (the kernel
                // then signals the program's foreground group itself).
                (Some(r), nix::sys::signal::Signal::SIGWINCH) => crate::tty::resize(r),
                _ => {
                    let _ = nix::sys::signal::kill(pid, sig);
                }
            }
        }
    });
    if let Err(e) = launched.start(&state(launched.pid1, "created")) {
        eprintln!("sandfs: {e:#}");
    } else {
        for w in crate::hooks::run_warn(
            crate::hooks::Point::Poststart,
            &crate::hooks::Point::Poststart.of(&prep.spec),
            &state(launched.pid1, "running"),
        ) {
            crate::warn(&w);
        }
    }
    let status = launched.sandbox.wait().context("wait for the sandbox")?;
    if let (Some(r), Some(out)) = (relay, output) {
        r.finish(out);
    }
    let mut code = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => 1,
    };
    if let Some((pid, st)) = prep.sb.host().any_exited() {
        eprintln!(
            "sandfs: error: the gofer (pid {pid}) died during the run ({st}); files it served gave EIO"
        );
        if code == 0 {
            code = 1;
        }
    }
    if args.diff.is_some() || export.is_some() {
        let ov = prep.container.root_overlay.as_deref();
        if ov.is_none() {
            eprintln!("sandfs: --diff/--export-upper need an overlaid root (--overlay2 root:... or all:...)");
        }
        if ov.is_some() || !journals.is_empty() {
            let fmt = args.diff_format;
            match diff_out {
                Some(Some(mut f)) => crate::export::write_diff_with(ov, &journals, &mut f, fmt)?,
                Some(None) => {
                    crate::export::write_diff_with(ov, &journals, &mut std::io::stderr().lock(), fmt)?
                }
                None => {}
            }
        }
        if let (Some(ov), Some(file)) = (ov, export) {
            crate::export::write_layer(ov, file)?;
        }
    }
    let poststop = crate::hooks::Point::Poststop.of(&prep.spec);
    let pid1 = launched.pid1;
    let _ = launched.fuse.unmount();
    for w in crate::hooks::run_warn(crate::hooks::Point::Poststop, &poststop, &state(pid1, "stopped")) {
        crate::warn(&w);
    }
    drop(prep);
    if let Some(n) = cgroup.as_ref().and_then(|cg| cg.memory_events_oom()).filter(|&n| n > 0) {
        eprintln!("sandfs: the sandbox hit its memory limit ({n} times)");
    }
    Ok(code)
}

/// Fork the reaper of `cg` (this process must still be single-threaded and not yet
/// in `cg`, which it disowns). The reaper, outside the cgroup, waits for this
/// process to end (the end of a pipe whose other end only this process holds,
/// closed by the kernel at its exit, crash or SIGKILL included), then destroys the
/// cgroup (whatever is left in it is killed). Moving this process back out first
/// would cost a second cgroup migration (about 10 ms: an RCU grace period on cgroup
/// v1) on every run.
fn start_reaper(cg: &mut Cgroup) -> Result<()> {
    let (mut r, w) = std::io::pipe().context("pipe for the cgroup reaper")?;
    // SAFETY: this process is single-threaded here (no gofer, server or signal
    // thread exists yet), so the child may run ordinary code after fork.
    match unsafe { nix::unistd::fork() }.context("fork the cgroup reaper")? {
        nix::unistd::ForkResult::Child => {
            drop(w);
            // Its own session: a ^C to the caller's process group must not take it
            // before the cleanup; it ignores the usual stop signals too.
            let _ = rustix::process::setsid();
            for s in [
                nix::sys::signal::Signal::SIGINT,
                nix::sys::signal::Signal::SIGTERM,
                nix::sys::signal::Signal::SIGHUP,
            ] {
                // SAFETY: SIG_IGN installs no handler code.
                let _ = unsafe { nix::sys::signal::signal(s, nix::sys::signal::SigHandler::SigIgn) };
            }
            // Not the caller's stdin and stdout: whoever reads this run's output
            // gets its end when this process ends, not after the cleanup.
            if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
                let _ = rustix::stdio::dup2_stdin(&null);
                let _ = rustix::stdio::dup2_stdout(&null);
            }
            let mut b = [0u8; 1];
            let _ = std::io::Read::read(&mut r, &mut b);
            if let Err(e) = cg.destroy_now() {
                eprintln!("sandfs: warning: removing the sandbox's cgroup: {e}");
            }
            std::process::exit(0)
        }
        nix::unistd::ForkResult::Parent { .. } => {
            drop(r);
            // Held until this process ends: never closed by hand.
            std::mem::forget(w);
            // The reaper destroys the cgroup; this copy must not.
            cg.disown();
            Ok(())
        }
    }
}

/// The limits given by flags (`--memory`, `--pids-limit`, `--cpus`).
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// Memory, e.g. 512m.
    pub memory: Option<String>,
    /// Most tasks.
    pub pids: Option<i64>,
    /// CPUs' worth of time.
    pub cpus: Option<String>,
}

/// The sandbox's cgroup, joined by this process so that everything it starts
/// (gofers, the sandbox, the program) is in it, with the limits of the flags and
/// the bundle's `linux.resources`. Without limits asked for, a host that gives no
/// cgroup (rootless on cgroup v1) only gets a warning; with limits it is an error.
/// With `reaper`, a forked reaper removes it when this process ends; otherwise the
/// caller keeps it (disowned: `delete` removes it). This process joins it, but for
/// its devices hierarchy (see the end).
pub fn sandbox_cgroup(
    limits: &Limits,
    spec: &oci_spec::runtime::Spec,
    id: &str,
    reaper: bool,
) -> Result<Option<Cgroup>> {
    let from_flags = limits.memory.is_some() || limits.pids.is_some() || limits.cpus.is_some();
    let linux = spec.linux().as_ref();
    let resources = linux.and_then(|l| l.resources().clone());
    let path = linux.and_then(|l| l.cgroups_path().clone());
    let wanted = from_flags || resources.is_some() || path.is_some();
    let cg = match Cgroup::create(path.as_deref(), id) {
        Ok(cg) => cg,
        Err(e) if !wanted => {
            // Expected rootless (no delegated cgroup); worth a word when root.
            if rustix::process::geteuid().is_root() {
                crate::warn(&format!("the sandbox has no cgroup of its own ({e})"));
            }
            return Ok(None);
        }
        Err(e) => return Err(anyhow::Error::from(e).context("make the sandbox's cgroup")),
    };
    if let Some(r) = &resources {
        for w in cg.apply(r).context("linux.resources")? {
            crate::warn(&w);
        }
    }
    if from_flags {
        let r = sandfs_confine::cgroup::resources_from_flags(
            limits.memory.as_deref(),
            limits.pids,
            limits.cpus.as_deref(),
        )
        .context("--memory/--pids-limit/--cpus")?;
        for w in cg.apply(&r)? {
            crate::warn(&w);
        }
    }
    let mut cg = cg;
    if reaper {
        start_reaper(&mut cg)?;
    }
    // This process (the FUSE server, with the memory upper layer) joins now, before
    // it allocates (cgroup v1 no longer moves charges along: memory allocated
    // outside stays charged outside), and the gofers it starts are born in it. Not
    // the devices hierarchy: FUSE workers open /dev/fuse as they start and the
    // sandbox process opens it, which a spec's deny-all would refuse; [`launch`]
    // moves the sandbox process in there once it has.
    cg.add_pid_except(std::process::id() as i32, &["devices"]).context("join the sandbox's cgroup")?;
    Ok(Some(cg))
}
