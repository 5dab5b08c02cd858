//! Building a container's mount namespace from its spec: the runsc `vfs.go` flow.
//!
//! 1. The root from the gofer, read-only if `root.readonly` (then with no overlay),
//!    else under an overlay when `--overlay2` says so. A read-only root still gets an
//!    in-memory upper, mounted read-only, so mount points can be made synthetically
//!    without touching the host.
//! 2. Submounts parents first; each mount point made with its parents (directories
//!    0755, a 0644 file for a file mount), following symlinks inside the root; a
//!    read-only mount holding a new mount point is switched to read-write for that
//!    and back (failing to restore is fatal).
//! 3. tmpfs, binds (gofer; overlaid with `all:`), pod volumes (one master per shared
//!    volume, the same filesystem attached to each container, possibly more
//!    restrictive), kernel mounts recorded for the sandbox process.
//! 4. /tmp: a 01777 tmpfs when no mount targets it and it is absent or empty.
//! 5. The restore map: (container, destination) for every gofer connection, shared
//!    volumes once.

use crate::config::{Medium, OverlayScope, RuntimeConfig};
use crate::error::SetupError;
use crate::hints::{self, Hint, HintType, Share};
use crate::host::{Host, Owners};
use crate::plan::{self, Kind, Planned};
use oci_spec::runtime::Spec;
use sandfs_gofer::client::FileAccess;
use sandfs_overlay::Overlay;
use sandfs_tmpfs::{StoreFile, Tmpfs, TmpfsOptions};
use sandfs_vfs::{Creds, Errno, FileType, Filesystem, Location, MountFlags, MountNamespace, OpenFlags};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A kernel filesystem the sandbox process mounts itself, in plan order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelMount {
    /// Where, inside the container.
    pub destination: PathBuf,
    /// proc, sysfs, devpts, mqueue, cgroup or cgroup2.
    pub fstype: String,
    /// The spec's source field.
    pub source: Option<PathBuf>,
    /// Data options as given.
    pub data: Vec<String>,
    /// Generic flags.
    pub flags: MountFlags,
}

/// Identifies a host-backed mount across checkpoint and restore.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RestoreKey {
    /// A container's own mount (its root is "/").
    Mount {
        /// Container name.
        container: String,
        /// Mount destination.
        destination: PathBuf,
    },
    /// A pod volume shared by containers, restored once.
    Volume(String),
}

/// What a restored sandbox re-binds a new gofer connection to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreSource {
    /// Host path.
    pub source: PathBuf,
    /// Read-only.
    pub readonly: bool,
}

/// A container's filesystem, ready.
pub struct ContainerFs {
    /// The namespace the container sees.
    pub ns: Arc<MountNamespace>,
    /// Kernel mounts for the sandbox process, parents first.
    pub kernel: Vec<KernelMount>,
    /// What was skipped or dropped.
    pub warnings: Vec<String>,
    /// The root overlay, when there is one (for --diff and --export-upper).
    pub root_overlay: Option<Arc<Overlay>>,
    /// Mounts that write to the host (writable binds and bind volumes without an
    /// overlay): destination and filesystem, in mount order (for --diff).
    pub host_writes: Vec<(PathBuf, Arc<dyn Filesystem>)>,
}

/// One sandbox: the host, the runtime config, the pod volumes and the restore map.
pub struct Sandbox<H: Host> {
    host: H,
    cfg: RuntimeConfig,
    hints: Vec<Hint>,
    masters: BTreeMap<String, Arc<dyn Filesystem>>,
    restore: BTreeMap<RestoreKey, RestoreSource>,
    /// Warnings about the pod annotations.
    pub warnings: Vec<String>,
}

/// A fresh upper layer on `medium`; `source` is the host directory being overlaid
/// (where `self` keeps its store file). Without a size it takes the tmpfs default
/// (half of RAM; with a store file, for what it holds in memory); `size=0` is no
/// limit, as for a tmpfs.
fn new_upper(medium: &Medium, size: Option<u64>, source: &Path) -> Result<Arc<Tmpfs>, SetupError> {
    let size = size.map(|n| if n == 0 { sandfs_tmpfs::NO_LIMIT } else { n });
    let opts = TmpfsOptions { size, ..TmpfsOptions::default() };
    let store = match medium {
        Medium::Memory => None,
        // An unnamed file (O_TMPFILE) in the directory: never visible, in the mount
        // source or anywhere else, and gone with the last descriptor.
        Medium::SelfBacked => Some(source),
        Medium::Dir(d) => Some(d.as_path()),
    }
    .map(|dir| {
        StoreFile::create_in(dir)
            .map_err(|e| SetupError::fs(format!("create the upper store file in {}", dir.display()), e))
    })
    .transpose()?;
    Tmpfs::with_store(&opts, store).map_err(|e| SetupError::fs("create the overlay upper layer", e))
}

impl<H: Host> Sandbox<H> {
    /// A sandbox whose pod volumes come from `annotations` (the first container's).
    pub fn new(
        host: H,
        cfg: RuntimeConfig,
        annotations: &BTreeMap<String, String>,
    ) -> Result<Self, SetupError> {
        cfg.validate()?;
        let (hints, warnings) = hints::parse(annotations)?;
        Ok(Sandbox { host, cfg, hints, masters: BTreeMap::new(), restore: BTreeMap::new(), warnings })
    }

    /// The host access, for inspection.
    pub fn host(&mut self) -> &mut H {
        &mut self.host
    }

    /// Every host-backed connection a restore must re-bind, keyed stably.
    pub fn restore_map(&self) -> &BTreeMap<RestoreKey, RestoreSource> {
        &self.restore
    }

    /// Load and set up container `name` from the bundle directory.
    pub fn container_from_bundle(&mut self, name: &str, bundle: &Path) -> Result<ContainerFs, SetupError> {
        let spec = load_spec(&bundle.join("config.json"))?;
        self.container(name, &spec, bundle)
    }

    /// Set up container `name` whose spec is `spec` (relative root paths are under
    /// `bundle`).
    pub fn container(&mut self, name: &str, spec: &Spec, bundle: &Path) -> Result<ContainerFs, SetupError> {
        let root = spec.root().as_ref().ok_or_else(|| SetupError::field("root", "", "missing"))?;
        let root_path =
            if root.path().is_absolute() { root.path().clone() } else { bundle.join(root.path()) };
        if self.host.probe(&root_path) != Some(true) {
            return Err(SetupError::field(
                "root.path",
                root_path.display().to_string(),
                "is not a directory",
            ));
        }
        let readonly = root.readonly().unwrap_or(false);
        // A container may repeat the pod's hints; naming a volume the pod does not
        // have is an error.
        let own: BTreeMap<String, String> =
            spec.annotations().clone().unwrap_or_default().into_iter().collect();
        let (own_hints, _) = hints::parse(&own)?;
        for h in own_hints {
            if !self.hints.iter().any(|p| p.name == h.name) {
                return Err(SetupError::field(
                    format!("annotations[dev.gvisor.spec.mount.{}.source]", h.name),
                    h.source,
                    "names a volume the pod does not declare",
                ));
            }
        }
        let plan = plan::plan(spec.mounts().as_deref().unwrap_or(&[]))?;
        let warnings = plan.warnings.clone();

        // The root's ids are the image's own while the host copy is only read; a
        // root the container writes directly is a host volume like any other.
        let writes_host = !readonly && self.cfg.overlay2.scope == OverlayScope::None;
        let owners = if writes_host { Owners::Mapped } else { Owners::AsStored };
        // The root's and the binds' servers, told first (a host may start them
        // together: a gofer process takes milliseconds to start and confine itself).
        // Under an overlay the root is only read (the overlay has no way to write a
        // lower layer), so its gofer serves it read-only too: a FUSE server that went
        // wrong still cannot change the host's root, and the client may take whole
        // listings as final (see the gofer client's lookup).
        let gofer_readonly = !writes_host;
        let mut wants = vec![(root_path.clone(), gofer_readonly, owners)];
        for p in &plan.mounts {
            if let Kind::Bind { source } = &p.kind
                && source.is_absolute()
                && !self.hints.iter().any(|h| Path::new(&h.source) == source.as_path())
            {
                wants.push((source.clone(), p.flags.contains(MountFlags::RDONLY), Owners::Mapped));
            }
        }
        self.host.prefetch(&wants);
        let lower = self.host.gofer(&root_path, gofer_readonly, self.cfg.file_access, owners)?;
        self.restore.insert(
            RestoreKey::Mount { container: name.to_string(), destination: "/".into() },
            RestoreSource { source: root_path.clone(), readonly },
        );
        let overlay_root = !readonly && self.cfg.overlay2.scope != OverlayScope::None;
        let (root_fs, root_overlay): (Arc<dyn Filesystem>, Option<Arc<Overlay>>) = if readonly || overlay_root
        {
            // A read-only root still gets an (unwritable) memory upper: mount points
            // are then made synthetically, never on the host.
            let upper = if overlay_root {
                new_upper(&self.cfg.overlay2.medium, self.cfg.overlay2.size, &root_path)?
            } else {
                Tmpfs::new_default()
            };
            let ov = Overlay::new(upper, vec![lower]).map_err(|e| SetupError::fs("overlay the root", e))?;
            (ov.clone(), overlay_root.then_some(ov))
        } else {
            (lower, None)
        };
        let ns =
            MountNamespace::new(root_fs, if readonly { MountFlags::RDONLY } else { MountFlags::empty() });

        let mut kernel = Vec::new();
        let mut host_writes = Vec::new();
        let mut tmp_mounted = false;
        for p in &plan.mounts {
            if p.destination == Path::new("/tmp") {
                tmp_mounted = true;
            }
            match &p.kind {
                Kind::Kernel { fstype, source, data } => {
                    make_point(&ns, p, FileType::Directory)?;
                    kernel.push(KernelMount {
                        destination: p.destination.clone(),
                        fstype: fstype.clone(),
                        source: source.clone(),
                        data: data.clone(),
                        flags: p.flags,
                    });
                }
                Kind::Tmpfs(opts) => {
                    let fs = Tmpfs::new(opts)
                        .map_err(|e| SetupError::fs(format!("tmpfs for {}", p.destination.display()), e))?;
                    let at = make_point(&ns, p, FileType::Directory)?;
                    ns.mount(fs, &at, p.flags).map_err(|e| mount_err(p, e))?;
                }
                Kind::Bind { source } => {
                    if let Some(fs) = self.bind(name, &ns, p, source)? {
                        host_writes.push((p.destination.clone(), fs));
                    }
                }
            }
        }
        if !tmp_mounted {
            auto_tmp(&ns)?;
        }
        Ok(ContainerFs { ns, kernel, warnings, root_overlay, host_writes })
    }

    /// Mount host `source` at `p`; the filesystem mounted when it writes to the host.
    fn bind(
        &mut self,
        name: &str,
        ns: &Arc<MountNamespace>,
        p: &Planned,
        source: &Path,
    ) -> Result<Option<Arc<dyn Filesystem>>, SetupError> {
        let src_text = source.display().to_string();
        if let Some(hint) = self.hints.iter().find(|h| h.source == src_text).cloned() {
            return self.volume(ns, p, &hint);
        }
        if !source.is_absolute() {
            return Err(SetupError::field(
                format!("mounts[{}].source", p.index),
                src_text,
                "must be an absolute path (or a pod volume's source)",
            ));
        }
        let is_dir = self.host.probe(source).ok_or_else(|| {
            SetupError::field(format!("mounts[{}].source", p.index), src_text.clone(), "does not exist")
        })?;
        let ro = p.flags.contains(MountFlags::RDONLY);
        let fs = self.host.gofer(source, ro, self.cfg.file_access_mounts, Owners::Mapped)?;
        self.restore.insert(
            RestoreKey::Mount { container: name.to_string(), destination: p.destination.clone() },
            RestoreSource { source: source.to_path_buf(), readonly: ro },
        );
        let overlaid = is_dir && !ro && self.cfg.overlay2.scope == OverlayScope::All;
        let fs: Arc<dyn Filesystem> = if overlaid {
            let upper = new_upper(&self.cfg.overlay2.medium, self.cfg.overlay2.size, source)?;
            Overlay::new(upper, vec![fs]).map_err(|e| mount_err(p, e))?
        } else {
            fs
        };
        let at = make_point(ns, p, if is_dir { FileType::Directory } else { FileType::Regular })?;
        ns.mount(fs.clone(), &at, p.flags).map_err(|e| mount_err(p, e))?;
        Ok((!ro && !overlaid).then_some(fs))
    }

    /// Attach pod volume `hint` at `p`: the master is made once per sandbox (one
    /// gofer connection), and a container may only be more restrictive than it.
    fn volume(
        &mut self,
        ns: &Arc<MountNamespace>,
        p: &Planned,
        hint: &Hint,
    ) -> Result<Option<Arc<dyn Filesystem>>, SetupError> {
        if hint.readonly() && !p.flags.contains(MountFlags::RDONLY) {
            return Err(SetupError::field(
                format!("mounts[{}].options", p.index),
                "rw",
                format!("pod volume {:?} is read-only; a container may not mount it read-write", hint.name),
            ));
        }
        let fs = match (hint.share, self.masters.get(&hint.name)) {
            (Share::Pod | Share::Shared, Some(fs)) => fs.clone(),
            _ => {
                let fs: Arc<dyn Filesystem> = match hint.typ {
                    HintType::Tmpfs => {
                        let keep: Vec<&str> =
                            hint.options.iter().map(String::as_str).filter(|o| o.contains('=')).collect();
                        let opts = TmpfsOptions::parse(&keep.join(",")).map_err(|why| {
                            SetupError::field(
                                format!("annotations[dev.gvisor.spec.mount.{}.options]", hint.name),
                                keep.join(","),
                                why,
                            )
                        })?;
                        Tmpfs::new(&opts).map_err(|e| mount_err(p, e))?
                    }
                    HintType::Bind => {
                        let access = if hint.share == Share::Shared {
                            FileAccess::Shared
                        } else {
                            self.cfg.file_access_mounts
                        };
                        let src = PathBuf::from(&hint.source);
                        let fs = self.host.gofer(&src, hint.readonly(), access, Owners::Mapped)?;
                        self.restore.insert(
                            RestoreKey::Volume(hint.name.clone()),
                            RestoreSource { source: src, readonly: hint.readonly() },
                        );
                        fs
                    }
                };
                if hint.share != Share::Container {
                    self.masters.insert(hint.name.clone(), fs.clone());
                }
                fs
            }
        };
        let mut flags = p.flags;
        if hint.readonly() {
            flags |= MountFlags::RDONLY;
        }
        let kind =
            if fs.root().kind() == FileType::Directory { FileType::Directory } else { FileType::Regular };
        let at = make_point(ns, p, kind)?;
        ns.mount(fs.clone(), &at, flags).map_err(|e| mount_err(p, e))?;
        let host = matches!(hint.typ, HintType::Bind) && !flags.contains(MountFlags::RDONLY);
        Ok(host.then_some(fs))
    }
}

fn mount_err(p: &Planned, e: Errno) -> SetupError {
    SetupError::fs(format!("mount at {} (mounts[{}])", p.destination.display(), p.index), e)
}

/// Make the mount point for `p`, switching a read-only mount that holds it to
/// read-write for the duration (and failing hard if it cannot be switched back).
fn make_point(ns: &MountNamespace, p: &Planned, kind: FileType) -> Result<Location, SetupError> {
    let holder = holding_mount(ns, &p.destination);
    let was_ro = holder.as_ref().is_some_and(|m| m.flags().contains(MountFlags::RDONLY));
    if let (true, Some(m)) = (was_ro, &holder) {
        m.set_flags(m.flags() - MountFlags::RDONLY).map_err(|e| mount_err(p, e))?;
    }
    let made = ns.make_mount_point(p.destination.as_os_str().as_encoded_bytes(), kind);
    if let (true, Some(m)) = (was_ro, &holder) {
        m.set_flags(m.flags() | MountFlags::RDONLY).map_err(|e| {
            SetupError::fs(format!("restoring read-only after making {}: fatal", p.destination.display()), e)
        })?;
    }
    made.map_err(|e| {
        let why = match e {
            e if e == Errno::NOTDIR => {
                "exists and is not a directory, but the mount is a directory".to_string()
            }
            e if e == Errno::ISDIR => "is a directory, but the mount source is a file".to_string(),
            e => format!("cannot be made: {e}"),
        };
        SetupError::field(
            format!("mounts[{}].destination", p.index),
            p.destination.display().to_string(),
            why,
        )
    })
}

/// The mount holding the deepest existing ancestor of `dest`.
fn holding_mount(ns: &MountNamespace, dest: &Path) -> Option<Arc<sandfs_vfs::Mount>> {
    let root = Creds::root();
    let mut cur = Some(dest);
    while let Some(p) = cur {
        if let Ok(loc) = ns.resolve(&root, None, p, true) {
            return Some(loc.mount);
        }
        cur = p.parent();
    }
    None
}

/// /tmp: a 01777 tmpfs when it is absent or an empty directory.
fn auto_tmp(ns: &Arc<MountNamespace>) -> Result<(), SetupError> {
    let root = Creds::root();
    let mount = match ns.resolve(&root, None, "/tmp", true) {
        Err(e) if e == Errno::NOENT => true,
        Err(e) => return Err(SetupError::fs("look at /tmp", e)),
        Ok(loc) if loc.node.kind() == FileType::Directory => {
            let f = ns
                .open(&root, &loc, OpenFlags::READ | OpenFlags::DIRECTORY)
                .map_err(|e| SetupError::fs("list /tmp", e))?;
            let mut empty = true;
            f.readdir(&mut |e| {
                if e.name != b"." && e.name != b".." {
                    empty = false;
                    return false;
                }
                true
            })
            .map_err(|e| SetupError::fs("list /tmp", e))?;
            empty
        }
        Ok(_) => false,
    };
    if mount {
        let p = Planned {
            index: usize::MAX,
            destination: "/tmp".into(),
            kind: Kind::Tmpfs(TmpfsOptions::default()),
            flags: MountFlags::empty(),
        };
        let at = make_point(ns, &p, FileType::Directory)?;
        let fs = Tmpfs::new(&TmpfsOptions { mode: Some(0o1777), ..TmpfsOptions::default() })
            .map_err(|e| SetupError::fs("tmpfs for /tmp", e))?;
        ns.mount(fs, &at, MountFlags::empty()).map_err(|e| SetupError::fs("mount /tmp", e))?;
    }
    Ok(())
}

/// Read and parse a config.json.
pub fn load_spec(path: &Path) -> Result<Spec, SetupError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| SetupError::Spec(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| SetupError::Spec(format!("{}: {e}", path.display())))
}
