//! Passing one descriptor over a unix socket (SCM_RIGHTS): the sandbox mounts the
//! FUSE view inside its user namespace and hands the /dev/fuse descriptor to the
//! runtime, which serves it.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags,
};
use std::io;
use std::mem::MaybeUninit;

/// Send `fd` (with one byte of data) on the connected socket `sock`.
pub fn send_fd(sock: impl AsFd, fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    let fds = [fd];
    if !anc.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("ancillary buffer too small"));
    }
    rustix::net::sendmsg(sock, &[io::IoSlice::new(&[1])], &mut anc, SendFlags::empty())?;
    Ok(())
}

/// Receive one descriptor sent by [`send_fd`]; `None` when the peer closed without
/// sending one.
pub fn recv_fd(sock: impl AsFd) -> io::Result<Option<OwnedFd>> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    let r = loop {
        match rustix::net::recvmsg(
            &sock,
            &mut [io::IoSliceMut::new(&mut byte)],
            &mut anc,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            r => break r?,
        }
    };
    if r.bytes == 0 {
        return Ok(None);
    }
    for msg in anc.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg
            && let Some(fd) = fds.next()
        {
            return Ok(Some(fd));
        }
    }
    Ok(None)
}
