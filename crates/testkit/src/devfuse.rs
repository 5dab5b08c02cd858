//! /dev/fuse opened to every user for a rootless test, as distributions ship it,
//! and put back as it was when the test ends.

use std::os::unix::fs::PermissionsExt;

const DEV_FUSE: &str = "/dev/fuse";

/// Restores /dev/fuse's mode on drop (also when the test fails).
#[derive(Debug)]
pub struct OpenToUsers {
    mode: u32,
}

impl OpenToUsers {
    /// Makes /dev/fuse mode 0666, remembering its mode. `None` when there is no
    /// /dev/fuse; any other failure (no permission to chmod it) is the error.
    pub fn new() -> std::io::Result<Option<OpenToUsers>> {
        let meta = match std::fs::metadata(DEV_FUSE) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            r => r?,
        };
        let mode = meta.permissions().mode() & 0o7777;
        std::fs::set_permissions(DEV_FUSE, PermissionsExt::from_mode(0o666))?;
        Ok(Some(OpenToUsers { mode }))
    }
}

impl Drop for OpenToUsers {
    fn drop(&mut self) {
        if let Err(e) = std::fs::set_permissions(DEV_FUSE, PermissionsExt::from_mode(self.mode)) {
            eprintln!("could not restore {DEV_FUSE} to mode {:o}: {e}", self.mode);
        }
    }
}
