//! The harness's one error type. Messages say what the harness was doing and, where a person can
//! fix it, what to do; the source is chained, not repeated.

use std::{path::PathBuf, time::Duration};

/// Result with the harness's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while setting up or driving the test environment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A peer binary (etcd, kube-apiserver, kubeseal, …) is not installed.
    #[error(
        "{peer} not found at {path} (from {source_of_path}); run tests/peers/install.sh, \
         or point {var} at the binary"
    )]
    PeerMissing {
        /// Human name of the peer.
        peer: &'static str,
        /// The environment variable that overrides its path.
        var: &'static str,
        /// Where the harness looked.
        path: PathBuf,
        /// Which setting gave that path.
        source_of_path: String,
    },

    /// A file-system or process operation failed.
    #[error("{what}")]
    Io {
        /// What the harness was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A child process exited while the harness still needed it.
    #[error("{name} exited early ({status}); last lines of {log}:\n{tail}")]
    Exited {
        /// Name of the process.
        name: String,
        /// How it ended.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },

    /// A command run to completion failed.
    #[error("`{command}` failed ({status}); its stderr:\n{stderr}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Exit status.
        status: String,
        /// Its standard error.
        stderr: String,
    },

    /// Something did not become true in time.
    #[error("timed out after {waited:?} waiting for {what}{detail}")]
    Timeout {
        /// What the harness waited for.
        what: String,
        /// How long it waited.
        waited: Duration,
        /// The last error seen and/or a log tail, already formatted (may be empty).
        detail: String,
    },

    /// A Kubernetes API call failed.
    #[error("{what}")]
    Kube {
        /// What the harness was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: kube::Error,
    },

    /// Building a client configuration or kubeconfig failed.
    #[error("{what}")]
    Kubeconfig {
        /// What the harness was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: kube::config::KubeconfigError,
    },

    /// Generating a key or certificate failed.
    #[error("generating the {what}")]
    Certificate {
        /// Which key or certificate.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: rcgen::Error,
    },

    /// Input (YAML, JSON, a manifest) could not be understood.
    #[error("{what}: {detail}")]
    Invalid {
        /// What was being read.
        what: String,
        /// Why it was rejected.
        detail: String,
    },

    /// The control plane shared by this test binary failed to start earlier; every later test
    /// gets this copy of the first error instead of trying again.
    #[error("the control plane shared by this test binary did not start: {0}")]
    SharedStartFailed(String),
}

impl Error {
    /// Shorthand for [`Error::Io`].
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { what: what.into(), source }
    }

    /// Shorthand for [`Error::Kube`].
    pub(crate) fn kube(what: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube { what: what.into(), source }
    }

    /// Shorthand for [`Error::Invalid`].
    pub(crate) fn invalid(what: impl Into<String>, detail: impl ToString) -> Self {
        Self::Invalid { what: what.into(), detail: detail.to_string() }
    }
}

/// Formats an error with its whole `source()` chain on one line, for messages that must carry
/// the chain inside a string (timeouts, the shared-start copy).
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}
