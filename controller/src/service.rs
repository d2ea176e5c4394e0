//! Verify and re-seal: the operations behind `/v1/verify`, `/v1/rotate` and the authenticated
//! aggregated API. Failures to open are reported as one opaque answer.

use gitseal_shared::KeyId;
use gitseal_shared::keyid::KEY_ID_ANNOTATION;
use gitseal_shared::manifest::parse_documents;
use gitseal_shared::scope::Scope;
use gitseal_shared::seal::{reseal, unseal};
use gitseal_shared::types::{SealedSecretObject, sealed_secret_from_value};
use gitseal_shared::value::RecipientSet;

use crate::Shared;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    BadRequest(String),
    /// Deliberately says nothing about which step failed.
    #[error("this controller cannot decrypt the SealedSecret for its namespace/name and scope")]
    CannotDecrypt,
    #[error("no sealing key is loaded yet")]
    NoKeys,
    #[error("internal error: {0}")]
    Internal(String),
}

/// Decode one SealedSecret from a request body (JSON or YAML; exactly one document).
pub fn parse_body(body: &[u8]) -> Result<SealedSecretObject, ServiceError> {
    let text = std::str::from_utf8(body).map_err(|_| ServiceError::BadRequest("body is not UTF-8".into()))?;
    let mut docs = parse_documents(text).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
    if docs.len() != 1 {
        return Err(ServiceError::BadRequest(format!("expected exactly one SealedSecret, got {} objects", docs.len())));
    }
    let doc = docs.remove(0);
    sealed_secret_from_value(doc.value).map_err(|e| ServiceError::BadRequest(e.to_string()))
}

/// Check that every value opens; returns the keys that opened them.
pub fn verify(shared: &Shared, ss: &SealedSecretObject) -> Result<Vec<KeyId>, ServiceError> {
    let usable = shared.registry.usable();
    if usable.is_empty() {
        return Err(ServiceError::NoKeys);
    }
    let keys: Vec<_> = usable.iter().map(|k| &k.decryption).collect();
    let result = tokio::task::block_in_place(|| unseal(ss, &keys)).map_err(gitseal_shared::Error::for_remote);
    match result {
        Ok(u) => {
            shared.metrics.private_key_ops.inc_by(u64::from(u.private_ops));
            Ok(u.key_ids.into_iter().collect())
        }
        Err(gitseal_shared::Error::Undecryptable(_)) => Err(ServiceError::CannotDecrypt),
        Err(e) => Err(ServiceError::BadRequest(e.to_string())),
    }
}

/// Re-seal every value with the latest key. The top-level metadata decides the scope (as it
/// does for unsealing), and the template's scope annotations are made to agree with it, so a
/// forged template annotation cannot widen the scope through a re-seal (Bitnami #1885).
pub fn rotate(shared: &Shared, ss: &SealedSecretObject) -> Result<(SealedSecretObject, Vec<KeyId>), ServiceError> {
    let latest = shared.registry.sealing().ok_or(ServiceError::NoKeys)?;
    let recipient = latest.pair.cert.recipient().map_err(|e| ServiceError::Internal(e.to_string()))?;
    let recipients = RecipientSet::new(vec![recipient]).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let usable = shared.registry.usable();
    let keys: Vec<_> = usable.iter().map(|k| &k.decryption).collect();
    let mut ss = ss.clone();
    if let Some(blob) = ss.spec.data.take() {
        // Convert the deprecated single-blob form into items on the way.
        let mut legacy = ss.clone();
        legacy.spec.data = Some(blob);
        let u = tokio::task::block_in_place(|| unseal(&legacy, &keys)).map_err(|e| match e.for_remote() {
            gitseal_shared::Error::Undecryptable(_) => ServiceError::CannotDecrypt,
            other => ServiceError::BadRequest(other.to_string()),
        })?;
        let target = gitseal_shared::seal::target_of(&ss).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        for (k, v) in &u.secret.data {
            let sealed = recipients.seal(&target, v.expose()).map_err(|e| ServiceError::Internal(e.to_string()))?;
            ss.spec.encrypted_data.insert(k.clone(), gitseal_shared::value::encode_base64(&sealed));
        }
    }
    let resealed = tokio::task::block_in_place(|| reseal(&ss, &keys, &recipients)).map_err(|e| match e {
        gitseal_shared::Error::Undecryptable(_) => ServiceError::CannotDecrypt,
        other => ServiceError::BadRequest(other.to_string()),
    })?;
    shared.metrics.private_key_ops.inc_by(u64::from(resealed.private_ops));
    ss.spec.encrypted_data = resealed.encrypted_data;
    let scope = Scope::from_annotations(ss.metadata.annotations.as_ref());
    if let Some(meta) = ss.spec.template.as_mut().and_then(|t| t.metadata.as_mut()) {
        let ann = meta.annotations.get_or_insert_with(Default::default);
        scope.apply_to(ann);
        if ann.is_empty() {
            meta.annotations = None;
        }
    }
    ss.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(KEY_ID_ANNOTATION.into(), resealed.key_id_annotation);
    let m = &mut ss.metadata;
    m.creation_timestamp = None;
    m.deletion_timestamp = None;
    m.generation = None;
    m.resource_version = None;
    m.uid = None;
    m.managed_fields = None;
    ss.status = None;
    Ok((ss, resealed.old_key_ids.into_iter().collect()))
}
