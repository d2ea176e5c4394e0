//! `spec.template.data`: Secret entries rendered from the decrypted values.
//!
//! Bitnami runs each entry through Go's `text/template` with the map of *decrypted values* as
//! its data, so an entry never sees the output of another entry. gitseal does the same, for the
//! substitution forms `{{ .item }}` and `{{ index . "item" }}` (with Go's `{{-`/`-}}` trim
//! markers), and rejects every other action by name rather than render something different.
//!
//! Limits (a SealedSecret is hostile input: issue #9 rendered a 1.9 KB object into gigabytes):
//! - at most [`MAX_TEMPLATE_ENTRIES`] entries of at most [`MAX_TEMPLATE_BYTES`] each;
//! - the Secret's data after rendering (decrypted values plus rendered entries) fits in
//!   Kubernetes' Secret size limit, [`MAX_SECRET_BYTES`]. The size is computed before anything is
//!   allocated, so a refused template costs no memory.
//!
//! Errors say which entry and which rule, never a value.

use std::collections::BTreeMap;

use crate::{Error, Result, SecretBytes};

/// Kubernetes' limit on the sum of a Secret's data values (`core.MaxSecretSize`).
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;
/// Most `template.data` entries one SealedSecret may declare.
pub const MAX_TEMPLATE_ENTRIES: usize = 1024;
/// Longest text of one `template.data` entry.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;

/// One piece of a parsed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment<'t> {
    Text(&'t str),
    Value(&'t str),
}

/// Every `template.data` entry, parsed and checked against the limits that do not depend on
/// any value. Parsing first means a malformed template is refused before any private key work.
#[derive(Debug)]
pub struct Templates<'t> {
    entries: Vec<(&'t str, Vec<Segment<'t>>)>,
}

/// Why rendering against the values failed: depends on the values (which exist, how long
/// they are), so callers decide how much of it a remote caller may learn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// An entry names an item that is not among the decrypted values.
    MissingItem { entry: String, item: String },
    /// The Secret's data would exceed [`MAX_SECRET_BYTES`].
    TooLarge,
}

impl From<RenderError> for Error {
    fn from(e: RenderError) -> Error {
        match e {
            RenderError::MissingItem { entry, item } => Error::Template(format!(
                "template.data[{}] refers to {:?}, which is not an encryptedData item (templates see only the decrypted values, not other template entries)",
                short(&entry),
                short(&item)
            )),
            RenderError::TooLarge => Error::SecretTooLarge { limit: MAX_SECRET_BYTES },
        }
    }
}

impl<'t> Templates<'t> {
    /// Parse every entry; refuses too many entries, too long ones, and unsupported actions.
    pub fn parse(data: &'t BTreeMap<String, String>) -> Result<Templates<'t>> {
        if data.len() > MAX_TEMPLATE_ENTRIES {
            return Err(Error::Template(format!(
                "template.data has {} entries; at most {MAX_TEMPLATE_ENTRIES} are allowed",
                data.len()
            )));
        }
        let mut entries = Vec::with_capacity(data.len());
        for (key, text) in data {
            if text.len() > MAX_TEMPLATE_BYTES {
                return Err(Error::Template(format!(
                    "template.data[{}] is {} bytes long; at most {MAX_TEMPLATE_BYTES} are allowed",
                    short(key),
                    text.len()
                )));
            }
            entries.push((key.as_str(), parse_entry(key, text)?));
        }
        Ok(Templates { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Render every entry against `values` (the decrypted items only) and return the Secret's
    /// data: the values, with rendered entries added or replacing items of the same name.
    pub fn render(
        &self,
        mut values: BTreeMap<String, SecretBytes>,
    ) -> Result<BTreeMap<String, SecretBytes>, RenderError> {
        if self.entries.is_empty() {
            // Nothing rendered: the API server alone judges the decrypted data's size.
            return Ok(values);
        }
        // Sizes first, with no allocation: values not replaced by an entry, then each entry.
        let mut total: usize = values
            .iter()
            .filter(|(k, _)| !self.entries.iter().any(|(e, _)| e == k))
            .fold(0usize, |acc, (_, v)| acc.saturating_add(v.len()));
        if total > MAX_SECRET_BYTES {
            return Err(RenderError::TooLarge);
        }
        let mut sizes = Vec::with_capacity(self.entries.len());
        for (key, segments) in &self.entries {
            let mut size = 0usize;
            for s in segments {
                let n = match s {
                    Segment::Text(t) => t.len(),
                    Segment::Value(item) => values
                        .get(*item)
                        .ok_or_else(|| RenderError::MissingItem { entry: (*key).into(), item: (*item).into() })?
                        .len(),
                };
                size = size.saturating_add(n);
                if total.saturating_add(size) > MAX_SECRET_BYTES {
                    return Err(RenderError::TooLarge);
                }
            }
            total = total.saturating_add(size);
            sizes.push(size);
        }
        let mut rendered = Vec::with_capacity(self.entries.len());
        for ((key, segments), size) in self.entries.iter().zip(sizes) {
            let mut out = Vec::with_capacity(size);
            for s in segments {
                match s {
                    Segment::Text(t) => out.extend_from_slice(t.as_bytes()),
                    Segment::Value(item) => {
                        if let Some(v) = values.get(*item) {
                            out.extend_from_slice(v.expose());
                        }
                    }
                }
            }
            rendered.push(((*key).to_string(), SecretBytes::new(out)));
        }
        values.extend(rendered);
        Ok(values)
    }
}

/// Go's trim markers remove this white space (`text/template/parse`: space, tab, CR, LF).
fn is_go_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn parse_entry<'t>(key: &str, text: &'t str) -> Result<Vec<Segment<'t>>> {
    let mut segments = Vec::new();
    let mut rest = text;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut before = &rest[..start];
        if trim_next {
            before = before.trim_start_matches(is_go_space);
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| Error::Template(format!("template.data[{}]: {{{{ is never closed with }}}}", short(key))))?;
        let mut action = &after[..end];
        if let Some(a) = action.strip_prefix('-').filter(|a| a.starts_with(is_go_space)) {
            action = a;
            before = before.trim_end_matches(is_go_space);
        }
        trim_next = false;
        if let Some(a) = action.strip_suffix('-').filter(|a| a.ends_with(is_go_space)) {
            action = a;
            trim_next = true;
        }
        if !before.is_empty() {
            segments.push(Segment::Text(before));
        }
        let item = parse_action(action.trim_matches(is_go_space)).ok_or_else(|| {
            Error::Template(format!(
                "template.data[{}]: unsupported template action {{{{ {} }}}}: gitseal renders {{{{ .item }}}} and {{{{ index . \"item\" }}}}",
                short(key),
                short(action.trim())
            ))
        })?;
        segments.push(Segment::Value(item));
        rest = &after[end + 2..];
    }
    if trim_next {
        rest = rest.trim_start_matches(is_go_space);
    }
    if !rest.is_empty() {
        segments.push(Segment::Text(rest));
    }
    Ok(segments)
}

/// The item an action substitutes: `.name` (a Go identifier) or `index . "name"`.
fn parse_action(action: &str) -> Option<&str> {
    if let Some(name) = action.strip_prefix('.') {
        let mut chars = name.chars();
        let first = chars.next()?;
        let ident = (first == '_' || first.is_alphabetic()) && chars.all(|c| c == '_' || c.is_alphanumeric());
        return ident.then_some(name);
    }
    let args = action.strip_prefix("index")?;
    let args = args.strip_prefix(is_go_space)?.trim_start_matches(is_go_space);
    let args = args.strip_prefix('.')?;
    let quoted = args.strip_prefix(is_go_space)?.trim_start_matches(is_go_space);
    let (open, close) = match quoted.chars().next()? {
        '"' => ('"', '"'),
        '`' => ('`', '`'),
        _ => return None,
    };
    let name = quoted.strip_prefix(open)?.strip_suffix(close)?;
    // Escapes inside "…" would need Go's unquoting; refuse them rather than guess.
    let escaped = open == '"' && name.contains('\\');
    (!escaped && !name.contains(close)).then_some(name)
}

/// Template text or a name as quoted in an error: on one line and bounded, whatever the
/// manifest holds.
fn short(s: &str) -> String {
    const MAX: usize = 64;
    let mut out = String::new();
    for c in s.chars() {
        if out.len() >= MAX {
            out.push('…');
            break;
        }
        out.extend(c.escape_debug());
    }
    out
}

/// Render `templates` against `values` in one call (the CLI and controller go through
/// [`crate::seal::unseal`], which parses before decrypting; this is for tests and tools).
pub fn render(
    templates: &BTreeMap<String, String>,
    values: BTreeMap<String, SecretBytes>,
) -> Result<BTreeMap<String, SecretBytes>> {
    Ok(Templates::parse(templates)?.render(values)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(items: &[(&str, &[u8])]) -> BTreeMap<String, SecretBytes> {
        items.iter().map(|(k, v)| ((*k).to_string(), SecretBytes::from(*v))).collect()
    }

    fn tmpl(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
    }

    fn one(t: &str, vals: &[(&str, &[u8])]) -> Result<Vec<u8>> {
        let out = render(&tmpl(&[("out", t)]), values(vals))?;
        Ok(out["out"].expose().to_vec())
    }

    #[test]
    fn both_substitution_forms_render_the_decrypted_value() {
        let v: &[(&str, &[u8])] = &[("user", b"admin"), ("my-pass", b"s3")];
        assert_eq!(one("u={{ .user }} p={{ index . \"my-pass\" }}", v).unwrap(), b"u=admin p=s3");
        assert_eq!(one("{{.user}}{{index . `my-pass`}}", v).unwrap(), b"admins3");
        assert_eq!(one("no actions at all", v).unwrap(), b"no actions at all");
    }

    #[test]
    fn trim_markers_remove_white_space_like_go() {
        let v: &[(&str, &[u8])] = &[("a", b"A")];
        assert_eq!(one("x \n {{- .a -}} \n y", v).unwrap(), b"xAy");
        assert_eq!(one("x {{- .a }} y", v).unwrap(), b"xA y");
        // `{{-3}}` is not a trim marker in Go, and not an action gitseal supports.
        assert!(one("{{-3}}", v).is_err());
    }

    #[test]
    fn entries_see_only_decrypted_values_never_other_entries() {
        let t = tmpl(&[("a", "{{ .password }}{{ .password }}"), ("b", "{{ .a }}")]);
        let err = render(&t, values(&[("password", b"pw")])).unwrap_err().to_string();
        assert!(err.contains("template.data[b] refers to \"a\""), "{err}");
        // An entry that replaces an item still sees the item's decrypted value.
        let t = tmpl(&[("password", "<{{ .password }}>"), ("copy", "{{ .password }}")]);
        let out = render(&t, values(&[("password", b"pw")])).unwrap();
        assert_eq!((out["password"].expose(), out["copy"].expose()), (&b"<pw>"[..], &b"pw"[..]));
    }

    #[test]
    fn issue_9_template_bomb_is_refused_without_allocating_it() {
        // Ten copies of the previous entry, eight deep: 10^8 copies under the old renderer.
        let mut entries = BTreeMap::new();
        entries.insert("t0".to_string(), "{{ .password }}".repeat(10));
        for i in 1..8 {
            entries.insert(format!("t{i}"), format!("{{{{ .t{} }}}}", i - 1).repeat(10));
        }
        let err = render(&entries, values(&[("password", b"0123456789abcdef")])).unwrap_err().to_string();
        assert!(err.contains("not an encryptedData item"), "{err}");
        assert!(!err.contains("0123456789"), "{err}");
        // The same fan-out against one large decrypted value trips the size limit instead.
        let big = vec![b'x'; 200 * 1024];
        let t = tmpl(&[("t", &"{{ .password }}".repeat(10))]);
        let err = render(&t, values(&[("password", &big)])).unwrap_err();
        assert!(matches!(err, Error::SecretTooLarge { limit: MAX_SECRET_BYTES }), "{err}");
    }

    #[test]
    fn the_size_limit_counts_decrypted_values_and_rendered_entries_exactly() {
        let half = vec![b'x'; MAX_SECRET_BYTES / 2];
        // Exactly at the limit: two halves.
        let t = tmpl(&[("copy", "{{ .a }}")]);
        assert!(render(&t, values(&[("a", &half)])).is_ok());
        // One byte over.
        let t = tmpl(&[("copy", "{{ .a }}!")]);
        assert!(matches!(render(&t, values(&[("a", &half)])), Err(Error::SecretTooLarge { .. })));
        // Replacing an item frees its bytes.
        let t = tmpl(&[("a", "{{ .a }}{{ .a }}")]);
        assert!(render(&t, values(&[("a", &half)])).is_ok());
    }

    #[test]
    fn too_many_or_too_long_entries_are_refused_before_rendering() {
        let many: BTreeMap<String, String> =
            (0..=MAX_TEMPLATE_ENTRIES).map(|i| (format!("k{i}"), String::new())).collect();
        let err = Templates::parse(&many).unwrap_err().to_string();
        assert!(err.contains("at most 1024"), "{err}");
        let long = tmpl(&[("k", &"x".repeat(MAX_TEMPLATE_BYTES + 1))]);
        let err = Templates::parse(&long).unwrap_err().to_string();
        assert!(err.contains("template.data[k] is 65537 bytes long"), "{err}");
    }

    #[test]
    fn unsupported_actions_are_named_and_bounded_in_the_message() {
        let v: &[(&str, &[u8])] = &[("a", b"secret-value")];
        for bad in ["{{ .a | b64enc }}", "{{ . }}", "{{ .a.b }}", "{{ index . \"a\\n\" }}", "{{ .a", "{{/* c */}}"] {
            let err = one(bad, v).unwrap_err().to_string();
            assert!(err.starts_with("template.data[out]"), "{bad}: {err}");
            assert!(!err.contains("secret-value"), "{err}");
        }
        let err = one(&format!("{{{{ {} }}}}", "y".repeat(10_000)), v).unwrap_err().to_string();
        assert!(err.len() < 300, "{err}");
    }
}
