//! Sealing keys in a PKCS#11 token (`--pkcs11-module`): open the token at start, find the
//! token object a key Secret names, and generate new keys inside it.
//!
//! A token key's Secret (type Opaque, so no `tls.key` is required or present) holds only
//! `tls.crt`, with the annotations `gitseal.dev/key-backend: pkcs11`, `gitseal.dev/pkcs11-id`
//! (the object's CKA_ID, hex) and `gitseal.dev/pkcs11-label`. Software keys keep loading
//! beside token keys (a mixed keyring); a token key Secret seen by a controller without a
//! token is reported and skipped.

use std::collections::BTreeMap;
use std::sync::Arc;

use gitseal_keys::Certificate;
use gitseal_keys::material::{KEY_BACKEND_ANNOTATION, PKCS11_BACKEND, PKCS11_ID_ANNOTATION, PKCS11_LABEL_ANNOTATION};
use gitseal_keys::pkcs11::{ObjectRef, Token, TokenConfig};
use gitseal_shared::value::UnwrapKey;
use zeroize::Zeroizing;

use crate::config::Pkcs11Config;
use crate::error::{Context as _, Result};

/// Most bytes read from the PIN file.
const MAX_PIN_FILE: u64 = 4096;

/// Open the token (blocking: loads the module, logs in, probes the unwrap path).
pub fn open(config: &Pkcs11Config, sessions: usize) -> Result<Arc<Token>> {
    use std::io::Read as _;
    let mut pin = Zeroizing::new(String::new());
    std::fs::File::open(&config.pin_file)
        .and_then(|f| f.take(MAX_PIN_FILE).read_to_string(&mut pin))
        .with_context(|| format!("cannot read the PKCS#11 PIN file {}", config.pin_file.display()))?;
    let pin = Zeroizing::new(pin.trim_end_matches(['\n', '\r']).to_string());
    let token = Token::open(TokenConfig {
        module: config.module.clone(),
        token_label: config.token_label.clone(),
        slot: config.slot,
        pin,
        sessions,
    })
    .context("cannot open the PKCS#11 token")?;
    tracing::info!(token = %token.describe(), unwrap = token.path().as_str(), "PKCS#11 token opened");
    Ok(token)
}

/// The object a key Secret's annotations name.
pub fn object_ref(annotations: &BTreeMap<String, String>) -> std::result::Result<ObjectRef, gitseal_keys::Error> {
    let missing = || gitseal_keys::Error::Token(format!("the Secret lacks {PKCS11_ID_ANNOTATION}"));
    let hex = annotations.get(PKCS11_ID_ANNOTATION).ok_or_else(missing)?;
    let id = decode_hex(hex).ok_or_else(|| gitseal_keys::Error::Token(format!("{PKCS11_ID_ANNOTATION} is not hex")))?;
    let label = annotations.get(PKCS11_LABEL_ANNOTATION).cloned().unwrap_or_default();
    Ok(ObjectRef { id, label })
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.is_empty() || s.len() > 256 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Find the token key a key Secret names (for [`crate::registry::LoadedKey::from_secret_in`]).
pub fn lookup(
    token: &Arc<Token>,
    cert: &Certificate,
    annotations: &BTreeMap<String, String>,
) -> std::result::Result<Arc<dyn UnwrapKey>, gitseal_keys::Error> {
    let object = object_ref(annotations)?;
    Ok(token.key(&object, cert)? as Arc<dyn UnwrapKey>)
}

/// The annotations of a token key's Secret.
pub fn annotations(object: &ObjectRef) -> BTreeMap<String, String> {
    [
        (KEY_BACKEND_ANNOTATION, PKCS11_BACKEND.to_string()),
        (PKCS11_ID_ANNOTATION, object.id_hex()),
        (PKCS11_LABEL_ANNOTATION, object.label.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_round_trip_through_the_annotations_and_bad_hex_is_refused() {
        let o = ObjectRef { id: vec![0, 1, 0xab, 0xff], label: "gitseal-x".into() };
        let a = annotations(&o);
        assert_eq!(object_ref(&a).unwrap(), o);
        for bad in ["", "abc", "zz", &"00".repeat(200)] {
            let mut a = a.clone();
            a.insert(PKCS11_ID_ANNOTATION.into(), bad.to_string());
            assert!(object_ref(&a).is_err(), "{bad:?}");
        }
    }
}
