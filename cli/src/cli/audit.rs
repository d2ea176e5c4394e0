//! `gitseal audit …`: the controller's audit trail, and who can read a Secret.

use std::path::PathBuf;

use clap::builder::FalseyValueParser;
use clap::{Args, Subcommand, ValueEnum};

use super::online::{ClusterArgs, OutputArg};

const AUDIT_HELP: &str = "\
Examples:
  # What happened to one object last week, from the controller's audit log:
  gitseal audit audit.log --object prod/db --since 7d

  # Every failed unseal, as JSON, from a stream:
  kubectl logs -n gitseal-system deploy/gitseal-controller | gitseal audit --outcome failure -o json

  # Everything done with one key, and by whom:
  gitseal audit audit.log --key-id SHA256:AbCd... -o wide

  gitseal audit verify audit.log               # was a line edited, inserted or removed?
  gitseal audit key > audit-key.pem            # the controller's public audit key (keep it)
  gitseal audit verify --public-key audit-key.pem --online audit.log   # signed, and nothing cut off?
  gitseal audit access prod/db                 # who can read the Secret prod/db?
  gitseal audit reads prod/db audit.log        # who did read it (the apiserver's account)?

Records are the controller's JSON lines (--audit-log FILE, or its stdout). Lines that are not
records (logs mixed in) are skipped by the filter and by `audit verify`, where a missing record
still breaks the chain.";

#[derive(Debug, Args)]
#[command(after_help = AUDIT_HELP, args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,

    #[command(flatten)]
    pub filter: AuditFilterArgs,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check audit logs: hashes and links, signatures (--public-key), and the anchored head
    /// (--checkpoint, --online); exit 0 with a summary, or 1 naming where trust ends
    Verify(AuditVerifyArgs),
    /// Print the controller's public audit key (PEM), for `audit verify --public-key`
    Key(AuditKeyArgs),
    /// Who can read a Secret: every user, group and ServiceAccount that RBAC lets get, list or
    /// watch it, each confirmed with a SubjectAccessReview
    Access(AuditAccessArgs),
    /// Who read a Secret: the SecretRead records the controller took from the kube-apiserver's
    /// audit webhook, or the apiserver's own audit log file
    Reads(AuditReadsArgs),
}

#[derive(Debug, Args)]
pub struct AuditFilterArgs {
    /// Audit log to read (JSON lines); - or nothing reads stdin
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Only records about this object (NAMESPACE/NAME, or NAME). Repeatable
    #[arg(long, value_name = "NS/NAME", value_delimiter = ',')]
    pub object: Vec<String>,

    /// Only records naming this key (SHA256:… or a prefix of its hash). Repeatable
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    pub key_id: Vec<String>,

    /// Only these actions (Unseal, DriftRepair, KeyGenerated, Verify, Reseal, …; any case). Repeatable
    #[arg(long, value_name = "ACTION", value_delimiter = ',')]
    pub action: Vec<String>,

    /// Only successes or only failures
    #[arg(long, value_enum)]
    pub outcome: Option<OutcomeArg>,

    /// Only records at or after TIME: RFC 3339 (2026-01-31T12:00:00Z), or an age such as 90m, 24h, 7d
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Only records before TIME (same forms as --since)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,

    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = OutputArg::Table, env = "GITSEAL_OUTPUT")]
    pub output: OutputArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutcomeArg {
    Success,
    Failure,
}

const VERIFY_HELP: &str = "\
Examples:
  gitseal audit verify /var/log/gitseal/audit.log
  kubectl logs -n gitseal-system deploy/gitseal-controller | gitseal audit verify -
  gitseal audit verify --public-key audit-key.pem --online replica-a.log replica-b.log
  kubectl -n gitseal-system get configmap gitseal-audit-checkpoint -o json > checkpoint.json
  gitseal audit verify --public-key audit-key.pem --checkpoint checkpoint.json audit.log

Give every replica's log (any order; each in its own order). Without --public-key only hashes
and links are checked: anyone can re-hash a rewritten file. Without a checkpoint a cut-off tail
goes unnoticed. --online reads the checkpoint through your kubeconfig (get on the ConfigMap
gitseal-audit-checkpoint in the controller namespace) and, when no --public-key is given, the key
from the controller itself (trust on first use: keep the key and pass it next time).";

#[derive(Debug, Args)]
#[command(after_help = VERIFY_HELP)]
pub struct AuditVerifyArgs {
    /// Audit logs (JSON lines), one per replica or rotated file; - reads stdin
    #[arg(value_name = "FILE", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,

    /// The controller's public audit key (PEM, from `gitseal audit key`): check every signature
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,

    /// The checkpoint (its JSON, or the ConfigMap gitseal-audit-checkpoint as JSON): report
    /// truncation and rewriting against it
    #[arg(long, value_name = "FILE", conflicts_with = "online")]
    pub checkpoint: Option<PathBuf>,

    /// Read the checkpoint (and, without --public-key, the key) from the cluster
    #[arg(long)]
    pub online: bool,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  gitseal audit key > audit-key.pem\n  gitseal audit key --fingerprint")]
pub struct AuditKeyArgs {
    /// Print only the key's SHA-256 fingerprint
    #[arg(long)]
    pub fingerprint: bool,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}

const ACCESS_HELP: &str = "\
Examples:
  gitseal audit access prod/db
  gitseal audit access prod/db -o json > who-can-read-db.json
  gitseal audit access prod/db --all            # include system:* identities and kube-system

Reads Roles and RoleBindings of the namespace, ClusterRoles (with their aggregation rules and
wildcards) and ClusterRoleBindings, so you need to list those. Each subject found is confirmed
with a SubjectAccessReview; CONFIRMED says whether the API server agrees. Identities that act
outside RBAC (the system:masters group, other authorizers) are not found this way.";

#[derive(Debug, Args)]
#[command(after_help = ACCESS_HELP)]
pub struct AuditAccessArgs {
    /// The Secret: NAMESPACE/NAME (the Secret a SealedSecret unseals into has its name)
    #[arg(value_name = "NAMESPACE/NAME")]
    pub secret: String,

    /// Also list system identities (system:* users and groups, ServiceAccounts of kube-system)
    #[arg(long, value_parser = FalseyValueParser::new())]
    pub all: bool,

    /// Also show who DID read it: the controller's audit log (SecretRead records) to count
    /// reads per subject, side by side with who can; - reads stdin
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = OutputArg::Table, env = "GITSEAL_OUTPUT")]
    pub output: OutputArg,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}

const READS_HELP: &str = "\
Examples:
  gitseal audit reads prod/db /var/log/gitseal/audit.log
  kubectl logs -n gitseal-system deploy/gitseal-controller | gitseal audit reads prod/db -o json
  gitseal audit reads prod/db --apiserver-log /var/log/kubernetes/audit.log   # no webhook needed
  gitseal audit reads prod/db audit.log --direct   # only requests that named prod/db

A list or watch of a whole namespace (or of the cluster) returns every Secret in it, so it is
shown as a read of prod/db too (SCOPE namespace or cluster) unless --direct is given. CODE is
the apiserver's answer: 403 is an attempt that was refused. Reads by system:* identities are
counted but not listed unless --all is given. See docs/audit-reads.md.";

#[derive(Debug, Args)]
#[command(after_help = READS_HELP)]
pub struct AuditReadsArgs {
    /// The Secret: NAMESPACE/NAME
    #[arg(value_name = "NAMESPACE/NAME")]
    pub secret: String,

    /// The controller's audit log (JSON lines); - or nothing reads stdin
    #[arg(value_name = "FILE", conflicts_with = "apiserver_log")]
    pub file: Option<PathBuf>,

    /// Read the kube-apiserver's audit log file (--audit-log-path, JSON lines of audit.k8s.io/v1
    /// Events) instead of the controller's; - reads stdin
    #[arg(long, value_name = "FILE")]
    pub apiserver_log: Option<PathBuf>,

    /// Only requests that named this Secret (no list or watch of its namespace or the cluster)
    #[arg(long, value_parser = FalseyValueParser::new())]
    pub direct: bool,

    /// Also show reads by system identities (system:* users: ServiceAccounts, including
    /// gitseal-controller's own reads while unsealing, kube-controller-manager, nodes)
    #[arg(long, value_parser = FalseyValueParser::new())]
    pub all: bool,

    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = OutputArg::Table, env = "GITSEAL_OUTPUT")]
    pub output: OutputArg,
}
