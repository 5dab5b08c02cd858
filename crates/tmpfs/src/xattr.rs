//! Extended attributes of one inode: a short list, allocated only when the first
//! attribute is set, so files without xattrs pay one pointer.

use sandfs_vfs::{Errno, Result, XattrFlags};

/// One attribute: name and value.
type Item = (Box<[u8]>, Box<[u8]>);

/// Name/value pairs.
#[derive(Default)]
pub(crate) struct Xattrs {
    items: Vec<Item>,
}

impl Xattrs {
    pub fn get(&self, name: &[u8]) -> Result<Vec<u8>> {
        self.items.iter().find(|(n, _)| &**n == name).map(|(_, v)| v.to_vec()).ok_or(Errno::NODATA)
    }

    pub fn set(&mut self, name: &[u8], value: &[u8], flags: XattrFlags) -> Result<()> {
        match self.items.iter_mut().find(|(n, _)| &**n == name) {
            Some(_) if flags.contains(XattrFlags::CREATE) => Err(Errno::EXIST),
            Some((_, v)) => {
                *v = value.into();
                Ok(())
            }
            None if flags.contains(XattrFlags::REPLACE) => Err(Errno::NODATA),
            None => {
                self.items.push((name.into(), value.into()));
                Ok(())
            }
        }
    }

    pub fn list(&self) -> Vec<Vec<u8>> {
        self.items.iter().map(|(n, _)| n.to_vec()).collect()
    }

    pub fn remove(&mut self, name: &[u8]) -> Result<()> {
        let i = self.items.iter().position(|(n, _)| &**n == name).ok_or(Errno::NODATA)?;
        self.items.remove(i);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}
