//! Fuzz the gofer protocol decoders: arbitrary bytes as a request (what the server
//! reads from a hostile sandbox) and as a reply (what the client reads from a
//! compromised gofer). Neither may panic, read out of bounds or allocate beyond the
//! message; whatever decodes must encode back to the very same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sandfs_gofer::proto::{self, Request};

fuzz_target!(|data: &[u8]| {
    if let Ok((tag, req)) = Request::decode(data) {
        assert_eq!(req.encode(tag), data, "request decoding is not canonical");
        let _ = req.is_mutation();
    }
    if let Ok((tag, reply)) = proto::decode_reply(data) {
        assert_eq!(proto::encode_reply(tag, &reply), data, "reply decoding is not canonical");
    }
});
