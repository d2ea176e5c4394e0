//! The one error type of `gitseal-shared`.

/// Errors of the pure core. Messages say what this layer was doing and never contain plaintext
/// or key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The value could not be opened: wrong key, wrong scope, tampered or corrupted bytes. The
    /// step that failed is deliberately not said (see STYLE §7).
    #[error("no key could decrypt the value (wrong key, wrong scope, or the value was altered)")]
    DecryptionFailed,
    /// The value is structurally too short to be a sealed value.
    #[error("sealed value is too short ({len} bytes); it was truncated or is not a sealed value")]
    TooShort { len: usize },
    /// The value is neither of the two known formats.
    #[error("not a sealed value: neither the kubeseal format nor gitseal's age format")]
    UnknownFormat,
    #[error("value is not valid standard base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("encryption failed: {0}")]
    Encrypt(&'static str),
    #[error("invalid scope {0:?}: expected strict, namespace-wide or cluster-wide")]
    InvalidScope(String),
    #[error("{0}")]
    MissingTarget(String),
    #[error("invalid public key: {0}")]
    InvalidKey(&'static str),
    /// The private key's backend (a hardware token) cannot be reached now; nothing was
    /// learnt about the value. Retried, never reported as a decryption failure.
    #[error("the private key's token is unavailable ({0}); will retry")]
    KeyUnavailable(&'static str),
    #[error("no recipients: give at least one certificate or age recipient")]
    NoRecipients,
    #[error("{0}")]
    Manifest(String),
    /// Some items of a SealedSecret open with no key. Names the items, never the step.
    #[error(
        "no key could decrypt {} ({}): wrong key, wrong namespace/name/scope, or the value was altered",
        if .0.len() == 1 { "item" } else { "items" },
        .0.join(", ")
    )]
    Undecryptable(Vec<String>),
    /// Opening a SealedSecret would spend more private-key operations (items × keys tried)
    /// than the caller allows for one object or request.
    #[error(
        "opening this SealedSecret needs more than {limit} private-key operations (items × keys tried); re-seal it with the current certificate, or split it"
    )]
    PrivateOpBudget { limit: u32 },
    /// `template.data` is malformed or over a limit that does not depend on any value. Names
    /// the entry and the rule, never a value.
    #[error("{0}")]
    Template(String),
    /// The Secret's data (decrypted values plus rendered `template.data`) would exceed
    /// Kubernetes' Secret size limit. Found before the data is built.
    #[error(
        "template.data would make the Secret's data larger than {limit} bytes (Kubernetes' Secret size limit, decrypted values included); refused"
    )]
    SecretTooLarge { limit: usize },
    /// Items decrypted, but what they hold cannot be used (the deprecated `spec.data` is not a
    /// Secret, a template refers to what only the plaintext declares, …). One fixed message
    /// that never quotes decoded text; remote callers see it as a decryption failure of the
    /// same items (see [`Error::for_remote`]).
    #[error(
        "{} {} decrypted, but the decrypted content is not usable (nothing of it is shown)",
        if .0.len() == 1 { "item" } else { "items" },
        .0.join(", ")
    )]
    UnusablePlaintext(Vec<String>),
    #[error("{0}")]
    Rewrite(#[from] crate::manifest::rewrite::RewriteError),
}

impl Error {
    /// The error as a remote caller (a SealedSecret's status, an API answer) may see it: a
    /// failure that depends on plaintext reads exactly like a decryption failure of the same
    /// items, so a caller cannot use it to learn about values they could not decrypt.
    pub fn for_remote(self) -> Error {
        match self {
            Error::UnusablePlaintext(items) => Error::Undecryptable(items),
            other => other,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
