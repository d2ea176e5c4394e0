//! The Secret a SealedSecret produces, and whether an existing Secret is this SealedSecret's.

use std::collections::BTreeMap;

use gitseal_shared::KeyId;
use gitseal_shared::keyid::KEY_ID_ANNOTATION;
use gitseal_shared::manifest::secret::PlainSecret;
use gitseal_shared::types::{ApiGroup, SealedSecretObject};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::digest::{DigestKey, data_digest};

/// On a produced Secret: digest of the sealed inputs it was made from.
pub const SEALED_DIGEST_ANNOTATION: &str = "gitseal.dev/sealed-digest";
/// On a produced Secret: keyed digest of the data gitseal wrote, to notice direct edits.
pub const DATA_DIGEST_ANNOTATION: &str = "gitseal.dev/data-digest";
/// On a produced Secret: the apiVersion of the SealedSecret it comes from.
pub const SEALED_BY_ANNOTATION: &str = "gitseal.dev/sealed-by";
/// On a Secret produced under skip-set-owner-references: the UID of the SealedSecret that owns
/// it (read with [`SEALED_BY_ANNOTATION`], which names the API group).
pub const OWNER_UID_ANNOTATION: &str = "gitseal.dev/owner-uid";
/// On a produced Secret: the keys that opened its values (the fast path reports these, not a
/// possibly stale status). The same annotation as on SealedSecrets.
pub const KEY_IDS_ANNOTATION: &str = KEY_ID_ANNOTATION;
/// Label on every produced Secret, so the drift watch sees only gitseal's Secrets.
pub const MANAGED_LABEL: &str = "gitseal.dev/managed";
pub const MANAGED_ANNOTATION: &str = "sealedsecrets.bitnami.com/managed";
pub const PATCH_ANNOTATION: &str = "sealedsecrets.bitnami.com/patch";
pub const SKIP_OWNER_REFERENCES_ANNOTATION: &str = "sealedsecrets.bitnami.com/skip-set-owner-references";

/// Whose an existing Secret is, seen from one SealedSecret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Its controller owner reference carries this SealedSecret's UID, or (without any
    /// controller reference) gitseal's owner annotations name this UID and API group.
    Ours,
    /// No controller and no owner annotation: adoptable with the managed or patch annotation.
    Unclaimed,
    /// Controlled or claimed by another object (another SealedSecret, of this or the other
    /// API group, or anything else). Never taken over, whatever its annotations say.
    Foreign,
}

/// Whose `secret` is. A field manager is no proof: gitseal applies Secrets for every
/// SealedSecret, so "gitseal wrote it once" does not say for which one.
pub fn ownership(secret: &Secret, ss: &SealedSecretObject, group: ApiGroup) -> Ownership {
    let uid = ss.metadata.uid.as_deref().unwrap_or("");
    let meta = &secret.metadata;
    if let Some(controller) = meta.owner_references.iter().flatten().find(|o| o.controller == Some(true)) {
        return if !uid.is_empty() && controller.uid == uid { Ownership::Ours } else { Ownership::Foreign };
    }
    let ann = meta.annotations.as_ref();
    match ann.and_then(|a| a.get(OWNER_UID_ANNOTATION)) {
        None => Ownership::Unclaimed,
        Some(owner) => {
            let same_group =
                ann.and_then(|a| a.get(SEALED_BY_ANNOTATION)).map(String::as_str) == Some(group.api_version());
            if !uid.is_empty() && owner == uid && same_group { Ownership::Ours } else { Ownership::Foreign }
        }
    }
}

/// What [`build`] needs besides the decrypted Secret.
pub(crate) struct Build<'a> {
    pub ss: &'a SealedSecretObject,
    pub group: ApiGroup,
    pub existing: Option<&'a Secret>,
    pub digest_key: &'a DigestKey,
    pub sealed_digest: &'a str,
    pub key_ids: &'a [KeyId],
}

/// The Secret to apply for `plain`, with owner reference (or owner annotations) and digests.
pub(crate) fn build(b: &Build<'_>, plain: &PlainSecret) -> Secret {
    let ss = b.ss;
    let existing_ann = b.existing.and_then(|s| s.metadata.annotations.as_ref());
    let flag = |k: &str| existing_ann.and_then(|a| a.get(k)).is_some_and(|v| v == "true");
    let mut annotations = plain.metadata.annotations.clone().unwrap_or_default();
    // Ownership comes from the controller, never from the template.
    annotations.remove(OWNER_UID_ANNOTATION);
    let skip_owner = annotations.get(SKIP_OWNER_REFERENCES_ANNOTATION).is_some_and(|v| v == "true");
    let ours = b.existing.is_some_and(|s| ownership(s, ss, b.group) == Ownership::Ours);
    let patch_only = flag(PATCH_ANNOTATION) && !flag(MANAGED_ANNOTATION) && !ours;

    let data: BTreeMap<String, ByteString> =
        plain.data.iter().map(|(k, v)| (k.clone(), ByteString(v.expose().to_vec()))).collect();
    let mut secret = Secret {
        metadata: ObjectMeta {
            name: ss.metadata.name.clone(),
            namespace: ss.metadata.namespace.clone(),
            labels: plain.metadata.labels.clone(),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: plain.type_.clone(),
        immutable: plain.immutable,
        data: Some(data),
        ..Default::default()
    };
    let uid = ss.metadata.uid.clone().unwrap_or_default();
    if !patch_only {
        if skip_owner {
            secret.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(OWNER_UID_ANNOTATION.into(), uid);
        } else {
            secret.metadata.owner_references = Some(vec![OwnerReference {
                api_version: b.group.api_version().into(),
                kind: gitseal_shared::types::KIND.into(),
                name: ss.metadata.name.clone().unwrap_or_default(),
                uid,
                controller: Some(true),
                block_owner_deletion: None,
            }]);
        }
    }
    let items: Vec<String> = plain.data.keys().cloned().collect();
    let dd = data_digest(b.digest_key, b.sealed_digest, &secret, &items);
    let ann = secret.metadata.annotations.get_or_insert_with(BTreeMap::new);
    ann.insert(SEALED_DIGEST_ANNOTATION.into(), b.sealed_digest.into());
    ann.insert(DATA_DIGEST_ANNOTATION.into(), dd);
    ann.insert(SEALED_BY_ANNOTATION.into(), b.group.api_version().into());
    ann.insert(KEY_IDS_ANNOTATION.into(), KeyId::join(b.key_ids.iter().cloned()));
    secret.metadata.labels.get_or_insert_with(BTreeMap::new).insert(MANAGED_LABEL.into(), "true".into());
    secret
}
