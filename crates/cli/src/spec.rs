//! `sandfs spec`, like `runc spec`: write a starter config.json into a bundle
//! directory, and with `--rootfs-busybox` build a busybox-static root filesystem
//! beside it, so tests and the README have a real bundle.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::{Path, PathBuf};

/// Arguments of `sandfs spec`.
#[derive(Args, Debug)]
pub struct SpecArgs {
    /// The bundle directory to write config.json into (created if missing).
    #[arg(long, default_value = ".")]
    pub bundle: PathBuf,
    /// Also build `rootfs/` in the bundle from a static busybox (this binary path,
    /// or the first `busybox` on PATH when given as `auto`).
    #[arg(long, value_name = "BUSYBOX")]
    pub rootfs_busybox: Option<String>,
    /// Make the root read-only in the spec.
    #[arg(long)]
    pub readonly: bool,
}

/// The starter spec: sh in a busybox-style root with the usual kernel mounts.
pub fn starter(readonly: bool) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm", "HOME=/root"],
            "cwd": "/",
            "capabilities": {
                "bounding": sandfs_confine::caps::DEFAULT,
                "effective": sandfs_confine::caps::DEFAULT,
                "permitted": sandfs_confine::caps::DEFAULT
            },
            "noNewPrivileges": true,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
        },
        "root": {"path": "rootfs", "readonly": readonly},
        "hostname": "sandfs",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "seccomp": sandfs_confine::seccomp::default_profile(),
            "maskedPaths": sandfs_confine::paths::DEFAULT_MASKED,
            "readonlyPaths": sandfs_confine::paths::DEFAULT_READONLY
        }
    })
}

/// Build a busybox root in `rootfs`: the binary, a link per applet, the usual
/// directories and minimal passwd/group files.
pub fn busybox_rootfs(busybox: &Path, rootfs: &Path) -> Result<()> {
    for d in
        ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root", "var/tmp", "home"]
    {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    std::fs::copy(busybox, rootfs.join("bin/busybox"))
        .with_context(|| format!("copy {}", busybox.display()))?;
    let out =
        std::process::Command::new(busybox).arg("--list-full").output().context("busybox --list-full")?;
    if !out.status.success() {
        bail!("{} --list-full failed: is it busybox?", busybox.display());
    }
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let link = rootfs.join(applet);
        if applet == "bin/busybox" || link.exists() {
            continue;
        }
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::os::unix::fs::symlink("/bin/busybox", &link)?;
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    std::fs::write(rootfs.join("etc/hostname"), "sandfs\n")?;
    Ok(())
}

/// Run `sandfs spec`.
pub fn run(args: SpecArgs) -> Result<()> {
    std::fs::create_dir_all(&args.bundle)?;
    let config = args.bundle.join("config.json");
    std::fs::write(&config, serde_json::to_string_pretty(&starter(args.readonly))?)
        .with_context(|| format!("write {}", config.display()))?;
    if let Some(bb) = &args.rootfs_busybox {
        let bb = if bb == "auto" {
            std::env::var_os("PATH")
                .and_then(|p| std::env::split_paths(&p).map(|d| d.join("busybox")).find(|p| p.is_file()))
                .context("no busybox on PATH (install busybox-static)")?
        } else {
            PathBuf::from(bb)
        };
        busybox_rootfs(&bb, &args.bundle.join("rootfs"))?;
    }
    Ok(())
}
