//! Flags, environment and kubeconfig resolved into one [`Config`] per command.
//!
//! Order, first wins:
//! 1. the command-line flag;
//! 2. `GITSEAL_<FLAG>` (clap reads it);
//! 3. kubeseal's `SEALED_SECRETS_<FLAG>` for the flags kubeseal has (`CERT`, `SCOPE`, `FORMAT`,
//!    `ALLOW_EMPTY_DATA`, `RECOVERY_PRIVATE_KEY`);
//! 4. for the namespace only: the context's namespace in the kubeconfig (`--kubeconfig`, every
//!    `$KUBECONFIG` file merged, or `~/.kube/config`; `default` if the context sets none);
//! 5. the built-in default.
//!
//! Cluster access and the controller's name and namespace are resolved in [`online`].
//! Inconsistent combinations that clap cannot express are usage errors (exit status 2).

pub mod online;

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap::error::ErrorKind;
use gitseal_shared::Scope;
use gitseal_shared::manifest::OutputFormat;
use gitseal_shared::seal::SealOptions;
use gitseal_shared::types::ApiGroup;
use kube::config::Kubeconfig;

use crate::cli::{self, ApiArg, Cli, Command, FormatArg, KeyType, RecipientArgs, ReportFormat, ScopeArg};
pub use online::{
    AuditConfig, CertConfig, ClusterConfig, KeyStates, KeysConfig, Output, ReadSource, ScanConfig, TokenFlags,
};

#[derive(Debug)]
pub enum Config {
    Seal(SealConfig),
    Unseal(UnsealConfig),
    Reseal(ResealConfig),
    Validate(ValidateConfig),
    Cert(CertConfig),
    Keys(KeysConfig),
    Audit(AuditConfig),
    Scan(ScanConfig),
    Keygen(KeygenConfig),
    Completions(clap_complete::Shell),
    Web(WebConfig),
}

/// `gitseal web`: the certificate (given, or the controller's) and where to serve the page.
#[derive(Debug)]
pub struct WebConfig {
    pub cert: Option<String>,
    pub listen: std::net::SocketAddr,
    pub cluster: ClusterConfig,
}

/// Where a command reads its manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Stdin,
    File(PathBuf),
}

impl Input {
    pub fn from(file: Option<PathBuf>) -> Input {
        match file {
            Some(p) if p.as_os_str() != "-" => Input::File(p),
            _ => Input::Stdin,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Input::Stdin => "stdin".into(),
            Input::File(p) => p.display().to_string(),
        }
    }
}

/// Certificates (files or URLs) and age recipients to seal for.
#[derive(Debug, Clone, Default)]
pub struct RecipientSources {
    pub certs: Vec<String>,
    pub age: Vec<String>,
    pub files: Vec<PathBuf>,
    /// Where `certs` came from, for messages: `--cert`, or the environment variable that set them.
    pub certs_from: &'static str,
    /// Fetch the certificate from this cluster's controller (nothing else was given).
    pub controller: Option<ClusterConfig>,
}

impl RecipientSources {
    fn from_args(args: RecipientArgs) -> RecipientSources {
        let mut certs = args.cert;
        let mut certs_from = "--cert";
        if certs.is_empty()
            && let Some(v) = env("SEALED_SECRETS_CERT")
        {
            certs.push(v);
            certs_from = "SEALED_SECRETS_CERT";
        } else if !certs.is_empty()
            && env("GITSEAL_CERT").is_some_and(|v| v.split(',').eq(certs.iter().map(String::as_str)))
        {
            certs_from = "GITSEAL_CERT";
        }
        RecipientSources { certs, age: args.recipient, files: args.recipients_file, certs_from, controller: None }
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty() && self.age.is_empty() && self.files.is_empty() && self.controller.is_none()
    }
}

#[derive(Debug)]
pub enum SealMode {
    /// Secret manifests in, SealedSecrets out.
    Manifests,
    /// One value in, bare base64 out; the value comes from this file or stdin.
    Raw { from_file: Option<PathBuf> },
    /// Merge into an existing SealedSecret file in place.
    MergeInto(PathBuf),
}

#[derive(Debug)]
pub struct SealConfig {
    pub mode: SealMode,
    pub input: Input,
    /// Data added by `--from-file`, `--from-env-file` and `--generate`.
    pub data: crate::data_sources::DataSources,
    pub output: Option<PathBuf>,
    /// Replace an existing output file (`--force`, or kubeseal's `-w`).
    pub force: bool,
    pub format: OutputFormat,
    pub recipients: RecipientSources,
    pub options: SealOptions,
}

#[derive(Debug)]
pub struct UnsealConfig {
    pub keys: Vec<PathBuf>,
    pub input: Input,
    pub format: OutputFormat,
}

/// Who re-seals: the user's key files for new recipients, or the controller.
#[derive(Debug)]
pub enum ResealMode {
    Offline { keys: Vec<PathBuf>, recipients: RecipientSources },
    Online(ClusterConfig),
}

#[derive(Debug)]
pub struct ResealConfig {
    pub mode: ResealMode,
    pub dry_run: bool,
    pub paths: Vec<PathBuf>,
}

#[derive(Debug)]
pub struct ValidateConfig {
    /// Key files to check offline with; `None`: ask the controller.
    pub keys: Option<Vec<PathBuf>>,
    pub cluster: ClusterConfig,
    pub json: bool,
    pub paths: Vec<PathBuf>,
}

#[derive(Debug)]
pub enum KeygenConfig {
    Rsa {
        bits: gitseal_keys::RsaBits,
        common_name: String,
        ttl: time::Duration,
        out_key: Option<PathBuf>,
        out_cert: Option<PathBuf>,
        secret: Option<KeySecretOut>,
    },
    Age {
        out_key: PathBuf,
    },
}

/// Where and as what to write a key Secret manifest.
#[derive(Debug)]
pub struct KeySecretOut {
    pub path: PathBuf,
    pub name: Option<String>,
    pub namespace: String,
}

impl Config {
    /// Resolve a parsed command line. The error is a usage error to print as clap does.
    pub fn resolve(cli: Cli) -> Result<Config, clap::Error> {
        Ok(match cli.command {
            Command::Seal(a) => Config::Seal(seal(a)?),
            Command::Unseal(a) => {
                let format = format_or_env(a.format).unwrap_or(OutputFormat::Yaml);
                Config::Unseal(UnsealConfig { keys: a.key, input: Input::from(a.file), format })
            }
            Command::Reseal(a) => Config::Reseal(reseal(a)?),
            Command::Validate(a) => Config::Validate(ValidateConfig {
                keys: (!a.key.is_empty()).then_some(a.key),
                cluster: ClusterConfig::from_args(a.cluster, a.namespace.namespace),
                json: a.output == ReportFormat::Json,
                paths: a.paths,
            }),
            Command::Cert(a) => Config::Cert(online::cert(a)),
            Command::Keys(c) => Config::Keys(online::keys(c)?),
            Command::Audit(a) => Config::Audit(online::audit(a)?),
            Command::Scan(a) => Config::Scan(online::scan(a)?),
            Command::Keygen(a) => Config::Keygen(keygen(a)?),
            Command::Completions(a) => Config::Completions(a.shell),
            Command::Web(a) => Config::Web(WebConfig {
                cert: a.cert.filter(|c| !c.is_empty()),
                listen: a.listen,
                cluster: ClusterConfig::from_args(a.cluster, None),
            }),
        })
    }
}

fn reseal(a: cli::ResealArgs) -> Result<ResealConfig, clap::Error> {
    let recipients = RecipientSources::from_args(a.recipients);
    let mode = match (a.key.is_empty(), recipients.is_empty()) {
        (true, true) => ResealMode::Online(ClusterConfig::from_args(a.cluster, a.namespace.namespace)),
        (true, false) => {
            return Err(usage(
                "reseal",
                ErrorKind::MissingRequiredArgument,
                "--cert/--recipient/--recipients-file re-seal offline and need the old keys too (--key FILE); drop them to re-seal through the controller",
            ));
        }
        (false, true) => {
            return Err(usage(
                "reseal",
                ErrorKind::MissingRequiredArgument,
                "an offline re-seal (--key) needs the new keys: --cert FILE|URL, --recipient age1… or --recipients-file FILE",
            ));
        }
        (false, false) => ResealMode::Offline { keys: a.key, recipients },
    };
    Ok(ResealConfig { mode, dry_run: a.dry_run, paths: a.paths })
}

fn seal(mut a: cli::SealArgs) -> Result<SealConfig, clap::Error> {
    let force = a.force || a.kubeseal_output.is_some();
    if a.output.is_none() {
        a.output = a.kubeseal_output.take();
    }
    let cluster = ClusterConfig::from_args(a.cluster, None);
    let mut recipients = RecipientSources::from_args(a.recipients);
    if recipients.is_empty() {
        // As kubeseal: nothing given, so ask the controller for its certificate.
        recipients.controller = Some(cluster.clone());
    }
    if let Some(out) = &a.output
        && out.extension().is_none()
        && matches!(out.to_str(), Some("yaml" | "json" | "YAML" | "JSON"))
    {
        return Err(usage(
            "seal",
            ErrorKind::InvalidValue,
            "-o names the output file in gitseal; for the output format use --format yaml|json",
        ));
    }
    let scope = a.scope.map(scope_of).or_else(|| env("SEALED_SECRETS_SCOPE").and_then(|s| s.parse().ok()));
    let allow_empty_data = a.allow_empty_data || env("SEALED_SECRETS_ALLOW_EMPTY_DATA").is_some_and(|v| truthy(&v));
    let by_extension = a.output.as_deref().and_then(format_of_path);
    let format = by_extension.or(format_or_env(a.format)).unwrap_or(OutputFormat::Yaml);
    // Checked here, not by clap: clap counts GITSEAL_RAW=false as --raw being given.
    if a.raw && a.file.is_some() {
        return Err(usage(
            "seal",
            ErrorKind::ArgumentConflict,
            "--raw reads the value from stdin or --from-file, not from -f",
        ));
    }
    if a.raw && a.merge_into.is_some() {
        return Err(usage(
            "seal",
            ErrorKind::ArgumentConflict,
            "--raw prints one value; it cannot be used with --merge-into",
        ));
    }
    // --merge-into against -o/-w: clap (`conflicts_with_all`), so the usage line shows it.
    if force && a.output.is_none() {
        return Err(usage("seal", ErrorKind::MissingRequiredArgument, "--force replaces the -o file; add -o FILE"));
    }
    if a.raw && (!a.generate.is_empty() || !a.from_env_file.is_empty() || a.from_file.len() > 1) {
        return Err(usage(
            "seal",
            ErrorKind::ArgumentConflict,
            "--raw seals one value from stdin or one --from-file; --generate and --from-env-file make a Secret, drop --raw",
        ));
    }
    let data = if a.raw {
        crate::data_sources::DataSources::default()
    } else {
        crate::data_sources::DataSources::from_args(&a.from_file, &a.from_env_file, &a.generate, a.file.is_some())
            .map_err(|e| usage("seal", ErrorKind::InvalidValue, &format!("{e:#}")))?
    };
    let mode = if a.raw {
        let from_file = match a.from_file.first() {
            Some(spec) => Some(from_file_path(spec)?),
            None => None,
        };
        SealMode::Raw { from_file }
    } else if let Some(target) = a.merge_into {
        SealMode::MergeInto(target)
    } else {
        SealMode::Manifests
    };
    let api = match a.api {
        ApiArg::Gitseal => ApiGroup::Gitseal,
        ApiArg::Bitnami => ApiGroup::Bitnami,
    };
    Ok(SealConfig {
        mode,
        input: Input::from(a.file),
        data,
        output: a.output,
        force,
        format,
        recipients,
        options: SealOptions {
            scope,
            name: a.name.filter(|n| !n.is_empty()),
            namespace: a.namespace.filter(|n| !n.is_empty()),
            default_namespace: kubeconfig_namespace(&cluster),
            allow_empty_data,
            api,
        },
    })
}

fn keygen(a: cli::KeygenArgs) -> Result<KeygenConfig, clap::Error> {
    let conflict = |msg: &str| usage("keygen", ErrorKind::ArgumentConflict, msg);
    match a.key_type {
        KeyType::Age => {
            if a.out_cert.is_some() || a.secret.is_some() || a.bits.is_some() || a.cn.is_some() || a.ttl.is_some() {
                return Err(conflict(
                    "--type age takes only --out-key: --out-cert, --secret, --bits, --cn and --ttl are for RSA keys",
                ));
            }
            // clap requires --out-key with --type age (`required_if_eq`); this is its value.
            let out_key = a.out_key.ok_or_else(|| {
                usage("keygen", ErrorKind::MissingRequiredArgument, "--type age needs --out-key FILE for the identity")
            })?;
            Ok(KeygenConfig::Age { out_key })
        }
        KeyType::Rsa => {
            if a.out_key.is_none() && a.secret.is_none() {
                return Err(usage(
                    "keygen",
                    ErrorKind::MissingRequiredArgument,
                    "say where to write the key: --out-key FILE --out-cert FILE, or --secret FILE",
                ));
            }
            if a.out_key.is_some() && a.out_cert.is_none() {
                return Err(usage(
                    "keygen",
                    ErrorKind::MissingRequiredArgument,
                    "--out-key needs --out-cert FILE too: the certificate is what `gitseal seal --cert` takes",
                ));
            }
            let secret = a.secret.map(|path| KeySecretOut { path, name: a.secret_name, namespace: a.secret_namespace });
            Ok(KeygenConfig::Rsa {
                bits: a.bits.unwrap_or_default(),
                common_name: a.cn.unwrap_or_default(),
                ttl: a.ttl.unwrap_or(gitseal_keys::generate::DEFAULT_TTL),
                out_key: a.out_key,
                out_cert: a.out_cert,
                secret,
            })
        }
    }
}

pub(crate) fn usage(subcommand: &str, kind: ErrorKind, msg: &str) -> clap::Error {
    let mut cmd = Cli::command();
    let mut sub = cmd.find_subcommand_mut(subcommand).cloned().unwrap_or_default();
    sub = sub.bin_name(format!("gitseal {subcommand}"));
    sub.error(kind, msg)
}

fn scope_of(s: ScopeArg) -> Scope {
    match s {
        ScopeArg::Strict => Scope::Strict,
        ScopeArg::NamespaceWide => Scope::NamespaceWide,
        ScopeArg::ClusterWide => Scope::ClusterWide,
    }
}

fn format_or_env(flag: Option<FormatArg>) -> Option<OutputFormat> {
    match flag {
        Some(FormatArg::Yaml) => Some(OutputFormat::Yaml),
        Some(FormatArg::Json) => Some(OutputFormat::Json),
        None => match env("SEALED_SECRETS_FORMAT")?.to_ascii_lowercase().as_str() {
            "yaml" => Some(OutputFormat::Yaml),
            "json" => Some(OutputFormat::Json),
            _ => None,
        },
    }
}

/// `.yaml`/`.yml` force YAML (as kubeseal's `-w`), `.json` forces JSON.
pub fn format_of_path(path: &Path) -> Option<OutputFormat> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "yaml" | "yml" => Some(OutputFormat::Yaml),
        "json" => Some(OutputFormat::Json),
        _ => None,
    }
}

/// kubectl's `--from-file=[key=]path`; the key is ignored, as kubeseal does.
fn from_file_path(spec: &str) -> Result<PathBuf, clap::Error> {
    let path = match spec.split_once('=') {
        Some((_, p)) => p,
        None => spec,
    };
    if path.is_empty() {
        return Err(usage("seal", ErrorKind::InvalidValue, "--from-file needs a path: --from-file [key=]path"));
    }
    Ok(PathBuf::from(path))
}

pub(crate) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

/// The namespace of the kubeconfig's context (`--context`, else the current one; `default` when
/// the context sets none, as kubectl). The kubeconfig is `--kubeconfig`, else every file of
/// `$KUBECONFIG` merged (kube's own [`Kubeconfig`], as the online commands read it), else
/// `~/.kube/config`. A missing or unreadable kubeconfig is not an error: sealing needs no
/// cluster, but then the namespace must come from the manifest or `-n`.
fn kubeconfig_namespace(cluster: &ClusterConfig) -> Option<String> {
    let kubeconfig = match &cluster.kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    };
    namespace_in_kubeconfig(&kubeconfig.ok()?, cluster.context.as_deref())
}

fn namespace_in_kubeconfig(kubeconfig: &Kubeconfig, context: Option<&str>) -> Option<String> {
    let current = context.or(kubeconfig.current_context.as_deref())?;
    let ctx = kubeconfig.contexts.iter().find(|c| c.name == current)?;
    let ns = ctx.context.as_ref().and_then(|c| c.namespace.clone()).filter(|n| !n.is_empty());
    Some(ns.unwrap_or_else(|| "default".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_contexts_namespace_is_taken_from_a_kubeconfig() {
        let kc = |text: &str| Kubeconfig::from_yaml(text).unwrap();
        let text = "apiVersion: v1\nkind: Config\ncurrent-context: b\ncontexts:\n- name: a\n  context: {cluster: c, namespace: x}\n- name: b\n  context: {cluster: c, namespace: team}\n";
        assert_eq!(namespace_in_kubeconfig(&kc(text), None).as_deref(), Some("team"));
        assert_eq!(namespace_in_kubeconfig(&kc(text), Some("a")).as_deref(), Some("x"));
        assert_eq!(namespace_in_kubeconfig(&kc("current-context: a\ncontexts: []\n"), None), None);
        let bare = "current-context: a\ncontexts:\n- name: a\n  context: {cluster: c}\n";
        assert_eq!(namespace_in_kubeconfig(&kc(bare), None).as_deref(), Some("default"));
    }

    #[test]
    fn output_file_extensions_pick_the_format() {
        assert_eq!(format_of_path(Path::new("a/b.YML")), Some(OutputFormat::Yaml));
        assert_eq!(format_of_path(Path::new("b.json")), Some(OutputFormat::Json));
        assert_eq!(format_of_path(Path::new("b.txt")), None);
    }

    #[test]
    fn from_file_ignores_the_key_part_like_kubeseal() {
        assert_eq!(from_file_path("password=/tmp/p").unwrap(), PathBuf::from("/tmp/p"));
        assert_eq!(from_file_path("/tmp/p").unwrap(), PathBuf::from("/tmp/p"));
        assert!(from_file_path("k=").is_err());
    }
}
