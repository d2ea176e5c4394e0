//! The control plane's certificates, made with rcgen the way envtest's `TinyCA` makes them:
//! ECDSA P-256 keys, valid for 168 hours.
//!
//! - a serving CA and the apiserver's serving certificate (CN and DNS SAN `localhost`, IP SAN
//!   `127.0.0.1`);
//! - the service-account token signer (a bare key pair);
//! - a client CA (`--client-ca-file`) and the admin client certificate (CN `admin`,
//!   O `system:masters`); [`Pki::client_cert`] mints more users;
//! - the aggregation layer: a front-proxy CA (`--requestheader-client-ca-file`) and the
//!   `front-proxy-client` certificate the apiserver presents to aggregated API servers.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};

use crate::{Error, Result};

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub(crate) struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertPair").finish_non_exhaustive()
    }
}

/// Paths of the files written by [`Pki::generate`], all inside one directory.
#[derive(Debug, Clone)]
pub(crate) struct PkiFiles {
    pub serving_ca: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub sa_public_key: PathBuf,
    pub sa_private_key: PathBuf,
    pub client_ca: PathBuf,
    pub front_proxy_ca: PathBuf,
    pub front_proxy_client_cert: PathBuf,
    pub front_proxy_client_key: PathBuf,
}

/// Everything the apiserver and its clients need, kept in memory and written to files.
pub(crate) struct Pki {
    pub files: PkiFiles,
    pub serving_ca_pem: String,
    pub admin: CertPair,
    client_ca: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("files", &self.files).finish_non_exhaustive()
    }
}

fn key(what: &'static str) -> Result<KeyPair> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| Error::Certificate { what, source })
}

fn base_params(cn: &str, orgs: &[&str], sans: &[&str], what: &'static str) -> Result<CertificateParams> {
    let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(sans).map_err(|source| Error::Certificate { what, source })?;
    params.distinguished_name.push(DnType::CommonName, cn);
    for o in orgs {
        params.distinguished_name.push(DnType::OrganizationName, *o);
    }
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::hours(168);
    Ok(params)
}

fn ca(cn: &str, what: &'static str) -> Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = base_params(cn, &["gitseal-test"], &[], what)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(params, key(what)?).map_err(|source| Error::Certificate { what, source })
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
    orgs: &[&str],
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
    what: &'static str,
) -> Result<CertPair> {
    let mut params = base_params(cn, orgs, sans, what)?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = key(what)?;
    let cert = params.signed_by(&key, issuer).map_err(|source| Error::Certificate { what, source })?;
    Ok(CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

impl Pki {
    /// Generates every key and certificate and writes them into `dir`.
    pub fn generate(dir: &Path) -> Result<Self> {
        let files = PkiFiles {
            serving_ca: dir.join("serving-ca.crt"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            sa_public_key: dir.join("sa-signer.pub"),
            sa_private_key: dir.join("sa-signer.key"),
            client_ca: dir.join("client-cert-auth-ca.crt"),
            front_proxy_ca: dir.join("front-proxy-ca.crt"),
            front_proxy_client_cert: dir.join("front-proxy-client.crt"),
            front_proxy_client_key: dir.join("front-proxy-client.key"),
        };

        let serving_ca = ca("gitseal-test-serving-ca", "serving CA")?;
        let serving = leaf(
            &serving_ca,
            "localhost",
            &[],
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            "apiserver serving certificate",
        )?;
        let sa = key("service-account signing key")?;
        let client_ca = ca("gitseal-test-client-ca", "client CA")?;
        let admin = leaf(
            &client_ca,
            "admin",
            &["system:masters"],
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
            "admin client certificate",
        )?;
        let front_proxy_ca = ca("gitseal-test-front-proxy-ca", "front-proxy CA")?;
        let front_proxy_client = leaf(
            &front_proxy_ca,
            "front-proxy-client",
            &[],
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
            "front-proxy client certificate",
        )?;

        write(&files.serving_ca, &serving_ca.pem())?;
        write(&files.serving_cert, &serving.cert_pem)?;
        write(&files.serving_key, &serving.key_pem)?;
        write(&files.sa_public_key, &sa.public_key_pem())?;
        write(&files.sa_private_key, &sa.serialize_pem())?;
        write(&files.client_ca, &client_ca.pem())?;
        write(&files.front_proxy_ca, &front_proxy_ca.pem())?;
        write(&files.front_proxy_client_cert, &front_proxy_client.cert_pem)?;
        write(&files.front_proxy_client_key, &front_proxy_client.key_pem)?;

        Ok(Self { files, serving_ca_pem: serving_ca.pem(), admin, client_ca })
    }

    /// A client certificate for user `name` in `groups`, signed by the client CA.
    pub fn client_cert(&self, name: &str, groups: &[&str]) -> Result<CertPair> {
        leaf(&self.client_ca, name, groups, &[], ExtendedKeyUsagePurpose::ClientAuth, "user client certificate")
    }
}
