//! The one error type of `gitseal-web`. Messages never contain plaintext.

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A scope that does not parse, or a target it cannot make (`gitseal-shared`'s message).
    #[error("{0}")]
    Scope(#[from] gitseal_shared::Error),
    #[error("certificate: {0}")]
    Certificate(&'static str),
    #[error("{0}")]
    Request(String),
    #[error("encryption failed: {0}")]
    Encrypt(&'static str),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
