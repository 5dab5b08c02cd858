//! sandfs gofer: the only part of sandfs that touches host paths.
//!
//! A gofer process serves host directories (or single files) to one sandbox, one
//! SOCK_SEQPACKET connection per mount, over the protocol in `PROTOCOL.md`: walks
//! return every component's attributes in one round trip, and opens donate the host
//! descriptor so file data never travels in messages. The server ([`server`]) resolves
//! nothing above a mount source and confines itself after setup ([`confine`]); the
//! client ([`client`]) is a vfs filesystem over a connection.

mod ahead;
pub mod client;
pub mod confine;
pub mod journal;
pub mod proto;
pub mod server;
pub mod transport;
pub mod wire;
