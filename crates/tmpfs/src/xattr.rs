//! Extended attributes of one inode: a map by name (listed in name order),
//! allocated only when the first attribute is set, so files without xattrs pay one
//! pointer. Each attribute is charged to the filesystem ([`XATTR_COST`] + name +
//! value bytes) while it exists; their number is bounded only by that space, as on
//! kernel tmpfs.

use crate::{Shared, XATTR_COST};
use sandfs_vfs::{Errno, Result, XattrFlags};
use std::collections::BTreeMap;

/// Bytes charged for an attribute.
fn cost(name: &[u8], value: &[u8]) -> u64 {
    XATTR_COST + name.len() as u64 + value.len() as u64
}

/// Name/value pairs.
#[derive(Default)]
pub(crate) struct Xattrs {
    items: BTreeMap<Box<[u8]>, Box<[u8]>>,
    /// Bytes charged for them.
    charged: u64,
}

impl Xattrs {
    pub fn get(&self, name: &[u8]) -> Result<Vec<u8>> {
        self.items.get(name).map(|v| v.to_vec()).ok_or(Errno::NODATA)
    }

    /// Set `name`; ENOSPC (nothing changed) when the filesystem has no room for
    /// what the value adds.
    pub fn set(&mut self, name: &[u8], value: &[u8], flags: XattrFlags, fs: &Shared) -> Result<()> {
        match self.items.get_mut(name) {
            Some(_) if flags.contains(XattrFlags::CREATE) => Err(Errno::EXIST),
            Some(v) => {
                let (old, new) = (cost(name, v), cost(name, value));
                if new > old {
                    fs.charge(new - old)?;
                } else {
                    fs.uncharge(old - new);
                }
                self.charged = self.charged - old + new;
                *v = value.into();
                Ok(())
            }
            None if flags.contains(XattrFlags::REPLACE) => Err(Errno::NODATA),
            None => {
                let c = cost(name, value);
                fs.charge(c)?;
                self.charged += c;
                self.items.insert(name.into(), value.into());
                Ok(())
            }
        }
    }

    pub fn list(&self) -> Vec<Vec<u8>> {
        self.items.keys().map(|n| n.to_vec()).collect()
    }

    /// Remove `name`, giving its bytes back.
    pub fn remove(&mut self, name: &[u8], fs: &Shared) -> Result<()> {
        let v = self.items.remove(name).ok_or(Errno::NODATA)?;
        let c = cost(name, &v);
        self.charged -= c;
        fs.uncharge(c);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes charged for every attribute (to give back when the inode goes).
    pub fn charged(&self) -> u64 {
        self.charged
    }
}
