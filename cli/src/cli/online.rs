//! Arguments shared by the commands that talk to a cluster, plus `cert` and `scan`.

use std::path::PathBuf;

use clap::builder::FalseyValueParser;
use clap::{Args, ValueEnum};

use super::ReportFormat;

/// How to reach the cluster and find the controller. Resolved in `config/online.rs`.
#[derive(Debug, Args, Default, Clone)]
#[command(next_help_heading = "Cluster")]
pub struct ClusterArgs {
    /// Kubeconfig file [default: $KUBECONFIG, else ~/.kube/config]
    #[arg(long, value_name = "FILE", env = "GITSEAL_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context [default: the current context]
    #[arg(long, value_name = "NAME", env = "GITSEAL_CONTEXT")]
    pub context: Option<String>,

    /// Name of the controller's Service (also read from SEALED_SECRETS_CONTROLLER_NAME)
    /// [default: gitseal-controller]
    #[arg(long, value_name = "NAME", env = "GITSEAL_CONTROLLER_NAME")]
    pub controller_name: Option<String>,

    /// Namespace of the controller and its keys (also read from
    /// SEALED_SECRETS_CONTROLLER_NAMESPACE) [default: gitseal-system]
    #[arg(long, value_name = "NS", env = "GITSEAL_CONTROLLER_NAMESPACE")]
    pub controller_namespace: Option<String>,
}

/// `-n`: the namespace of objects that name none.
#[derive(Debug, Args, Default, Clone)]
#[command(next_help_heading = "Cluster")]
pub struct NamespaceArg {
    /// Namespace of SealedSecrets whose manifest names none [default: the context's namespace]
    #[arg(short = 'n', long, value_name = "NS", env = "GITSEAL_NAMESPACE")]
    pub namespace: Option<String>,
}

/// `-o` of the listing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputArg {
    /// Columns for people
    #[default]
    Table,
    /// More columns: full key ids, names
    Wide,
    /// JSON for scripts
    Json,
    /// YAML for scripts
    Yaml,
}

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

const SCAN_HELP: &str = "\
Examples:
  # Before a commit or in CI: no plaintext Secret anywhere in the tree.
  gitseal scan .

  # Also refuse SealedSecrets sealed for retired or revoked keys, with the key states from
  # the controller, or from a file saved with `gitseal keys list -o json > keys.json`:
  gitseal scan --online deploy/
  gitseal scan --keys-file keys.json deploy/

A plaintext Secret is a `kind: Secret` (v1) document with data or stringData, in any YAML or JSON
file, multi-document stream or v1 List. Findings name the file, document and object, never a
value. Files that do not parse are reported on stderr and skipped. Exits with status 1 on any
finding. As a pre-commit hook: `- repo: https://github.com/gitseal/gitseal` with
`hooks: [{id: gitseal-scan}]`.";

#[derive(Debug, Args)]
#[command(after_help = SCAN_HELP)]
pub struct ScanArgs {
    /// Files or directories to scan (directories: *.yaml, *.yml, *.json; hidden ones skipped)
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,

    /// Key states from this file (`gitseal keys list -o json`)
    #[arg(long, value_name = "FILE", env = "GITSEAL_KEYS_FILE", conflicts_with = "online")]
    pub keys_file: Option<PathBuf>,

    /// Ask the controller for the key states (`gitseal keys list`)
    #[arg(long, env = "GITSEAL_ONLINE", value_parser = FalseyValueParser::new())]
    pub online: bool,

    /// Report format
    #[arg(short = 'o', long, value_enum, default_value_t = ReportFormat::Text, env = "GITSEAL_OUTPUT")]
    pub output: ReportFormat,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}
