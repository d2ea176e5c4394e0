//! Resolved configuration of the commands that reach a cluster (`cert`, `keys`, `audit`,
//! `scan`, and the online modes of `seal`, `validate` and `reseal`).
//!
//! Cluster access, first wins:
//! - kubeconfig: `--kubeconfig`, `GITSEAL_KUBECONFIG`, `$KUBECONFIG` (all its files, merged as
//!   kubectl does), `~/.kube/config`; context: `--context`, `GITSEAL_CONTEXT`, the current one;
//! - namespace of objects that name none: `-n`, `GITSEAL_NAMESPACE`, the context's, `default`;
//! - controller: `--controller-name`/`--controller-namespace`, `GITSEAL_CONTROLLER_NAME`/
//!   `_NAMESPACE`, kubeseal's `SEALED_SECRETS_CONTROLLER_NAME`/`_NAMESPACE`, then
//!   `gitseal-controller` in `gitseal-system`.

use std::path::PathBuf;

use clap::error::ErrorKind;
use time::OffsetDateTime;

use super::{Input, RecipientSources, env, usage};
use crate::cli::{
    AuditAccessArgs, AuditArgs, AuditCommand, AuditFilterArgs, AuditReadsArgs, CertArgs, ClusterArgs, KeysCommand,
    OutcomeArg, OutputArg, ReportFormat, ScanArgs,
};

pub const DEFAULT_CONTROLLER_NAME: &str = "gitseal-controller";
pub const DEFAULT_CONTROLLER_NAMESPACE: &str = "gitseal-system";

/// How to reach the cluster and the controller.
#[derive(Debug, Clone, Default)]
pub struct ClusterConfig {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// `-n`: for objects that name no namespace; `None` means the context's.
    pub namespace: Option<String>,
    pub controller_name: String,
    pub controller_namespace: String,
}

impl ClusterConfig {
    pub fn from_args(a: ClusterArgs, namespace: Option<String>) -> ClusterConfig {
        let pick = |flag: Option<String>, kubeseal: &str, default: &str| {
            flag.filter(|v| !v.is_empty()).or_else(|| env(kubeseal)).unwrap_or_else(|| default.to_string())
        };
        ClusterConfig {
            kubeconfig: a.kubeconfig.filter(|p| !p.as_os_str().is_empty()),
            context: a.context.filter(|c| !c.is_empty()),
            namespace: namespace.filter(|n| !n.is_empty()),
            controller_name: pick(a.controller_name, "SEALED_SECRETS_CONTROLLER_NAME", DEFAULT_CONTROLLER_NAME),
            controller_namespace: pick(
                a.controller_namespace,
                "SEALED_SECRETS_CONTROLLER_NAMESPACE",
                DEFAULT_CONTROLLER_NAMESPACE,
            ),
        }
    }
}

/// `-o` of listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Wide,
    Json,
    Yaml,
}

impl From<OutputArg> for Output {
    fn from(o: OutputArg) -> Output {
        match o {
            OutputArg::Table => Output::Table,
            OutputArg::Wide => Output::Wide,
            OutputArg::Json => Output::Json,
            OutputArg::Yaml => Output::Yaml,
        }
    }
}

#[derive(Debug)]
pub struct CertConfig {
    /// `--cert`: pass this certificate on instead of asking the controller.
    pub given: Option<String>,
    pub recipients: bool,
    pub output: Option<PathBuf>,
    pub cluster: ClusterConfig,
}

#[derive(Debug)]
pub enum KeysConfig {
    List { output: Output, cluster: ClusterConfig },
    Rotate { output: Output, cluster: ClusterConfig },
    Backup { recipients: RecipientSources, output: Option<PathBuf>, armor: bool, cluster: ClusterConfig },
    Restore { file: PathBuf, identities: Vec<PathBuf>, dry_run: bool, cluster: ClusterConfig },
    Retire { key_id: String, cluster: ClusterConfig },
    Revoke { key_id: String, cluster: ClusterConfig },
    Usage { paths: Vec<PathBuf>, online: Option<ClusterConfig>, output: Output },
    ImportToToken { secret: String, token: TokenFlags, cluster: ClusterConfig },
}

/// Where a PKCS#11 token is (`keys import-to-token`).
#[derive(Debug)]
pub struct TokenFlags {
    pub module: PathBuf,
    pub token_label: Option<String>,
    pub slot: Option<u64>,
    pub pin_file: PathBuf,
}

/// What `gitseal audit` keeps.
#[derive(Debug, Default)]
pub struct AuditFilter {
    /// `(namespace, name)`; a `None` namespace matches any.
    pub objects: Vec<(Option<String>, String)>,
    pub key_ids: Vec<String>,
    /// Lower-cased.
    pub actions: Vec<String>,
    /// `"success"` or `"failure"`.
    pub outcome: Option<&'static str>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
}

#[derive(Debug)]
pub enum AuditConfig {
    Filter {
        input: Input,
        filter: AuditFilter,
        output: Output,
    },
    Verify {
        inputs: Vec<Input>,
        public_key: Option<PathBuf>,
        checkpoint: Option<PathBuf>,
        /// `--online`: where to read the checkpoint (and key) from.
        online: Option<ClusterConfig>,
    },
    Key {
        fingerprint: bool,
        cluster: ClusterConfig,
    },
    Access {
        namespace: String,
        name: String,
        all: bool,
        log: Option<Input>,
        output: Output,
        cluster: ClusterConfig,
    },
    Reads {
        namespace: String,
        name: String,
        source: ReadSource,
        direct: bool,
        all: bool,
        output: Output,
    },
}

/// Where `gitseal audit reads` finds the reads.
#[derive(Debug, Clone)]
pub enum ReadSource {
    /// The controller's audit log: its SecretRead records.
    Controller(Input),
    /// The kube-apiserver's audit log file: audit.k8s.io/v1 Events, one a line.
    Apiserver(Input),
}

/// Where `scan` learns which keys are retired or revoked.
#[derive(Debug)]
pub enum KeyStates {
    /// Not checked: only plaintext Secrets are looked for.
    Unknown,
    File(PathBuf),
    Online(ClusterConfig),
}

#[derive(Debug)]
pub struct ScanConfig {
    pub paths: Vec<PathBuf>,
    pub key_states: KeyStates,
    pub output: Output,
}

pub fn cert(a: CertArgs) -> CertConfig {
    CertConfig {
        given: a.cert.filter(|c| !c.is_empty()),
        recipients: a.recipients,
        output: a.output,
        cluster: ClusterConfig::from_args(a.cluster, None),
    }
}

pub fn keys(c: KeysCommand) -> Result<KeysConfig, clap::Error> {
    let cluster = |a| ClusterConfig::from_args(a, None);
    Ok(match c {
        KeysCommand::List(a) => KeysConfig::List { output: a.output.into(), cluster: cluster(a.cluster) },
        KeysCommand::Rotate(a) => KeysConfig::Rotate { output: a.output.into(), cluster: cluster(a.cluster) },
        KeysCommand::Backup(a) => {
            if a.recipient.is_empty() && a.recipients_file.is_empty() {
                return Err(usage(
                    "keys",
                    ErrorKind::MissingRequiredArgument,
                    "say who may open the backup: --recipient age1… or --recipients-file FILE",
                ));
            }
            let recipients = RecipientSources { age: a.recipient, files: a.recipients_file, ..Default::default() };
            KeysConfig::Backup { recipients, output: a.output, armor: a.armor, cluster: cluster(a.cluster) }
        }
        KeysCommand::Restore(a) => KeysConfig::Restore {
            file: a.file,
            identities: a.identity,
            dry_run: a.dry_run,
            cluster: cluster(a.cluster),
        },
        KeysCommand::Retire(a) => KeysConfig::Retire { key_id: a.key_id, cluster: cluster(a.cluster) },
        KeysCommand::Revoke(a) => KeysConfig::Revoke { key_id: a.key_id, cluster: cluster(a.cluster) },
        KeysCommand::ImportToToken(a) => KeysConfig::ImportToToken {
            secret: a.secret,
            token: TokenFlags {
                module: a.pkcs11_module,
                token_label: a.pkcs11_token_label,
                slot: a.pkcs11_slot,
                pin_file: a.pkcs11_pin_file,
            },
            cluster: cluster(a.cluster),
        },
        KeysCommand::Usage(a) => KeysConfig::Usage {
            online: a.online.then(|| ClusterConfig::from_args(a.cluster, a.namespace.namespace)),
            paths: a.paths,
            output: a.output.into(),
        },
    })
}

pub fn audit(a: AuditArgs) -> Result<AuditConfig, clap::Error> {
    match a.command {
        Some(AuditCommand::Verify(v)) => Ok(AuditConfig::Verify {
            inputs: v.files.into_iter().map(|f| Input::from(Some(f))).collect(),
            public_key: v.public_key,
            checkpoint: v.checkpoint,
            online: v.online.then(|| ClusterConfig::from_args(v.cluster, None)),
        }),
        Some(AuditCommand::Key(k)) => {
            Ok(AuditConfig::Key { fingerprint: k.fingerprint, cluster: ClusterConfig::from_args(k.cluster, None) })
        }
        Some(AuditCommand::Access(v)) => access(v),
        Some(AuditCommand::Reads(v)) => reads(v),
        None => filter(a.filter),
    }
}

fn secret_ref(s: &str) -> Result<(String, String), clap::Error> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(usage(
            "audit",
            ErrorKind::InvalidValue,
            &format!("{s:?} is not NAMESPACE/NAME: name the Secret as prod/db"),
        )),
    }
}

fn reads(a: AuditReadsArgs) -> Result<AuditConfig, clap::Error> {
    let (namespace, name) = secret_ref(&a.secret)?;
    let source = match a.apiserver_log {
        Some(f) => ReadSource::Apiserver(Input::from(Some(f))),
        None => ReadSource::Controller(Input::from(a.file)),
    };
    Ok(AuditConfig::Reads { namespace, name, source, direct: a.direct, all: a.all, output: a.output.into() })
}

fn access(a: AuditAccessArgs) -> Result<AuditConfig, clap::Error> {
    let (namespace, name) = match a.secret.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => (ns, name),
        _ => {
            return Err(usage(
                "audit",
                ErrorKind::InvalidValue,
                &format!("{:?} is not NAMESPACE/NAME: name the Secret as prod/db", a.secret),
            ));
        }
    };
    Ok(AuditConfig::Access {
        namespace: namespace.to_string(),
        name: name.to_string(),
        all: a.all,
        log: a.log.map(|f| Input::from(Some(f))),
        output: a.output.into(),
        cluster: ClusterConfig::from_args(a.cluster, None),
    })
}

fn filter(a: AuditFilterArgs) -> Result<AuditConfig, clap::Error> {
    let now = OffsetDateTime::now_utc();
    let time = |flag: &str, v: Option<String>| -> Result<Option<OffsetDateTime>, clap::Error> {
        v.map(|s| {
            parse_time(&s, now).ok_or_else(|| {
                usage(
                    "audit",
                    ErrorKind::InvalidValue,
                    &format!("{flag} {s:?} is neither RFC 3339 (2026-01-31T12:00:00Z) nor an age such as 24h or 7d"),
                )
            })
        })
        .transpose()
    };
    let objects = a
        .object
        .iter()
        .map(|o| match o.split_once('/') {
            Some((ns, name)) => (Some(ns.to_string()), name.to_string()),
            None => (None, o.clone()),
        })
        .collect();
    let filter = AuditFilter {
        objects,
        key_ids: a.key_id,
        actions: a.action.iter().map(|s| s.to_ascii_lowercase()).collect(),
        outcome: a.outcome.map(|o| match o {
            OutcomeArg::Success => "success",
            OutcomeArg::Failure => "failure",
        }),
        since: time("--since", a.since)?,
        until: time("--until", a.until)?,
    };
    Ok(AuditConfig::Filter { input: Input::from(a.file), filter, output: a.output.into() })
}

/// RFC 3339, or an age (`90m`, `24h`, `7d`) counted back from `now`.
pub fn parse_time(s: &str, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Some(t);
    }
    crate::cli::parse_ttl(s).ok().map(|d| now - d)
}

pub fn scan(a: ScanArgs) -> Result<ScanConfig, clap::Error> {
    let output = match a.output {
        ReportFormat::Text => Output::Table,
        ReportFormat::Json => Output::Json,
    };
    let key_states = match (a.keys_file, a.online) {
        (Some(f), _) => KeyStates::File(f),
        (None, true) => KeyStates::Online(ClusterConfig::from_args(a.cluster, None)),
        (None, false) => KeyStates::Unknown,
    };
    Ok(ScanConfig { paths: a.paths, key_states, output })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_an_age_back_from_now() {
        let now =
            OffsetDateTime::parse("2026-02-01T00:00:00Z", &time::format_description::well_known::Rfc3339).unwrap();
        let t = parse_time("2026-01-31T12:00:00Z", now).unwrap();
        assert_eq!(now - t, time::Duration::hours(12));
        assert_eq!(now - parse_time("7d", now).unwrap(), time::Duration::days(7));
        assert!(parse_time("yesterday", now).is_none());
    }

    #[test]
    fn the_controller_defaults_to_gitseal_controller_in_gitseal_system() {
        let c = ClusterConfig::from_args(ClusterArgs::default(), Some(String::new()));
        if std::env::var_os("SEALED_SECRETS_CONTROLLER_NAME").is_none() {
            assert_eq!(c.controller_name, DEFAULT_CONTROLLER_NAME);
        }
        if std::env::var_os("SEALED_SECRETS_CONTROLLER_NAMESPACE").is_none() {
            assert_eq!(c.controller_namespace, DEFAULT_CONTROLLER_NAMESPACE);
        }
        assert_eq!(c.namespace, None);
    }
}
