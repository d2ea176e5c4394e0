//! Opt-in kube-apiserver auditing to a webhook (gitseal-controller's `--audit-webhook-addr`).
//!
//! [`AuditOptions`] given to [`super::ControlPlane::start_with`] make the harness pick a loopback
//! port for the receiver, mint its TLS material (one CA signs the receiver's serving certificate
//! and the client certificate the apiserver presents), write the webhook kubeconfig, and start
//! kube-apiserver with `--audit-policy-file`, `--audit-webhook-config-file` and batch mode with
//! a short `--audit-webhook-batch-max-wait`. The receiver itself is started by the test
//! ([`AuditWebhookFiles::controller_flags`]). Control planes started without it are unchanged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use crate::{Error, Result, free_port};

/// How kube-apiserver audits, when asked to.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuditOptions {
    /// The audit policy (e.g. gitseal's `deploy/audit/policy.yaml`).
    pub policy_file: PathBuf,
    /// `--audit-webhook-batch-max-wait`: how long events wait before a batch is sent.
    pub batch_max_wait: Duration,
}

impl AuditOptions {
    /// Audit with `policy_file`, batches sent after at most half a second.
    pub fn new(policy_file: impl Into<PathBuf>) -> AuditOptions {
        AuditOptions { policy_file: policy_file.into(), batch_max_wait: Duration::from_millis(500) }
    }
}

/// Where the apiserver sends audit events and the files the receiver needs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuditWebhookFiles {
    /// `127.0.0.1:<port>`, where the receiver must listen.
    pub addr: String,
    /// The receiver's serving certificate and key (SANs `127.0.0.1`, `localhost`).
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    /// The CA of the apiserver's client certificate (and of the serving certificate).
    pub ca: PathBuf,
    /// The CA's PEM (for a client that wants to call the receiver itself).
    pub ca_pem: String,
    /// The kubeconfig kube-apiserver reads (`--audit-webhook-config-file`).
    pub kubeconfig: PathBuf,
    pub(super) policy_file: PathBuf,
    pub(super) batch_max_wait: Duration,
}

impl AuditWebhookFiles {
    /// gitseal-controller flags that serve the receiver the apiserver posts to.
    pub fn controller_flags(&self) -> Vec<String> {
        vec![
            format!("--audit-webhook-addr={}", self.addr),
            format!("--audit-webhook-tls-cert={}", self.serving_cert.display()),
            format!("--audit-webhook-tls-key={}", self.serving_key.display()),
            format!("--audit-webhook-client-ca={}", self.ca.display()),
        ]
    }

    /// kube-apiserver flags.
    pub(super) fn apiserver_flags(&self) -> Vec<String> {
        vec![
            format!("--audit-policy-file={}", self.policy_file.display()),
            format!("--audit-webhook-config-file={}", self.kubeconfig.display()),
            "--audit-webhook-mode=batch".into(),
            format!("--audit-webhook-batch-max-wait={}ms", self.batch_max_wait.as_millis()),
            "--audit-webhook-initial-backoff=1s".into(),
        ]
    }

    /// Mint the TLS material and the webhook kubeconfig in `dir`.
    pub(super) fn generate(dir: &Path, options: &AuditOptions) -> Result<AuditWebhookFiles> {
        use base64::Engine as _;
        let fail = |e: rcgen::Error| Error::invalid("making the audit webhook certificates", e);
        let ca_key = KeyPair::generate().map_err(fail)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        ca.distinguished_name.push(DnType::CommonName, "gitseal-test-audit-webhook-ca");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).map_err(fail)?;
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |cn: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose| -> Result<(String, String)> {
            let key = KeyPair::generate().map_err(fail)?;
            let mut p = CertificateParams::new(sans).map_err(fail)?;
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![usage];
            let cert = p.signed_by(&key, &issuer).map_err(fail)?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        let (serving_pem, serving_key_pem) = leaf(
            "gitseal-audit-webhook",
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let (client_pem, client_key_pem) =
            leaf("kube-apiserver-audit", Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)?;
        let write = |name: &str, text: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            Ok(path)
        };
        let addr = format!("127.0.0.1:{}", free_port()?);
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        let kubeconfig = serde_json::json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "gitseal", "cluster": {
                "server": format!("https://{addr}/audit"),
                "certificate-authority-data": b64(&ca_cert.pem())}}],
            "users": [{"name": "kube-apiserver", "user": {
                "client-certificate-data": b64(&client_pem), "client-key-data": b64(&client_key_pem)}}],
            "contexts": [{"name": "default", "context": {"cluster": "gitseal", "user": "kube-apiserver"}}],
            "current-context": "default",
        });
        Ok(AuditWebhookFiles {
            addr,
            serving_cert: write("audit-webhook.crt", &serving_pem)?,
            serving_key: write("audit-webhook.key", &serving_key_pem)?,
            ca: write("audit-webhook-ca.crt", &ca_cert.pem())?,
            ca_pem: ca_cert.pem(),
            kubeconfig: write("audit-webhook.kubeconfig", &kubeconfig.to_string())?,
            policy_file: options.policy_file.clone(),
            batch_max_wait: options.batch_max_wait,
        })
    }
}
