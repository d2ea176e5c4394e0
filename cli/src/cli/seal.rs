//! `gitseal seal`.

use std::path::PathBuf;

use clap::builder::FalseyValueParser;
use clap::{Args, ValueEnum};

use super::{ClusterArgs, FormatArg, RecipientArgs};

const SEAL_HELP: &str = "\
Examples:
  # Seal for one cluster; the output opens in kubeseal's controller too (--api bitnami):
  gitseal seal --cert cluster.pem -f secret.yaml -o secret.sealed.yaml

  # Seal a stream of Secrets for two clusters and an offline recovery key:
  cat secrets.yaml | gitseal seal --cert prod.pem --cert dr.pem --recipient age1... > sealed.yaml

  # Seal one value (prints bare base64; add the scope annotation yourself if not strict):
  echo -n s3cr3t | gitseal seal --raw --cert cluster.pem --namespace app --name db

  # Add or replace keys of an existing SealedSecret, keeping its comments:
  gitseal seal --cert cluster.pem -f new-keys.yaml --merge-into db.sealed.yaml

  # No --cert and no --recipient: fetch the certificate from the controller, as kubeseal does:
  gitseal seal --context prod -f secret.yaml -o secret.sealed.yaml

  # A Secret nobody ever sees: generated values, files and env files, as kubectl create secret:
  gitseal seal --cert cluster.pem -n app --name db --generate password=password:32 \\
    --from-file ca.crt=./ca.pem --from-env-file app.env -o db.sealed.yaml

  # Rotate one value of an existing SealedSecret in place:
  gitseal seal --cert cluster.pem --merge-into db.sealed.yaml --generate password=password:32

One RSA certificate gives kubeseal's exact value format; several recipients, or any age
recipient, give gitseal's age format (which Bitnami's controller cannot open).

--generate NAME=SPEC seals a fresh random value under data key NAME; nobody ever sees it.
SPEC is one of:
  password[:LEN[:ALPHABET]]  LEN characters (default 32, at most 4096) from ALPHABET (default
                             symbols), at least one of each of its classes when LEN allows
  bytes[:LEN[:raw|base64]]   LEN random bytes (default 32, at most 65536), as they are (raw, the
                             default) or as base64 text
  hex[:LEN]                  LEN random bytes (default 16) as 2×LEN lowercase hex digits
  uuid                       a random UUID (version 4), lowercase
ALPHABET is alnum (A-Z a-z 0-9), alpha, lower, upper, digits, symbols (alnum and -_.~!@#%^*+=),
or set=CHARS for exactly the printable ASCII characters CHARS.
Examples:
  --generate password=password            32 characters, letters, digits and symbols
  --generate pin=password:6:digits        six digits
  --generate token=password:24:alnum      24 letters and digits
  --generate key=bytes:32                 32 raw bytes (e.g. an AES-256 key)
  --generate cookie-secret=bytes:32:base64
  --generate api-key=hex:16               32 hex digits
  --generate id=uuid";

#[derive(Debug, Args)]
#[command(after_help = SEAL_HELP)]
pub struct SealArgs {
    #[command(flatten)]
    pub recipients: RecipientArgs,

    /// Secret manifest(s) to seal, YAML or JSON, several documents allowed [default: stdin]
    #[arg(short = 'f', long, value_name = "FILE", alias = "secret-file", env = "GITSEAL_FILE")]
    pub file: Option<PathBuf>,

    /// Write the SealedSecret(s) to FILE, atomically; an existing file only with --force. A
    /// .yaml/.yml name means YAML and .json means JSON, whatever --format says [default: stdout]
    #[arg(short = 'o', long, value_name = "FILE", env = "GITSEAL_OUTPUT")]
    pub output: Option<PathBuf>,

    /// kubeseal's -w/--sealed-secret-file: -o FILE that replaces an existing FILE, as kubeseal does
    #[arg(short = 'w', long = "sealed-secret-file", value_name = "FILE", hide = true, conflicts_with = "output")]
    pub kubeseal_output: Option<PathBuf>,

    /// Replace the -o file if it exists (atomically: the old content or the new, never a part)
    #[arg(long, env = "GITSEAL_FORCE", value_parser = FalseyValueParser::new())]
    pub force: bool,

    /// Output format [default: yaml] (kubeseal defaults to json)
    #[arg(long, value_enum, ignore_case = true, env = "GITSEAL_FORMAT")]
    pub format: Option<FormatArg>,

    /// Scope the values are bound to [default: the Secret's scope annotations, else strict]
    #[arg(long, value_enum, env = "GITSEAL_SCOPE")]
    pub scope: Option<ScopeArg>,

    /// API group of the SealedSecret to write: gitseal.dev/v1, or bitnami.com/v1alpha1 for
    /// Bitnami's controller
    #[arg(long, value_enum, default_value_t = ApiArg::Gitseal, env = "GITSEAL_API")]
    pub api: ApiArg,

    /// Seal a Secret that has no data and no stringData
    #[arg(long, env = "GITSEAL_ALLOW_EMPTY_DATA", value_parser = FalseyValueParser::new())]
    pub allow_empty_data: bool,

    /// Name of the SealedSecret; overrides the Secret's name (needed by --raw in strict scope)
    #[arg(long, env = "GITSEAL_NAME")]
    pub name: Option<String>,

    /// Namespace: must match the Secret's own unless cluster-wide; fills it in when missing
    /// [default: the kubeconfig context's namespace; with no kubeconfig, one is required]
    #[arg(short = 'n', long, env = "GITSEAL_NAMESPACE")]
    pub namespace: Option<String>,

    /// Seal one value read from stdin or --from-file and print its bare base64 (no newline)
    #[arg(long, env = "GITSEAL_RAW", value_parser = FalseyValueParser::new())]
    pub raw: bool,

    /// Add data key KEY (default: the file's name) with the content of PATH, as `kubectl create
    /// secret generic --from-file`; a directory adds each regular file in it. Repeatable. With
    /// --raw: the one value to seal (the key is ignored)
    #[arg(long, value_name = "[KEY=]PATH", env = "GITSEAL_FROM_FILE", value_delimiter = None)]
    pub from_file: Vec<String>,

    /// Add the KEY=VALUE lines of PATH as data, as `kubectl create secret generic
    /// --from-env-file` reads them (`#` comments, no quoting; a line with no `=` takes the
    /// value of that environment variable). Repeatable
    #[arg(long, value_name = "PATH")]
    pub from_env_file: Vec<PathBuf>,

    /// Add data key NAME with a fresh random value of SPEC that nobody sees (see below).
    /// Repeatable
    #[arg(long, value_name = "NAME=SPEC")]
    pub generate: Vec<String>,

    /// Seal the input Secret for the name, namespace and scope of this SealedSecret file and
    /// add or replace its encryptedData in place (comments and order kept)
    #[arg(long, value_name = "FILE", env = "GITSEAL_MERGE_INTO", conflicts_with_all = ["output", "kubeseal_output"])]
    pub merge_into: Option<PathBuf>,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// Bound to namespace and name
    Strict,
    /// Bound to the namespace; the name may change
    NamespaceWide,
    /// Opens under any namespace and name
    ClusterWide,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ApiArg {
    /// gitseal.dev/v1
    Gitseal,
    /// bitnami.com/v1alpha1
    Bitnami,
}
