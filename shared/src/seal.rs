//! Sealing a Secret into a SealedSecret and unsealing it back: the logic kubeseal and the
//! controller share, with no I/O.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::keyid::KEY_ID_ANNOTATION;
use crate::manifest::secret::{LAST_APPLIED_ANNOTATIONS, PlainSecret};
use crate::template::Templates;
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

/// How many private-key operations (RSA unwraps, wrong keys included) one object or request
/// may spend, and how many it has spent so far. Work stops before the limit is crossed, and
/// `spent` is true after a failure too, so callers can count and rate-limit what was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpBudget {
    pub limit: u32,
    pub spent: u32,
}

impl OpBudget {
    /// The cap [`unseal`] and [`reseal`] apply when the caller names none: generous for a
    /// real SealedSecret (its items open with the key that opened the previous one), small
    /// enough that one object cannot hold a CPU for long.
    pub const DEFAULT_LIMIT: u32 = 1024;

    pub fn new(limit: u32) -> OpBudget {
        OpBudget { limit, spent: 0 }
    }

    fn remaining(&self) -> u32 {
        self.limit.saturating_sub(self.spent)
    }
}

impl Default for OpBudget {
    fn default() -> Self {
        OpBudget::new(OpBudget::DEFAULT_LIMIT)
    }
}

thread_local! {
    static OPS_ON_THREAD: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Private-key operations spent by [`open_item`] on this thread since it started, failed ones
/// included: a worker that runs one job at a time reads it before and after to charge the job.
pub fn private_ops_on_this_thread() -> u64 {
    OPS_ON_THREAD.with(std::cell::Cell::get)
}

/// Open one encrypted item, trying `keys` in order while `budget` lasts. Every operation spent,
/// on success or failure, is charged to `budget`; when the next key might cross the limit the
/// item fails with [`Error::PrivateOpBudget`] instead of trying it.
pub fn open_item(
    keys: &[&DecryptionKey],
    target: &Target,
    item: &str,
    text: &str,
    budget: &mut OpBudget,
) -> Result<Opened> {
    let bytes = decode_base64(text).map_err(|e| match e {
        Error::Base64(d) => Error::Manifest(format!("encryptedData[{item}] is not valid base64 ({d})")),
        other => other,
    })?;
    let mut spent = 0u32;
    let mut result = Err(Error::DecryptionFailed);
    for key in keys {
        // A key costs one operation on a kubeseal value and one per RSA stanza on an age value
        // (at most the header's stanza count), so the limit is checked before each key.
        if budget.remaining() == 0 {
            result = Err(Error::PrivateOpBudget { limit: budget.limit });
            break;
        }
        let before = spent;
        result = value::open_metered(std::slice::from_ref(key), target, &bytes, &mut spent);
        let used = spent - before;
        budget.spent = budget.spent.saturating_add(used);
        OPS_ON_THREAD.with(|c| c.set(c.get().saturating_add(u64::from(used))));
        match &result {
            Err(Error::DecryptionFailed) => continue,
            _ => break,
        }
    }
    result.map(|mut opened| {
        opened.private_ops = spent;
        opened
    })
}

/// Every `encryptedData` item, opened.
struct OpenedItems {
    values: BTreeMap<String, SecretBytes>,
    key_ids: BTreeSet<KeyId>,
    private_ops: u32,
}

/// Open every `encryptedData` item with `keys` (already ordered) within `budget`. Stops at the
/// first item no key opens ([`Error::Undecryptable`] naming it): the rest would only spend
/// more private operations for the same answer. The key that opened an item is tried first
/// for the next one, so a real SealedSecret costs about one operation per item.
fn open_items(
    ss: &SealedSecretObject,
    keys: &[&DecryptionKey],
    target: &Target,
    budget: &mut OpBudget,
) -> Result<OpenedItems> {
    let mut out = OpenedItems { values: BTreeMap::new(), key_ids: BTreeSet::new(), private_ops: 0 };
    let mut order: Vec<&DecryptionKey> = keys.to_vec();
    for (item, text) in &ss.spec.encrypted_data {
        let before = budget.spent;
        let result = open_item(&order, target, item, text, budget);
        out.private_ops = out.private_ops.saturating_add(budget.spent - before);
        match result {
            Ok(opened) => {
                if let Some(at) = order.iter().position(|k| k.id() == &opened.key_id) {
                    let k = order.remove(at);
                    order.insert(0, k);
                }
                out.key_ids.insert(opened.key_id);
                out.values.insert(item.clone(), opened.plaintext);
            }
            Err(Error::DecryptionFailed) => return Err(Error::Undecryptable(vec![item.clone()])),
            Err(Error::TooShort { len }) => {
                return Err(Error::Manifest(format!(
                    "encryptedData[{item}] is truncated ({len} bytes) or not a sealed value"
                )));
            }
            Err(other) => return Err(other),
        }
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
/// items, never the step. Templates are parsed (and their limits checked) before any key is
/// used, and rendered against the decrypted values only (see [`crate::template`]).
pub fn unseal(ss: &SealedSecretObject, keys: &[&DecryptionKey]) -> Result<Unsealed> {
    unseal_within(ss, keys, &mut OpBudget::default())
}

/// [`unseal`] within the caller's private-operation budget; `budget.spent` says what was spent,
/// also when it fails.
pub fn unseal_within(ss: &SealedSecretObject, keys: &[&DecryptionKey], budget: &mut OpBudget) -> Result<Unsealed> {
    let target = target_of(ss)?;
    let template = ss.spec.template.clone().unwrap_or_default();
    let no_templates = BTreeMap::new();
    let templates = Templates::parse(template.data.as_ref().unwrap_or(&no_templates))?;
    let ordered = value::order_by_hints(keys, &key_hints(ss));
    let mut data = BTreeMap::new();
    let mut key_ids = BTreeSet::new();
    let mut private_ops = 0;

    let legacy = ss.spec.data.is_some();
    if let Some(blob) = &ss.spec.data {
        if !ss.spec.encrypted_data.is_empty() {
            return Err(Error::Manifest(
                "cannot use the field 'encryptedData' and the deprecated field 'data' at the same time".into(),
            ));
        }
        let opened = match open_item(&ordered, &target, LEGACY_ITEM, blob, budget) {
            Err(Error::DecryptionFailed) => return Err(Error::Undecryptable(vec![LEGACY_ITEM.into()])),
            other => other?,
        };
        private_ops += opened.private_ops;
        key_ids.insert(opened.key_id);
        data = legacy_data(&opened.plaintext)?;
    }
    let items = open_items(ss, &ordered, &target, budget)?;
    private_ops += items.private_ops;
    key_ids.extend(items.key_ids);
    data.extend(items.values);

    // Which items exist and how long they are came out of the legacy blob's plaintext.
    let data = templates
        .render(data)
        .map_err(|e| if legacy { Error::UnusablePlaintext(vec![LEGACY_ITEM.into()]) } else { e.into() })?;
    let mut metadata = template.metadata.unwrap_or_default();
    metadata.name = ss.metadata.name.clone();
    metadata.namespace = ss.metadata.namespace.clone();
    Ok(Unsealed {
        secret: PlainSecret { metadata, type_: template.type_, immutable: template.immutable, data },
        key_ids,
        private_ops,
    })
}

/// How the deprecated `spec.data` blob is named in errors.
const LEGACY_ITEM: &str = "data";

/// The values of the Secret the deprecated `spec.data` blob holds. Whatever is wrong with it,
/// the answer is the one fixed [`Error::UnusablePlaintext`]: the reasons would quote decoded text.
fn legacy_data(plaintext: &SecretBytes) -> Result<BTreeMap<String, SecretBytes>> {
    let unusable = || Error::UnusablePlaintext(vec![LEGACY_ITEM.into()]);
    let legacy: serde_json::Value = serde_json::from_slice(plaintext.expose()).map_err(|_| unusable())?;
    Ok(PlainSecret::from_value(&legacy).map_err(|_| unusable())?.data)
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
    reseal_within(ss, keys, recipients, &mut OpBudget::default())
}

/// [`reseal`] within the caller's private-operation budget (spent also on failure).
pub fn reseal_within(
    ss: &SealedSecretObject,
    keys: &[&DecryptionKey],
    recipients: &RecipientSet,
    budget: &mut OpBudget,
) -> Result<Resealed> {
    let target = target_of(ss)?;
    let ordered = value::order_by_hints(keys, &key_hints(ss));
    let items = open_items(ss, &ordered, &target, budget)?;
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

#[cfg(test)]
mod budget_tests {
    use super::*;
    use crate::types::ApiGroup;
    use crate::value::Recipient;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
    use std::sync::OnceLock;

    /// Three 2048-bit keys (pkcs8, spki), generated once per test binary.
    fn rsa_keys() -> &'static Vec<(Vec<u8>, Vec<u8>)> {
        static KEYS: OnceLock<Vec<(Vec<u8>, Vec<u8>)>> = OnceLock::new();
        KEYS.get_or_init(|| {
            (0..4)
                .map(|_| {
                    let k = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
                    (k.as_der().unwrap().as_ref().to_vec(), k.public_key().as_der().unwrap().as_ref().to_vec())
                })
                .collect()
        })
    }

    fn key(i: usize) -> DecryptionKey {
        DecryptionKey::from_rsa_pkcs8(&rsa_keys()[i].0, None).unwrap()
    }

    /// `items` values sealed (kubeseal format, no key-id hint) for key `sealed_for`.
    fn sealed(items: usize, sealed_for: usize) -> SealedSecretObject {
        let recipients = RecipientSet::new(vec![Recipient::Rsa(
            crate::value::RsaPublicKey::from_spki_der(&rsa_keys()[sealed_for].1).unwrap(),
        )])
        .unwrap();
        let target = Target::new(Scope::Strict, Some("app"), Some("db")).unwrap();
        let encrypted_data = (0..items)
            .map(|i| (format!("item{i:02}"), encode_base64(&recipients.seal(&target, b"v").unwrap())))
            .collect();
        let mut ss = SealedSecretObject::new(
            "db",
            &ApiGroup::Gitseal.api_resource(),
            SealedSecretSpec { template: None, encrypted_data, data: None },
        );
        ss.metadata.namespace = Some("app".into());
        ss
    }

    #[test]
    fn unsealing_stops_at_the_first_item_no_key_opens_and_reports_what_it_spent() {
        let (k0, k1) = (key(0), key(1));
        let ss = sealed(6, 3);
        let mut budget = OpBudget::new(100);
        let before = private_ops_on_this_thread();
        match unseal_within(&ss, &[&k0, &k1], &mut budget) {
            Err(Error::Undecryptable(items)) => assert_eq!(items, vec!["item00".to_string()]),
            other => panic!("expected Undecryptable, got {other:?}"),
        }
        assert_eq!(budget.spent, 2, "one item tried with each of two keys, then stop");
        assert_eq!(private_ops_on_this_thread() - before, 2, "failed operations are counted on the thread too");
    }

    #[test]
    fn the_key_that_opened_an_item_is_tried_first_for_the_next() {
        let (k0, k1, k2) = (key(0), key(1), key(2));
        let ss = sealed(5, 2);
        let mut budget = OpBudget::new(100);
        let u = unseal_within(&ss, &[&k0, &k1, &k2], &mut budget).unwrap();
        assert_eq!((u.private_ops, budget.spent), (3 + 4, 7), "three for the first item, one for each other");
        let to = RecipientSet::new(vec![Recipient::Rsa(
            crate::value::RsaPublicKey::from_spki_der(&rsa_keys()[0].1).unwrap(),
        )])
        .unwrap();
        let r = reseal_within(&ss, &[&k0, &k1, &k2], &to, &mut OpBudget::new(100));
        assert_eq!(r.unwrap().private_ops, 7);
    }

    #[test]
    fn work_beyond_the_budget_is_refused_before_it_is_done() {
        let (k0, k1, k2) = (key(0), key(1), key(2));
        let ss = sealed(5, 2);
        let mut budget = OpBudget::new(4);
        match unseal_within(&ss, &[&k0, &k1, &k2], &mut budget) {
            Err(e @ Error::PrivateOpBudget { limit: 4 }) => assert!(e.to_string().contains("more than 4")),
            other => panic!("expected PrivateOpBudget, got {other:?}"),
        }
        assert_eq!(budget.spent, 4, "never more than the limit on kubeseal values");
        let mut none = OpBudget::new(0);
        assert!(matches!(unseal_within(&ss, &[&k0], &mut none), Err(Error::PrivateOpBudget { .. })));
        assert_eq!(none.spent, 0);
    }
}
