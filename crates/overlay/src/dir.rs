//! Merged directory listings. Entries come from the upper directory first (minus
//! whiteouts), then from each lower directory in order, minus names an upper or
//! higher layer has (whiteouts included). Each layer's own cookies are stable, so an
//! overlay cookie is an index into a per-directory table of (layer, layer cookie)
//! pairs: a listing resumes exactly where it stopped however entries come and go.

use crate::node::{Children, ONode, is_whiteout, lower_is_whiteout};
use sandfs_vfs::{DirEntry, Errno, FileType, NodeRef, Result};
use std::collections::HashMap;

/// Per-directory state: cached children and the cookie table.
#[derive(Default)]
pub(crate) struct DirState {
    pub children: Children,
    cookies: Vec<(u8, u64)>,
    index: HashMap<(u8, u64), u64>,
}

impl DirState {
    fn cookie(&mut self, layer: u8, c: u64) -> u64 {
        if let Some(&k) = self.index.get(&(layer, c)) {
            return k;
        }
        self.cookies.push((layer, c));
        let k = self.cookies.len() as u64;
        self.index.insert((layer, c), k);
        k
    }
}

/// List `dir` from overlay cookie `after`.
pub(crate) fn readdir(dir: &ONode, after: u64, sink: &mut dyn FnMut(DirEntry<'_>) -> bool) -> Result<()> {
    if dir.kind != FileType::Directory {
        return Err(Errno::NOTDIR);
    }
    let upper = dir.upper();
    let lowers = if *dir.opaque.lock() { Vec::new() } else { dir.lowers.lock().clone() };
    let (mut layer, mut cookie) = if after == 0 {
        (0u8, 0u64)
    } else {
        match dir.dir().ok_or(Errno::NOTDIR)?.cookies.get(after as usize - 1) {
            Some(&x) => x,
            None => return Ok(()),
        }
    };
    let nlayers = 1 + lowers.len() as u8;
    while layer < nlayers {
        let mut stopped = false;
        let mut emit = |name: &[u8], real_ino: u64, kind: FileType, layer_tag: u8, off: u64| -> bool {
            let ino = match dir.dir().and_then(|d| d.children.get(name).map(|c| c.ino)) {
                Some(ino) => ino,
                None => dir.fs.ino(layer_tag, real_ino),
            };
            let oc = dir.dir().map_or(0, |mut d| d.cookie(layer, off));
            if sink(DirEntry { name, ino, kind, offset: oc }) {
                true
            } else {
                stopped = true;
                false
            }
        };
        if layer == 0 {
            if let Some(u) = &upper {
                u.readdir(cookie, &mut |e| {
                    if e.kind == FileType::CharDevice
                        && u.lookup(e.name).map(|n| is_whiteout(&n)).unwrap_or(false)
                    {
                        return true;
                    }
                    emit(e.name, e.ino, e.kind, 0, e.offset)
                })?;
            }
        } else {
            let i = (layer - 1) as usize;
            let l = &lowers[i];
            let hidden = |name: &[u8]| -> bool {
                upper.as_ref().is_some_and(|u: &NodeRef| u.lookup(name).is_ok())
                    || lowers[..i].iter().any(|h| h.lookup(name).is_ok())
            };
            l.readdir(cookie, &mut |e| {
                if hidden(e.name) {
                    return true;
                }
                if e.kind == FileType::CharDevice
                    && l.lookup(e.name).map(|n| lower_is_whiteout(&n)).unwrap_or(false)
                {
                    return true;
                }
                emit(e.name, e.ino, e.kind, 1 + l.layer(), e.offset)
            })?;
        }
        if stopped {
            return Ok(());
        }
        layer += 1;
        cookie = 0;
    }
    Ok(())
}
