//! `gitseal seal --generate NAME=SPEC`: values nobody sees. Each is drawn from the operating
//! system's CSPRNG (`getrandom` through [`rand::rngs::OsRng`]), held in zeroizing buffers, and
//! goes nowhere but into the sealed value: it is never printed, logged or written.
//!
//! Parsing a spec is pure ([`Spec::parse`]); drawing takes the RNG as an argument
//! ([`Spec::generate_with`]) so the shapes are tested with a seeded one. The grammar is
//! documented in `gitseal seal --help` (`SEAL_HELP` in cli.rs).

use anyhow::{Result, anyhow, bail};
use rand::RngCore;
use zeroize::Zeroizing;

/// Longest password, in characters.
pub const MAX_PASSWORD_LEN: usize = 4096;
/// Most random bytes one value may ask for.
pub const MAX_BYTES: usize = 65536;
/// Most `--generate` values in one run.
pub const MAX_GENERATED: usize = 256;

const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &str = "0123456789";
/// Symbols that survive shells, URLs' userinfo (after escaping), YAML and connection strings
/// better than quotes, backslashes, `$`, `&`, `/` or spaces would.
const SYMBOLS: &str = "-_.~!@#%^*+=";

/// How random bytes are written into the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Raw,
    Base64,
    Hex,
}

/// A parsed SPEC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// `len` characters from the union of `classes`, at least one of each when `len` allows.
    Password {
        len: usize,
        classes: Vec<String>,
    },
    Bytes {
        len: usize,
        encoding: Encoding,
    },
    Uuid,
}

impl Spec {
    /// Parse `password:24:alnum` and friends (see [`GRAMMAR`]).
    pub fn parse(spec: &str) -> Result<Spec> {
        let (kind, rest) = match spec.split_once(':') {
            Some((k, r)) => (k, Some(r)),
            None => (spec, None),
        };
        let (len_text, option) = match rest {
            Some(r) => match r.split_once(':') {
                Some((l, o)) => (Some(l), Some(o)),
                None => (Some(r), None),
            },
            None => (None, None),
        };
        let len = |default: usize, max: usize| -> Result<usize> {
            let Some(t) = len_text else { return Ok(default) };
            let n: usize = t.parse().map_err(|_| anyhow!("length {t:?} is not a number"))?;
            if n == 0 || n > max {
                bail!("length {n} is out of range: 1 to {max}");
            }
            Ok(n)
        };
        match kind {
            "password" => {
                let len = len(32, MAX_PASSWORD_LEN)?;
                let classes = alphabet(option.unwrap_or("symbols"))?;
                Ok(Spec::Password { len, classes })
            }
            "bytes" => {
                let len = len(32, MAX_BYTES)?;
                let encoding = match option {
                    None | Some("raw") => Encoding::Raw,
                    Some("base64") => Encoding::Base64,
                    Some(o) => bail!("bytes takes raw or base64, not {o:?}"),
                };
                Ok(Spec::Bytes { len, encoding })
            }
            "hex" => {
                if option.is_some() {
                    bail!("hex takes only a length: hex[:LEN]");
                }
                Ok(Spec::Bytes { len: len(16, MAX_BYTES)?, encoding: Encoding::Hex })
            }
            "uuid" => {
                if rest.is_some() {
                    bail!("uuid takes no length or alphabet");
                }
                Ok(Spec::Uuid)
            }
            other => bail!("unknown kind {other:?}: password, bytes, hex or uuid"),
        }
    }

    /// A fresh value from the operating system's CSPRNG.
    pub fn generate(&self) -> Result<Zeroizing<Vec<u8>>> {
        self.generate_with(&mut rand::rngs::OsRng)
    }

    /// A fresh value from `rng`.
    pub fn generate_with(&self, rng: &mut impl RngCore) -> Result<Zeroizing<Vec<u8>>> {
        match self {
            Spec::Password { len, classes } => password(rng, *len, classes),
            Spec::Bytes { len, encoding } => {
                let raw = random_bytes(rng, *len)?;
                Ok(match encoding {
                    Encoding::Raw => raw,
                    Encoding::Base64 => Zeroizing::new(gitseal_shared::value::encode_base64(&raw).into_bytes()),
                    Encoding::Hex => {
                        let mut out = Zeroizing::new(Vec::with_capacity(raw.len() * 2));
                        for b in raw.iter() {
                            out.push(b"0123456789abcdef"[usize::from(b >> 4)]);
                            out.push(b"0123456789abcdef"[usize::from(b & 15)]);
                        }
                        out
                    }
                })
            }
            Spec::Uuid => {
                let mut b = random_bytes(rng, 16)?;
                b[6] = (b[6] & 0x0f) | 0x40; // version 4
                b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
                let mut out = Zeroizing::new(Vec::with_capacity(36));
                for (i, byte) in b.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        out.push(b'-');
                    }
                    out.push(b"0123456789abcdef"[usize::from(byte >> 4)]);
                    out.push(b"0123456789abcdef"[usize::from(byte & 15)]);
                }
                Ok(out)
            }
        }
    }
}

/// The character classes of an ALPHABET name.
fn alphabet(name: &str) -> Result<Vec<String>> {
    let classes: Vec<&str> = match name {
        "alnum" => vec![UPPER, LOWER, DIGITS],
        "alpha" => vec![UPPER, LOWER],
        "lower" => vec![LOWER],
        "upper" => vec![UPPER],
        "digits" => vec![DIGITS],
        "symbols" => vec![UPPER, LOWER, DIGITS, SYMBOLS],
        other => {
            let Some(chars) = other.strip_prefix("set=") else {
                bail!("unknown alphabet {other:?}: alnum, alpha, lower, upper, digits, symbols or set=CHARS");
            };
            if chars.is_empty() || !chars.bytes().all(|b| b.is_ascii_graphic()) {
                bail!("set= needs one or more printable ASCII characters, no spaces");
            }
            let mut unique: Vec<u8> = chars.bytes().collect();
            unique.sort_unstable();
            unique.dedup();
            if unique.len() < 2 {
                bail!("set= needs at least two different characters");
            }
            return Ok(vec![String::from_utf8_lossy(&unique).into_owned()]);
        }
    };
    Ok(classes.into_iter().map(str::to_string).collect())
}

fn random_bytes(rng: &mut impl RngCore, len: usize) -> Result<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(vec![0u8; len]);
    rng.try_fill_bytes(&mut out).map_err(|e| anyhow!("the operating system's random number generator failed: {e}"))?;
    Ok(out)
}

/// An index below `n` (≤ 256), uniform: bytes at or above the largest multiple of `n` are drawn again.
fn uniform_index(rng: &mut impl RngCore, n: usize) -> Result<usize> {
    let zone = 256 - 256 % n;
    loop {
        let mut b = [0u8; 1];
        rng.try_fill_bytes(&mut b)
            .map_err(|e| anyhow!("the operating system's random number generator failed: {e}"))?;
        let v = usize::from(b[0]);
        if v < zone {
            return Ok(v % n);
        }
    }
}

/// Draws until a candidate has a character of every class (when `len` allows), so the result is
/// uniform among the passwords that satisfy the rule. With at most four classes and `len` ≥ their
/// count, a draw fails the rule with probability below 1 - (1/4)^… in the worst case (`len` = 4
/// with four classes: about 1 in 11), so the bound of attempts is never reached in practice.
fn password(rng: &mut impl RngCore, len: usize, classes: &[String]) -> Result<Zeroizing<Vec<u8>>> {
    let all: Vec<u8> = classes.iter().flat_map(|c| c.bytes()).collect();
    let need_each = len >= classes.len() && classes.len() > 1;
    for _ in 0..10_000 {
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        for _ in 0..len {
            out.push(all[uniform_index(rng, all.len())?]);
        }
        if !need_each || classes.iter().all(|c| out.iter().any(|b| c.as_bytes().contains(b))) {
            return Ok(out);
        }
    }
    bail!("could not draw a password with every character class")
}

/// `NAME=SPEC` → the data key and the parsed spec; NAME is checked as a Secret data key.
pub fn parse_arg(arg: &str) -> Result<(String, Spec)> {
    let Some((name, spec)) = arg.split_once('=') else {
        bail!("--generate {arg:?}: expected NAME=SPEC, e.g. --generate password=password:32 (see gitseal seal --help)");
    };
    gitseal_shared::manifest::secret::check_data_key(name).map_err(|e| anyhow!("--generate: {e}"))?;
    let spec = Spec::parse(spec).map_err(|e| anyhow!("--generate {name}={spec}: {e} (see gitseal seal --help)"))?;
    Ok((name.to_string(), spec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    fn text(spec: &str) -> String {
        String::from_utf8(Spec::parse(spec).unwrap().generate_with(&mut rng()).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn defaults_are_what_a_password_manager_would_pick() {
        let p = text("password");
        assert_eq!(p.len(), 32);
        assert!(p.bytes().any(|b| b.is_ascii_uppercase()));
        assert!(p.bytes().any(|b| b.is_ascii_lowercase()));
        assert!(p.bytes().any(|b| b.is_ascii_digit()));
        assert!(p.bytes().any(|b| SYMBOLS.as_bytes().contains(&b)));
        assert_eq!(Spec::parse("bytes").unwrap(), Spec::Bytes { len: 32, encoding: Encoding::Raw });
        assert_eq!(text("hex").len(), 32);
    }

    #[test]
    fn each_kind_has_the_asked_shape() {
        let a = text("password:24:alnum");
        assert_eq!(a.len(), 24);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()), "{a}");
        assert!(text("password:6:digits").bytes().all(|b| b.is_ascii_digit()));
        assert!(text("password:40:set=ab:").bytes().all(|b| b"ab:".contains(&b)));
        let h = text("hex:8");
        assert!(h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let b64 = text("bytes:32:base64");
        assert_eq!(gitseal_shared::value::decode_base64(&b64).unwrap().len(), 32);
        assert_eq!(Spec::parse("bytes:5").unwrap().generate_with(&mut rng()).unwrap().len(), 5);
        let u = text("uuid");
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!("89ab".contains(&u[19..20]));
        assert_eq!(u.matches('-').count(), 4);
    }

    #[test]
    fn characters_are_drawn_evenly() {
        let spec = Spec::parse("password:4096:digits").unwrap();
        let v = spec.generate_with(&mut rng()).unwrap();
        for d in b'0'..=b'9' {
            let n = v.iter().filter(|&&b| b == d).count();
            assert!((300..520).contains(&n), "digit {} drawn {n} times of 4096", d as char);
        }
    }

    #[test]
    fn two_draws_from_the_os_differ() {
        let spec = Spec::parse("bytes:32").unwrap();
        assert_ne!(*spec.generate().unwrap(), *spec.generate().unwrap());
    }

    #[test]
    fn bad_specs_are_refused_with_a_reason() {
        for (spec, says) in [
            ("pasword", "unknown kind"),
            ("password:0", "out of range"),
            ("password:4097", "out of range"),
            ("password:x", "not a number"),
            ("password:8:emoji", "unknown alphabet"),
            ("password:8:set=a", "two different"),
            ("password:8:set=a b", "printable"),
            ("bytes:65537", "out of range"),
            ("bytes:4:hex", "raw or base64"),
            ("hex:4:x", "only a length"),
            ("uuid:4", "no length"),
        ] {
            let e = Spec::parse(spec).unwrap_err().to_string();
            assert!(e.contains(says), "{spec}: {e}");
        }
        assert!(parse_arg("no-equals").unwrap_err().to_string().contains("NAME=SPEC"));
        assert!(parse_arg("a/b=uuid").unwrap_err().to_string().contains("a/b"));
    }
}
