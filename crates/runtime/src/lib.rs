//! sandfs's container lifecycle: everything between a parsed command line and the
//! layers below. `sandfs run` (one attached run) and the OCI runtime commands that
//! engines drive (`create`, `start`, `state`, `kill`, `delete`, `exec`, ...) share
//! one launch path: gofers, the FUSE view served by a monitor, the sandbox process
//! that builds the namespaces, and the program as pid 1 of its pid namespace.

pub mod exec;
pub mod export;
pub mod features;
pub mod hooks;
pub mod host;
pub mod lifecycle;
pub mod limits;
pub mod run;
pub mod sandbox;
pub mod state;
pub mod tty;

/// Where warnings go: stderr, or (a monitor started by an engine) the `--log` file.
static LOG: std::sync::OnceLock<(std::path::PathBuf, bool)> = std::sync::OnceLock::new();

/// Sends this process's warnings to `path` (JSON lines when `json`, as runc's log)
/// instead of stderr.
pub fn log_to(path: &std::path::Path, json: bool) {
    let _ = LOG.set((path.to_path_buf(), json));
}

/// Writes one line to the log: `level` and `msg`, as runc's (`--log-format json`:
/// an object with level, msg and time).
pub fn log_line(path: &std::path::Path, json: bool, level: &str, msg: &str) {
    use std::io::Write;
    let time = state::now_rfc3339();
    let line = if json {
        serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
    } else {
        format!("{time} {level} {msg}")
    };
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).create(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

/// A warning: to the log when one is set, else to stderr.
pub fn warn(msg: &str) {
    match LOG.get() {
        Some((path, json)) => log_line(path, *json, "warning", msg),
        None => eprintln!("sandfs: warning: {msg}"),
    }
}
