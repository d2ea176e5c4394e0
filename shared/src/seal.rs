//! Sealing a Secret into a SealedSecret and unsealing it back: the logic kubeseal and the
//! controller share, with no I/O.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::keyid::KEY_ID_ANNOTATION;
use crate::manifest::secret::{LAST_APPLIED_ANNOTATIONS, PlainSecret};
use crate::types::{ApiGroup, SealedSecretObject, SealedSecretSpec, SecretTemplateSpec};
use crate::value::{self, DecryptionKey, Opened, RecipientSet, decode_base64, encode_base64};
use crate::{Error, KeyId, Result, Scope, SecretBytes, Target};

/// How to seal, from kubeseal-style flags.
#[derive(Debug, Clone, Default)]
pub struct SealOptions {
    /// `--scope`; `None` keeps the scope the Secret's annotations declare.
    pub scope: Option<Scope>,
    /// `--name`: overrides the Secret's name.
    pub name: Option<String>,
    /// `--namespace`: must agree with the Secret's namespace unless cluster-wide.
    pub namespace: Option<String>,
    /// Namespace for Secrets that name none (kubeconfig's, else `default`).
    pub default_namespace: Option<String>,
    pub allow_empty_data: bool,
    pub api: ApiGroup,
}

/// Seal every value of `secret` for `recipients`.
pub fn seal_secret(secret: &PlainSecret, recipients: &RecipientSet, opts: &SealOptions) -> Result<SealedSecretObject> {
    let mut meta = secret.metadata.clone();
    if let Some(name) = &opts.name {
        meta.name = Some(name.clone());
    }
    let name = meta
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Error::Manifest("the Secret has no metadata.name: set one or pass --name".into()))?;
    if secret.data.is_empty() && !opts.allow_empty_data {
        return Err(Error::Manifest(format!(
            "no data or stringData: add values, or pass --allow-empty-data to seal {name} anyway"
        )));
    }
    let mut annotations = meta.annotations.take().unwrap_or_default();
    let scope = match opts.scope {
        Some(s) => {
            s.apply_to(&mut annotations);
            s
        }
        None => Scope::from_annotations(Some(&annotations)),
    };
    for a in LAST_APPLIED_ANNOTATIONS {
        annotations.remove(a);
    }
    annotations.remove(KEY_ID_ANNOTATION);
    meta.annotations = (!annotations.is_empty()).then_some(annotations);

    if scope != Scope::ClusterWide
        && let (Some(flag), Some(own)) = (&opts.namespace, &meta.namespace)
        && !own.is_empty()
        && flag != own
    {
        return Err(Error::Manifest(format!(
            "namespace mismatch: Secret {name} says {own:?} but --namespace says {flag:?}; drop one of them"
        )));
    }
    if meta.namespace.as_deref().unwrap_or("").is_empty() {
        meta.namespace = match scope {
            Scope::ClusterWide => opts.namespace.clone(),
            // Never a silent `default`: a strict value sealed for the wrong namespace fails only
            // later, in the cluster (kubeseal refuses too). Issue #16.
            _ => Some(
                opts.namespace
                    .clone()
                    .or_else(|| opts.default_namespace.clone())
                    .ok_or_else(|| Error::Manifest(format!("{}; {NO_NAMESPACE_HINT}", no_namespace(scope))))?,
            ),
        };
    }
    let target = Target::new(scope, meta.namespace.as_deref(), Some(&name))?;

    let mut encrypted_data = BTreeMap::new();
    for (key, plain) in &secret.data {
        encrypted_data.insert(key.clone(), encode_base64(&recipients.seal(&target, plain.expose())?));
    }

    // Server-set fields never travel into Git.
    meta.uid = None;
    meta.resource_version = None;
    meta.generation = None;
    meta.creation_timestamp = None;
    meta.deletion_timestamp = None;
    meta.deletion_grace_period_seconds = None;
    meta.self_link = None;
    meta.owner_references = None;
    meta.managed_fields = None;

    let mut top = ObjectMeta { name: Some(name), namespace: meta.namespace.clone(), ..Default::default() };
    let mut top_annotations = BTreeMap::new();
    scope.apply_to(&mut top_annotations);
    top_annotations.insert(KEY_ID_ANNOTATION.into(), KeyId::join(recipients.key_ids().cloned()));
    top.annotations = Some(top_annotations);

    let template = SecretTemplateSpec {
        metadata: Some(meta),
        type_: secret.type_.clone(),
        immutable: secret.immutable,
        data: None,
    };
    let mut obj = SealedSecretObject::new(
        "",
        &opts.api.api_resource(),
        SealedSecretSpec { template: Some(template), encrypted_data, data: None },
    );
    obj.metadata = top;
    Ok(obj)
}

/// How to give a namespace, for the error when none was found.
pub const NO_NAMESPACE_HINT: &str =
    "set metadata.namespace, pass -n/--namespace, or use a kubeconfig context (--context) with a namespace";

fn no_namespace(scope: Scope) -> String {
    format!("no namespace to seal for in {scope} scope")
}

/// The target a SealedSecret's values were sealed for, from its top-level metadata.
pub fn target_of(ss: &SealedSecretObject) -> Result<Target> {
    let scope = Scope::from_annotations(ss.metadata.annotations.as_ref());
    Target::new(scope, ss.metadata.namespace.as_deref(), ss.metadata.name.as_deref())
}

/// The key ids a SealedSecret declares (key-id annotation), for trying the right key first.
pub fn key_hints(ss: &SealedSecretObject) -> Vec<KeyId> {
    ss.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(KEY_ID_ANNOTATION))
        .map(|s| KeyId::parse_list(s))
        .unwrap_or_default()
}

/// Open one encrypted item.
pub fn open_item(keys: &[&DecryptionKey], target: &Target, item: &str, text: &str) -> Result<Opened> {
    let bytes = decode_base64(text).map_err(|e| match e {
        Error::Base64(d) => Error::Manifest(format!("encryptedData[{item}] is not valid base64 ({d})")),
        other => other,
    })?;
    value::open(keys, target, &bytes)
}

/// Every `encryptedData` item, opened.
struct OpenedItems {
    values: BTreeMap<String, SecretBytes>,
    key_ids: BTreeSet<KeyId>,
    private_ops: u32,
}

/// Open every `encryptedData` item with `keys` (already ordered). Items no key opens are
/// collected into one [`Error::Undecryptable`]; a truncated item is reported by name.
fn open_items(ss: &SealedSecretObject, keys: &[&DecryptionKey], target: &Target) -> Result<OpenedItems> {
    let mut out = OpenedItems { values: BTreeMap::new(), key_ids: BTreeSet::new(), private_ops: 0 };
    let mut failed = Vec::new();
    for (item, text) in &ss.spec.encrypted_data {
        match open_item(keys, target, item, text) {
            Ok(opened) => {
                out.private_ops += opened.private_ops;
                out.key_ids.insert(opened.key_id);
                out.values.insert(item.clone(), opened.plaintext);
            }
            Err(Error::DecryptionFailed) => failed.push(item.clone()),
            Err(Error::TooShort { len }) => {
                return Err(Error::Manifest(format!(
                    "encryptedData[{item}] is truncated ({len} bytes) or not a sealed value"
                )));
            }
            Err(other) => return Err(other),
        }
    }
    if !failed.is_empty() {
        return Err(Error::Undecryptable(failed));
    }
    Ok(out)
}

/// The result of unsealing a whole SealedSecret.
#[derive(Debug)]
pub struct Unsealed {
    pub secret: PlainSecret,
    /// Keys that opened at least one value.
    pub key_ids: BTreeSet<KeyId>,
    pub private_ops: u32,
}

/// Unseal every value, render `template.data`, and build the Secret the SealedSecret declares
/// (name and namespace forced to the SealedSecret's). Fails if any value fails, naming the
/// items, never the step.
pub fn unseal(ss: &SealedSecretObject, keys: &[&DecryptionKey]) -> Result<Unsealed> {
    let target = target_of(ss)?;
    let ordered = value::order_by_hints(keys, &key_hints(ss));
    let mut data = BTreeMap::new();
    let mut key_ids = BTreeSet::new();
    let mut private_ops = 0;

    if let Some(blob) = &ss.spec.data {
        if !ss.spec.encrypted_data.is_empty() {
            return Err(Error::Manifest(
                "cannot use the field 'encryptedData' and the deprecated field 'data' at the same time".into(),
            ));
        }
        let opened = open_item(&ordered, &target, "data", blob)?;
        private_ops += opened.private_ops;
        key_ids.insert(opened.key_id);
        let legacy: serde_json::Value = serde_json::from_slice(opened.plaintext.expose())
            .map_err(|_| Error::Manifest("deprecated spec.data did not hold a Secret".into()))?;
        data = PlainSecret::from_value(&legacy)?.data;
    }
    let items = open_items(ss, &ordered, &target)?;
    private_ops += items.private_ops;
    key_ids.extend(items.key_ids);
    data.extend(items.values);

    let template = ss.spec.template.clone().unwrap_or_default();
    if let Some(tdata) = &template.data {
        for (k, tmpl) in tdata {
            data.insert(k.clone(), render_template(k, tmpl, &data)?);
        }
    }
    let mut metadata = template.metadata.unwrap_or_default();
    metadata.name = ss.metadata.name.clone();
    metadata.namespace = ss.metadata.namespace.clone();
    Ok(Unsealed {
        secret: PlainSecret { metadata, type_: template.type_, immutable: template.immutable, data },
        key_ids,
        private_ops,
    })
}

/// Render a `template.data` entry. Bitnami runs Go `text/template` with Sprig; gitseal
/// supports the substitution forms `{{ .item }}` and `{{ index . "item" }}` and rejects
/// anything else by name, rather than rendering something different from Bitnami.
pub fn render_template(key: &str, tmpl: &str, values: &BTreeMap<String, SecretBytes>) -> Result<SecretBytes> {
    let mut out = Vec::with_capacity(tmpl.len());
    let mut rest = tmpl;
    while let Some(start) = rest.find("{{") {
        out.extend_from_slice(&rest.as_bytes()[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| Error::Template(format!("template.data[{key}]: unclosed {{{{")))?;
        let action = after[..end].trim().trim_start_matches('-').trim_end_matches('-').trim();
        let item = if let Some(name) = action.strip_prefix('.') {
            name.to_string()
        } else if let Some(args) = action.strip_prefix("index . ") {
            args.trim().trim_matches('"').to_string()
        } else {
            return Err(Error::Template(format!(
                "template.data[{key}]: unsupported template action {{{{ {action} }}}}: gitseal renders {{{{ .item }}}} and {{{{ index . \"item\" }}}}"
            )));
        };
        let v = values
            .get(&item)
            .ok_or_else(|| Error::Template(format!("template.data[{key}] refers to missing item {item:?}")))?;
        out.extend_from_slice(v.expose());
        rest = &after[end + 2..];
    }
    out.extend_from_slice(rest.as_bytes());
    Ok(SecretBytes::new(out))
}

/// The result of re-sealing a SealedSecret for new recipients.
#[derive(Debug)]
pub struct Resealed {
    /// New sealed values, item name → base64.
    pub encrypted_data: BTreeMap<String, String>,
    /// Keys that opened the old values.
    pub old_key_ids: BTreeSet<KeyId>,
    /// The new key-id annotation value.
    pub key_id_annotation: String,
    pub private_ops: u32,
}

/// Open every `encryptedData` item with `keys` and seal it again for `recipients`, for the
/// same target. The template (including `template.data`) is left as it is, unlike Bitnami's
/// `/v1/rotate`, which flattens rendered templates into encrypted items.
pub fn reseal(ss: &SealedSecretObject, keys: &[&DecryptionKey], recipients: &RecipientSet) -> Result<Resealed> {
    let target = target_of(ss)?;
    let ordered = value::order_by_hints(keys, &key_hints(ss));
    let items = open_items(ss, &ordered, &target)?;
    let mut encrypted_data = BTreeMap::new();
    for (item, plain) in &items.values {
        encrypted_data.insert(item.clone(), encode_base64(&recipients.seal(&target, plain.expose())?));
    }
    let (old_key_ids, private_ops) = (items.key_ids, items.private_ops);
    Ok(Resealed {
        encrypted_data,
        old_key_ids,
        key_id_annotation: KeyId::join(recipients.key_ids().cloned()),
        private_ops,
    })
}
