//! `gitseal seal`: Secret manifests → SealedSecrets; `--raw` for one value; `--merge-into` to
//! update an existing SealedSecret file in place.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result, bail};
use gitseal_shared::manifest::secret::PlainSecret;
use gitseal_shared::manifest::{Document, parse_documents, write_documents};
use gitseal_shared::seal::{NO_NAMESPACE_HINT, SealOptions, key_hints, seal_secret, target_of};
use gitseal_shared::types::{ApiGroup, SealedSecretObject};
use gitseal_shared::value::{Format, RecipientSet, decode_base64, encode_base64};
use gitseal_shared::{KeyId, Scope, Target};

use crate::config::{Input, SealConfig, SealMode};
use crate::edit::{self, ObjectEdits};
use crate::io::{self, Mode};
use crate::{material, tree};

const RAW_TTY_HINT: &str = "(tty detected: expecting the value to seal in stdin; end it with Ctrl-D)";

pub fn run(cfg: &SealConfig) -> Result<()> {
    if let Some(out) = &cfg.output {
        io::check_output(out, cfg.force)?;
    }
    let recipients = material::load_recipients(&cfg.recipients)?;
    if cfg.options.api == ApiGroup::Bitnami && !matches!(cfg.mode, SealMode::MergeInto(_)) {
        bitnami_can_open(&recipients).context("--api bitnami")?;
    }
    match &cfg.mode {
        SealMode::Manifests => manifests(cfg, &recipients),
        SealMode::Raw { from_file } => raw(cfg, &recipients, from_file.as_deref()),
        SealMode::MergeInto(target) => merge_into(cfg, &recipients, target),
    }
}

/// Bitnami's controller (and `kubeseal --recovery-unseal`) opens only kubeseal's format: one RSA
/// certificate. Several recipients, or an age recipient, give gitseal's age format, which would
/// be written into a `bitnami.com` object nobody can open there. Issue #16.
pub(crate) fn bitnami_can_open(recipients: &RecipientSet) -> Result<()> {
    if recipients.format() != Format::Kubeseal {
        bail!(
            "Bitnami's controller opens values sealed for exactly one certificate, not for several certificates or age recipients: use --api gitseal, or seal for one --cert"
        );
    }
    Ok(())
}

/// `document 2 (ConfigMap app/settings)`, for messages.
pub(crate) fn locate(doc: &Document) -> String {
    match doc.item {
        Some(i) => format!("document {}, list item {} ({})", doc.index + 1, i + 1, doc.describe()),
        None => format!("document {} ({})", doc.index + 1, doc.describe()),
    }
}

/// The Secrets of the input, each decoded and named for messages (`document 1 (Secret app/db)`),
/// or the error naming its document. stringData numbers and booleans are taken as their text,
/// as kubeseal does, with one warning line each (the key, never the value).
fn read_secrets(input: &Input) -> Result<Vec<(String, PlainSecret)>> {
    let text = io::read_text(input)?;
    let docs = parse_documents(&text).with_context(|| format!("reading {}", input.describe()))?;
    if docs.is_empty() {
        bail!("no Secret found in {}: expected a v1 Secret manifest (YAML or JSON)", input.describe());
    }
    docs.iter()
        .map(|doc| {
            check_base64(doc)?;
            let (secret, coerced) = PlainSecret::from_value_coercing(&doc.value).with_context(|| locate(doc))?;
            for key in coerced {
                eprintln!(
                    "warning: {}: stringData[{key}] is not a string; sealed as its text, as kubeseal does (quote it to say so)",
                    locate(doc)
                );
            }
            Ok((locate(doc), secret))
        })
        .collect()
}

/// Reject `data` values that are not base64 before the library does: its decoder names the
/// offending byte and offset, which would put a piece of the plaintext into the message.
fn check_base64(doc: &Document) -> Result<()> {
    let Some(data) = doc.value.get("data").and_then(|d| d.as_object()) else { return Ok(()) };
    for (key, v) in data {
        if let Some(text) = v.as_str()
            && decode_base64(text).is_err()
        {
            bail!("{}: data[{key}] is not valid base64: encode it, or put plain text under stringData", locate(doc));
        }
    }
    Ok(())
}

/// The Secrets to seal: the input manifests, or (with `--from-file`, `--from-env-file` or
/// `--generate` and no `-f`) a new Secret named by `--name`/`--namespace`; the command-line data
/// added to it; every data key checked as Kubernetes would check it.
fn input_secrets(cfg: &SealConfig) -> Result<Vec<(String, PlainSecret)>> {
    let sources = &cfg.data;
    let mut secrets = if sources.is_empty() || sources.read_input {
        read_secrets(&cfg.input)?
    } else {
        let mut secret = PlainSecret::default();
        secret.metadata.name = cfg.options.name.clone();
        secret.metadata.namespace = cfg.options.namespace.clone();
        vec![("the Secret of --from-file/--from-env-file/--generate".to_string(), secret)]
    };
    if !sources.is_empty() {
        if secrets.len() != 1 {
            bail!(
                "--from-file, --from-env-file and --generate add to one Secret; {} holds {}",
                cfg.input.describe(),
                secrets.len()
            );
        }
        let (where_, secret) = &mut secrets[0];
        sources.add_to(secret).with_context(|| where_.clone())?;
    }
    for (where_, secret) in &secrets {
        for key in secret.data.keys() {
            gitseal_shared::manifest::secret::check_data_key(key).with_context(|| where_.clone())?;
        }
    }
    Ok(secrets)
}

fn manifests(cfg: &SealConfig, recipients: &RecipientSet) -> Result<()> {
    let secrets = input_secrets(cfg)?;
    let mut out = Vec::with_capacity(secrets.len());
    for (where_, secret) in &secrets {
        let sealed = seal_secret(secret, recipients, &cfg.options).with_context(|| where_.clone())?;
        out.push(serde_json::to_value(&sealed)?);
    }
    emit(cfg.output.as_deref(), cfg.force, write_documents(&out, cfg.format)?.as_bytes())
}

fn raw(cfg: &SealConfig, recipients: &RecipientSet, from_file: Option<&Path>) -> Result<()> {
    let opts = &cfg.options;
    let scope = opts.scope.unwrap_or_default();
    let namespace = opts.namespace.clone().or_else(|| opts.default_namespace.clone());
    if scope != Scope::ClusterWide && namespace.is_none() {
        bail!("--raw: no namespace to seal for in {scope} scope; {NO_NAMESPACE_HINT}");
    }
    let target = Target::new(scope, namespace.as_deref(), opts.name.as_deref())?;
    let value = match from_file {
        Some(p) => io::read_bytes(&Input::File(p.to_path_buf()), RAW_TTY_HINT)?,
        None => io::read_bytes(&Input::Stdin, RAW_TTY_HINT)?,
    };
    let sealed = recipients.seal(&target, &value)?;
    emit(cfg.output.as_deref(), cfg.force, encode_base64(&sealed).as_bytes())
}

fn merge_into(cfg: &SealConfig, recipients: &RecipientSet, path: &Path) -> Result<()> {
    let context = || format!("--merge-into {}", path.display());
    io::ensure_writable(path).with_context(context)?;
    let text = io::read_file(path)?;
    let mut found = tree::sealed_secrets(&text).with_context(context)?;
    let existing = match found.len() {
        1 => found.remove(0),
        0 => bail!("{} holds no SealedSecret: merge into a file written by gitseal seal or kubeseal", path.display()),
        n => bail!("{} holds {n} SealedSecrets: --merge-into needs a file with exactly one", path.display()),
    };
    let target = target_of(&existing.object).with_context(context)?;
    agree(cfg, &existing.object, target.scope(), path)?;

    let mut secrets = input_secrets(cfg)?;
    if secrets.len() != 1 {
        bail!("--merge-into takes exactly one Secret on input, found {}", secrets.len());
    }
    let (_, mut secret) = secrets.remove(0);
    // Name, namespace and scope come from the file, as kubeseal forces them.
    secret.metadata.namespace = existing.object.metadata.namespace.clone();
    let options = SealOptions {
        scope: Some(target.scope()),
        name: existing.object.metadata.name.clone(),
        namespace: None,
        default_namespace: None,
        allow_empty_data: cfg.options.allow_empty_data,
        api: ApiGroup::of(&existing.object).unwrap_or_default(),
    };
    if options.api == ApiGroup::Bitnami {
        bitnami_can_open(recipients).with_context(|| format!("{} is a bitnami.com SealedSecret", path.display()))?;
    }
    let sealed = seal_secret(&secret, recipients, &options).context("sealing the input Secret")?;

    let mut edits = ObjectEdits::new(existing.doc, existing.item);
    for (key, value) in &sealed.spec.encrypted_data {
        edits.set(&["spec", "encryptedData", key], value.clone());
    }
    carry_template_metadata(&mut edits, &existing.object, &secret);
    let new_ids: Vec<KeyId> = recipients.key_ids().cloned().collect();
    let kept_old = existing.object.spec.encrypted_data.keys().any(|k| !sealed.spec.encrypted_data.contains_key(k));
    let mut ids: BTreeSet<KeyId> = new_ids.into_iter().collect();
    if kept_old {
        ids.extend(key_hints(&existing.object));
    }
    edits.set_key_ids(&existing.object, KeyId::join(ids));
    let updated = edit::apply(&text, &[edits]).with_context(context)?;
    io::replace(path, updated.as_bytes())
}

/// As kubeseal's `--merge-into`: the input Secret's labels and annotations (minus the
/// last-applied copies, which hold plaintext, and gitseal's key-id hint) are set on the file's
/// template, the input winning on a clash; keys only the file has stay. The template's type is
/// the file's, as kubeseal keeps it too. Only values that change are written, so a re-run adds
/// no diff.
fn carry_template_metadata(edits: &mut ObjectEdits, file: &SealedSecretObject, input: &PlainSecret) {
    let template = file.spec.template.as_ref().and_then(|t| t.metadata.as_ref());
    let skip = |k: &str| {
        gitseal_shared::manifest::secret::LAST_APPLIED_ANNOTATIONS.contains(&k)
            || k == gitseal_shared::keyid::KEY_ID_ANNOTATION
    };
    for (field, given, present) in [
        ("labels", &input.metadata.labels, template.and_then(|m| m.labels.as_ref())),
        ("annotations", &input.metadata.annotations, template.and_then(|m| m.annotations.as_ref())),
    ] {
        for (k, v) in given.iter().flatten().filter(|(k, _)| !skip(k)) {
            if present.and_then(|p| p.get(k)) != Some(v) {
                edits.set(&["spec", "template", "metadata", field, k], v.clone());
            }
        }
    }
}

/// Name, namespace and scope come from the merged file; flags may repeat them, not contradict them.
fn agree(cfg: &SealConfig, file: &SealedSecretObject, scope: Scope, path: &Path) -> Result<()> {
    let opts = &cfg.options;
    let differs = |flag: &Option<String>, own: &Option<String>| flag.as_ref().is_some_and(|f| Some(f) != own.as_ref());
    let shown = |v: &Option<String>| v.clone().unwrap_or_default();
    if differs(&opts.name, &file.metadata.name) {
        bail!(
            "--name {} contradicts the name {:?} in {}: drop --name",
            shown(&opts.name),
            shown(&file.metadata.name),
            path.display()
        );
    }
    if differs(&opts.namespace, &file.metadata.namespace) {
        bail!(
            "--namespace {} contradicts the namespace {:?} in {}: drop --namespace",
            shown(&opts.namespace),
            shown(&file.metadata.namespace),
            path.display()
        );
    }
    if let Some(flag) = opts.scope
        && flag != scope
    {
        bail!("--scope {flag} contradicts the {scope} scope of {}: drop --scope", path.display());
    }
    Ok(())
}

fn emit(output: Option<&Path>, force: bool, bytes: &[u8]) -> Result<()> {
    match output {
        Some(path) if force => io::write_over(path, bytes, Mode::Public),
        Some(path) => io::write_new(path, bytes, Mode::Public),
        None => io::write_stdout(bytes),
    }
}
