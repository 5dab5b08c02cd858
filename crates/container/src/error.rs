//! Setup errors: each names the field and the value that caused it, so a user can
//! fix their config.json or flags from the message alone.

use thiserror::Error;

/// Why a container's filesystem could not be set up.
#[derive(Debug, Error)]
pub enum SetupError {
    /// A runtime flag is invalid.
    #[error("invalid {flag} {value:?}: {why}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// config.json could not be read or parsed.
    #[error("config.json: {0}")]
    Spec(String),
    /// A field of the spec is invalid.
    #[error("{field} {value:?}: {why}")]
    Field {
        /// The field, e.g. `mounts[2].destination`.
        field: String,
        /// Its value.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// A filesystem operation failed while building the namespace.
    #[error("{what}: {errno}")]
    Fs {
        /// What was being done.
        what: String,
        /// The error.
        errno: sandfs_vfs::Errno,
    },
}

impl SetupError {
    /// A field error.
    pub fn field(field: impl Into<String>, value: impl Into<String>, why: impl Into<String>) -> SetupError {
        SetupError::Field { field: field.into(), value: value.into(), why: why.into() }
    }

    /// A filesystem error with context.
    pub fn fs(what: impl Into<String>, errno: sandfs_vfs::Errno) -> SetupError {
        SetupError::Fs { what: what.into(), errno }
    }
}
