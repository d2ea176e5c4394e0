//! Certificates: what a developer seals with. Only the public key and the validity are used,
//! as kubeseal does (no chain, KeyUsage or NotBefore check), but an expired certificate is refused.

use std::fmt;

use gitseal_shared::KeyId;
use gitseal_shared::value::RsaPublicKey;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{Error, Result};

/// A cluster's sealing certificate (or a bare public key, which has no validity).
pub struct Certificate {
    pem: String,
    public: RsaPublicKey,
    spki_der: Vec<u8>,
    not_before: Option<OffsetDateTime>,
    not_after: Option<OffsetDateTime>,
}

impl Certificate {
    /// Parse the first `CERTIFICATE` (or `PUBLIC KEY`) PEM block of `text`.
    pub fn from_pem(text: &str) -> Result<Certificate> {
        let blocks = pem::parse_many(text.as_bytes()).map_err(|e| Error::BadCertificate(format!("bad PEM ({e})")))?;
        let block =
            blocks.iter().find(|b| b.tag() == "CERTIFICATE" || b.tag() == "PUBLIC KEY").ok_or(Error::NoCertificate)?;
        if block.tag() == "PUBLIC KEY" {
            let public = RsaPublicKey::from_spki_der(block.contents())?;
            return Ok(Certificate {
                pem: pem::encode(block),
                public,
                spki_der: block.contents().to_vec(),
                not_before: None,
                not_after: None,
            });
        }
        Self::from_der(block.contents())
    }

    pub fn from_der(der: &[u8]) -> Result<Certificate> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| Error::BadCertificate(e.to_string()))?;
        let spki_der = cert.tbs_certificate.subject_pki.raw.to_vec();
        let public = RsaPublicKey::from_spki_der(&spki_der)?;
        let validity = cert.validity();
        let pem = pem::encode_config(
            &pem::Pem::new("CERTIFICATE", der.to_vec()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        );
        Ok(Certificate {
            pem,
            public,
            spki_der,
            not_before: Some(validity.not_before.to_datetime()),
            not_after: Some(validity.not_after.to_datetime()),
        })
    }

    /// Refuse a certificate that expired before `now` (kubeseal's check).
    pub fn check_not_expired(&self, now: OffsetDateTime) -> Result<()> {
        match self.not_after {
            Some(end) if now > end => Err(Error::Expired(fmt_time(end))),
            _ => Ok(()),
        }
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    pub fn public_key(&self) -> &RsaPublicKey {
        &self.public
    }

    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    pub fn key_id(&self) -> &KeyId {
        self.public.id()
    }

    pub fn not_before(&self) -> Option<OffsetDateTime> {
        self.not_before
    }

    pub fn not_after(&self) -> Option<OffsetDateTime> {
        self.not_after
    }

    /// A recipient for sealing (a fresh handle on the same public key).
    pub fn recipient(&self) -> Result<gitseal_shared::value::Recipient> {
        Ok(gitseal_shared::value::Recipient::Rsa(RsaPublicKey::from_spki_der(&self.spki_der)?))
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("key_id", self.key_id())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// RFC 3339 for messages and tables.
pub fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.to_string())
}
