//! The command line as clap structures, with help text that teaches. No logic lives here:
//! [`crate::config`] turns a parsed [`Cli`] into a resolved configuration.
//!
//! One module per command, as `commands/`: this file holds the top level and the argument
//! groups and value types several commands share.
//!
//! Every flag can also come from a `GITSEAL_<FLAG>` environment variable; flags that exist in
//! kubeseal also read kubeseal's `SEALED_SECRETS_<FLAG>` (see `config.rs` for the order).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod audit;
mod cert;
mod completions;
mod keygen;
mod keys;
mod online;
mod reseal;
mod scan;
mod seal;
mod unseal;
mod validate;
mod web;

pub use audit::{AuditAccessArgs, AuditArgs, AuditCommand, AuditFilterArgs, AuditReadsArgs, OutcomeArg};
pub use cert::CertArgs;
pub use completions::CompletionsArgs;
pub use keygen::{KeyType, KeygenArgs};
pub use keys::KeysCommand;
pub use online::{ClusterArgs, NamespaceArg, OutputArg};
pub use reseal::ResealArgs;
pub use scan::ScanArgs;
pub use seal::{ApiArg, ScopeArg, SealArgs};
pub use unseal::UnsealArgs;
pub use validate::ValidateArgs;
pub use web::WebArgs;

const ABOUT: &str = "Seal Kubernetes Secrets so they can live in Git, and manage their keys and audit trail";

const TOP_HELP: &str = "\
Examples:
  # Seal a Secret for the cluster whose certificate you have:
  kubectl create secret generic db --from-literal=password=s3cr3t --dry-run=client -o yaml |
    gitseal seal --cert cluster.pem > db.sealed.yaml

  # Unseal offline with a backup of the cluster's keys:
  gitseal unseal --key keys-backup.yaml -f db.sealed.yaml

  # After a key rotation, re-seal a whole repository through the controller, then check it:
  gitseal keys rotate
  gitseal reseal manifests/
  gitseal validate manifests/

  # Keep plaintext Secrets out of Git (also a pre-commit hook, id gitseal-scan):
  gitseal scan .

Commands that talk to the cluster use your kubeconfig (--kubeconfig, $KUBECONFIG or
~/.kube/config, --context) and your own credentials; the controller is found with
--controller-name and --controller-namespace (default gitseal-controller in gitseal-system).

Every flag can also be set as GITSEAL_<FLAG> (e.g. GITSEAL_CERT); kubeseal's SEALED_SECRETS_CERT,
SEALED_SECRETS_SCOPE, SEALED_SECRETS_FORMAT, SEALED_SECRETS_ALLOW_EMPTY_DATA,
SEALED_SECRETS_CONTROLLER_NAME and SEALED_SECRETS_CONTROLLER_NAMESPACE are read too.";

#[derive(Debug, Parser)]
#[command(name = "gitseal", version, about = ABOUT, after_help = TOP_HELP, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Seal Secret manifests into SealedSecrets (the kubeseal workflow)
    Seal(SealArgs),
    /// Turn SealedSecrets back into Secrets with private keys (offline recovery)
    Unseal(UnsealArgs),
    /// Re-encrypt SealedSecret files in place: through the controller, or offline with --key
    Reseal(ResealArgs),
    /// Check that every sealed value opens: through the controller, or offline with --key
    Validate(ValidateArgs),
    /// Print the controller's sealing certificate (what kubeseal --fetch-cert prints)
    Cert(CertArgs),
    /// The controller's keys: list, rotate, backup, restore, retire, revoke, usage in Git
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Read, filter and verify the controller's audit trail; find who can read a Secret
    Audit(AuditArgs),
    /// Fail on plaintext Secrets, and on SealedSecrets sealed for retired or revoked keys
    Scan(ScanArgs),
    /// Generate a sealing key pair (RSA with certificate, or an age identity)
    Keygen(KeygenArgs),
    /// Print a shell completion script
    Completions(CompletionsArgs),
    /// Serve the sealing page locally: seal in the browser, nothing typed leaves it
    Web(WebArgs),
}

/// Where new values are sealed for: certificates and age recipients.
#[derive(Debug, Args, Default)]
pub struct RecipientArgs {
    /// Certificate (or PUBLIC KEY PEM) to seal for: a file, or an http(s):// or file:// URL.
    /// Repeat it to seal for several clusters at once
    #[arg(long, value_name = "FILE|URL", env = "GITSEAL_CERT", value_delimiter = ',')]
    pub cert: Vec<String>,

    /// age recipient (age1…) to seal for as well, e.g. an offline recovery key. Repeatable
    #[arg(long, value_name = "AGE1…", env = "GITSEAL_RECIPIENT", value_delimiter = ',')]
    pub recipient: Vec<String>,

    /// File with one age recipient per line (# comments allowed). Repeatable
    #[arg(long, value_name = "FILE", env = "GITSEAL_RECIPIENTS_FILE", value_delimiter = ',')]
    pub recipients_file: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Yaml,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

/// Parse a lifetime such as `87600h`, `3650d` or `1d12h`, with humantime as the controller's
/// duration flags (so both take the same spellings, and overflow is an error, not a panic).
pub fn parse_ttl(s: &str) -> Result<time::Duration, String> {
    let bad = || format!("invalid duration {s:?}: use a number with a unit, e.g. 87600h or 3650d");
    let std = humantime::parse_duration(s.trim()).map_err(|_| bad())?;
    match time::Duration::try_from(std) {
        Ok(d) if d > time::Duration::ZERO => Ok(d),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn lifetimes_accept_go_style_hours_and_days() {
        assert_eq!(parse_ttl("87600h").unwrap(), time::Duration::days(3650));
        assert_eq!(parse_ttl("3650d").unwrap(), time::Duration::days(3650));
        assert_eq!(parse_ttl("1d12h").unwrap(), time::Duration::hours(36));
        for bad in ["", "10", "10q", "h", "0d", "99999999999999999999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
