//! Seccomp filters installed for real: each check forks a child that loads the filter,
//! makes one syscall and exits with its errno (0 for success), the way the sandbox
//! installs it right before exec. The filter is compiled in the parent, so the child
//! only makes syscalls.

use std::ffi::CString;

use sandfs_confine::seccomp::{self, Filter, SeccompError};
use serde_json::{Value, json};

/// The child's exit code when `Filter::load` failed.
const LOAD_FAILED: i32 = 250;

/// The errno of the last failed call, or 0.
fn errno() -> i32 {
    nix::errno::Errno::last_raw()
}

/// `-1` and errno from a raw syscall's return, as an exit code.
fn result(rc: libc::c_long) -> i32 {
    if rc < 0 { errno() } else { 0 }
}

/// Forks; the child loads `filter` (when given; after no_new_privs), runs `body` and
/// exits with what it returns. Returns the child's exit code, or 1000 + signal.
fn in_child(filter: Option<&Filter>, body: impl FnOnce() -> i32) -> i32 {
    // SAFETY: fork(2); the child only makes syscalls and _exits.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            let code = match filter {
                Some(filter) => {
                    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes no pointers.
                    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                    match filter.load() {
                        Ok(()) => body(),
                        Err(_) => LOAD_FAILED,
                    }
                }
                None => body(),
            };
            // SAFETY: _exit(2) ends the child without running the parent's atexit work.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            match nix::sys::wait::waitpid(child, None).expect("waitpid") {
                nix::sys::wait::WaitStatus::Exited(_, code) => code,
                nix::sys::wait::WaitStatus::Signaled(_, sig, _) => 1000 + sig as i32,
                other => panic!("child: {other:?}"),
            }
        }
    }
}

fn compile(profile: Value) -> seccomp::Compiled {
    seccomp::compile_json(&profile).expect("profile compiles")
}

fn default_filter() -> Filter {
    let compiled = seccomp::default_filter().expect("default profile compiles");
    assert_eq!(compiled.warnings, Vec::<String>::new());
    compiled.filter
}

fn compile_error(profile: Value) -> String {
    match seccomp::compile_json(&profile) {
        Ok(c) => panic!("compiled: {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn raw_syscall(nr: libc::c_long, a: u64, b: u64, c: u64) -> i32 {
    // SAFETY: the callers pass numbers and pointers valid for the syscall (or junk the
    // filter refuses before the kernel reads it).
    result(unsafe { libc::syscall(nr, a, b, c) })
}

#[test]
fn rule_errno_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    let path = CString::new(dir.path().join("d").into_os_string().into_encoded_bytes()).unwrap();
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42 }],
    }))
    .filter;
    // SAFETY: mkdir(2) with a NUL-terminated path.
    let mkdir = || result(unsafe { libc::mkdir(path.as_ptr(), 0o755) }.into());
    assert_eq!(in_child(Some(&filter), mkdir), libc::ENOMSG);
    assert!(!dir.path().join("d").exists());
    assert_eq!(in_child(None, mkdir), 0);
}

#[test]
fn errno_without_errno_ret_is_eperm() {
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_ERRNO" }],
    }))
    .filter;
    let getppid = || raw_syscall(libc::SYS_getppid, 0, 0, 0);
    assert_eq!(in_child(Some(&filter), getppid), libc::EPERM);
}

#[test]
fn default_deny_with_allow_list() {
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EACCES,
        "syscalls": [
            { "names": ["exit_group", "exit", "getpid"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["getppid"], "action": "SCMP_ACT_ERRNO" },
        ],
    }))
    .filter;
    assert_eq!(in_child(Some(&filter), || raw_syscall(libc::SYS_getpid, 0, 0, 0)), 0);
    assert_eq!(in_child(Some(&filter), || raw_syscall(libc::SYS_getuid, 0, 0, 0)), libc::EACCES);
    assert_eq!(in_child(Some(&filter), || raw_syscall(libc::SYS_getppid, 0, 0, 0)), libc::EPERM);
}

#[test]
fn argument_conditions() {
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            { "names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7,
              "args": [{ "index": 1, "value": 5, "op": "SCMP_CMP_GT" }] },
            { "names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 9,
              "args": [{ "index": 1, "value": 0xf0, "valueTwo": 0x30, "op": "SCMP_CMP_MASKED_EQ" }] },
        ],
    }))
    .filter;
    // getpriority(PRIO_PROCESS, who): `who` is the compared argument.
    let prio = |who: u64| move || raw_syscall(libc::SYS_getpriority, 0, who, 0);
    assert_eq!(in_child(Some(&filter), prio(0)), 0);
    assert_eq!(in_child(Some(&filter), prio(6)), 7);
    assert_eq!(in_child(Some(&filter), prio(0x35)), 9);
}

#[test]
fn same_argument_twice_becomes_alternatives() {
    let compiled = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7,
            "args": [{ "index": 1, "value": 3, "op": "SCMP_CMP_EQ" },
                     { "index": 1, "value": 4, "op": "SCMP_CMP_EQ" }] }],
    }));
    assert!(
        compiled.warnings.iter().any(|w| w.starts_with("linux.seccomp.syscalls[0].args")),
        "{:?}",
        compiled.warnings
    );
    let prio = |who: u64| move || raw_syscall(libc::SYS_getpriority, 0, who, 0);
    assert_eq!(in_child(Some(&compiled.filter), prio(3)), 7);
    assert_eq!(in_child(Some(&compiled.filter), prio(4)), 7);
    assert_eq!(in_child(Some(&compiled.filter), prio(0)), 0);
}

#[test]
fn default_profile_personality() {
    let filter = default_filter();
    let personality = |p: u64| move || raw_syscall(libc::SYS_personality, p, 0, 0);
    for allowed in [0, 8, 0x20000, 0x20008, 0xffff_ffff] {
        assert_eq!(in_child(Some(&filter), personality(allowed)), 0, "{allowed:#x}");
    }
    for denied in [0x1234, 1, 0x0040_0000, 0x0400_0000, 0xffff_fffe, 0x1_0000_0000] {
        assert_eq!(in_child(Some(&filter), personality(denied)), libc::EPERM, "{denied:#x}");
    }
    assert_eq!(in_child(None, personality(0x1234)), 0);
}

#[test]
fn default_profile_denies_tiocsti() {
    let filter = default_filter();
    // SAFETY: posix_openpt(3) opens /dev/ptmx.
    let pty = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
    assert!(pty >= 0, "posix_openpt: {}", errno());
    let byte = b'x';
    let ptr = &raw const byte as u64;
    let fd = pty as u64;
    let ioctl = |req: u64| move || raw_syscall(libc::SYS_ioctl, fd, req, ptr);
    assert_eq!(in_child(Some(&filter), ioctl(0x5412)), libc::EPERM);
    assert_eq!(in_child(Some(&filter), ioctl(0x541c)), libc::EPERM);
    // The kernel reads the request as 32 bits: high bits do not get past the filter.
    assert_eq!(in_child(Some(&filter), ioctl(0x1_0000_5412)), libc::EPERM);
    // Other terminal ioctls still work.
    let mut size = [0u16; 4];
    let size_ptr = size.as_mut_ptr() as u64;
    let winsize = move || raw_syscall(libc::SYS_ioctl, fd, libc::TIOCGWINSZ, size_ptr);
    assert_eq!(in_child(Some(&filter), winsize), 0);
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(pty) };
}

#[test]
fn default_profile_denies_user_namespaces() {
    let filter = default_filter();
    let unshare = |flags: u64| move || raw_syscall(libc::SYS_unshare, flags, 0, 0);
    let newuser = libc::CLONE_NEWUSER as u64;
    // Root may make one without the filter.
    assert_eq!(in_child(None, unshare(newuser)), 0);
    assert_eq!(in_child(Some(&filter), unshare(newuser)), libc::EPERM);
    assert_eq!(in_child(Some(&filter), unshare(newuser | libc::CLONE_NEWNS as u64)), libc::EPERM);
    // Other namespaces are left to capabilities (the test runs as root).
    assert_eq!(in_child(Some(&filter), unshare(libc::CLONE_NEWUTS as u64)), 0);
    // clone with CLONE_NEWUSER is refused before it forks.
    let clone = move || raw_syscall(libc::SYS_clone, newuser | libc::SIGCHLD as u64, 0, 0);
    assert_eq!(in_child(Some(&filter), clone), libc::EPERM);
    // clone3 is ENOSYS, so that libc falls back to clone.
    let args = [0u64; 11];
    let args_ptr = args.as_ptr() as u64;
    let clone3 = move || raw_syscall(libc::SYS_clone3, args_ptr, 88, 0);
    assert_eq!(in_child(Some(&filter), clone3), libc::ENOSYS);
}

#[test]
fn default_profile_denies_kernel_administration() {
    let filter = default_filter();
    let junk = [0u8; 64];
    let junk_ptr = junk.as_ptr() as u64;
    let empty = c"".as_ptr() as u64;
    let reboot_cmd = libc::LINUX_REBOOT_CMD_CAD_OFF as u64;
    let calls: [(&str, libc::c_long, [u64; 3]); 5] = [
        ("init_module", libc::SYS_init_module, [junk_ptr, 64, empty]),
        // A wrong magic: EINVAL without the filter, reboots nothing.
        ("reboot", libc::SYS_reboot, [1, 2, reboot_cmd]),
        ("bpf", libc::SYS_bpf, [0xffff, junk_ptr, 64]),
        ("keyctl", libc::SYS_keyctl, [0xffff, 0, 0]),
        ("finit_module", libc::SYS_finit_module, [u64::MAX, empty, 0]),
    ];
    for (name, nr, [a, b, c]) in calls {
        let call = move || raw_syscall(nr, a, b, c);
        let unfiltered = in_child(None, call);
        assert!(unfiltered != 0 && unfiltered != libc::EPERM, "{name} without the filter: {unfiltered}");
        assert_eq!(in_child(Some(&filter), call), libc::EPERM, "{name}");
    }
}

/// int 0x80 from this 64-bit process: the i386 ABI, whose numbers differ.
#[cfg(target_arch = "x86_64")]
fn int80(nr: u32, arg: u32) -> i32 {
    let mut ret = nr;
    // SAFETY: an i386 system call through int 0x80 with no pointer arguments; it
    // returns in eax, and r8-r11 are declared clobbered (older kernels zeroed them).
    unsafe {
        std::arch::asm!(
            // rbx belongs to LLVM: swap the argument in and back out around the call.
            "xchg {a}, rbx",
            "int 0x80",
            "xchg {a}, rbx",
            a = inout(reg) u64::from(arg) => _,
            inout("eax") ret,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
        )
    };
    let ret = ret as i32;
    if ret < 0 { -ret } else { 0 }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn default_profile_covers_the_x86_abi() {
    const GETPID_I386: u32 = 20;
    const PERSONALITY_I386: u32 = 136;
    if in_child(None, || int80(GETPID_I386, 0)) != 0 {
        eprintln!("skipped: this kernel runs no i386 system calls");
        return;
    }
    let filter = default_filter();
    assert_eq!(in_child(None, || int80(PERSONALITY_I386, 0x1234)), 0);
    assert_eq!(in_child(Some(&filter), || int80(PERSONALITY_I386, 0x1234)), libc::EPERM);
    assert_eq!(in_child(Some(&filter), || int80(PERSONALITY_I386, 8)), 0);
    assert_eq!(in_child(Some(&filter), || int80(GETPID_I386, 0)), 0);
}

#[test]
fn flags_are_applied() {
    let compiled = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                  "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5 }],
    }));
    assert_eq!(compiled.warnings.len(), 1, "{:?}", compiled.warnings);
    assert!(compiled.warnings[0].starts_with("linux.seccomp.flags[3]"));
    let getppid = || raw_syscall(libc::SYS_getppid, 0, 0, 0);
    assert_eq!(in_child(Some(&compiled.filter), getppid), 5);
}

#[test]
fn other_actions() {
    let compiled = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            { "names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS" },
            { "names": ["getpgid"], "action": "SCMP_ACT_KILL" },
            { "names": ["getsid"], "action": "SCMP_ACT_TRAP" },
            { "names": ["getuid"], "action": "SCMP_ACT_LOG" },
            // No tracer: the kernel answers ENOSYS.
            { "names": ["getgid"], "action": "SCMP_ACT_TRACE", "errnoRet": 3 },
        ],
    }));
    let f = Some(&compiled.filter);
    let sys = |nr: libc::c_long| move || raw_syscall(nr, 0, 0, 0);
    assert_eq!(in_child(f, sys(libc::SYS_getppid)), 1000 + libc::SIGSYS);
    assert_eq!(in_child(f, sys(libc::SYS_getpgid)), 1000 + libc::SIGSYS);
    assert_eq!(in_child(f, sys(libc::SYS_getsid)), 1000 + libc::SIGSYS);
    assert_eq!(in_child(f, sys(libc::SYS_getuid)), 0);
    assert_eq!(in_child(f, sys(libc::SYS_getgid)), libc::ENOSYS);
}

#[test]
fn unknown_syscall_names_are_skipped_with_a_warning() {
    let compiled = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["no_such_syscall", "getppid"], "action": "SCMP_ACT_ERRNO" }],
    }));
    assert_eq!(compiled.warnings.len(), 1);
    assert!(
        compiled.warnings[0].starts_with("linux.seccomp.syscalls[0].names[0]")
            && compiled.warnings[0].contains("no_such_syscall"),
        "{:?}",
        compiled.warnings
    );
    let getppid = || raw_syscall(libc::SYS_getppid, 0, 0, 0);
    assert_eq!(in_child(Some(&compiled.filter), getppid), libc::EPERM);
}

#[test]
fn errors_name_the_field() {
    let rule = |r: Value| {
        json!({ "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["getpid"], "action": "SCMP_ACT_LOG" }, r] })
    };
    let e = compile_error(rule(json!({ "names": ["getppid"], "action": "SCMP_ACT_BOGUS" })));
    assert!(e.starts_with("linux.seccomp.syscalls[1].action:"), "{e}");
    assert!(e.contains("SCMP_ACT_BOGUS"), "{e}");

    let e = compile_error(rule(json!({ "names": ["getppid"], "action": "SCMP_ACT_NOTIFY" })));
    assert!(e.starts_with("linux.seccomp.syscalls[1].action:"), "{e}");
    assert!(e.contains("NOTIFY") && e.contains("listener"), "{e}");

    let e = compile_error(rule(json!({ "names": ["getppid"], "action": "SCMP_ACT_ERRNO",
        "args": [{ "index": 0, "value": 1, "op": "SCMP_CMP_BOGUS" }] })));
    assert!(e.starts_with("linux.seccomp.syscalls[1].args[0].op:"), "{e}");

    let e = compile_error(rule(json!({ "names": ["getppid"], "action": "SCMP_ACT_ERRNO",
        "args": [{ "index": 6, "value": 1, "op": "SCMP_CMP_EQ" }] })));
    assert!(e.starts_with("linux.seccomp.syscalls[1].args[0].index:"), "{e}");

    let e =
        compile_error(rule(json!({ "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000 })));
    assert!(e.starts_with("linux.seccomp.syscalls[1].errnoRet:"), "{e}");

    let e = compile_error(rule(json!({ "names": "getppid", "action": "SCMP_ACT_ERRNO" })));
    assert!(e.starts_with("linux.seccomp.syscalls[1].names:"), "{e}");

    let e = compile_error(json!({ "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"] }));
    assert!(e.starts_with("linux.seccomp.architectures[1]:"), "{e}");
    assert!(e.contains("SCMP_ARCH_VAX"), "{e}");

    let e =
        compile_error(json!({ "defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_BOGUS"] }));
    assert!(e.starts_with("linux.seccomp.flags[0]:"), "{e}");

    let e = compile_error(json!({ "defaultAction": "SCMP_ACT_NOTIFY" }));
    assert!(e.starts_with("linux.seccomp.defaultAction:"), "{e}");

    let e = compile_error(json!({ "syscalls": [] }));
    assert!(e.starts_with("linux.seccomp.defaultAction:"), "{e}");
}

#[test]
fn typed_profile_notify_is_refused() {
    let typed: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_NOTIFY" }],
    }))
    .unwrap();
    match seccomp::compile(&typed) {
        Err(SeccompError::Field { field, .. }) => {
            assert_eq!(field, "linux.seccomp.syscalls[0].action")
        }
        other => panic!("{other:?}"),
    }
}

const FIXTURE: &str = include_str!("seccomp_profile.json");

#[test]
fn realistic_profile_runs_a_program() {
    let typed: oci_spec::runtime::LinuxSeccomp = serde_json::from_str(FIXTURE).unwrap();
    let compiled = seccomp::compile(&typed).expect("fixture compiles");
    for w in &compiled.warnings {
        assert!(w.contains("unknown to libseccomp"), "{w}");
    }
    let from_json = compile(serde_json::from_str(FIXTURE).unwrap());
    assert_eq!(from_json.filter.instructions(), compiled.filter.instructions());
    let filter = compiled.filter;

    let true_path = c"/bin/true";
    let argv = [true_path.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    let exec = || {
        // SAFETY: execve(2) with NUL-terminated, null-ended argv and envp.
        unsafe { libc::execve(true_path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        100 + errno()
    };
    assert_eq!(in_child(Some(&filter), exec), 0);
    // Not in the list: the default errno.
    let kexec = || raw_syscall(libc::SYS_kexec_load, 0, 0, 0);
    assert_eq!(in_child(Some(&filter), kexec), libc::EPERM);
    // A conditional errno next to a conditional allow of the same syscall.
    let socket = |family: u64| move || raw_syscall(libc::SYS_socket, family, libc::SOCK_STREAM as u64, 0);
    assert_eq!(in_child(Some(&filter), socket(40)), libc::EAFNOSUPPORT);
    assert_eq!(in_child(Some(&filter), socket(libc::AF_UNIX as u64)), 0);
    // clone3 answers ENOSYS, as the profile says.
    let clone3 = || raw_syscall(libc::SYS_clone3, 0, 0, 0);
    assert_eq!(in_child(Some(&filter), clone3), libc::ENOSYS);
}

#[test]
fn default_profile_runs_a_program() {
    let filter = default_filter();
    let sh = c"/bin/sh";
    let script = c"x=$(echo hi) && [ \"$x\" = hi ] && : > /dev/null";
    let dash_c = c"-c";
    let argv = [sh.as_ptr(), dash_c.as_ptr(), script.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    let exec = || {
        // SAFETY: execve(2) with NUL-terminated, null-ended argv and envp.
        unsafe { libc::execve(sh.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        100 + errno()
    };
    assert_eq!(in_child(Some(&filter), exec), 0);
}

/// A filter stored and read back (a container's state file, the sandbox's
/// parameters) is the same program and still does what it did: compiled once per
/// container, loaded by every process of it.
#[test]
fn a_filter_read_back_is_the_same_and_still_filters() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]
    }))
    .filter;
    let text = serde_json::to_string(&f).unwrap();
    let back: Filter = serde_json::from_str(&text).unwrap();
    assert!(back.same_as(&f) && back.instructions() == f.instructions());
    assert!(!back.same_as(&default_filter()));
    // SAFETY: mkdirat(2) with a NUL-terminated path.
    let rc = in_child(Some(&back), || unsafe {
        result(libc::syscall(libc::SYS_mkdirat, libc::AT_FDCWD, c"/nonexistent-dir/x".as_ptr(), 0o700))
    });
    assert_eq!(rc, 42);
    // Garbage is refused, not loaded.
    assert!(serde_json::from_str::<Filter>(r#"{"program": [], "flags": 0}"#).is_err());
}
