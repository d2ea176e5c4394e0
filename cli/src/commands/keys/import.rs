//! `gitseal keys import-to-token`: move a software key into a PKCS#11 token (issue 11).
//!
//! Talks to the token directly (module, label or slot, PIN file) and to the cluster with the
//! caller's credentials. The plaintext `tls.key` is removed only after an unwrap through the
//! token succeeded: the key Secret is replaced by `<name>-pkcs11` (Opaque: `tls.crt`, the age
//! identity if any, and the token object's annotations), created before the old one is deleted,
//! so the controller never lacks the key.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use gitseal_keys::KeyPair;
use gitseal_keys::material::{
    AGE_KEY, KEY_BACKEND_ANNOTATION, PKCS11_BACKEND, PKCS11_ID_ANNOTATION, PKCS11_LABEL_ANNOTATION, TLS_CRT, TLS_KEY,
};
use gitseal_keys::pkcs11::{ObjectRef, Token, TokenConfig};
use gitseal_shared::value::{DecryptionKey, RecipientSet, open};
use gitseal_shared::{Scope, Target};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use zeroize::Zeroizing;

use crate::cluster::{self, Cluster};
use crate::config::{ClusterConfig, TokenFlags};
use crate::io;

const MAX_PIN_FILE: u64 = 4096;
/// The `gitseal.dev/key` label: state of a key Secret.
const KEY_LABEL: &str = "gitseal.dev/key";

pub fn run(cfg: &ClusterConfig, name: &str, flags: &TokenFlags) -> Result<()> {
    let pin = read_pin(flags)?;
    let (new_name, id) = cluster::run(async {
        let cluster = Cluster::connect(cfg).await?;
        let api: kube::Api<Secret> = kube::Api::namespaced(cluster.client.clone(), &cluster.controller_namespace);
        let secret = api.get(name).await.map_err(|e| cluster.fail(&format!("reading the key Secret {name}"), e))?;
        let annotations = secret.metadata.annotations.clone().unwrap_or_default();
        if annotations.contains_key(KEY_BACKEND_ANNOTATION) {
            bail!("key Secret {name} is already held in a token");
        }
        let data = secret.data.clone().unwrap_or_default();
        let (Some(key), Some(crt)) = (data.get(TLS_KEY), data.get(TLS_CRT)) else {
            bail!("key Secret {name} lacks {TLS_KEY} or {TLS_CRT}");
        };
        let pair = KeyPair::from_secret_data(&key.0, &crt.0, data.get(AGE_KEY).map(|b| b.0.as_slice()))
            .with_context(|| format!("key Secret {name}"))?;
        let config = TokenConfig {
            module: flags.module.clone(),
            token_label: flags.token_label.clone(),
            slot: flags.slot,
            pin,
            sessions: 1,
        };
        let (token, object) = tokio::task::spawn_blocking(move || import_checked(config, &pair))
            .await
            .context("the token task failed")??;
        let new_name = format!("{name}-pkcs11");
        let replacement = replacement(&secret, &new_name, &object, &data);
        if let Err(e) = api.create(&PostParams::default(), &replacement).await {
            let _ = tokio::task::spawn_blocking(move || token.destroy(&object)).await;
            return Err(cluster.fail(&format!("creating {new_name}"), e));
        }
        api.delete(name, &DeleteParams::default())
            .await
            .map_err(|e| cluster.fail(&format!("deleting {name} (its key is now also in {new_name})"), e))?;
        let id = gitseal_keys::Certificate::from_pem(std::str::from_utf8(&crt.0).unwrap_or_default())?.key_id().clone();
        Ok::<_, anyhow::Error>((new_name, id))
    })?;
    io::write_stdout(
        format!(
            "Key {id} is now in the token; key Secret {name} was replaced by {new_name} (no tls.key).\n\
             The controller must run with --pkcs11-module to use it.\n"
        )
        .as_bytes(),
    )
}

fn read_pin(flags: &TokenFlags) -> Result<Zeroizing<String>> {
    use std::io::Read as _;
    let mut pin = Zeroizing::new(String::new());
    std::fs::File::open(&flags.pin_file)
        .and_then(|f| f.take(MAX_PIN_FILE).read_to_string(&mut pin))
        .with_context(|| format!("cannot read the PIN file {}", flags.pin_file.display()))?;
    Ok(Zeroizing::new(pin.trim_end_matches(['\n', '\r']).to_string()))
}

/// Import, then prove the token object opens a value sealed for the certificate; on failure the
/// object is removed and nothing else changes.
fn import_checked(config: TokenConfig, pair: &KeyPair) -> Result<(Arc<Token>, ObjectRef)> {
    let token = Token::open(config)?;
    let object = token.import(pair.rsa.pkcs8_der(), &pair.cert).context("the token refused the key")?;
    let check = (|| -> Result<()> {
        let key = DecryptionKey::from_rsa(token.key(&object, &pair.cert)?, None);
        let target = Target::new(Scope::ClusterWide, None, None)?;
        let sealed = RecipientSet::new(vec![pair.cert.recipient()?])?.seal(&target, b"gitseal import check")?;
        let opened = open(&[&key], &target, &sealed)?;
        if opened.plaintext.expose() != b"gitseal import check" {
            bail!("the imported key does not open a value sealed for its certificate");
        }
        Ok(())
    })();
    if let Err(e) = check {
        let _ = token.destroy(&object);
        return Err(e.context("the test unwrap through the token failed; the key Secret is unchanged"));
    }
    Ok((token, object))
}

fn replacement(old: &Secret, name: &str, object: &ObjectRef, data: &BTreeMap<String, ByteString>) -> Secret {
    let state = old.metadata.labels.as_ref().and_then(|l| l.get(KEY_LABEL)).cloned().unwrap_or_else(|| "active".into());
    let mut annotations = old.metadata.annotations.clone().unwrap_or_default();
    annotations.insert(KEY_BACKEND_ANNOTATION.into(), PKCS11_BACKEND.into());
    annotations.insert(PKCS11_ID_ANNOTATION.into(), object.id_hex());
    annotations.insert(PKCS11_LABEL_ANNOTATION.into(), object.label.clone());
    let kept: BTreeMap<String, ByteString> = data
        .iter()
        .filter(|(k, _)| k.as_str() == TLS_CRT || k.as_str() == AGE_KEY)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: old.metadata.namespace.clone(),
            labels: Some([(KEY_LABEL.to_string(), state)].into()),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(kept),
        ..Default::default()
    }
}
