//! sandfs's container lifecycle: everything between a parsed command line and the
//! layers below. `sandfs run` (one attached run) and the OCI runtime commands that
//! engines drive (`create`, `start`, `state`, `kill`, `delete`, `exec`, ...) share
//! one launch path: gofers, the FUSE view served by a monitor, the sandbox process
//! that builds the namespaces, and the program as pid 1 of its pid namespace.

pub mod exec;
pub mod export;
pub mod hooks;
pub mod host;
pub mod lifecycle;
pub mod limits;
pub mod run;
pub mod sandbox;
pub mod state;
pub mod tty;
