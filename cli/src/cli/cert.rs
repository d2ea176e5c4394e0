//! `gitseal cert`.

use std::path::PathBuf;

use clap::Args;
use clap::builder::FalseyValueParser;

use super::ClusterArgs;

const CERT_HELP: &str = "\
Examples:
  # Through the API server's service proxy, with your kubeconfig (as kubeseal --fetch-cert):
  gitseal cert > cluster.pem
  gitseal cert --context prod --controller-namespace kube-system --controller-name sealed-secrets -o prod.pem

  # The age recipients the controller publishes (for --recipients-file):
  gitseal cert --recipients > recipients.txt

  # Check and pass on a certificate from a URL or a file:
  gitseal cert --cert https://certs.example.com/cluster.pem

The certificate is public: commit it next to your SealedSecrets so everyone can seal offline.";

#[derive(Debug, Args)]
#[command(after_help = CERT_HELP)]
pub struct CertArgs {
    /// Take the certificate from this URL (http, https, file) or file instead of the controller
    #[arg(long, value_name = "FILE|URL", env = "GITSEAL_CERT")]
    pub cert: Option<String>,

    /// Print the controller's age recipients (GET /v1/recipients) instead of its certificate
    #[arg(long, conflicts_with = "cert", env = "GITSEAL_RECIPIENTS", value_parser = FalseyValueParser::new())]
    pub recipients: bool,

    /// Write to FILE (never over an existing file) [default: stdout]
    #[arg(short = 'o', long, value_name = "FILE", env = "GITSEAL_OUTPUT")]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}
