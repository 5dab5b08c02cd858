//! Property tests of the gofer protocol codec: every request and reply variant survives
//! encode → decode unchanged, and decoding arbitrary, truncated or mutated bytes never
//! panics (it returns an error or a value, and never allocates beyond the limits).

mod raw;

use proptest::collection::vec;
use proptest::prelude::*;
use sandfs_gofer::proto::{
    self, Dent, MAX_CLOSE, MAX_MESSAGE, MAX_NAME, MAX_TARGET, MAX_WALK, MAX_XATTR_NAME, MAX_XATTR_VALUE,
    Reply, Request, WalkEnd,
};
use sandfs_gofer::wire::DecodeError;
use sandfs_vfs::{Attr, FileType, StatFs, Timespec};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: cases(), ..ProptestConfig::default() }
}

// ----------------------------------------------------------------- strategies

/// A valid name: 1..=255 bytes, no `/`, no NUL, not `.` or `..`. Mostly short
/// printable names, sometimes any bytes, sometimes the longest allowed.
fn name() -> impl Strategy<Value = Vec<u8>> {
    let any_byte = any::<u8>().prop_map(|b| if b == 0 || b == b'/' { b'x' } else { b });
    prop_oneof![
        4 => vec(prop::sample::select(b"abcXYZ09._-~ ".to_vec()), 1..16),
        2 => vec(any_byte.clone(), 1..=MAX_NAME),
        1 => vec(any_byte, MAX_NAME..=MAX_NAME),
        1 => Just(b"...".to_vec()),
        1 => Just(b".a".to_vec()),
    ]
    .prop_map(|n| if n == b"." || n == b".." { b"dot".to_vec() } else { n })
}

/// Bytes without NUL, 1..=max long.
fn no_nul(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(1u8..=255, 1..32),
        1 => vec(1u8..=255, 1..=max),
    ]
}

fn fid() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..16, any::<u64>()]
}

fn timespec() -> impl Strategy<Value = Timespec> {
    (any::<i64>(), 0u32..1_000_000_000).prop_map(|(sec, nsec)| Timespec { sec, nsec })
}

fn file_type() -> impl Strategy<Value = FileType> {
    prop::sample::select(vec![
        FileType::Regular,
        FileType::Directory,
        FileType::Symlink,
        FileType::Fifo,
        FileType::Socket,
        FileType::CharDevice,
        FileType::BlockDevice,
    ])
}

fn attr() -> impl Strategy<Value = Attr> {
    (
        (file_type(), 0u32..=0o7777, any::<u64>(), any::<u32>(), any::<u32>(), any::<u64>(), any::<u64>()),
        (any::<u32>(), timespec(), timespec(), timespec(), timespec()),
        (any::<u64>(), any::<u64>(), any::<u64>()),
    )
        .prop_map(
            |(
                (kind, mode, nlink, uid, gid, size, blocks),
                (blksize, atime, mtime, ctime, btime),
                (ino, dev, rdev),
            )| Attr {
                kind,
                mode,
                nlink,
                uid,
                gid,
                size,
                blocks,
                blksize,
                atime,
                mtime,
                ctime,
                btime,
                ino,
                dev,
                rdev,
            },
        )
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        any::<u32>().prop_map(|version| Request::Attach { version }),
        (fid(), vec(name(), 0..=MAX_WALK)).prop_map(|(dir, names)| Request::Walk { dir, names }),
        fid().prop_map(|fid| Request::Getattr { fid }),
        (fid(), any::<u64>()).prop_map(|(dir, off)| Request::Getdents { dir, off }),
        (fid(), name(), any::<u64>()).prop_map(|(dir, name, off)| Request::Listdir { dir, name, off }),
        (fid(), any::<u32>()).prop_map(|(fid, flags)| Request::Open { fid, flags }),
        (fid(), name(), any::<u32>()).prop_map(|(dir, name, flags)| Request::Openat { dir, name, flags }),
        (fid(), name(), any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
            |(dir, name, flags, mode, uid, gid)| Request::Create { dir, name, flags, mode, uid, gid }
        ),
        (fid(), name(), any::<u32>(), any::<u64>(), any::<u32>(), any::<u32>())
            .prop_map(|(dir, name, mode, rdev, uid, gid)| Request::Mknod { dir, name, mode, rdev, uid, gid }),
        (fid(), name(), no_nul(MAX_TARGET), any::<u32>(), any::<u32>())
            .prop_map(|(dir, name, target, uid, gid)| Request::Symlink { dir, name, target, uid, gid }),
        (fid(), name(), fid()).prop_map(|(dir, name, target)| Request::Link { dir, name, target }),
        (fid(), name(), any::<bool>()).prop_map(|(dir, name, rmdir)| Request::Unlink { dir, name, rmdir }),
        (fid(), name(), fid(), name(), any::<u32>()).prop_map(|(olddir, oldname, newdir, newname, flags)| {
            Request::Rename { olddir, oldname, newdir, newname, flags }
        }),
        (fid(), any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>(), any::<u64>(), timespec(), timespec())
            .prop_map(|(fid, valid, mode, uid, gid, size, atime, mtime)| Request::Setattr {
                fid,
                valid,
                mode,
                uid,
                gid,
                size,
                atime,
                mtime
            }),
        fid().prop_map(|fid| Request::Readlink { fid }),
        fid().prop_map(|fid| Request::Statfs { fid }),
        (fid(), no_nul(MAX_XATTR_NAME)).prop_map(|(fid, name)| Request::Getxattr { fid, name }),
        (
            fid(),
            no_nul(MAX_XATTR_NAME),
            prop_oneof![4 => vec(any::<u8>(), 0..64), 1 => vec(any::<u8>(), 0..=MAX_XATTR_VALUE)],
            any::<u32>()
        )
            .prop_map(|(fid, name, value, flags)| Request::Setxattr { fid, name, value, flags }),
        fid().prop_map(|fid| Request::Listxattr { fid }),
        (fid(), no_nul(MAX_XATTR_NAME)).prop_map(|(fid, name)| Request::Removexattr { fid, name }),
        (fid(), any::<bool>()).prop_map(|(fid, datasync)| Request::Fsync { fid, datasync }),
        (fid(), any::<u32>(), any::<u64>(), any::<u64>())
            .prop_map(|(fid, mode, off, len)| Request::Fallocate { fid, mode, off, len }),
        vec(fid(), 0..=MAX_CLOSE).prop_map(|fids| Request::Close { fids }),
    ]
}

fn walk_end() -> impl Strategy<Value = WalkEnd> {
    prop_oneof![
        Just(WalkEnd::Complete),
        (any::<u16>(), 1i32..=4095).prop_map(|(index, errno)| WalkEnd::Stopped { index, errno }),
        any::<u16>().prop_map(|index| WalkEnd::Symlink { index }),
    ]
}

fn statfs() -> impl Strategy<Value = StatFs> {
    (
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(|(bsize, blocks, bfree, bavail, files, ffree, namelen, fs_type)| StatFs {
            bsize,
            blocks,
            bfree,
            bavail,
            files,
            ffree,
            namelen,
            fs_type,
        })
}

fn dents(e: Vec<(Vec<u8>, u64, Attr)>) -> Vec<Dent> {
    e.into_iter().map(|(name, off, attr)| Dent { name: name.into(), off, attr }).collect()
}

/// Replies as a server may send them: every variant, within the limits (a getdents
/// reply at most as large as the server makes one: well under MAX_MESSAGE).
fn reply() -> impl Strategy<Value = Result<Reply, i32>> {
    prop_oneof![
        (1i32..=4095).prop_map(Err),
        (any::<u32>(), fid(), attr(), any::<bool>()).prop_map(|(version, root, attr, readonly)| Ok(
            Reply::Attached { version, root, attr, readonly }
        )),
        (walk_end(), vec((fid(), attr()), 0..=MAX_WALK))
            .prop_map(|(end, entries)| Ok(Reply::Walked { end, entries })),
        attr().prop_map(|a| Ok(Reply::Attr(a))),
        (vec((name(), any::<u64>(), attr()), 0..200), any::<bool>())
            .prop_map(|(e, eof)| { Ok(Reply::Dents { entries: dents(e), eof }) }),
        (fid(), attr(), vec((name(), any::<u64>(), attr()), 0..200), any::<bool>(), any::<bool>()).prop_map(
            |(fid, attr, e, eof, ahead)| Ok(Reply::Listed { fid, attr, entries: dents(e), eof, ahead })
        ),
        (fid(), attr()).prop_map(|(fid, attr)| Ok(Reply::Node { fid, attr })),
        Just(Ok(Reply::Opened)),
        Just(Ok(Reply::Unit)),
        prop_oneof![4 => vec(any::<u8>(), 0..64), 1 => vec(any::<u8>(), 0..=MAX_XATTR_VALUE)]
            .prop_map(|d| Ok(Reply::Data(d))),
        vec(no_nul(MAX_XATTR_NAME), 0..64).prop_map(|n| Ok(Reply::Names(n))),
        statfs().prop_map(|s| Ok(Reply::StatFs(s))),
    ]
}

/// A valid encoded message of either direction, to truncate or mutate.
fn valid_message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (any::<u32>(), request()).prop_map(|(tag, r)| r.encode(tag)),
        (any::<u32>(), reply()).prop_map(|(tag, r)| proto::encode_reply(tag, &r)),
    ]
}

/// Decode as both a request and a reply: neither may panic, and whatever decodes
/// must encode back to exactly the same bytes (the encoding is canonical).
fn decode_both(bytes: &[u8]) {
    fn diff(a: &[u8], b: &[u8]) -> String {
        let at = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
        format!("lengths {} and {}, first difference at byte {at}", a.len(), b.len())
    }
    if let Ok((tag, req)) = Request::decode(bytes) {
        let again = req.encode(tag);
        assert!(
            again == bytes,
            "a request decoded from bytes it does not encode to: {}",
            diff(&again, bytes)
        );
    }
    if let Ok((tag, rep)) = proto::decode_reply(bytes) {
        let again = proto::encode_reply(tag, &rep);
        assert!(again == bytes, "a reply decoded from bytes it does not encode to: {}", diff(&again, bytes));
    }
}

// ----------------------------------------------------------------- round trips

proptest! {
    #![proptest_config(config())]

    #[test]
    fn request_round_trip(tag in any::<u32>(), req in request()) {
        let bytes = req.encode(tag);
        prop_assert!(bytes.len() <= MAX_MESSAGE, "a request within the limits fits a message");
        let (t, back) = Request::decode(&bytes).expect("a valid request decodes");
        prop_assert_eq!(t, tag);
        prop_assert_eq!(back, req);
    }

    #[test]
    fn reply_round_trip(tag in any::<u32>(), rep in reply()) {
        let bytes = proto::encode_reply(tag, &rep);
        prop_assert!(bytes.len() <= MAX_MESSAGE);
        let (t, back) = proto::decode_reply(&bytes).expect("a valid reply decodes");
        prop_assert_eq!(t, tag);
        prop_assert_eq!(back, rep);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        decode_both(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_never_panic(
        tag in any::<u32>(),
        op in 0u8..=24,
        kind in prop::sample::select(vec![0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 254, 255]),
        body in vec(any::<u8>(), 0..512),
    ) {
        let mut req = tag.to_le_bytes().to_vec();
        req.push(op);
        req.extend_from_slice(&body);
        decode_both(&req);
        let mut rep = tag.to_le_bytes().to_vec();
        rep.push(kind);
        rep.extend_from_slice(&body);
        decode_both(&rep);
    }

    #[test]
    fn truncated_messages_are_errors(msg in valid_message(), cut in any::<prop::sample::Index>()) {
        let n = cut.index(msg.len());
        let short = &msg[..n];
        // Every field is needed (counts say how many follow), so a proper prefix of
        // a valid message never decodes as a message of the same direction.
        if Request::decode(&msg).is_ok() {
            prop_assert!(Request::decode(short).is_err());
        }
        if proto::decode_reply(&msg).is_ok() {
            prop_assert!(proto::decode_reply(short).is_err());
        }
        decode_both(short);
        if n <= 4 {
            prop_assert!(Request::decode(short).is_err());
            prop_assert!(proto::decode_reply(short).is_err());
        }
    }

    #[test]
    fn mutated_messages_never_panic(
        msg in valid_message(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..8),
    ) {
        let mut m = msg;
        for (at, byte, how) in edits {
            if m.is_empty() {
                m.push(byte);
                continue;
            }
            let i = at.index(m.len());
            match how {
                0 => m[i] = byte,
                1 => m[i] ^= 1 << (byte % 8),
                2 => m.insert(i, byte),
                _ => {
                    m.remove(i);
                }
            }
        }
        decode_both(&m);
    }

    #[test]
    fn trailing_bytes_are_refused(msg in valid_message(), extra in vec(any::<u8>(), 1..16)) {
        let mut m = msg.clone();
        m.extend_from_slice(&extra);
        // The message is a request or a reply; whichever it was, one more byte makes
        // that decoding fail (the other direction may or may not decode it).
        if Request::decode(&msg).is_ok() {
            prop_assert!(Request::decode(&m).is_err());
        }
        if proto::decode_reply(&msg).is_ok() {
            prop_assert!(proto::decode_reply(&m).is_err());
        }
        decode_both(&m);
    }
}

// ----------------------------------------------------------------- fixed cases

fn walk_with(names: &[&[u8]]) -> Vec<u8> {
    // Hand-built, so invalid names can be encoded.
    let mut m = 7u32.to_le_bytes().to_vec();
    m.push(2); // WALK
    m.extend_from_slice(&1u64.to_le_bytes());
    m.extend_from_slice(&(names.len() as u32).to_le_bytes());
    for n in names {
        m.extend_from_slice(&(n.len() as u32).to_le_bytes());
        m.extend_from_slice(n);
    }
    m
}

#[test]
fn invalid_names_are_refused() {
    let long = vec![b'a'; MAX_NAME + 1];
    for bad in [&b""[..], b".", b"..", b"a/b", b"/", b"../etc", b"a\0b", b"\0", &long] {
        assert_eq!(
            Request::decode(&walk_with(&[b"ok", bad])),
            Err(DecodeError::Invalid(if bad.len() > MAX_NAME { "name length" } else { "name" })),
            "name {:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert!(Request::decode(&walk_with(&[b"ok", &[b'a'; MAX_NAME]])).is_ok());
    // Listdir's name follows the same rules.
    for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b", &long] {
        let m = Request::Listdir { dir: 1, name: bad.to_vec(), off: 0 }.encode(7);
        assert!(Request::decode(&m).is_err(), "listdir name {:?}", String::from_utf8_lossy(bad));
        let m = Request::Openat { dir: 1, name: bad.to_vec(), flags: 0 }.encode(7);
        assert!(Request::decode(&m).is_err(), "openat name {:?}", String::from_utf8_lossy(bad));
    }
    // So do the names of listed entries.
    let attr = Attr { kind: FileType::Regular, ..raw::dir_attr() };
    for bad in [&b"."[..], b"..", b"a/b", b"a\0b"] {
        let d = Dent { name: bad.into(), off: 1, attr };
        let m = proto::encode_reply(
            7,
            &Ok(Reply::Listed { fid: 1, attr: raw::dir_attr(), entries: vec![d], eof: true, ahead: false }),
        );
        assert_eq!(proto::decode_reply(&m), Err(DecodeError::Invalid("name")));
    }
}

#[test]
fn huge_counts_allocate_nothing() {
    // A count far beyond what the message could hold is refused before allocating.
    let mut m = 1u32.to_le_bytes().to_vec();
    m.push(21); // CLOSE
    m.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(Request::decode(&m), Err(DecodeError::Invalid("close count")));
    let mut m = 1u32.to_le_bytes().to_vec();
    m.push(21);
    m.extend_from_slice(&(MAX_CLOSE as u32).to_le_bytes());
    assert_eq!(Request::decode(&m), Err(DecodeError::Invalid("close count")));
    let mut r = 1u32.to_le_bytes().to_vec();
    r.push(4); // DENTS
    r.push(0);
    r.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(proto::decode_reply(&r), Err(DecodeError::Invalid("dirent count")));
    // The same count after a listing's directory fid and attributes.
    let attr = raw::dir_attr();
    let mut r =
        proto::encode_reply(1, &Ok(Reply::Listed { fid: 1, attr, entries: vec![], eof: true, ahead: false }));
    let n = r.len();
    r[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(proto::decode_reply(&r), Err(DecodeError::Invalid("dirent count")));
    let mut r = 1u32.to_le_bytes().to_vec();
    r.push(8); // DATA
    r.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(proto::decode_reply(&r).is_err());
}

#[test]
fn oversized_messages_are_refused() {
    let mut m = Request::Getattr { fid: 1 }.encode(1);
    m.resize(MAX_MESSAGE + 1, 0);
    assert_eq!(Request::decode(&m), Err(DecodeError::Invalid("message size")));
    assert_eq!(proto::decode_reply(&m), Err(DecodeError::Invalid("message size")));
}

#[test]
fn error_replies_carry_only_errnos() {
    for bad in [0i32, -1, 4096, i32::MIN, i32::MAX] {
        let mut r = 9u32.to_le_bytes().to_vec();
        r.push(255);
        r.extend_from_slice(&bad.to_le_bytes());
        assert_eq!(proto::decode_reply(&r), Err(DecodeError::Invalid("errno")), "errno {bad}");
        // A walk that stopped carries an errno too.
        let w = Reply::Walked { end: WalkEnd::Stopped { index: 0, errno: bad }, entries: vec![] };
        let m = proto::encode_reply(9, &Ok(w));
        assert_eq!(proto::decode_reply(&m), Err(DecodeError::Invalid("errno")), "walk errno {bad}");
    }
}

#[test]
fn booleans_and_nanoseconds_are_checked() {
    let mut m = Request::Fsync { fid: 3, datasync: true }.encode(1);
    *m.last_mut().unwrap() = 2;
    assert!(Request::decode(&m).is_err());
    let mut m = Request::Setattr {
        fid: 1,
        valid: 0,
        mode: 0,
        uid: 0,
        gid: 0,
        size: 0,
        atime: Timespec::default(),
        mtime: Timespec { sec: 0, nsec: 999_999_999 },
    }
    .encode(1);
    assert!(Request::decode(&m).is_ok());
    let n = m.len();
    m[n - 4..].copy_from_slice(&1_000_000_000u32.to_le_bytes());
    assert_eq!(Request::decode(&m), Err(DecodeError::Invalid("nanoseconds")));
}

/// The flags byte of a listing: a Dents reply knows bit 0 (eof) only, a Listed reply
/// bits 0 and 1 (listed ahead); any other bit is a protocol error.
#[test]
fn listing_flags_are_checked() {
    let attr = raw::dir_attr();
    // Both replies end with the flags byte and a zero count.
    let flags_at = |m: &[u8]| m.len() - 5;
    for (eof, ahead) in [(false, false), (true, false), (false, true), (true, true)] {
        let m = proto::encode_reply(1, &Ok(Reply::Listed { fid: 1, attr, entries: vec![], eof, ahead }));
        assert_eq!(m[flags_at(&m)], eof as u8 | (ahead as u8) << 1);
        assert_eq!(
            proto::decode_reply(&m),
            Ok((1, Ok(Reply::Listed { fid: 1, attr, entries: vec![], eof, ahead })))
        );
        for bad in 4..=255u8 {
            let mut b = m.clone();
            let i = flags_at(&b);
            b[i] = bad;
            assert_eq!(proto::decode_reply(&b), Err(DecodeError::Invalid("dirent flags")), "{bad}");
        }
    }
    let mut m = proto::encode_reply(1, &Ok(Reply::Dents { entries: vec![], eof: true }));
    let i = flags_at(&m);
    m[i] = 2;
    assert_eq!(proto::decode_reply(&m), Err(DecodeError::Invalid("dirent flags")));
}

#[test]
fn symlink_targets_and_xattr_names_are_checked() {
    let ok = Request::Symlink { dir: 1, name: b"l".to_vec(), target: b"t".to_vec(), uid: 0, gid: 0 };
    assert!(Request::decode(&ok.encode(1)).is_ok());
    // Encoded with an empty target or one holding NUL: refused on decode.
    for t in [&b""[..], b"a\0b"] {
        let bad = Request::Symlink { dir: 1, name: b"l".to_vec(), target: t.to_vec(), uid: 0, gid: 0 };
        assert!(Request::decode(&bad.encode(1)).is_err());
    }
    let long =
        Request::Symlink { dir: 1, name: b"l".to_vec(), target: vec![b'a'; MAX_TARGET + 1], uid: 0, gid: 0 };
    assert!(Request::decode(&long.encode(1)).is_err());
    for n in [&b""[..], b"user.\0x"] {
        assert!(Request::decode(&Request::Getxattr { fid: 1, name: n.to_vec() }.encode(1)).is_err());
    }
    let big =
        Request::Setxattr { fid: 1, name: b"user.x".to_vec(), value: vec![0; MAX_XATTR_VALUE + 1], flags: 0 };
    assert!(Request::decode(&big.encode(1)).is_err());
}
