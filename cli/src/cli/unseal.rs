//! `gitseal unseal`.

use std::path::PathBuf;

use clap::Args;

use super::FormatArg;

const UNSEAL_HELP: &str = "\
Examples:
  # With a backup of the controller's keys, taken with
  #   kubectl get secret -n kube-system -l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml
  gitseal unseal --key keys-backup.yaml -f db.sealed.yaml

  # With an offline age recovery identity, as JSON:
  gitseal unseal --key recovery.agekey --format json < db.sealed.yaml

The output holds plaintext Secrets: send it to kubectl or a protected file, not to Git.";

#[derive(Debug, Args)]
#[command(after_help = UNSEAL_HELP)]
pub struct UnsealArgs {
    /// Private key file: PEM RSA key, age identity file, or a key Secret backup (one Secret, a
    /// YAML stream, or a v1 List). Repeatable
    #[arg(
        long,
        value_name = "FILE",
        required = true,
        alias = "recovery-private-key",
        env = "GITSEAL_KEY",
        value_delimiter = ','
    )]
    pub key: Vec<PathBuf>,

    /// SealedSecret manifest(s), YAML or JSON, several documents allowed [default: stdin]
    #[arg(short = 'f', long, value_name = "FILE", env = "GITSEAL_FILE")]
    pub file: Option<PathBuf>,

    /// Output format [default: yaml]
    #[arg(long, value_enum, ignore_case = true, env = "GITSEAL_FORMAT")]
    pub format: Option<FormatArg>,
}
