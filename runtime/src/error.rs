//! The runtime's error type. Every message names the file, field or instruction at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file that is not the artifact it should be: wrong magic or kind, unsupported format
    /// version, bad checksum, undecodable payload.
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    /// Artifacts that do not belong together (parameters, keys, circuit, shapes).
    #[error("{0}")]
    Mismatch(String),
    /// Bad client input: wrong shape, NaN or infinite values.
    #[error("input '{name}': {message}")]
    Input { name: String, message: String },
    /// A structurally invalid circuit (found when it is loaded or executed).
    #[error("invalid circuit: instruction {instruction} ({op}): {message}")]
    InvalidCircuit {
        instruction: usize,
        op: &'static str,
        message: String,
    },
    /// A value outside the range the compiler guaranteed (clear and simulated execution check).
    #[error("instruction {instruction} ({op}): {message}")]
    Execution {
        instruction: usize,
        op: &'static str,
        message: String,
    },
    /// A lookup whose value falls outside its table; wrapped into [`RuntimeError::Execution`]
    /// by the executor.
    #[error("table {table} does not exist (the lookup has {count})")]
    NoSuchTable { table: usize, count: usize },
}
