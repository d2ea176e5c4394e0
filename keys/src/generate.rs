//! Key generation, as Bitnami's controller does it: RSA-4096, a self-signed certificate with a
//! 128-bit random serial, Subject = Issuer = `CN=<cn>` (empty DN by default), KeyUsage
//! EncipherOnly (critical), BasicConstraints CA, SHA256-RSA, valid for ten years — plus an
//! X25519 age identity beside it.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::PrivateDecryptingKey;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyUsagePurpose, PKCS_RSA_SHA256,
    SerialNumber,
};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::material::{AGE_KEY, RsaPrivateKey, TLS_CRT, TLS_KEY};
use crate::{Certificate, Error, Result, RsaBits};

/// Ten years of 365 days, Bitnami's `--key-ttl` default.
pub const DEFAULT_TTL: Duration = Duration::days(3650);

/// The data entries of a key Secret: name and plaintext bytes, wiped on drop.
pub type SecretData = Vec<(&'static str, Zeroizing<Vec<u8>>)>;

/// A generated (or loaded) cluster key: RSA private key, its certificate, and an age identity.
pub struct KeyPair {
    pub rsa: RsaPrivateKey,
    pub cert: Certificate,
    pub age: Option<age::x25519::Identity>,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair").field("id", self.rsa.id()).field("cert", &self.cert).finish()
    }
}

/// Generate an RSA key of `bits` with a certificate valid from `now` for `ttl`, and an age identity.
pub fn generate_key_pair(bits: RsaBits, common_name: &str, now: OffsetDateTime, ttl: Duration) -> Result<KeyPair> {
    let private =
        PrivateDecryptingKey::generate(bits.key_size()).map_err(|_| Error::Generate("RSA generation failed".into()))?;
    let pkcs8 =
        Zeroizing::new(private.as_der().map_err(|_| Error::Generate("cannot encode key".into()))?.as_ref().to_vec());
    let rsa = RsaPrivateKey::from_pkcs8_der(&pkcs8)?;
    let cert = self_signed(&pkcs8, common_name, now, ttl)?;
    Ok(KeyPair { rsa, cert, age: Some(age::x25519::Identity::generate()) })
}

/// A self-signed certificate for an existing RSA key (PKCS#8 DER).
pub fn self_signed(pkcs8: &[u8], common_name: &str, now: OffsetDateTime, ttl: Duration) -> Result<Certificate> {
    let signer = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.into(), &PKCS_RSA_SHA256)
        .map_err(|e| Error::Generate(format!("cannot sign with the key ({e})")))?;
    self_signed_with(&signer, common_name, now, ttl)
}

/// The Bitnami-shaped self-signed certificate, signed by any [`rcgen::SigningKey`] (a key in
/// memory, or one in a hardware token).
pub fn self_signed_with(
    signer: &impl rcgen::SigningKey,
    common_name: &str,
    now: OffsetDateTime,
    ttl: Duration,
) -> Result<Certificate> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if !common_name.is_empty() {
        dn.push(DnType::CommonName, common_name);
    }
    params.distinguished_name = dn;
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial).map_err(|_| Error::Generate("random source failed".into()))?;
    serial[0] &= 0x7f; // a positive INTEGER
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.not_before = now;
    params.not_after = now + ttl;
    params.key_usages = vec![KeyUsagePurpose::EncipherOnly];
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(signer).map_err(|e| Error::Generate(format!("certificate signing failed ({e})")))?;
    Certificate::from_der(cert.der())
}

impl KeyPair {
    /// The data of the key Secret: Bitnami's `tls.key` (PKCS#1 PEM) and `tls.crt`, plus
    /// `age.key`. Values are plaintext key material: callers write them and drop them.
    pub fn secret_data(&self) -> Result<SecretData> {
        let mut out = vec![
            (TLS_KEY, Zeroizing::new(self.rsa.to_pkcs1_pem()?.as_bytes().to_vec())),
            (TLS_CRT, Zeroizing::new(self.cert.pem().as_bytes().to_vec())),
        ];
        if let Some(age) = &self.age {
            use age::secrecy::ExposeSecret;
            out.push((AGE_KEY, Zeroizing::new(age.to_string().expose_secret().as_bytes().to_vec())));
        }
        Ok(out)
    }

    /// Rebuild from the data of a key Secret (ours or Bitnami's, which has no `age.key`).
    pub fn from_secret_data(tls_key: &[u8], tls_crt: &[u8], age_key: Option<&[u8]>) -> Result<KeyPair> {
        let block = pem::parse(tls_key).map_err(|_| Error::BadPrivateKey("tls.key is not PEM".into()))?;
        let rsa = RsaPrivateKey::from_pem_block(&block)?;
        let cert = Certificate::from_pem(std::str::from_utf8(tls_crt).map_err(|_| Error::NoCertificate)?)?;
        if cert.key_id() != rsa.id() {
            return Err(Error::BadCertificate("tls.crt does not belong to tls.key".into()));
        }
        let age = match age_key {
            Some(b) => Some(crate::material::parse_age_identity(std::str::from_utf8(b).unwrap_or(""))?),
            None => None,
        };
        Ok(KeyPair { rsa, cert, age })
    }

    pub fn decryption_key(&self) -> Result<gitseal_shared::value::DecryptionKey> {
        self.rsa.decryption_key(self.age.clone())
    }
}

/// The data of the key Secret of a loaded key, when it may leave its backend: as
/// [`KeyPair::secret_data`]. A key held in a hardware token is [`Error::NotExportable`].
pub fn export_secret_data(cert: &Certificate, key: &gitseal_shared::value::DecryptionKey) -> Result<SecretData> {
    let rsa = key.rsa().ok_or(Error::NoPrivateKey)?;
    let pkcs8 = rsa.export_pkcs8().ok_or_else(|| Error::NotExportable(key.id().clone()))?;
    let pair = KeyPair {
        rsa: RsaPrivateKey::from_pkcs8_der(&pkcs8)?,
        cert: Certificate::from_pem(cert.pem())?,
        age: key.age_identity().cloned(),
    };
    pair.secret_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_is_bitnami_shaped_and_matches_the_key() {
        let now = OffsetDateTime::now_utc();
        let kp = generate_key_pair(crate::RsaBits::Rsa2048, "", now, DEFAULT_TTL).unwrap();
        assert_eq!(kp.cert.key_id(), kp.rsa.id());
        let der = pem::parse(kp.cert.pem()).unwrap().into_contents();
        let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(x.subject().iter().next().is_none(), "empty DN by default");
        let ku = x.key_usage().unwrap().unwrap();
        assert!(ku.critical && ku.value.encipher_only());
        assert!(x.basic_constraints().unwrap().unwrap().value.ca);
        let days = (kp.cert.not_after().unwrap() - kp.cert.not_before().unwrap()).whole_days();
        assert_eq!(days, 3650);
        assert!(kp.rsa.to_pkcs1_pem().unwrap().starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
    }

    #[test]
    fn key_secret_data_round_trips() {
        let kp = generate_key_pair(crate::RsaBits::Rsa2048, "gitseal", OffsetDateTime::now_utc(), DEFAULT_TTL).unwrap();
        let data = kp.secret_data().unwrap();
        let get = |k| data.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_slice()).unwrap();
        let back = KeyPair::from_secret_data(get(TLS_KEY), get(TLS_CRT), Some(get(AGE_KEY))).unwrap();
        assert_eq!(back.rsa.id(), kp.rsa.id());
        assert!(format!("{back:?}").contains("KeyPair") && !format!("{back:?}").contains("PRIVATE"));
        let exported = export_secret_data(&back.cert, &back.decryption_key().unwrap()).unwrap();
        assert_eq!(
            exported.iter().map(|(n, v)| (*n, v.to_vec())).collect::<Vec<_>>(),
            data.iter().map(|(n, v)| (*n, v.to_vec())).collect::<Vec<_>>()
        );
    }
}
