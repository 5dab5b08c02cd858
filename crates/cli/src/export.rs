//! What a run changed, read from the root overlay's upper layer: `--diff` prints it
//! like `git status --short` (A added, M changed, D deleted), `--export-upper` writes
//! it as an OCI image layer (a tar with `.wh.NAME` for deletions and
//! `.wh..wh..opq` in opaque directories, metadata and xattrs in PAX headers).

use anyhow::Result;
use sandfs_overlay::{Overlay, is_opaque, is_private_xattr, is_whiteout};
use sandfs_vfs::{Attr, FileType, NodeRef, OpenFlags};
use std::collections::HashMap;
use std::io::Write;

/// One upper-layer entry, relative path without a leading slash.
struct Entry {
    path: String,
    node: NodeRef,
    attr: Attr,
    whiteout: bool,
    opaque: bool,
    in_lower: bool,
}

fn lower_has(lowers: &[NodeRef], path: &str) -> bool {
    lowers.iter().any(|root| {
        let mut cur = root.clone();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            match cur.lookup(c.as_bytes()) {
                Ok(n) => cur = n,
                Err(_) => return false,
            }
        }
        true
    })
}

/// Every entry of the upper layer, parents before children, sorted by path.
fn walk(ov: &Overlay) -> Result<Vec<Entry>> {
    let lowers = ov.lower_roots();
    let mut out = Vec::new();
    let Some(root) = ov.upper_root() else { return Ok(out) };
    let mut stack = vec![(String::new(), root)];
    while let Some((dir, node)) = stack.pop() {
        let mut names = Vec::new();
        node.readdir(0, &mut |e| {
            names.push(e.name.to_vec());
            true
        })?;
        names.sort();
        for name in names.into_iter().rev() {
            let child = node.lookup(&name)?;
            let attr = child.attr()?;
            let path = format!("{dir}{}", String::from_utf8_lossy(&name));
            let whiteout = is_whiteout(&child);
            let opaque = is_opaque(&child);
            let in_lower = lower_has(&lowers, &path);
            if attr.kind == FileType::Directory {
                stack.push((format!("{path}/"), child.clone()));
            }
            out.push(Entry { path, node: child, attr, whiteout, opaque, in_lower });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Print the changes, one `X path` line each.
pub fn print_diff(ov: &Overlay) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    for e in walk(ov)? {
        let dir = if e.attr.kind == FileType::Directory { "/" } else { "" };
        let code = if e.whiteout {
            'D'
        } else if !e.in_lower {
            'A'
        } else if e.attr.kind == FileType::Directory && !e.opaque {
            continue; // a directory copied up because something inside changed
        } else {
            'M'
        };
        writeln!(stdout, "{code} /{}{dir}", e.path)?;
    }
    Ok(())
}

// ----- a small PAX tar writer -----

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0width$o}", v, width = field.len() - 1);
    let b = s.as_bytes();
    let b = &b[b.len().saturating_sub(field.len() - 1)..];
    field[..b.len()].copy_from_slice(b);
    field[field.len() - 1] = 0;
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let base = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = base + 1;
    while len != base + len.to_string().len() {
        len = base + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn header(name: &[u8], attr: &Attr, typeflag: u8, size: u64, link: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], (attr.mode & 0o7777) as u64);
    octal(&mut h[108..116], attr.uid as u64);
    octal(&mut h[116..124], attr.gid as u64);
    octal(&mut h[124..136], size.min(0o77777777777));
    octal(&mut h[136..148], attr.mtime.sec.max(0) as u64);
    h[156] = typeflag;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    if matches!(typeflag, b'3' | b'4') {
        octal(&mut h[329..337], rustix::fs::major(attr.rdev) as u64);
        octal(&mut h[337..345], rustix::fs::minor(attr.rdev) as u64);
    }
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    octal(&mut h[148..155], sum as u64);
    h[155] = b' ';
    h
}

struct Tar<W: Write> {
    out: W,
}

impl<W: Write> Tar<W> {
    fn pad(&mut self, len: u64) -> Result<()> {
        let rem = (512 - (len % 512) as usize) % 512;
        self.out.write_all(&vec![0u8; rem])?;
        Ok(())
    }

    fn entry(
        &mut self,
        name: &str,
        attr: &Attr,
        typeflag: u8,
        link: &str,
        xattrs: &[(Vec<u8>, Vec<u8>)],
        data: Option<&NodeRef>,
    ) -> Result<()> {
        let size = if data.is_some() { attr.size } else { 0 };
        let mut pax = Vec::new();
        if name.len() > 100 {
            pax.extend(pax_record("path", name.as_bytes()));
        }
        if link.len() > 100 {
            pax.extend(pax_record("linkpath", link.as_bytes()));
        }
        if size > 0o77777777777 {
            pax.extend(pax_record("size", size.to_string().as_bytes()));
        }
        pax.extend(pax_record("mtime", format!("{}.{:09}", attr.mtime.sec, attr.mtime.nsec).as_bytes()));
        for (k, v) in xattrs {
            pax.extend(pax_record(&format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)), v));
        }
        let pax_attr = Attr { mode: 0o644, ..*attr };
        self.out.write_all(&header(b"././@PaxHeader", &pax_attr, b'x', pax.len() as u64, b""))?;
        self.out.write_all(&pax)?;
        self.pad(pax.len() as u64)?;
        self.out.write_all(&header(name.as_bytes(), attr, typeflag, size, link.as_bytes()))?;
        if let Some(node) = data {
            let h = node.clone().open(OpenFlags::READ)?;
            let mut buf = vec![0u8; 1 << 20];
            let mut off = 0u64;
            while off < size {
                let want = ((size - off) as usize).min(buf.len());
                let n = h.read_at(&mut buf[..want], off)?;
                if n == 0 {
                    // The file shrank: pad with zeros to the size announced.
                    buf[..want].fill(0);
                    self.out.write_all(&buf[..want])?;
                    off += want as u64;
                    continue;
                }
                self.out.write_all(&buf[..n])?;
                off += n as u64;
            }
            self.pad(size)?;
        }
        Ok(())
    }
}

/// Write the upper layer as an OCI image layer tar.
pub fn write_layer(ov: &Overlay, file: std::fs::File) -> Result<()> {
    let mut tar = Tar { out: std::io::BufWriter::new(file) };
    let mut links: HashMap<u64, String> = HashMap::new();
    for e in walk(ov)? {
        let (dir, base) = match e.path.rsplit_once('/') {
            Some((d, b)) => (format!("{d}/"), b.to_string()),
            None => (String::new(), e.path.clone()),
        };
        if e.whiteout {
            let a = Attr { mode: 0o644, size: 0, ..e.attr };
            tar.entry(&format!("{dir}.wh.{base}"), &a, b'0', "", &[], None)?;
            continue;
        }
        let xattrs: Vec<(Vec<u8>, Vec<u8>)> = e
            .node
            .listxattr()
            .unwrap_or_default()
            .into_iter()
            .filter(|k| !is_private_xattr(k))
            .filter_map(|k| e.node.getxattr(&k).ok().map(|v| (k, v)))
            .collect();
        match e.attr.kind {
            FileType::Directory => {
                tar.entry(&format!("{}/", e.path), &e.attr, b'5', "", &xattrs, None)?;
                if e.opaque {
                    let a = Attr { mode: 0o644, size: 0, ..e.attr };
                    tar.entry(&format!("{}/.wh..wh..opq", e.path), &a, b'0', "", &[], None)?;
                }
            }
            FileType::Regular => {
                if e.attr.nlink > 1 {
                    if let Some(first) = links.get(&e.attr.ino) {
                        tar.entry(&e.path, &e.attr, b'1', &first.clone(), &[], None)?;
                        continue;
                    }
                    links.insert(e.attr.ino, e.path.clone());
                }
                tar.entry(&e.path, &e.attr, b'0', "", &xattrs, Some(&e.node))?;
            }
            FileType::Symlink => {
                let t = String::from_utf8_lossy(&e.node.readlink()?).into_owned();
                tar.entry(&e.path, &e.attr, b'2', &t, &xattrs, None)?;
            }
            FileType::CharDevice => tar.entry(&e.path, &e.attr, b'3', "", &xattrs, None)?,
            FileType::BlockDevice => tar.entry(&e.path, &e.attr, b'4', "", &xattrs, None)?,
            FileType::Fifo => tar.entry(&e.path, &e.attr, b'6', "", &xattrs, None)?,
            FileType::Socket => {} // sockets do not go into image layers
        }
    }
    tar.out.write_all(&[0u8; 1024])?;
    tar.out.flush()?;
    Ok(())
}
