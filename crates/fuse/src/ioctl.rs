//! The file attribute ioctls FUSE forwards (chattr, lsattr): FS_IOC_GETFLAGS and
//! FS_IOC_SETFLAGS (FS_*_FL bits), FS_IOC_FSGETXATTR and FS_IOC_FSSETXATTR (struct
//! fsxattr). The kernel's fileattr code sends them with the flags as a 32-bit int
//! even where the command's declared size is a long, so both sizes are read.

use sandfs_vfs::{Errno, FileFlags, Result};

const FS_IOC_GETFLAGS: u32 = 0x8008_6601;
const FS_IOC_SETFLAGS: u32 = 0x4008_6602;
const FS_IOC32_GETFLAGS: u32 = 0x8004_6601;
const FS_IOC32_SETFLAGS: u32 = 0x4004_6602;
const FS_IOC_FSGETXATTR: u32 = 0x801c_581f;
const FS_IOC_FSSETXATTR: u32 = 0x401c_5820;
/// sizeof(struct fsxattr).
const FSXATTR_SIZE: usize = 28;
/// A flag bit no filesystem here keeps (FS_RESERVED_FL): asks for EOPNOTSUPP once
/// the permission checks passed, for fsxattr fields that have no flag.
const UNSUPPORTED: u32 = 0x8000_0000;

/// How the flags are returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Get {
    /// As FS_*_FL bits.
    Flags,
    /// As a struct fsxattr.
    Fsxattr,
}

/// A decoded request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// Read the flags.
    GetFlags(Get),
    /// Set the flags to these FS_*_FL bits.
    SetFlags(u32),
}

fn u32_at(data: &[u8], at: usize) -> Result<u32> {
    let b = data.get(at..at + 4).ok_or(Errno::INVAL)?;
    Ok(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// Decode an ioctl the kernel forwarded; ENOTTY for commands sandfs does not serve,
/// EINVAL for a short argument.
pub(crate) fn decode(cmd: u32, input: &[u8]) -> Result<Call> {
    match cmd {
        FS_IOC_GETFLAGS | FS_IOC32_GETFLAGS => Ok(Call::GetFlags(Get::Flags)),
        FS_IOC_FSGETXATTR => Ok(Call::GetFlags(Get::Fsxattr)),
        FS_IOC_SETFLAGS | FS_IOC32_SETFLAGS => Ok(Call::SetFlags(u32_at(input, 0)?)),
        FS_IOC_FSSETXATTR => {
            if input.len() < FSXATTR_SIZE {
                return Err(Errno::INVAL);
            }
            let xflags = u32_at(input, 0)?;
            // fsx_extsize, fsx_projid and fsx_cowextsize (fsx_nextents is ignored).
            let other = u32_at(input, 4)? | u32_at(input, 12)? | u32_at(input, 16)?;
            Ok(Call::SetFlags(match FileFlags::from_xflags(xflags) {
                Some(f) if other == 0 => f.bits(),
                Some(f) => f.bits() | UNSUPPORTED,
                None => UNSUPPORTED,
            }))
        }
        _ => Err(Errno::NOTTY),
    }
}

/// The reply to a get: 4 bytes of FS_*_FL bits, or a struct fsxattr.
pub(crate) fn encode(how: Get, flags: FileFlags) -> Vec<u8> {
    match how {
        Get::Flags => flags.bits().to_ne_bytes().to_vec(),
        Get::Fsxattr => {
            let mut out = vec![0u8; FSXATTR_SIZE];
            out[..4].copy_from_slice(&flags.to_xflags().to_ne_bytes());
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_fsxattr_round_trip() {
        let f = FileFlags::IMMUTABLE | FileFlags::NODUMP;
        assert_eq!(decode(FS_IOC_SETFLAGS, &f.bits().to_ne_bytes()), Ok(Call::SetFlags(f.bits())));
        assert_eq!(decode(FS_IOC_SETFLAGS, &[1, 2]), Err(Errno::INVAL));
        let x = encode(Get::Fsxattr, f);
        assert_eq!(u32_at(&x, 0), Ok(0x8 | 0x80));
        assert_eq!(decode(FS_IOC_FSSETXATTR, &x), Ok(Call::SetFlags(f.bits())));
        let mut ext = x.clone();
        ext[4] = 1;
        assert_eq!(decode(FS_IOC_FSSETXATTR, &ext), Ok(Call::SetFlags(f.bits() | UNSUPPORTED)));
        assert_eq!(decode(0x5401, &[]), Err(Errno::NOTTY));
    }
}
