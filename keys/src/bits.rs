//! RSA key sizes: the one type that key generation, the CLI (`gitseal keygen --bits`) and the
//! controller (`--key-size`) share, so the supported sizes and their error live in one place.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::rsa::KeySize;

/// A supported RSA modulus size. Parsed from `2048`, `3072`, `4096` or `8192`; shown as the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum RsaBits {
    Rsa2048,
    Rsa3072,
    /// Bitnami's default, and gitseal's.
    #[default]
    Rsa4096,
    Rsa8192,
}

/// A size that is not one of [`RsaBits::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported RSA key size {0:?}: use 2048, 3072, 4096 or 8192")]
pub struct UnsupportedRsaBits(pub String);

impl RsaBits {
    /// Every supported size, smallest first.
    pub const ALL: [RsaBits; 4] = [RsaBits::Rsa2048, RsaBits::Rsa3072, RsaBits::Rsa4096, RsaBits::Rsa8192];

    /// The modulus size in bits.
    pub fn bits(self) -> usize {
        match self {
            RsaBits::Rsa2048 => 2048,
            RsaBits::Rsa3072 => 3072,
            RsaBits::Rsa4096 => 4096,
            RsaBits::Rsa8192 => 8192,
        }
    }

    pub(crate) fn key_size(self) -> KeySize {
        match self {
            RsaBits::Rsa2048 => KeySize::Rsa2048,
            RsaBits::Rsa3072 => KeySize::Rsa3072,
            RsaBits::Rsa4096 => KeySize::Rsa4096,
            RsaBits::Rsa8192 => KeySize::Rsa8192,
        }
    }
}

impl fmt::Display for RsaBits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.bits())
    }
}

impl FromStr for RsaBits {
    type Err = UnsupportedRsaBits;

    fn from_str(s: &str) -> Result<RsaBits, UnsupportedRsaBits> {
        let bits: Option<usize> = s.trim().parse().ok();
        RsaBits::ALL.into_iter().find(|b| Some(b.bits()) == bits).ok_or_else(|| UnsupportedRsaBits(s.to_owned()))
    }
}

impl TryFrom<usize> for RsaBits {
    type Error = UnsupportedRsaBits;

    fn try_from(bits: usize) -> Result<RsaBits, UnsupportedRsaBits> {
        RsaBits::ALL.into_iter().find(|b| b.bits() == bits).ok_or_else(|| UnsupportedRsaBits(bits.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_reads_back_from_its_own_display_and_nothing_else_parses() {
        for b in RsaBits::ALL {
            assert_eq!(b.to_string().parse::<RsaBits>(), Ok(b));
            assert_eq!(RsaBits::try_from(b.bits()), Ok(b));
        }
        assert_eq!(" 4096 ".parse::<RsaBits>(), Ok(RsaBits::default()));
        for bad in ["1024", "4095", "", "4096bits", "-2048", "99999999999999999999999"] {
            let err = bad.parse::<RsaBits>().unwrap_err();
            assert_eq!(err.to_string(), format!("unsupported RSA key size {bad:?}: use 2048, 3072, 4096 or 8192"));
        }
        assert!(RsaBits::try_from(1024).is_err());
    }
}
