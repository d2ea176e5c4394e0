//! `gitseal keys …`: the controller's key lifecycle, through its authenticated API.

use std::path::PathBuf;

use clap::builder::FalseyValueParser;
use clap::{Args, Subcommand};

use super::online::{ClusterArgs, NamespaceArg, OutputArg};

const KEYS_HELP: &str = "\
A routine rotation:
  gitseal keys rotate                          # the controller makes a new key now
  gitseal reseal deploy/ && git commit -am 'Re-seal for the new key'
  gitseal keys usage deploy/                   # nothing left on the old key?
  gitseal keys retire SHA256:AbCd...           # it still decrypts, never seals again
  gitseal keys backup --recipient age1... -o keys.age

Each call is authorized by RBAC in the controller namespace (resources keys, keyrotations,
keybackups, keyretirements, keyrevocations of api.gitseal.dev) and audited with your identity.";

#[derive(Debug, Subcommand)]
#[command(after_help = KEYS_HELP)]
pub enum KeysCommand {
    /// List the keys: state, validity, pending backup, and how many SealedSecrets use each
    List(KeysListArgs),
    /// Make the controller generate a new sealing key now
    Rotate(KeysRotateArgs),
    /// Back up every private key, encrypted by the controller to your age recipients
    Backup(KeysBackupArgs),
    /// Recreate the key Secrets from a backup (disaster recovery, or a new cluster)
    Restore(KeysRestoreArgs),
    /// Stop sealing with a key; it keeps decrypting what was sealed for it
    Retire(KeyIdArgs),
    /// Stop decrypting with a compromised key; SealedSecrets on it report KeyRevoked
    Revoke(KeyIdArgs),
    /// Which keys the SealedSecrets in a tree are sealed for (offline, from the key-id annotation)
    Usage(KeysUsageArgs),
    /// Move a key Secret's private key into a PKCS#11 token, then drop its plaintext tls.key
    ImportToToken(KeysImportArgs),
}

const IMPORT_HELP: &str = "\
Examples:
  gitseal keys import-to-token gitseal-key-x7k2p \\
    --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --pkcs11-token-label gitseal --pkcs11-pin-file pin

The key is created in the token as a sensitive, non-extractable object (where the token allows
importing private keys). Only after a test unwrap through the token succeeds is the key Secret
replaced by <name>-pkcs11, which holds the certificate and the token object's id but no tls.key.
The controller must run with the same token (--pkcs11-module) to use it.";

#[derive(Debug, Args)]
#[command(after_help = IMPORT_HELP)]
pub struct KeysImportArgs {
    /// Name of the key Secret in the controller namespace
    #[arg(value_name = "SECRET")]
    pub secret: String,

    /// PKCS#11 module of the token
    #[arg(long, value_name = "PATH", env = "GITSEAL_PKCS11_MODULE")]
    pub pkcs11_module: PathBuf,

    /// Label of the token (default: the first slot with a token)
    #[arg(long, value_name = "LABEL", env = "GITSEAL_PKCS11_TOKEN_LABEL", conflicts_with = "pkcs11_slot")]
    pub pkcs11_token_label: Option<String>,

    /// Slot id of the token, instead of its label
    #[arg(long, value_name = "ID", env = "GITSEAL_PKCS11_SLOT")]
    pub pkcs11_slot: Option<u64>,

    /// File holding the token's user PIN (never the PIN itself on the command line)
    #[arg(long, value_name = "FILE", env = "GITSEAL_PKCS11_PIN_FILE")]
    pub pkcs11_pin_file: PathBuf,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  gitseal keys list\n  gitseal keys list -o wide\n  \
gitseal keys list -o json > keys.json   # for gitseal scan --keys-file\n\n\
SEALED SECRETS counts the SealedSecrets in the cluster whose status names the key; it shows ?\n\
when you may not list SealedSecrets in all namespaces.")]
pub struct KeysListArgs {
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = OutputArg::Table, env = "GITSEAL_OUTPUT")]
    pub output: OutputArg,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  gitseal keys rotate\n  gitseal keys rotate --context prod -o json\n\n\
New SealedSecrets are sealed for the new key at once (unless the controller waits for a backup\n\
of it, --require-key-backup); existing ones keep working. Re-seal them with `gitseal reseal`.")]
pub struct KeysRotateArgs {
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = OutputArg::Table, env = "GITSEAL_OUTPUT")]
    pub output: OutputArg,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}

const BACKUP_HELP: &str = "\
Examples:
  # The security team's recipients (age-keygen -y team.key prints one):
  gitseal keys backup --recipient age1... --recipient age1... -o keys-2026-01.age

  # Recipients from a file, ASCII-armored for a ticket or a password manager:
  gitseal keys backup --recipients-file security-team.txt --armor -o keys.age

The controller encrypts; the private keys never reach this machine in plaintext, nor any disk or
terminal. Open the file with `age -d -i team.key` or restore it with `gitseal keys restore`.";

#[derive(Debug, Args)]
#[command(after_help = BACKUP_HELP)]
pub struct KeysBackupArgs {
    /// age recipient (age1…) to encrypt the backup to. Repeatable
    #[arg(long, value_name = "AGE1…", env = "GITSEAL_RECIPIENT", value_delimiter = ',')]
    pub recipient: Vec<String>,

    /// File with one age recipient per line (# comments allowed). Repeatable
    #[arg(long, value_name = "FILE", env = "GITSEAL_RECIPIENTS_FILE", value_delimiter = ',')]
    pub recipients_file: Vec<PathBuf>,

    /// Write the backup to FILE (mode 0600, never over an existing file) [default: stdout, which
    /// must not be a terminal unless --armor]
    #[arg(short = 'o', long, value_name = "FILE", env = "GITSEAL_OUTPUT")]
    pub output: Option<PathBuf>,

    /// Write ASCII armor (-----BEGIN AGE ENCRYPTED FILE-----) instead of binary age
    #[arg(short = 'a', long, env = "GITSEAL_ARMOR", value_parser = FalseyValueParser::new())]
    pub armor: bool,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}

const RESTORE_HELP: &str = "\
Examples:
  gitseal keys restore keys-2026-01.age --identity team.key
  gitseal keys restore keys.age --identity team.key --context dr-cluster --dry-run

The backup is decrypted in memory; each key Secret is created in the controller namespace with
your credentials, annotated gitseal.dev/restored-by with your user name, and picked up by the
controller. Nothing is created if any of the keys is already there, or if the backup does not
open or was altered.";

#[derive(Debug, Args)]
#[command(after_help = RESTORE_HELP)]
pub struct KeysRestoreArgs {
    /// Backup file written by `gitseal keys backup` (binary or armored age)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// age identity file (AGE-SECRET-KEY-1… lines) that opens the backup. Repeatable
    #[arg(short = 'i', long, value_name = "KEYFILE", required = true, env = "GITSEAL_IDENTITY", value_delimiter = ',')]
    pub identity: Vec<PathBuf>,

    /// Check the backup and the cluster, and say what would be created, without creating it
    #[arg(long, env = "GITSEAL_DRY_RUN", value_parser = FalseyValueParser::new())]
    pub dry_run: bool,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  gitseal keys retire SHA256:AbCdEf...\n  \
gitseal keys revoke AbCdEf123456   # the short id `keys list` shows is enough\n\n\
retire: the key still decrypts, and is never used to seal again.\n\
revoke: the key is compromised; the controller stops decrypting with it, keeps the Secrets that\n\
exist, and marks the SealedSecrets sealed only for it Synced=False with reason KeyRevoked.")]
pub struct KeyIdArgs {
    /// Key id (SHA256:…), or an unambiguous prefix of its hash as `keys list` shows it
    #[arg(value_name = "KEY_ID")]
    pub key_id: String,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}

const USAGE_HELP: &str = "\
Examples:
  gitseal keys usage deploy/
  gitseal keys usage -o wide deploy/ apps/       # every object and file
  gitseal keys usage --online deploy/            # ask the controller about unannotated objects

Reads the gitseal.dev/key-id annotation that gitseal seal and reseal write. Objects without it
(sealed by kubeseal) show as unknown, unless --online asks the controller's verify endpoint.";

#[derive(Debug, Args)]
#[command(after_help = USAGE_HELP)]
pub struct KeysUsageArgs {
    /// Files or directories to look at
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,

    /// Ask the controller which keys open the SealedSecrets that carry no key-id annotation
    #[arg(long, env = "GITSEAL_ONLINE", value_parser = FalseyValueParser::new())]
    pub online: bool,

    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = OutputArg::Table, env = "GITSEAL_OUTPUT")]
    pub output: OutputArg,

    #[command(flatten)]
    pub namespace: NamespaceArg,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}
