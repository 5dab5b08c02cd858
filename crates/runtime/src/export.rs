//! What a run changed, read from the root overlay's upper layer: `--diff` prints it
//! like `git status --short` (A added, M changed, D deleted), `--export-upper` writes
//! it as an OCI image layer (a tar with `.wh.NAME` for deletions and
//! `.wh..wh..opq` in opaque directories, metadata and xattrs in PAX headers).

use anyhow::Result;
use sandfs_gofer::journal::{Change, Journal};
use sandfs_overlay::{Overlay, is_opaque, is_private_xattr, is_whiteout};
use sandfs_vfs::{Attr, FileType, NodeRef, OpenFlags};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// One upper-layer entry; its path is the walk's ([`Walk::path`]).
struct Entry {
    node: NodeRef,
    attr: Attr,
    whiteout: bool,
    opaque: bool,
    in_lower: bool,
    /// The same name in the topmost lower layer that has it.
    lower: Option<NodeRef>,
}

/// A directory being listed: the names still to visit (sorted, last first), the
/// same directory in the lower layers that have it, where its path starts in the
/// walk's buffer, and its place in the walk's arena once something needed it.
struct Frame {
    node: NodeRef,
    names: Vec<Vec<u8>>,
    lowers: Vec<NodeRef>,
    prefix: usize,
    id: Option<u32>,
}

/// A depth-first walk of the upper layer: parents before children, siblings in
/// name order. It keeps one path buffer (pushed and popped, never copied per
/// level) and a frame per level holding only what is left to list there, so memory
/// is proportional to the depth (and the widest directory's names), not to the sum
/// of the paths; it loops instead of recursing, so no depth overflows the stack.
struct Walk {
    stack: Vec<Frame>,
    /// The current entry's path (relative, no leading or trailing slash).
    path: String,
    /// The directory the last entry was, to descend into on the next step.
    descend: Option<(NodeRef, Vec<NodeRef>)>,
    /// Paths kept for later ([`Walk::remember`]): (parent id or `u32::MAX`, name).
    arena: Vec<(u32, Box<str>)>,
}

/// A directory's names, sorted, last first (popped in order).
fn names_of(dir: &NodeRef) -> Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    dir.readdir(0, &mut |e| {
        names.push(e.name.to_vec());
        true
    })?;
    names.sort_unstable_by(|a, b| b.cmp(a));
    Ok(names)
}

impl Walk {
    fn new(ov: &Overlay) -> Result<Walk> {
        let mut stack = Vec::new();
        if let Some(root) = ov.upper_root() {
            let names = names_of(&root)?;
            stack.push(Frame { node: root, names, lowers: ov.lower_roots(), prefix: 0, id: None });
        }
        Ok(Walk { stack, path: String::new(), descend: None, arena: Vec::new() })
    }

    /// The next entry, or `None` at the end.
    fn next(&mut self) -> Result<Option<Entry>> {
        if let Some((node, lowers)) = self.descend.take() {
            self.path.push('/');
            let names = names_of(&node)?;
            self.stack.push(Frame { node, names, lowers, prefix: self.path.len(), id: None });
        }
        loop {
            let Some(top) = self.stack.last_mut() else { return Ok(None) };
            let Some(name) = top.names.pop() else {
                self.stack.pop();
                continue;
            };
            self.path.truncate(top.prefix);
            self.path.push_str(&String::from_utf8_lossy(&name));
            let node = top.node.lookup(&name)?;
            let attr = node.attr()?;
            let lowers: Vec<NodeRef> = top.lowers.iter().filter_map(|l| l.lookup(&name).ok()).collect();
            let in_lower = !lowers.is_empty();
            let lower = lowers.first().cloned();
            if attr.kind == FileType::Directory {
                self.descend = Some((node.clone(), lowers));
            }
            let (whiteout, opaque) = (is_whiteout(&node), is_opaque(&node));
            return Ok(Some(Entry { node, attr, whiteout, opaque, in_lower, lower }));
        }
    }

    /// The last entry's path.
    fn path(&self) -> &str {
        &self.path
    }

    /// Keep the last entry's path for later ([`Walk::recall`]); the arena stores
    /// each directory on the way once, so many kept paths cost their names only.
    fn remember(&mut self) -> u32 {
        let mut parent = u32::MAX;
        for i in 0..self.stack.len() {
            let id = match self.stack[i].id {
                Some(id) => id,
                None => {
                    // Frame i > 0 is the directory named between its parent's prefix
                    // and its own (less the slash); the root frame has no name.
                    let name = if i == 0 {
                        ""
                    } else {
                        &self.path[self.stack[i - 1].prefix..self.stack[i].prefix - 1]
                    };
                    self.arena.push((parent, name.into()));
                    let id = (self.arena.len() - 1) as u32;
                    self.stack[i].id = Some(id);
                    id
                }
            };
            parent = id;
        }
        let start = self.stack.last().map(|f| f.prefix).unwrap_or(0);
        self.arena.push((parent, self.path[start..].into()));
        (self.arena.len() - 1) as u32
    }

    /// A path kept by [`Walk::remember`].
    fn recall(&self, id: u32) -> String {
        let mut parts = Vec::new();
        let mut cur = id;
        while let Some((parent, name)) = self.arena.get(cur as usize) {
            if !name.is_empty() {
                parts.push(&**name);
            }
            cur = *parent;
        }
        parts.reverse();
        parts.join("/")
    }
}

/// How `--diff` writes the changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    /// One `X /path` line each, like `git status --short`.
    Text,
    /// A JSON array of `{"change": "A"|"M"|"D", "path": ..., "kind": ...}`.
    Json,
}

/// Write the changes to `out`: A added, M changed (content or metadata differ from
/// the lower layer: a copy-up alone is not a change), D deleted; directories end in
/// `/`; control characters and backslashes in names are escaped (`\n`, `\x1b`).
#[cfg(test)]
pub fn write_diff(ov: &Overlay, out: &mut impl Write, format: DiffFormat) -> Result<()> {
    write_diff_with(Some(ov), &[], out, format)
}

/// [`write_diff`] of the root overlay `ov` (if any), then of the mounts that write
/// to the host (destination, and the journal of the changes made through it: what
/// the gofer client sent), each path under its destination, in the same format.
pub fn write_diff_with(
    ov: Option<&Overlay>,
    mounts: &[(PathBuf, Arc<Journal>)],
    out: &mut impl Write,
    format: DiffFormat,
) -> Result<()> {
    let mut first = true;
    if format == DiffFormat::Json {
        write!(out, "[")?;
    }
    let mut line = |out: &mut dyn Write, code: char, path: &str, kind: &str| -> Result<()> {
        match format {
            DiffFormat::Text => writeln!(out, "{code} {}", escape(path))?,
            DiffFormat::Json => {
                let v = serde_json::json!({"change": code.to_string(), "path": path, "kind": kind});
                write!(out, "{}\n{v}", if first { "" } else { "," })?;
            }
        }
        first = false;
        Ok(())
    };
    if let Some(ov) = ov {
        let mut walk = Walk::new(ov)?;
        while let Some(e) = walk.next()? {
            let dir = if e.attr.kind == FileType::Directory { "/" } else { "" };
            let code = if e.whiteout {
                'D'
            } else if !e.in_lower {
                'A'
            } else if e.opaque {
                'M' // replaced: what the lower layer had under it is hidden
            } else {
                match &e.lower {
                    Some(l) if !differs(&e.node, &e.attr, l)? => continue,
                    _ => 'M',
                }
            };
            let kind = if e.whiteout { "deleted" } else { kind_name(e.attr.kind) };
            line(out, code, &format!("/{}{dir}", walk.path()), kind)?;
        }
    }
    for (dest, journal) in mounts {
        let dest = dest.to_string_lossy();
        let dest = dest.trim_end_matches('/');
        for e in journal.entries() {
            let (dir, kind) = match e.change {
                Change::Deleted => ("", "deleted"),
                _ if e.kind == FileType::Directory => ("/", "directory"),
                _ => ("", kind_name(e.kind)),
            };
            let sep = if e.path.is_empty() { "" } else { "/" };
            let path = format!("{dest}{sep}{}{dir}", String::from_utf8_lossy(&e.path));
            line(out, e.change.code(), &path, kind)?;
        }
        if journal.missed() > 0 {
            eprintln!(
                "sandfs: --diff: {} changes under {dest} are not listed (more than {} paths changed there)",
                journal.missed(),
                sandfs_gofer::journal::JOURNAL_MAX
            );
        }
    }
    if format == DiffFormat::Json {
        writeln!(out, "{}]", if first { "" } else { "\n" })?;
    }
    out.flush()?;
    Ok(())
}

fn kind_name(k: FileType) -> &'static str {
    match k {
        FileType::Directory => "directory",
        FileType::Regular => "file",
        FileType::Symlink => "symlink",
        _ => "special",
    }
}

/// `path` with control characters and backslashes escaped, one entry per line.
fn escape(path: &str) -> String {
    let mut s = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            c if c.is_control() => s.push_str(&format!("\\x{:02x}", c as u32)),
            c => s.push(c),
        }
    }
    s
}

/// Whether the upper copy `node` (with `attr`) differs from `lower` in content or
/// metadata (kind, mode, owner, size and mtime of non-directories, symlink target,
/// xattrs, file bytes).
fn differs(node: &NodeRef, attr: &Attr, lower: &NodeRef) -> Result<bool> {
    let la = lower.attr()?;
    // A directory's mtime and size move when a child is copied up into it: only
    // its mode, owner and xattrs are its own changes.
    let dir = attr.kind == FileType::Directory;
    if la.kind != attr.kind
        || la.mode != attr.mode
        || la.uid != attr.uid
        || la.gid != attr.gid
        || (!dir && (la.mtime != attr.mtime || la.size != attr.size))
    {
        return Ok(true);
    }
    let xattrs = |n: &NodeRef| -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut v = Vec::new();
        for name in n.listxattr().unwrap_or_default() {
            if is_private_xattr(&name) {
                continue;
            }
            let value = n.getxattr(&name).unwrap_or_default();
            v.push((name, value));
        }
        v.sort();
        Ok(v)
    };
    if xattrs(node)? != xattrs(lower)? {
        return Ok(true);
    }
    match attr.kind {
        FileType::Symlink => Ok(node.readlink()? != lower.readlink()?),
        FileType::Regular => {
            let (a, b) = (node.clone().open(OpenFlags::READ)?, lower.clone().open(OpenFlags::READ)?);
            let (mut x, mut y) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
            let mut off = 0u64;
            loop {
                let n = a.read_at(&mut x, off)?;
                let m = b.read_at(&mut y, off)?;
                if n != m || x[..n] != y[..m] {
                    return Ok(true);
                }
                if n == 0 {
                    return Ok(false);
                }
                off += n as u64;
            }
        }
        _ => Ok(false),
    }
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
pub fn write_layer(ov: &Overlay, out: impl Write) -> Result<()> {
    let mut tar = Tar { out: std::io::BufWriter::new(out) };
    // The first path of each inode with more links (kept in the walk's arena).
    let mut links: HashMap<u64, u32> = HashMap::new();
    let mut walk = Walk::new(ov)?;
    while let Some(e) = walk.next()? {
        let path = walk.path();
        if e.whiteout {
            let (dir, base) = match path.rsplit_once('/') {
                Some((d, b)) => (&path[..d.len() + 1], b),
                None => ("", path),
            };
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
                tar.entry(&format!("{path}/"), &e.attr, b'5', "", &xattrs, None)?;
                if e.opaque {
                    let a = Attr { mode: 0o644, size: 0, ..e.attr };
                    tar.entry(&format!("{path}/.wh..wh..opq"), &a, b'0', "", &[], None)?;
                }
            }
            FileType::Regular => {
                if e.attr.nlink > 1 {
                    if let Some(&first) = links.get(&e.attr.ino) {
                        let first = walk.recall(first);
                        tar.entry(walk.path(), &e.attr, b'1', &first, &[], None)?;
                        continue;
                    }
                    let id = walk.remember();
                    links.insert(e.attr.ino, id);
                }
                tar.entry(walk.path(), &e.attr, b'0', "", &xattrs, Some(&e.node))?;
            }
            FileType::Symlink => {
                let t = String::from_utf8_lossy(&e.node.readlink()?).into_owned();
                tar.entry(path, &e.attr, b'2', &t, &xattrs, None)?;
            }
            FileType::CharDevice => tar.entry(path, &e.attr, b'3', "", &xattrs, None)?,
            FileType::BlockDevice => tar.entry(path, &e.attr, b'4', "", &xattrs, None)?,
            FileType::Fifo => tar.entry(path, &e.attr, b'6', "", &xattrs, None)?,
            FileType::Socket => {} // sockets do not go into image layers
        }
    }
    tar.out.write_all(&[0u8; 1024])?;
    tar.out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandfs_testkit::alloc::{CountingAlloc, counted_peak};
    use sandfs_tmpfs::Tmpfs;
    use sandfs_vfs::{Filesystem, NewNode, XattrFlags};
    use std::sync::Arc;

    #[global_allocator]
    static ALLOC: CountingAlloc = CountingAlloc;

    fn new_node(kind: FileType) -> NewNode {
        NewNode { kind, mode: 0o755, uid: 0, gid: 0, rdev: 0, target: Vec::new() }
    }

    /// An overlay over a lower with `/keep` whose upper holds `depth` nested
    /// directories `d`, made through node handles (a path walk per level would
    /// make building the tree quadratic).
    fn deep(depth: usize) -> Arc<Overlay> {
        let lower = Tmpfs::new_default();
        lower.root().create(b"keep", &new_node(FileType::Regular)).unwrap();
        let ov = Overlay::new(Tmpfs::new_default(), vec![lower]).unwrap();
        let mut node = ov.upper_root().unwrap();
        for _ in 0..depth {
            node = node.create(b"d", &new_node(FileType::Directory)).unwrap();
        }
        ov
    }

    /// Counts diff lines and bytes without keeping them.
    #[derive(Default)]
    struct Lines {
        lines: u64,
        bytes: u64,
    }

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            // A path holds no newline: a line ends with the write that ends in one.
            self.lines += (buf.last() == Some(&b'\n')) as u64;
            self.bytes += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Reads a tar stream as it is written: entries by type flag, and (for small
    /// PAX headers) the path and linkpath records of each entry.
    #[derive(Default)]
    struct TarCount {
        header: Vec<u8>,
        skip: u64,
        /// Bytes of the current PAX header kept (small ones only).
        pax: Option<Vec<u8>>,
        types: HashMap<u8, u64>,
        named: Vec<(u8, String, String)>,
        pending: (String, String),
        ends: u64,
    }

    impl Write for TarCount {
        fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
            let n = buf.len();
            while !buf.is_empty() {
                if self.skip > 0 {
                    let k = (self.skip as usize).min(buf.len());
                    if let Some(p) = &mut self.pax {
                        p.extend_from_slice(&buf[..k]);
                    }
                    self.skip -= k as u64;
                    buf = &buf[k..];
                    continue;
                }
                if let Some(p) = self.pax.take() {
                    for rec in String::from_utf8_lossy(&p).split('\n') {
                        let kv = rec.split_once(' ').map(|x| x.1).unwrap_or("");
                        if let Some(v) = kv.strip_prefix("path=") {
                            self.pending.0 = v.to_string();
                        } else if let Some(v) = kv.strip_prefix("linkpath=") {
                            self.pending.1 = v.to_string();
                        }
                    }
                }
                let k = (512 - self.header.len()).min(buf.len());
                self.header.extend_from_slice(&buf[..k]);
                buf = &buf[k..];
                if self.header.len() < 512 {
                    continue;
                }
                let h = std::mem::take(&mut self.header);
                if h.iter().all(|&b| b == 0) {
                    self.ends += 1;
                    continue;
                }
                let field = String::from_utf8_lossy(&h[124..135]).into_owned();
                let size =
                    u64::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8).unwrap();
                let kind = h[156];
                *self.types.entry(kind).or_default() += 1;
                self.skip = size.div_ceil(512) * 512;
                if kind == b'x' {
                    self.pax = (size < 4096).then(Vec::new);
                    self.pending = Default::default();
                } else {
                    let cut = |f: &[u8]| {
                        String::from_utf8_lossy(&f[..f.iter().position(|&b| b == 0).unwrap_or(f.len())])
                            .into_owned()
                    };
                    let (mut name, mut link) = std::mem::take(&mut self.pending);
                    if name.is_empty() {
                        name = cut(&h[..100]);
                    }
                    if link.is_empty() {
                        link = cut(&h[157..257]);
                    }
                    if self.named.len() < 100 {
                        self.named.push((kind, name, link));
                    }
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const DEPTH: usize = 100_000;

    #[test]
    fn diff_of_a_deep_tree_takes_memory_in_proportion_to_its_depth() {
        let ov = deep(DEPTH);
        let (out, peak) = counted_peak(|| {
            let mut out = Lines::default();
            write_diff(&ov, &mut out, DiffFormat::Text).map(|()| out)
        });
        let out = out.unwrap();
        // One `A /d/.../d/` line per level: level i is "A /" + 2i-1 + "/\n".
        let d = DEPTH as u64;
        assert_eq!(out.lines, d);
        assert_eq!(out.bytes, d * (d + 1) + 4 * d);
        // A frame and a path byte or two per level; the paths alone would be 10 GB.
        assert!(peak < 400 * DEPTH as isize, "peak {peak} bytes for depth {DEPTH}");
    }

    #[test]
    fn export_of_a_deep_tree_takes_memory_in_proportion_to_its_depth() {
        let ov = deep(DEPTH);
        let (out, peak) = counted_peak(|| {
            let mut out = TarCount::default();
            write_layer(&ov, &mut out).map(|()| out)
        });
        let out = out.unwrap();
        assert_eq!(out.types.get(&b'5'), Some(&(DEPTH as u64)));
        assert_eq!(out.types.get(&b'x'), Some(&(DEPTH as u64)));
        assert_eq!(out.types.len(), 2);
        assert_eq!(out.ends, 2);
        assert_eq!(out.named[2].1, "d/d/d/");
        // The BufWriter's buffer, a frame per level, and the deepest entry's PAX
        // header (its path twice over at most).
        assert!(peak < 400 * DEPTH as isize, "peak {peak} bytes for depth {DEPTH}");
    }

    #[test]
    fn export_names_hard_links_by_their_first_path() {
        let lower = Tmpfs::new_default();
        lower.root().create(b"old", &new_node(FileType::Regular)).unwrap();
        let ov = Overlay::new(Tmpfs::new_default(), vec![lower]).unwrap();
        let up = ov.upper_root().unwrap();
        let a = up.clone().create(b"a", &new_node(FileType::Directory)).unwrap();
        let b = a.clone().create(b"b", &new_node(FileType::Directory)).unwrap();
        let f = b.clone().create(b"f", &new_node(FileType::Regular)).unwrap();
        f.setxattr(b"user.k", b"v", XattrFlags::empty()).unwrap();
        a.link(b"g", &f).unwrap();
        up.link(b"z", &f).unwrap();
        let c = up.clone().create(b"c", &new_node(FileType::Directory)).unwrap();
        c.create(b"e", &new_node(FileType::Regular)).unwrap();
        let mut out = TarCount::default();
        write_layer(&ov, &mut out).unwrap();
        let got: Vec<(char, &str, &str)> =
            out.named.iter().map(|(k, n, l)| (*k as char, n.as_str(), l.as_str())).collect();
        assert_eq!(
            got,
            [
                ('5', "a/", ""),
                ('5', "a/b/", ""),
                ('0', "a/b/f", ""),
                ('1', "a/g", "a/b/f"),
                ('5', "c/", ""),
                ('0', "c/e", ""),
                ('1', "z", "a/b/f"),
            ]
        );
        let mut diff = Vec::new();
        write_diff(&ov, &mut diff, DiffFormat::Text).unwrap();
        assert_eq!(
            String::from_utf8(diff).unwrap(),
            "A /a/\nA /a/b/\nA /a/b/f\nA /a/g\nA /c/\nA /c/e\nA /z\n"
        );
    }
}
