//! Escape probes: one real escape attempt from inside a sandbox each, for the
//! escape tests (crates/cli/tests/escape.rs, whose binary runs itself inside the
//! sandbox as the probe). A probe makes the system call an attacker would and
//! answers `ok` when the kernel let it through, or the errno name when it was
//! refused; the test decides which is right.

use std::ffi::CString;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn name(e: i32) -> String {
    match e {
        0 => "ok".into(),
        libc::EPERM => "EPERM".into(),
        libc::EACCES => "EACCES".into(),
        libc::EROFS => "EROFS".into(),
        libc::ENOENT => "ENOENT".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::EBADF => "EBADF".into(),
        libc::ENOSYS => "ENOSYS".into(),
        libc::ECONNREFUSED => "ECONNREFUSED".into(),
        libc::ENETUNREACH => "ENETUNREACH".into(),
        libc::ENXIO => "ENXIO".into(),
        libc::EIO => "EIO".into(),
        libc::ENOTTY => "ENOTTY".into(),
        libc::EEXIST => "EEXIST".into(),
        libc::EFAULT => "EFAULT".into(),
        libc::ENOEXEC => "ENOEXEC".into(),
        libc::EBUSY => "EBUSY".into(),
        libc::ENODEV => "ENODEV".into(),
        e => format!("errno{e}"),
    }
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

/// Result of a libc call returning -1 on failure.
fn res(rc: libc::c_long) -> String {
    if rc < 0 { name(errno()) } else { "ok".into() }
}

fn arg(args: &[String], i: usize) -> &str {
    args.get(i).map(String::as_str).unwrap_or("")
}

/// Run probe `what` with `args`; the outcome as text (`ok`, or errno names).
pub fn probe(what: &str, args: &[String]) -> String {
    // SAFETY (for every block below): each is one system call with arguments that
    // are valid for its duration (NUL-terminated strings, buffers on the stack);
    // the probe only reports what the kernel answered.
    unsafe {
        match what {
            // Write the current value of a file back (a sysctl like core_pattern).
            "write-back" => {
                let path = arg(args, 0);
                let old = std::fs::read(path).unwrap_or_default();
                match std::fs::OpenOptions::new().write(true).open(path) {
                    Err(e) => name(e.raw_os_error().unwrap_or(0)),
                    Ok(mut f) => {
                        use std::io::Write;
                        match f.write_all(&old) {
                            Ok(()) => "ok".into(),
                            Err(e) => name(e.raw_os_error().unwrap_or(0)),
                        }
                    }
                }
            }
            "mount-tmpfs" => {
                let at = arg(args, 0);
                res(libc::mount(c("x").as_ptr(), c(at).as_ptr(), c("tmpfs").as_ptr(), 0, std::ptr::null())
                    as _)
            }
            // mknod a block device MAJOR MINOR at PATH, then try to mount it read-only.
            "mknod-mount" => {
                let (path, major, minor) = (arg(args, 0), arg(args, 1), arg(args, 2));
                let dev = libc::makedev(major.parse().unwrap_or(0), minor.parse().unwrap_or(0));
                let a = res(libc::mknod(c(path).as_ptr(), libc::S_IFBLK | 0o600, dev) as _);
                let _ = std::fs::create_dir("/tmp/escape-mnt");
                let b = res(libc::mount(
                    c(path).as_ptr(),
                    c("/tmp/escape-mnt").as_ptr(),
                    c(arg(args, 3)).as_ptr(),
                    libc::MS_RDONLY,
                    std::ptr::null(),
                ) as _);
                format!("{a} {b}")
            }
            "remount-rw" => res(libc::mount(
                std::ptr::null(),
                c(arg(args, 0)).as_ptr(),
                std::ptr::null(),
                libc::MS_REMOUNT,
                std::ptr::null(),
            ) as _),
            // Mount a cgroup v1 hierarchy and write its release_agent.
            "release-agent" => {
                let _ = std::fs::create_dir("/tmp/escape-cg");
                let m = res(libc::mount(
                    c("cgroup").as_ptr(),
                    c("/tmp/escape-cg").as_ptr(),
                    c("cgroup").as_ptr(),
                    0,
                    c("memory").as_ptr().cast(),
                ) as _);
                // Only a mounted hierarchy has a release_agent to write.
                let w = if m != "ok" {
                    "-".to_string()
                } else {
                    match std::fs::write("/tmp/escape-cg/release_agent", "/tmp/x") {
                        Ok(()) => "ok".into(),
                        Err(e) => name(e.raw_os_error().unwrap_or(0)),
                    }
                };
                let s = match std::fs::write("/sys/fs/cgroup/release_agent", "/tmp/x") {
                    Ok(()) => "ok".into(),
                    Err(e) => name(e.raw_os_error().unwrap_or(0)),
                };
                format!("{m} {w} {s}")
            }
            "open-by-handle" => {
                #[repr(C)]
                struct Handle {
                    bytes: u32,
                    kind: i32,
                    f: [u8; 128],
                }
                let mut h = Handle { bytes: 128, kind: 0, f: [0; 128] };
                let mut mount_id = 0;
                let rc = libc::syscall(
                    libc::SYS_name_to_handle_at,
                    libc::AT_FDCWD,
                    c("/").as_ptr(),
                    &raw mut h,
                    &raw mut mount_id,
                    0,
                );
                let root = libc::open(c("/").as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
                let rc2 = libc::syscall(libc::SYS_open_by_handle_at, root, &raw mut h, libc::O_RDONLY);
                format!("{} {}", if rc < 0 { "nohandle" } else { "handle" }, res(rc2))
            }
            "bpf" => {
                // BPF_PROG_LOAD of a socket filter "return 0".
                let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
                let license = c("GPL");
                let mut attr = [0u8; 128];
                let put32 =
                    |a: &mut [u8; 128], off: usize, v: u32| a[off..off + 4].copy_from_slice(&v.to_ne_bytes());
                put32(&mut attr, 0, 1); // prog_type = BPF_PROG_TYPE_SOCKET_FILTER
                put32(&mut attr, 4, 2); // insn_cnt
                attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
                attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
                res(libc::syscall(libc::SYS_bpf, 5, attr.as_ptr(), attr.len()))
            }
            "perf" => {
                let mut attr = [0u8; 128];
                attr[0..4].copy_from_slice(&0u32.to_ne_bytes()); // PERF_TYPE_HARDWARE
                attr[4..8].copy_from_slice(&128u32.to_ne_bytes()); // size
                // System-wide: pid -1, cpu 0.
                res(libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), -1, 0, -1, 0))
            }
            "init-module" => {
                let junk = [0u8; 64];
                res(libc::syscall(libc::SYS_init_module, junk.as_ptr(), junk.len(), c("").as_ptr()))
            }
            "reboot" => res(libc::syscall(libc::SYS_reboot, 0xfee1_dead_u32, 12345, 0, 0)),
            "lo-down" => {
                let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
                let mut req = [0u8; 40];
                req[..2].copy_from_slice(b"lo");
                res(libc::ioctl(s, libc::SIOCSIFFLAGS, req.as_mut_ptr()) as _)
            }
            "connect" => {
                let port: u16 = arg(args, 0).parse().unwrap_or(0);
                match std::net::TcpStream::connect(("127.0.0.1", port)) {
                    Ok(_) => "ok".into(),
                    Err(e) => name(e.raw_os_error().unwrap_or(0)),
                }
            }
            "write-fd" => {
                let fd: i32 = arg(args, 0).parse().unwrap_or(-1);
                let msg = b"escaped\n";
                res(libc::write(fd, msg.as_ptr().cast(), msg.len()) as _)
            }
            "tiocsti" => {
                let fd: i32 = arg(args, 0).parse().unwrap_or(0);
                let ch = b'X';
                let a = res(libc::ioctl(fd, libc::TIOCSTI, &raw const ch) as _);
                let tty = libc::open(c("/dev/tty").as_ptr(), libc::O_RDWR);
                let b = if tty < 0 {
                    name(errno())
                } else {
                    res(libc::ioctl(tty, libc::TIOCSTI, &raw const ch) as _)
                };
                format!("{a} {b}")
            }
            // Every other process this one can see that runs without a seccomp
            // filter (a ptrace or /proc/PID/mem target that could make the system
            // calls the filter refuses). The answer says how far the look went, so
            // a /proc that shows nothing cannot pass for "none":
            // `read N self S others none|pids K`: N status files read (this
            // process's own included), S this process's own Seccomp: mode (0 none,
            // 1 strict, 2 filter; `-` when its status had no such line), K the
            // unfiltered others.
            "unfiltered" => {
                let me = std::process::id().to_string();
                let (mut read, mut own, mut found) = (0usize, "-".to_string(), 0usize);
                for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if !n.bytes().all(|b| b.is_ascii_digit()) {
                        continue;
                    }
                    // A process that exited since the listing has no status left.
                    let Ok(st) = std::fs::read_to_string(e.path().join("status")) else { continue };
                    read += 1;
                    let mode = st.lines().find_map(|l| l.strip_prefix("Seccomp:")).map(str::trim);
                    if n == me {
                        own = mode.unwrap_or("-").to_string();
                    } else if mode == Some("0") {
                        found += 1;
                    }
                }
                let others = if found == 0 { "none".to_string() } else { format!("pids {found}") };
                format!("read {read} self {own} others {others}")
            }
            "whoami" => format!("{} {}", libc::getuid(), libc::geteuid()),
            "unshare-user" => res(libc::unshare(libc::CLONE_NEWUSER) as _),
            "mknod-char" => {
                let path = arg(args, 0);
                res(libc::mknod(c(path).as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) as _)
            }
            "mkfifo" => res(libc::mknod(c(arg(args, 0)).as_ptr(), libc::S_IFIFO | 0o644, 0) as _),
            // Create PATH, make it setuid, then chown it to UID (an attempt to leave a
            // setuid file to someone else on a host volume).
            "setuid-file" => {
                let path = arg(args, 0);
                let fd = libc::open(c(path).as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o755);
                if fd < 0 {
                    return name(errno());
                }
                libc::close(fd);
                let a = res(libc::chmod(c(path).as_ptr(), 0o4755) as _);
                let uid: u32 = arg(args, 1).parse().unwrap_or(0);
                let b = res(libc::chown(c(path).as_ptr(), uid, uid) as _);
                let d = res(libc::chmod(c(path).as_ptr(), 0o4755) as _);
                format!("{a} {b} {d}")
            }
            _ => format!("unknown probe {what}"),
        }
    }
}
