//! `gitseal reseal`.

use std::path::PathBuf;

use clap::Args;
use clap::builder::FalseyValueParser;

use super::{ClusterArgs, NamespaceArg, RecipientArgs};

const RESEAL_HELP: &str = "\
Examples:
  # After `gitseal keys rotate`, re-seal every SealedSecret under deploy/ through the
  # controller (you need the gitseal-resealer ClusterRole in their namespaces):
  gitseal reseal deploy/

  # See what would change, without writing:
  gitseal reseal --dry-run deploy/ apps/db.yaml

  # Offline, with a backup of the old keys and the new certificate:
  gitseal reseal --key old-keys.yaml --cert new.pem --recipient age1... deploy/

Directories are walked for *.yaml, *.yml and *.json; files without a SealedSecret are skipped.
Only encryptedData values and the gitseal.dev/key-id annotation change; comments and order are
kept. A file is written (atomically) only if every value in it was re-sealed; objects already
sealed for the controller's latest key are left as they are. Exits with status 1 if anything
failed.";

#[derive(Debug, Args)]
#[command(after_help = RESEAL_HELP)]
pub struct ResealArgs {
    /// Private key file that opens the current values (PEM, age identity, key Secret backup):
    /// re-seal offline, for --cert/--recipient. Repeatable. Without it, the controller re-seals
    #[arg(long, value_name = "FILE", env = "GITSEAL_KEY", value_delimiter = ',')]
    pub key: Vec<PathBuf>,

    #[command(flatten)]
    pub recipients: RecipientArgs,

    /// Report what would change without writing any file
    #[arg(long, env = "GITSEAL_DRY_RUN", value_parser = FalseyValueParser::new())]
    pub dry_run: bool,

    /// Files or directories to re-seal
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,

    #[command(flatten)]
    pub namespace: NamespaceArg,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}
