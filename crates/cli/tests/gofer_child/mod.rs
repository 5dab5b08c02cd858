//! The real `sandfs gofer` process for this crate's tests (`mod gofer_child;`): spawned
//! with one end of a SEQPACKET socketpair inherited, killed and reaped on drop.
#![allow(dead_code)]

use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd};
use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
use rustix::process::{Pid, Signal};
use sandfs_gofer::client::{FileAccess, GoferFs};
use sandfs_gofer::transport::Conn;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

pub fn skip(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return false;
    }
    eprintln!(
        "SKIP {test}: needs root (the gofer's confinement makes a mount namespace, bind mounts \
         and pivot_root)"
    );
    true
}

/// A running gofer; killed and reaped when dropped, whatever happened.
pub struct Gofer {
    pub child: Child,
    log: PathBuf,
    _logdir: tempfile::TempDir,
}

impl Gofer {
    /// Start `sandfs gofer --serve FD:PATH[:ro]` and attach a client to it.
    pub fn start(source: &Path, readonly: bool, access: FileAccess) -> (Gofer, Arc<GoferFs>) {
        Gofer::start_with(source, readonly, access, &[])
    }

    /// Start `sandfs gofer --serve FD:PATH[:ro] EXTRA...` and attach a client to it.
    pub fn start_with(
        source: &Path,
        readonly: bool,
        access: FileAccess,
        extra: &[&str],
    ) -> (Gofer, Arc<GoferFs>) {
        let (g, conn) = Gofer::spawn_with(source, readonly, extra);
        let fs = match GoferFs::attach(conn, access) {
            Ok(fs) => fs,
            Err(e) => panic!("attach to the gofer: {e}\n--- gofer log ---\n{}", g.log()),
        };
        (g, fs)
    }

    /// Start `sandfs gofer --serve FD:PATH[:ro]`; the connection to it.
    pub fn spawn(source: &Path, readonly: bool) -> (Gofer, Conn) {
        Gofer::spawn_with(source, readonly, &[])
    }

    /// Start `sandfs gofer --serve FD:PATH[:ro] EXTRA...`; the connection to it.
    pub fn spawn_with(source: &Path, readonly: bool, extra: &[&str]) -> (Gofer, Conn) {
        // Both ends close on exec; the child's end is made inheritable only in the
        // child, between fork and exec, so no other test's child (tests run in
        // parallel threads) inherits it and keeps the connection alive after a kill.
        let (mine, theirs): (OwnedFd, OwnedFd) =
            socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
                .expect("socketpair");
        let raw = theirs.as_raw_fd();
        let logdir = tempfile::tempdir().expect("tempdir");
        let log = logdir.path().join("gofer.log");
        let spec = format!("{raw}:{}{}", source.display(), if readonly { ":ro" } else { "" });
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sandfs"));
        cmd.args(["gofer", "--serve", &spec])
            .args(extra)
            .env("SANDFS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        // SAFETY: fcntl is async-signal-safe; `raw` stays open in the parent until
        // after spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                let fd = BorrowedFd::borrow_raw(raw);
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn().expect("spawn sandfs gofer");
        drop(theirs);
        (Gofer { child, log, _logdir: logdir }, Conn::new(mine))
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32).expect("pid")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn proc(&self, what: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{what}", self.child.id()))
            .unwrap_or_else(|e| panic!("/proc/{}/{what}: {e}", self.child.id()))
    }

    pub fn kill(&mut self) {
        let _ = rustix::process::kill_process(self.pid(), Signal::KILL);
    }
}

impl Drop for Gofer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
