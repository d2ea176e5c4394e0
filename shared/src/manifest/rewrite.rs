//! Placeholder until the comment-preserving rewriter lands (being written in parallel).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RewriteError {
    #[error("rewrite not available")]
    Unavailable,
}
