//! Edit a YAML stream in place, keeping comments, key order and formatting.
//!
//! gitseal rewrites SealedSecret files that people keep in Git (`--merge-into`, `reseal`). No
//! serde YAML library keeps comments, so this crate edits the *text*:
//!
//! 1. parse the stream once with an event parser and build a light tree of byte spans (where each
//!    key, value and entry sits);
//! 2. apply every [`YamlEdit`] to that tree (replace a scalar, remember keys to append), so edits
//!    compose and later edits see earlier ones;
//! 3. turn the tree into splices and copy the original text around them, front to back.
//!
//! Bytes outside the replaced scalars and the inserted lines are copied unchanged:
//! comments, blank lines, `---`/`...`, a leading BOM, CRLF line breaks and indentation survive.
//!
//! The parser is granit-parser, reached as `serde_saphyr::granit_parser`. It is the parser
//! serde-saphyr reads manifests with, so the rewriter sees exactly the keys the deserializer
//! sees; its spans carry UTF-8 byte offsets (saphyr-parser 0.3 markers carry only char
//! indexes), tag and anchor spans, and the indentation of block mapping keys.
//!
//! What it does not do: edit flow collections with content (`{a: b}`, `[a]`), walk into
//! sequences, or replace a whole mapping with a scalar. Those return a [`RewriteError`] that says
//! what to do instead.
//!
//! # Why not a lossless YAML editor from crates.io
//!
//! `differential/` (a standalone crate, not built in CI) runs the cases of this crate's property
//! test — random multi-document streams with comments, quoted keys, block scalars, tags, CRLF,
//! BOMs, sequences, null and empty documents, and batches of `Set` edits — through this crate
//! and through the two maintained lossless editors, then reads each output back with
//! serde-saphyr and compares it with the edits applied to the parsed tree (and checks that every
//! comment line survives). `cargo run --release --manifest-path yaml-rewrite/differential/Cargo.toml`
//! (`REWRITE_CASES=5000` for more), on 2026-11-30:
//!
//! | editor | agrees on 1,000 cases | on 5,000 cases |
//! |---|---|---|
//! | this crate | 1,000 | 5,000 |
//! | `yaml-edit` 0.3.6 (jelmer, rowan) | 925 | 4,602 |
//! | `nondestructive` 0.0.29 (udoprog) | 233 | 1,191 |
//!
//! Neither agrees on every case, so neither is adopted. The shapes that fail:
//!
//! - `yaml-edit`: setting a key whose plain spelling reads as another type (`true: v1`, set
//!   `"true"`) misses the existing entry and appends `'true': …`, a duplicate key that
//!   serde-saphyr rejects (most failures); setting a key in a document that is `null` or `~`, or
//!   creating a mapping under `key: ~`, silently does nothing (the output equals the input); a
//!   comment line after a multi-line plain scalar is dropped when that value is replaced.
//! - `nondestructive`: one document per file by design (a second `---` or `...` is a parse
//!   error: three quarters of the cases, and every multi-document SealedSecret file); anchors
//!   and tags read as part of the scalar; quoted keys are matched by their spelling, not their
//!   value (`'kind': x` then set `kind` appends a duplicate); a few inputs with flow collections
//!   or multi-line plain scalars inside sequences come out unparsable after an edit.

mod apply;
mod parse;
mod render;
mod scalar;
#[cfg(test)]
mod tests;
mod text;
mod tree;

pub use scalar::yaml_scalar;

use apply::{At, walk_value};
use parse::parse_stream;
use render::Render;
use text::{line_break, line_of};
use tree::Kind;

/// One change to one document of a YAML stream (documents counted from 0, empty documents count).
///
/// `path` names keys of nested block mappings from the document root, compared by value
/// (`"kind"`, `'kind'` and `kind` are the same key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlEdit {
    /// Index of the document in the stream, from 0; empty documents (`---` with nothing) count.
    pub doc: usize,
    /// Keys from the document root to the entry to change; at least one.
    pub path: Vec<String>,
    /// What to do with that entry.
    pub op: EditOp,
}

/// What a [`YamlEdit`] does to the entry its path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditOp {
    /// Set the entry to this string, written with [`yaml_scalar`]. A missing entry is appended
    /// to its mapping, and missing mappings on the way are created.
    Set(String),
}

/// Why a YAML stream could not be rewritten.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RewriteError {
    /// The text is not valid YAML.
    #[error("cannot parse the YAML at line {line}, column {column}: {message}; fix the file first")]
    Parse {
        /// Line of the error, from 1.
        line: usize,
        /// Column of the error, from 1, in characters.
        column: usize,
        /// What the parser reported.
        message: String,
    },
    /// The text breaks a line with a lone CR (classic Mac), which YAML reads as a line break
    /// but this rewriter does not.
    #[error("line {line} ends with a lone carriage return; convert the file to LF or CRLF line breaks")]
    LoneCarriageReturn {
        /// The line, from 1.
        line: usize,
    },
    /// An edit names a document the stream does not have.
    #[error(
        "document {doc} does not exist: the stream has {count} document(s), counted from 0 with empty ones included"
    )]
    NoSuchDocument {
        /// The requested document.
        doc: usize,
        /// How many documents the stream has.
        count: usize,
    },
    /// An edit has no keys, or too many to be a manifest path.
    #[error("an edit of document {doc} has a key path of {len} keys; give between 1 and {MAX_PATH} keys")]
    BadPath {
        /// The document of the edit.
        doc: usize,
        /// Length of its path.
        len: usize,
    },
    /// The path goes through a value that is not a mapping.
    #[error(
        "document {doc}, line {line}: {path} is not a mapping, so no key can be set under it; fix the file or the key path"
    )]
    NotAMapping {
        /// The document.
        doc: usize,
        /// Line of the value in the original text.
        line: usize,
        /// Keys to the value.
        path: String,
    },
    /// `Set` would replace a whole mapping or sequence with a string.
    #[error(
        "document {doc}, line {line}: {path} holds a mapping or a sequence, not a single value; edit it by hand if a value should replace it"
    )]
    NotAScalar {
        /// The document.
        doc: usize,
        /// Line of the value in the original text.
        line: usize,
        /// Keys to the value.
        path: String,
    },
    /// The path needs a change inside a flow collection with content.
    #[error(
        "document {doc}, line {line}: {path} uses flow style ({{...}}); rewrite it in block style or use --format json"
    )]
    FlowStyle {
        /// The document.
        doc: usize,
        /// Line of the collection in the original text.
        line: usize,
        /// Keys to the collection.
        path: String,
    },
    /// The key is written twice in its mapping, so it is unclear which one to edit.
    #[error("document {doc}, line {line}: key {path} appears more than once in its mapping; delete the duplicate")]
    DuplicateKey {
        /// The document.
        doc: usize,
        /// Line of the first occurrence.
        line: usize,
        /// Keys to the duplicated key.
        path: String,
    },
    /// The entry is written in a form this rewriter does not edit.
    #[error(
        "document {doc}, line {line}: {path} is written in a form gitseal cannot edit safely ({what}); edit that entry by hand"
    )]
    Unsupported {
        /// The document.
        doc: usize,
        /// Line of the entry in the original text.
        line: usize,
        /// Keys to the entry.
        path: String,
        /// The form that is not supported.
        what: &'static str,
    },
    /// A bug in this module; the input is not to blame.
    #[error("internal error while rewriting YAML ({0}); please report it with the input file")]
    Internal(&'static str),
}

/// The longest key path an edit may have (keeps recursion bounded).
const MAX_PATH: usize = 64;

/// The longest key YAML allows without the explicit `? key` form.
const MAX_KEY: usize = 1024;

type Result<T, E = RewriteError> = std::result::Result<T, E>;

/// Apply all edits to `text` and return the new text. Text outside the edited scalars is kept byte for byte.
///
/// Edits apply in order and see each other: setting `a.b` then `a.c` creates `a` once. A `Set`
/// keeps the entry where it is; new keys are appended after the last entry of their mapping,
/// at its indentation (new nested mappings indent by the document's step, 2 spaces unless the
/// document nests mappings by another amount). Line breaks of new lines follow the file (CRLF
/// if its first line ends in CRLF).
///
/// # Errors
///
/// [`RewriteError`] when the text does not parse or an edit cannot be applied safely; the text
/// is then not changed at all.
pub fn rewrite_yaml(text: &str, edits: &[YamlEdit]) -> Result<String> {
    if edits.is_empty() {
        return Ok(text.to_owned());
    }
    let bytes = text.as_bytes();
    if let Some(cr) = bytes.iter().enumerate().position(|(i, &b)| b == b'\r' && bytes.get(i + 1) != Some(&b'\n')) {
        return Err(RewriteError::LoneCarriageReturn { line: line_of(text, cr) });
    }
    let mut docs = parse_stream(text)?;
    let count = docs.len();
    for edit in edits {
        if edit.path.is_empty() || edit.path.len() > MAX_PATH {
            return Err(RewriteError::BadPath { doc: edit.doc, len: edit.path.len() });
        }
        let doc = docs.get_mut(edit.doc).ok_or(RewriteError::NoSuchDocument { doc: edit.doc, count })?;
        let at = At { text, doc: edit.doc, path: &edit.path };
        walk_value(&mut doc.root, &edit.path, &edit.op, &at, 0)?;
    }
    let mut render = Render { text, nl: line_break(text), step: 2, splices: Vec::new() };
    for doc in &docs {
        render.step = doc.step;
        render.root(&doc.root)?;
    }
    render.finish()
}

/// For each document that `serde_saphyr::from_multiple` returns, its index in the stream as
/// [`YamlEdit::doc`] counts it.
///
/// `from_multiple` skips empty and null documents (`---` alone, `~`, `!!null`); [`YamlEdit::doc`]
/// counts them, so `non_empty_document_indexes(text)?[i]` is the `doc` of the `i`-th value.
///
/// # Errors
///
/// [`RewriteError::Parse`] when the text is not valid YAML.
pub fn non_empty_document_indexes(text: &str) -> Result<Vec<usize>> {
    let docs = parse_stream(text)?;
    Ok(docs.iter().enumerate().filter(|(_, d)| !matches!(d.root.kind, Kind::Null)).map(|(i, _)| i).collect())
}
