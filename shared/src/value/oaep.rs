//! EME-OAEP decoding (RFC 8017 §7.1.2 step 3) with SHA-256 and MGF1-SHA-256, in constant time.
//!
//! Used only when a hardware token refuses CKM_RSA_PKCS_OAEP with SHA-256 and a label (Debian's
//! SoftHSM 2.6 does): the token performs the raw RSA private operation (CKM_RSA_X_509) and this
//! decodes the padding, so the private key still never leaves the token. aws-lc-rs has no
//! raw-OAEP-decode API, hence this module. It follows Go's `crypto/rsa.decryptOAEP`: every
//! check (leading zero, label hash, zero padding, the 0x01 separator) is computed with
//! `subtle` constant-time operations over the whole block and folded into one flag, tested
//! once at the end, so which check failed is visible neither in the result nor in the timing
//! (Manger's attack needs exactly that distinction). Every failure is the same
//! [`Error::DecryptionFailed`].

use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

use super::unwrap::MAX_SESSION_KEY;
use crate::{Error, Result, SecretBytes};

const H_LEN: usize = 32;

/// MGF1 with SHA-256: `out` is XORed with the mask derived from `seed`.
fn mgf1_xor(out: &mut [u8], seed: &[u8]) {
    let mut counter = 0u32;
    let mut done = 0;
    while done < out.len() {
        let mut h = Sha256::new();
        h.update(seed);
        h.update(counter.to_be_bytes());
        let block = Zeroizing::new(h.finalize());
        for (o, m) in out[done..].iter_mut().zip(block.iter()) {
            *o ^= m;
        }
        done += H_LEN;
        counter += 1;
    }
}

/// Decode the encoded message `em` (the raw RSA decryption, exactly `k` bytes, leading zeros
/// kept) under `label`, to a message of at most [`MAX_SESSION_KEY`] bytes.
pub fn decode(em: &[u8], label: &[u8], k: usize) -> Result<SecretBytes> {
    // Public facts (the key size, the buffer length): checked in the open.
    if em.len() != k || k < 2 * H_LEN + 2 {
        return Err(Error::DecryptionFailed);
    }
    let l_hash = Sha256::digest(label);
    let first_byte_is_zero = em[0].ct_eq(&0);
    let mut seed = Zeroizing::new(em[1..=H_LEN].to_vec());
    let mut db = Zeroizing::new(em[H_LEN + 1..].to_vec());
    mgf1_xor(&mut seed, &db);
    mgf1_xor(&mut db, &seed);

    let l_hash_good = db[..H_LEN].ct_eq(l_hash.as_slice());
    // DB = lHash' ‖ PS (zeros) ‖ 0x01 ‖ M: find the 0x01 without branching on the bytes.
    let mut looking_for_index = Choice::from(1);
    let mut index = 0u32;
    let mut invalid = Choice::from(0);
    for (i, b) in db.iter().enumerate().skip(H_LEN) {
        let equals0 = b.ct_eq(&0);
        let equals1 = b.ct_eq(&1);
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        index.conditional_assign(&i, looking_for_index & equals1);
        looking_for_index &= !equals1;
        invalid |= looking_for_index & !equals0;
    }
    let good = first_byte_is_zero & l_hash_good & !invalid & !looking_for_index;
    if !bool::from(good) {
        return Err(Error::DecryptionFailed);
    }
    let start = usize::try_from(index).map_err(|_| Error::DecryptionFailed)? + 1;
    let message = &db[start..];
    if message.len() > MAX_SESSION_KEY {
        return Err(Error::DecryptionFailed);
    }
    Ok(SecretBytes::from(message))
}

/// EME-OAEP encoding, for tests of [`decode`] (sealing uses aws-lc-rs).
#[cfg(test)]
pub(crate) fn encode(message: &[u8], label: &[u8], k: usize, seed: &[u8; H_LEN]) -> Vec<u8> {
    let mut db = Sha256::digest(label).to_vec();
    db.resize(k - message.len() - H_LEN - 2, 0);
    db.push(1);
    db.extend_from_slice(message);
    let mut masked_seed = seed.to_vec();
    mgf1_xor(&mut db, seed);
    mgf1_xor(&mut masked_seed, &db);
    let mut em = vec![0u8];
    em.extend_from_slice(&masked_seed);
    em.extend_from_slice(&db);
    em
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeySize, OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PrivateDecryptingKey};
    use num_bigint::BigUint;
    use pkcs8::der::Decode;

    /// Textbook RSA with the key's own numbers: the raw operation a token's CKM_RSA_X_509 does.
    fn raw_decrypt(pkcs8: &[u8], ct: &[u8]) -> Vec<u8> {
        let info = pkcs8::PrivateKeyInfo::from_der(pkcs8).unwrap();
        let key = pkcs1::RsaPrivateKey::from_der(info.private_key).unwrap();
        let n = BigUint::from_bytes_be(key.modulus.as_bytes());
        let d = BigUint::from_bytes_be(key.private_exponent.as_bytes());
        let m = BigUint::from_bytes_be(ct).modpow(&d, &n).to_bytes_be();
        let mut em = vec![0u8; ct.len() - m.len()];
        em.extend_from_slice(&m);
        em
    }

    #[test]
    fn decodes_aws_lc_rs_encryptions_with_labels() {
        let k = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let pkcs8 = k.as_der().unwrap().as_ref().to_vec();
        let public = OaepPublicEncryptingKey::new(k.public_key()).unwrap();
        for (label, msg) in [(&b"ns/name"[..], &[9u8; 32][..]), (b"", &[1u8; 16]), (b"gitseal.dev/v1/rsa-oaep", &[])] {
            let mut ct = vec![0u8; public.ciphertext_size()];
            let ct_label = (!label.is_empty()).then_some(label);
            public.encrypt(&OAEP_SHA256_MGF1SHA256, msg, &mut ct, ct_label).unwrap();
            let em = raw_decrypt(&pkcs8, &ct);
            assert_eq!(decode(&em, label, 256).unwrap().expose(), msg);
            assert!(matches!(decode(&em, b"other", 256), Err(Error::DecryptionFailed)));
        }
    }

    #[test]
    fn every_malformed_padding_gives_the_same_opaque_error() {
        let k = 256;
        let good = encode(&[5u8; 32], b"label", k, &[3u8; 32]);
        assert_eq!(decode(&good, b"label", k).unwrap().expose(), &[5u8; 32]);
        let mut cases: Vec<Vec<u8>> = Vec::new();
        // Leading byte not zero.
        let mut y = good.clone();
        y[0] = 1;
        cases.push(y);
        // Any flipped bit in the masked seed or DB breaks the label hash or the padding.
        for i in [1, 20, 33, 40, 100, 200, 223, 255] {
            let mut b = good.clone();
            b[i] ^= 0x10;
            cases.push(b);
        }
        // No 0x01 separator at all: an all-zero PS to the end.
        cases.push(no_separator(k));
        // A non-zero byte in PS before the separator.
        cases.push(garbage_in_padding(k));
        // A message longer than a session key (well-formed otherwise).
        cases.push(encode(&[1u8; 33], b"label", k, &[3u8; 32]));
        // Wrong length.
        cases.push(good[1..].to_vec());
        let errors: Vec<String> = cases.iter().map(|c| decode(c, b"label", k).unwrap_err().to_string()).collect();
        let expected = Error::DecryptionFailed.to_string();
        assert!(errors.iter().all(|e| *e == expected), "{errors:?}");
        // The wrong label on a good block too.
        assert_eq!(decode(&good, b"labe1", k).unwrap_err().to_string(), expected);
        // A key too small for OAEP-SHA-256.
        assert!(matches!(decode(&[0u8; 65], b"", 65), Err(Error::DecryptionFailed)));
    }

    /// An encoded block whose DB is lHash ‖ zeros with no 0x01.
    fn no_separator(k: usize) -> Vec<u8> {
        let mut db = Sha256::digest(b"label").to_vec();
        db.resize(k - H_LEN - 1, 0);
        mask(db, k)
    }

    /// lHash ‖ 00 02 00 ‖ 01 ‖ M: a stray byte inside the padding.
    fn garbage_in_padding(k: usize) -> Vec<u8> {
        let mut db = Sha256::digest(b"label").to_vec();
        db.resize(k - H_LEN - 1 - 33, 0);
        db[H_LEN + 1] = 2;
        db.push(1);
        db.extend_from_slice(&[0u8; 32]);
        mask(db, k)
    }

    fn mask(mut db: Vec<u8>, k: usize) -> Vec<u8> {
        assert_eq!(db.len(), k - H_LEN - 1);
        let mut seed = vec![4u8; H_LEN];
        mgf1_xor(&mut db, &seed);
        mgf1_xor(&mut seed, &db);
        let mut em = vec![0u8];
        em.extend_from_slice(&seed);
        em.extend_from_slice(&db);
        em
    }
}
