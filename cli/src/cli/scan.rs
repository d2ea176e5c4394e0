//! `gitseal scan`.

use std::path::PathBuf;

use clap::Args;
use clap::builder::FalseyValueParser;

use super::{ClusterArgs, ReportFormat};

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
