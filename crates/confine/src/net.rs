//! The network namespace's loopback: a new network namespace starts with `lo` down;
//! the sandbox brings it up (SIOCSIFFLAGS on a datagram socket) so programs that
//! talk to themselves over 127.0.0.1 work, and nothing else is reachable.

use rustix::fd::AsFd;
use rustix::net::{AddressFamily, SocketType};

/// `struct ifreq` as the flag ioctls use it: the name and a short of flags, padded
/// to the kernel's 40 bytes.
#[repr(C)]
struct IfreqFlags {
    name: [u8; 16],
    flags: i16,
    pad: [u8; 22],
}

const SIOCGIFFLAGS: u32 = 0x8913;
const SIOCSIFFLAGS: u32 = 0x8914;
const IFF_UP: i16 = 0x1;

/// Bring interface `lo` up in the current network namespace.
pub fn loopback_up() -> Result<(), String> {
    let sock = rustix::net::socket(AddressFamily::INET, SocketType::DGRAM, None)
        .map_err(|e| format!("socket for the loopback: {e}"))?;
    let mut req = IfreqFlags { name: [0; 16], flags: 0, pad: [0; 22] };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: SIOCGIFFLAGS reads and fills a `struct ifreq`, which IfreqFlags lays
    // out (name, then the flags short, padded to the kernel's size).
    unsafe {
        let get = rustix::ioctl::Updater::<{ SIOCGIFFLAGS as _ }, IfreqFlags>::new(&mut req);
        rustix::ioctl::ioctl(sock.as_fd(), get).map_err(|e| format!("read the flags of lo: {e}"))?;
    }
    req.flags |= IFF_UP;
    // SAFETY: as above; SIOCSIFFLAGS reads the same structure.
    unsafe {
        let set = rustix::ioctl::Updater::<{ SIOCSIFFLAGS as _ }, IfreqFlags>::new(&mut req);
        rustix::ioctl::ioctl(sock.as_fd(), set).map_err(|e| format!("bring lo up: {e}"))?;
    }
    Ok(())
}
