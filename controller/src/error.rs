//! The controller library's error type.
//!
//! Each message says what this layer was doing; the cause is the error's `source()`, never repeated
//! in the message. Print an error with [`report`] (or walk `source()`), which shows every layer once:
//! `cannot read the audit signing key Secret: secrets "x" is forbidden`.

use std::fmt;

/// A boxed cause, as kept by [`Error::Failed`].
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Configuration or input the operator gave is unusable; the message says which and why.
    #[error("{0}")]
    Invalid(String),
    /// A Kubernetes API call failed: `action` says which, `source` why.
    #[error("{action}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// A file or socket operation failed: `action` says which, `source` why.
    #[error("{action}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    /// Another step failed (TLS setup, parsing, a task): `action` says which, `source` why.
    #[error("{action}")]
    Failed {
        action: String,
        #[source]
        source: Source,
    },
    /// Key material (generation, parsing) failed.
    #[error(transparent)]
    Keys(#[from] gitseal_keys::Error),
    /// A value format or manifest operation of the shared core failed.
    #[error(transparent)]
    Shared(#[from] gitseal_shared::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("the controller streams ended unexpectedly")]
    StreamsEnded,
    #[error("lost the leader Lease; exiting so a standby takes over")]
    LostLease,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(message: impl fmt::Display) -> Error {
        Error::Invalid(message.to_string())
    }

    pub fn failed(action: impl fmt::Display, source: impl Into<Source>) -> Error {
        Error::Failed { action: action.to_string(), source: source.into() }
    }
}

/// Say what this layer was doing when a step failed (a `None` becomes [`Error::Invalid`]).
pub trait Context<T> {
    fn context(self, action: impl fmt::Display) -> Result<T>;
    fn with_context<C: fmt::Display>(self, action: impl FnOnce() -> C) -> Result<T>;
}

/// A cause [`Context`] can wrap: Kubernetes and I/O errors keep their type, others are boxed.
pub trait Cause {
    fn with_action(self, action: String) -> Error;
}

impl Cause for kube::Error {
    fn with_action(self, action: String) -> Error {
        Error::Kube { action, source: self }
    }
}

impl Cause for std::io::Error {
    fn with_action(self, action: String) -> Error {
        Error::Io { action, source: self }
    }
}

macro_rules! boxed_cause {
    ($($t:ty),* $(,)?) => {$(
        impl Cause for $t {
            fn with_action(self, action: String) -> Error {
                Error::Failed { action, source: Box::new(self) }
            }
        }
    )*};
}

boxed_cause!(
    Error,
    gitseal_keys::Error,
    gitseal_shared::Error,
    serde_json::Error,
    pem::PemError,
    rustls::Error,
    rustls::server::VerifierBuilderError,
    tokio::task::JoinError,
    time::error::Parse,
    time::error::ConversionRange,
    crate::audit::AuditError,
    crate::decide::digest::BadDigestKey,
);

/// The audit signing key reports its failures as static text.
impl Cause for &'static str {
    fn with_action(self, action: String) -> Error {
        Error::Failed { action, source: self.into() }
    }
}

impl<T, E: Cause> Context<T> for std::result::Result<T, E> {
    fn context(self, action: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.with_action(action.to_string()))
    }

    fn with_context<C: fmt::Display>(self, action: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| e.with_action(action().to_string()))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, action: impl fmt::Display) -> Result<T> {
        self.ok_or_else(|| Error::invalid(action))
    }

    fn with_context<C: fmt::Display>(self, action: impl FnOnce() -> C) -> Result<T> {
        self.ok_or_else(|| Error::invalid(action()))
    }
}

/// The error and its causes, outermost first, each once: `a: b: c`. A cause whose text the layer
/// above already printed (kube's `ApiError` shows its `Status` and has it as source) is skipped.
pub fn report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut above = error.to_string();
    let mut out = above.clone();
    let mut next = error.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !above.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        above = text;
        next = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_prints_each_layer_once() {
        let io = std::io::Error::other("disk full");
        let e = Err::<(), _>(io).context("cannot write /x").unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "I/O causes keep their type: {e:?}");
        assert_eq!(e.to_string(), "cannot write /x");
        assert_eq!(report(&e), "cannot write /x: disk full");
    }

    #[test]
    fn kube_causes_keep_their_type_and_other_causes_are_boxed() {
        let status = kube::core::Status::failure("configmaps \"c\" is forbidden", "Forbidden").with_code(403);
        let e = Err::<(), _>(kube::Error::Api(status.boxed())).context("cannot read the audit checkpoint").unwrap_err();
        assert!(matches!(&e, Error::Kube { source: kube::Error::Api(s), .. } if s.code == 403), "{e:?}");
        let e = Err::<(), _>("not PKCS#8").context("Secret k holds no usable audit signing key").unwrap_err();
        assert!(matches!(e, Error::Failed { .. }));
        assert_eq!(report(&e), "Secret k holds no usable audit signing key: not PKCS#8");
    }

    #[test]
    fn none_is_invalid_input() {
        let e = None::<u8>.with_context(|| format!("{} holds no token", "/t")).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)));
        assert_eq!(report(&e), "/t holds no token");
    }

    #[test]
    fn reconcile_errors_print_the_cause_once() {
        let kube = || {
            let status = kube::core::Status::failure("secrets \"s\" is forbidden", "Forbidden").with_code(403);
            kube::Error::Api(status.boxed())
        };
        let e = crate::reconcile::Error::Apply("ns/s".into(), kube());
        // This layer adds its action and nothing else; the cause appears as kube reports it.
        assert_eq!(e.to_string(), "cannot apply Secret ns/s");
        assert_eq!(report(&e), format!("cannot apply Secret ns/s: {}", kube()));
    }
}
