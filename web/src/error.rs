//! The one error type of `gitseal-web`. Messages never contain plaintext.

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Needed by `scope.rs` (shared with `gitseal-shared`).
    #[error("invalid scope {0:?}: expected strict, namespace-wide or cluster-wide")]
    InvalidScope(String),
    /// Needed by `scope.rs` (shared with `gitseal-shared`).
    #[error("{0}")]
    MissingTarget(String),
    #[error("certificate: {0}")]
    Certificate(&'static str),
    #[error("{0}")]
    Request(String),
    #[error("encryption failed: {0}")]
    Encrypt(&'static str),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
