//! `gitseal keygen`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::parse_ttl;

const KEYGEN_HELP: &str = "\
Examples:
  # A Bitnami-style key pair (RSA-4096, self-signed certificate valid ten years):
  gitseal keygen --out-key sealing.key --out-cert sealing.pem

  # Bring your own key: a key Secret to kubectl apply in the controller's namespace:
  gitseal keygen --secret sealing-key.yaml --out-cert sealing.pem

  # An offline recovery identity; its recipient (age1...) is printed on stdout:
  gitseal keygen --type age --out-key recovery.agekey

Private keys are written with mode 0600 and never over an existing file.";

#[derive(Debug, Args)]
#[command(after_help = KEYGEN_HELP)]
pub struct KeygenArgs {
    /// Kind of key
    #[arg(long = "type", value_enum, default_value_t = KeyType::Rsa, env = "GITSEAL_TYPE")]
    pub key_type: KeyType,

    /// RSA key size in bits: 2048, 3072, 4096 or 8192 [default: 4096]
    #[arg(long, env = "GITSEAL_BITS")]
    pub bits: Option<gitseal_keys::RsaBits>,

    /// Certificate subject common name [default: empty, as Bitnami's controller]
    #[arg(long, value_name = "NAME", env = "GITSEAL_CN")]
    pub cn: Option<String>,

    /// Certificate lifetime, e.g. 87600h or 3650d (units s, m, h, d) [default: 3650d]
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl, env = "GITSEAL_TTL")]
    pub ttl: Option<time::Duration>,

    /// Write the private key here (RSA: PKCS#1 PEM; age: identity file), mode 0600
    #[arg(long, value_name = "FILE", env = "GITSEAL_OUT_KEY", required_if_eq("key_type", "age"))]
    pub out_key: Option<PathBuf>,

    /// Write the certificate (PEM) here: what `gitseal seal --cert` takes
    #[arg(long, value_name = "FILE", env = "GITSEAL_OUT_CERT")]
    pub out_cert: Option<PathBuf>,

    /// Write a Bitnami-compatible key Secret (kubernetes.io/tls with tls.key, tls.crt and
    /// age.key, labelled as an active sealing key) here, mode 0600
    #[arg(long, value_name = "FILE", env = "GITSEAL_SECRET")]
    pub secret: Option<PathBuf>,

    /// metadata.name of the key Secret [default: sealed-secrets-key + 5 characters from the key id]
    #[arg(long, value_name = "NAME", requires = "secret", env = "GITSEAL_SECRET_NAME")]
    pub secret_name: Option<String>,

    /// metadata.namespace of the key Secret: the controller's namespace
    #[arg(
        long,
        value_name = "NS",
        default_value = "kube-system",
        requires = "secret",
        env = "GITSEAL_SECRET_NAMESPACE"
    )]
    pub secret_namespace: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyType {
    /// RSA key with a self-signed certificate (what clusters seal with)
    Rsa,
    /// X25519 age identity (an offline recovery key)
    Age,
}
