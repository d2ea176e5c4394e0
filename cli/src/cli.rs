//! The command line as clap structures, with help text that teaches. No logic lives here:
//! [`crate::config`] turns a parsed [`Cli`] into a resolved configuration.
//!
//! Every flag can also come from a `GITSEAL_<FLAG>` environment variable; flags that exist in
//! kubeseal also read kubeseal's `SEALED_SECRETS_<FLAG>` (see `config.rs` for the order).

use std::path::PathBuf;

use clap::builder::FalseyValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

mod audit;
mod keys;
mod online;
mod web;

pub use audit::{AuditAccessArgs, AuditArgs, AuditCommand, AuditFilterArgs, AuditReadsArgs, OutcomeArg};
pub use keys::KeysCommand;
pub use online::{CertArgs, ClusterArgs, NamespaceArg, OutputArg, ScanArgs};
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

const KEYGEN_HELP: &str = "\
Examples:
  # A Bitnami-style key pair (RSA-4096, self-signed certificate valid ten years):
  gitseal keygen --out-key sealing.key --out-cert sealing.pem

  # Bring your own key: a key Secret to kubectl apply in the controller's namespace:
  gitseal keygen --secret sealing-key.yaml --out-cert sealing.pem

  # An offline recovery identity; its recipient (age1...) is printed on stdout:
  gitseal keygen --type age --out-key recovery.agekey

Private keys are written with mode 0600 and never over an existing file.";

#[derive(Debug, Args)]
#[command(after_help = KEYGEN_HELP)]
pub struct KeygenArgs {
    /// Kind of key
    #[arg(long = "type", value_enum, default_value_t = KeyType::Rsa, env = "GITSEAL_TYPE")]
    pub key_type: KeyType,

    /// RSA key size in bits: 2048, 3072, 4096 or 8192 [default: 4096]
    #[arg(long, env = "GITSEAL_BITS")]
    pub bits: Option<gitseal_keys::RsaBits>,

    /// Certificate subject common name [default: empty, as Bitnami's controller]
    #[arg(long, value_name = "NAME", env = "GITSEAL_CN")]
    pub cn: Option<String>,

    /// Certificate lifetime, e.g. 87600h or 3650d (units s, m, h, d) [default: 3650d]
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl, env = "GITSEAL_TTL")]
    pub ttl: Option<time::Duration>,

    /// Write the private key here (RSA: PKCS#1 PEM; age: identity file), mode 0600
    #[arg(long, value_name = "FILE", env = "GITSEAL_OUT_KEY", required_if_eq("key_type", "age"))]
    pub out_key: Option<PathBuf>,

    /// Write the certificate (PEM) here: what `gitseal seal --cert` takes
    #[arg(long, value_name = "FILE", env = "GITSEAL_OUT_CERT")]
    pub out_cert: Option<PathBuf>,

    /// Write a Bitnami-compatible key Secret (kubernetes.io/tls with tls.key, tls.crt and
    /// age.key, labelled as an active sealing key) here, mode 0600
    #[arg(long, value_name = "FILE", env = "GITSEAL_SECRET")]
    pub secret: Option<PathBuf>,

    /// metadata.name of the key Secret [default: sealed-secrets-key + 5 characters from the key id]
    #[arg(long, value_name = "NAME", requires = "secret", env = "GITSEAL_SECRET_NAME")]
    pub secret_name: Option<String>,

    /// metadata.namespace of the key Secret: the controller's namespace
    #[arg(
        long,
        value_name = "NS",
        default_value = "kube-system",
        requires = "secret",
        env = "GITSEAL_SECRET_NAMESPACE"
    )]
    pub secret_namespace: String,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  gitseal completions bash > /etc/bash_completion.d/gitseal\n  gitseal completions zsh > \"${fpath[1]}/_gitseal\""
)]
pub struct CompletionsArgs {
    /// Shell to generate completions for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Yaml,
    Json,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyType {
    /// RSA key with a self-signed certificate (what clusters seal with)
    Rsa,
    /// X25519 age identity (an offline recovery key)
    Age,
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
