//! Writing strings as YAML scalars, quoted only when a reader would misread them.

use std::fmt::Write as _;

/// Render a string as a YAML scalar: plain when unambiguous ([A-Za-z0-9+/=._-] and not a YAML 1.1/1.2 special such as true/false/yes/no/on/off/null/~/numbers/dates), else double-quoted with JSON-style escapes.
///
/// The plain form is never folded, so a 700-character base64 value stays on one line.
pub fn yaml_scalar(s: &str) -> String {
    let plain_chars = s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=._-".contains(&b));
    if !s.is_empty() && plain_chars && !looks_special(s) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            // Not printable in YAML, or a line break / BOM to YAML 1.1 readers: escape. All of
            // these are in the BMP, so `\uXXXX` is enough.
            '\0'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}' => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether a string made of plain-safe characters would be read as something other than that
/// string (a boolean, null, number, date, document marker) by a YAML 1.1 or 1.2 reader.
/// Errs on the side of quoting: `1.2.3` is quoted although it is a string.
fn looks_special(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
        "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "=",
    ];
    if WORDS.contains(&s) || s == "-" || s.starts_with("---") || s.starts_with("...") {
        return true;
    }
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), ".inf" | ".nan" | "inf" | "nan" | "infinity") {
        return true;
    }
    // 0x/0o/0b integers; then decimal integers, floats, exponents and dates, which start with a
    // digit or a dot and use only digits and `._+-eE` (`1.2.3` is quoted too, harmlessly).
    let radix = ["0x", "0X", "0o", "0O", "0b", "0B"].iter().find_map(|p| body.strip_prefix(p));
    if let Some(digits) = radix {
        return digits.bytes().all(|b| b.is_ascii_hexdigit() || b == b'_');
    }
    matches!(body.bytes().next(), Some(b'0'..=b'9' | b'.'))
        && body.bytes().all(|b| b.is_ascii_digit() || b"._+-eE".contains(&b))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value as Json, json};

    use super::yaml_scalar;

    #[test]
    fn yaml_scalar_quotes_only_what_would_be_misread() {
        assert_eq!(yaml_scalar("true"), "\"true\"");
        assert_eq!(yaml_scalar("1e3"), "\"1e3\"");
        assert_eq!(yaml_scalar(""), "\"\"");
        assert_eq!(yaml_scalar("a: b"), "\"a: b\"");
        assert_eq!(yaml_scalar("héllo ✓ 🎵"), "\"héllo ✓ 🎵\"");
        assert_eq!(yaml_scalar("q\"\\\t\n\u{7}\u{85}"), "\"q\\\"\\\\\\t\\n\\u0007\\u0085\"");
        for special in [
            "yes",
            "No",
            "ON",
            "off",
            "y",
            "null",
            "NULL",
            "~",
            "0x1F",
            "0x",
            "-1",
            "1e-3",
            "017",
            "+.inf",
            ".NaN",
            "2024-01-31",
            ".5",
            "0o17",
            "=",
            "-",
            "---",
            "...",
        ] {
            assert!(yaml_scalar(special).starts_with('"'), "{special}");
        }
        for plain in ["AgBy+/==", "v1", "sealed-secrets", "bitnami.com", "-abc", "deadbeef", "x1", "3c", "1a2b"] {
            assert_eq!(yaml_scalar(plain), plain);
        }
        let long: String = "AgBy8hCi+Ez/9w==".chars().cycle().take(700).collect();
        assert_eq!(yaml_scalar(&long), long);
        let text = format!("k: {}\n", yaml_scalar(&long));
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn yaml_scalar_reads_back_as_the_same_string() {
        let samples = [
            "true",
            "1e3",
            "",
            "a: b",
            "héllo",
            "yes",
            "0x1F",
            "1_000",
            "12:30",
            "2024-01-31T10:00:00Z",
            "~",
            "null",
            "#x",
            "x #y",
            " lead",
            "trail ",
            "- a",
            "[a]",
            "{a}",
            "'q'",
            "\"q\"",
            "\\",
            "a\nb",
            "\t",
            "\u{0}",
            "\u{7f}",
            "\u{85}",
            "\u{2028}",
            "\u{feff}x",
            "🎵",
            "=",
            "<<",
            "*a",
            "&a",
            "!t",
            "%x",
            "@x",
            "`x",
            "|",
            ">",
            "?",
            ":",
            ",",
            "---",
            "...",
            ".inf",
            "-.Inf",
            "NaN",
            "Infinity",
            "0",
            "-0",
            "+1",
            "0b11",
            "1.",
        ];
        for s in samples {
            let text = format!("k: {}\n", yaml_scalar(s));
            let back: Json = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{s:?}: {e}\n{text}"));
            assert_eq!(back, json!({ "k": s }), "{text}");
            let text = format!("{}: v\n", yaml_scalar(s));
            let back: Json = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{s:?}: {e}\n{text}"));
            assert_eq!(back, json!({ s: "v" }), "{text}");
        }
    }
}
