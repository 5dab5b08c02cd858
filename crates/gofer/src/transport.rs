//! One connection: a SOCK_SEQPACKET Unix socket carrying whole messages, with host
//! file descriptors passed alongside as SCM_RIGHTS. A message or control data that
//! does not fit is a protocol error, never a partial read.

use crate::proto::MAX_MESSAGE;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType, recvmsg, sendmsg, socketpair,
};
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;

/// Most descriptors in one message.
pub const MAX_FDS: usize = 2;

/// A connected SEQPACKET socket.
pub struct Conn {
    fd: OwnedFd,
    /// Receive buffer, allocated and zeroed once (a message is copied out of it:
    /// zeroing 256 KiB per receive cost more than the messages themselves).
    scratch: parking_lot::Mutex<Vec<u8>>,
}

/// Why a receive failed.
#[derive(Debug, PartialEq, Eq)]
pub enum RecvError {
    /// The peer closed the connection.
    Closed,
    /// The message or its control data was too large, or carried more descriptors
    /// than allowed.
    Malformed(&'static str),
    /// The message arrived whole (in the buffer), but descriptors sent with it were
    /// dropped by the kernel: this process's descriptor table is full (EMFILE). The
    /// connection is fine; the operation that wanted them is not.
    FdsLost,
    /// The socket failed.
    Io(Errno),
}

impl Conn {
    /// Wrap a connected SEQPACKET socket.
    pub fn new(fd: OwnedFd) -> Conn {
        // A SEQPACKET message must fit the sender's buffer (EMSGSIZE otherwise), and
        // the default (net.core.wmem_default, 208 KiB) is below MAX_MESSAGE: a
        // listing of a large directory broke the connection. Best effort: the kernel
        // caps the size at net.core.wmem_max.
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(&fd, 2 * MAX_MESSAGE);
        Conn { fd, scratch: parking_lot::Mutex::new(Vec::new()) }
    }

    /// A connected pair; both ends close on exec.
    pub fn pair() -> Result<(Conn, Conn), Errno> {
        let (a, b) = socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
        Ok((Conn::new(a), Conn::new(b)))
    }

    /// The socket.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Give up the socket.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Send one message with descriptors.
    pub fn send(&self, msg: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), Errno> {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(Errno::INVAL);
        }
        loop {
            match sendmsg(&self.fd, &[IoSlice::new(msg)], &mut control, SendFlags::NOSIGNAL) {
                Ok(_) => return Ok(()),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Receive one message into `buf` (resized to fit) and its descriptors.
    pub fn recv(&self, buf: &mut Vec<u8>, fds: &mut Vec<OwnedFd>) -> Result<(), RecvError> {
        self.recv_spinning(buf, fds, std::time::Duration::ZERO)
    }

    /// [`Conn::recv`], polling for up to `spin` before it sleeps (see
    /// [`crate::server::Server::serve`] for why).
    pub fn recv_spinning(
        &self,
        buf: &mut Vec<u8>,
        fds: &mut Vec<OwnedFd>,
        spin: std::time::Duration,
    ) -> Result<(), RecvError> {
        let mut scratch = self.scratch.lock();
        if scratch.len() < MAX_MESSAGE + 1 {
            scratch.resize(MAX_MESSAGE + 1, 0);
        }
        fds.clear();
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let start = (!spin.is_zero()).then(std::time::Instant::now);
        let r = loop {
            let spinning = start.is_some_and(|s| s.elapsed() < spin);
            let flags = if spinning {
                RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT
            } else {
                RecvFlags::CMSG_CLOEXEC
            };
            match recvmsg(&self.fd, &mut [IoSliceMut::new(&mut scratch)], &mut control, flags) {
                Ok(r) => break r,
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) if spinning => {
                    // Polling only keeps this CPU from going idle: anything else
                    // runnable on it goes first.
                    rustix::thread::sched_yield();
                    continue;
                }
                Err(e) => return Err(RecvError::Io(e)),
            }
        };
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = msg {
                fds.extend(received);
            }
        }
        if r.bytes == 0 && fds.is_empty() {
            return Err(RecvError::Closed);
        }
        // Truncated control data with room left for descriptors: the kernel could
        // not install them (a full descriptor table); with no room left, the peer
        // sent more than a message may carry.
        if fds.len() >= MAX_FDS && r.flags.contains(ReturnFlags::CTRUNC) || fds.len() > MAX_FDS {
            return Err(RecvError::Malformed("too many descriptors"));
        }
        if r.flags.contains(ReturnFlags::TRUNC) || r.bytes > MAX_MESSAGE {
            return Err(RecvError::Malformed("message too large"));
        }
        buf.clear();
        buf.extend_from_slice(&scratch[..r.bytes]);
        if r.flags.contains(ReturnFlags::CTRUNC) {
            fds.clear();
            return Err(RecvError::FdsLost);
        }
        Ok(())
    }
}
