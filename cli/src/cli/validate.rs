//! `gitseal validate`.

use std::path::PathBuf;

use clap::Args;

use super::{ClusterArgs, NamespaceArg, ReportFormat};

const VALIDATE_HELP: &str = "\
Examples:
  # Ask the controller (you need the gitseal-verifier ClusterRole in their namespaces):
  gitseal validate deploy/

  # Offline, with a backup of the keys:
  gitseal validate --key keys-backup.yaml deploy/
  gitseal validate --key recovery.agekey -o json deploy/ > report.json
  kubectl get sealedsecret db -o yaml | gitseal validate --key keys.yaml -

Exits with status 1 if any value fails to open for its namespace, name and scope.";

#[derive(Debug, Args)]
#[command(after_help = VALIDATE_HELP)]
pub struct ValidateArgs {
    /// Private key file (PEM, age identity, key Secret backup): check offline. Repeatable.
    /// Without it, the controller checks
    #[arg(long, value_name = "FILE", env = "GITSEAL_KEY", value_delimiter = ',')]
    pub key: Vec<PathBuf>,

    /// Report format
    #[arg(short = 'o', long, value_enum, default_value_t = ReportFormat::Text, env = "GITSEAL_OUTPUT")]
    pub output: ReportFormat,

    /// Files or directories to check; - reads stdin
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,

    #[command(flatten)]
    pub namespace: NamespaceArg,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}
