//! age recipients given on the command line or in a recipients file.

use std::str::FromStr;

use gitseal_shared::value::Recipient;

use crate::{Error, Result};

/// Parse one `age1…` X25519 recipient.
pub fn parse_recipient(s: &str) -> Result<Recipient> {
    let s = s.trim();
    age::x25519::Recipient::from_str(s)
        .map(Recipient::age)
        .map_err(|_| Error::BadRecipient(s.chars().take(80).collect()))
}

/// Parse a recipients file: one `age1…` per line; blank lines and `#` comments ignored.
pub fn parse_recipients_file(text: &str) -> Result<Vec<Recipient>> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(parse_recipient).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_file_skips_comments_and_rejects_garbage() {
        let r = age::x25519::Identity::generate().to_public().to_string();
        let text = format!("# security team\n\n{r}\n");
        assert_eq!(parse_recipients_file(&text).unwrap().len(), 1);
        let err = parse_recipients_file("age1nope\n").unwrap_err().to_string();
        assert!(err.contains("age1nope"), "{err}");
    }
}
