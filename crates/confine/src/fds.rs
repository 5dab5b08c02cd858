//! Only stdio reaches the program: every other descriptor is marked close-on-exec
//! before exec (the caller may have left some open without it, and a descriptor is
//! a capability: a host file, a socket, a terminal).

use std::os::fd::BorrowedFd;

/// Mark every open descriptor numbered `from` or above close-on-exec.
pub fn cloexec_from(from: i32) -> Result<(), String> {
    let dir = std::fs::read_dir("/proc/self/fd").map_err(|e| format!("list /proc/self/fd: {e}"))?;
    let fds: Vec<i32> =
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).filter(|&n| n >= from).collect();
    for n in fds {
        // SAFETY: only the descriptor flags are changed; a number that closed since
        // the listing (the directory's own) gives EBADF, which is fine.
        let fd = unsafe { BorrowedFd::borrow_raw(n) };
        match rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC) {
            Ok(()) | Err(rustix::io::Errno::BADF) => {}
            Err(e) => return Err(format!("close descriptor {n} on exec: {e}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn an_inherited_descriptor_is_not_passed_on() {
        let f = tempfile::tempfile().unwrap();
        rustix::io::fcntl_setfd(&f, rustix::io::FdFlags::empty()).unwrap();
        cloexec_from(3).unwrap();
        let flags = rustix::io::fcntl_getfd(&f).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC), "fd {}", f.as_raw_fd());
    }
}
