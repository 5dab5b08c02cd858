//! A raw protocol client for the gofer's tests (`mod raw;` in each test file): any
//! request, any bytes, against a server on its own thread. Each file uses part of it.
#![allow(dead_code)]

use rustix::fd::OwnedFd;
use rustix::fs::OFlags;
use rustix::io::Errno;
use sandfs_gofer::proto::{self, Fid, Reply, Request, WalkEnd};
use sandfs_gofer::server::{Server, Source};
use sandfs_gofer::transport::{Conn, RecvError};
use std::thread::JoinHandle;

/// Start a server for `src` on its own thread.
pub fn serve(src: Source) -> (Conn, JoinHandle<()>) {
    let (client, server_end) = Conn::pair().expect("socketpair");
    let server = Server::new(src).expect("server");
    let t = std::thread::spawn(move || server.serve(server_end));
    (client, t)
}

/// The client side of one connection.
pub struct Raw {
    pub conn: Conn,
    pub tag: u32,
    pub buf: Vec<u8>,
    /// Descriptors donated with the last reply.
    pub fds: Vec<OwnedFd>,
    pub root: Fid,
    pub readonly: bool,
}

impl Raw {
    /// Attach to a new server for `src` (this build's version).
    pub fn attach(src: Source) -> Raw {
        Raw::attach_version(src, proto::VERSION)
    }

    /// Attach asking for `version`.
    pub fn attach_version(src: Source, version: u32) -> Raw {
        Raw::attach_joined(src, version).0
    }

    /// Attach asking for `version`; also the server thread, to join.
    pub fn attach_joined(src: Source, version: u32) -> (Raw, JoinHandle<()>) {
        Raw::attach_server(Server::new(src).expect("server"), version)
    }

    /// Attach to `server` (configured by the caller) on its own thread, asking for
    /// `version`; also the server thread, to join.
    pub fn attach_server(server: Server, version: u32) -> (Raw, JoinHandle<()>) {
        let (conn, server_end) = Conn::pair().expect("socketpair");
        let t = std::thread::spawn(move || server.serve(server_end));
        let mut raw = Raw { conn, tag: 0, buf: Vec::new(), fds: Vec::new(), root: 0, readonly: false };
        match raw.call(&Request::Attach { version }) {
            Ok(Reply::Attached { root, readonly, .. }) => {
                raw.root = root;
                raw.readonly = readonly;
            }
            other => panic!("attach: {other:?}"),
        }
        (raw, t)
    }

    pub fn send_bytes(&self, msg: &[u8]) -> Result<(), Errno> {
        self.conn.send(msg, &[])
    }

    pub fn recv(&mut self) -> Result<(u32, Result<Reply, i32>), RecvError> {
        self.fds.clear();
        self.conn.recv(&mut self.buf, &mut self.fds)?;
        Ok(proto::decode_reply(&self.buf).expect("the server sends valid replies"))
    }

    /// Send a request; the reply (or errno), with any donated descriptor kept in
    /// `self.fds`.
    pub fn call(&mut self, req: &Request) -> Result<Reply, Errno> {
        self.tag += 1;
        self.send_bytes(&req.encode(self.tag)).expect("send");
        let (tag, r) = self.recv().expect("a reply");
        assert_eq!(tag, self.tag);
        r.map_err(Errno::from_raw_os_error)
    }

    pub fn walk(&mut self, dir: Fid, names: &[&str]) -> (WalkEnd, Vec<(Fid, sandfs_vfs::Attr)>) {
        let names = names.iter().map(|n| n.as_bytes().to_vec()).collect();
        match self.call(&Request::Walk { dir, names }) {
            Ok(Reply::Walked { end, entries }) => (end, entries),
            other => panic!("walk: {other:?}"),
        }
    }

    /// The fid of `name` in the root.
    pub fn fid(&mut self, name: &str) -> Fid {
        match self.walk(self.root, &[name]).1.first() {
            Some(e) => e.0,
            None => panic!("walk {name}: nothing"),
        }
    }

    /// Open a fid and read what the donated descriptor holds.
    pub fn open_read(&mut self, fid: Fid) -> Result<Vec<u8>, Errno> {
        self.call(&Request::Open { fid, flags: OFlags::RDONLY.bits() })?;
        let fd = self.fds.pop().expect("a donated descriptor");
        let mut buf = vec![0u8; 4096];
        let n = rustix::io::pread(&fd, &mut buf, 0)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Whether the server has closed the connection: a request gets no reply.
    pub fn is_closed(&mut self) -> bool {
        self.tag += 1;
        if self.send_bytes(&Request::Getattr { fid: self.root }.encode(self.tag)).is_err() {
            return true;
        }
        matches!(self.recv(), Err(RecvError::Closed) | Err(RecvError::Io(_)))
    }
}

/// Plausible attributes of a directory, for replies a test makes up.
pub fn dir_attr() -> sandfs_vfs::Attr {
    use sandfs_vfs::{FileType, Timespec};
    let t = Timespec::default();
    sandfs_vfs::Attr {
        kind: FileType::Directory,
        mode: 0o755,
        nlink: 2,
        uid: 0,
        gid: 0,
        size: 0,
        blocks: 0,
        blksize: 4096,
        atime: t,
        mtime: t,
        ctime: t,
        btime: t,
        ino: 1,
        dev: 1,
        rdev: 0,
    }
}
