//! Edit a YAML stream in place, keeping comments, key order and formatting.
//!
//! gitseal rewrites SealedSecret files that people keep in Git (`--merge-into`, `reseal`). No
//! serde YAML library keeps comments, so this module edits the *text*:
//!
//! 1. parse the stream once with an event parser and build a light tree of byte spans (where each
//!    key, value and entry sits);
//! 2. apply every [`YamlEdit`] to that tree (replace a scalar, mark an entry removed, remember keys
//!    to append), so edits compose and later edits see earlier ones;
//! 3. turn the tree into splices and copy the original text around them, front to back.
//!
//! Bytes outside the replaced scalars and the inserted or removed lines are copied unchanged:
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

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::iter::Peekable;
use std::ops::Range;

use serde_saphyr::granit_parser::{Event, Options, Parser, ScalarStyle, ScanError, Span, StrInput, StructureStyle};

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
    /// Delete the entry with its nested lines and its same-line comment; a missing entry is fine.
    Remove,
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
        "document {doc}, line {line}: {path} is not a mapping, so no key can be set or removed under it; fix the file or the key path"
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
        "document {doc}, line {line}: {path} holds a mapping or a sequence, not a single value; remove it first if a value should replace it"
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

// ---------------------------------------------------------------------------------------------
// The tree of spans.

/// One document of the stream.
#[derive(Debug)]
struct Doc {
    root: Value,
    /// How much deeper nested block mappings indent than their parent (2 if none is nested).
    step: usize,
}

/// A node with where it sits in the text and what the edits did to it.
#[derive(Debug)]
struct Value {
    kind: Kind,
    /// Start of the node's own text; for a block scalar its `|`/`>` indicator; for an empty
    /// scalar the place where a value would be written.
    start: usize,
    /// End of the node's own text; for a block scalar the end of its last non-blank line.
    end: usize,
    /// Start of a tag (`!!str`) written before the node.
    tag_start: Option<usize>,
    /// The node's anchor (`&name`).
    anchor: Option<Range<usize>>,
    /// End of the node's header: after `key:` and any tag or anchor. ` {}` goes here.
    props_end: usize,
    /// End of the last token of the node and all its children.
    last_end: usize,
    /// Whether the node ends with a keep-chomped (`|+`) block scalar: blank lines that come
    /// to follow it become part of its value.
    keep_tail: bool,
    state: State,
}

#[derive(Debug)]
enum Kind {
    /// Untagged or `!!null` plain null: empty, `~`, `null`.
    Null,
    /// Any other plain or quoted scalar.
    Scalar,
    /// A `|`/`>` block scalar. `header` is (indicator end, header line end) when the indicator
    /// was found on the key's line.
    Block {
        header: Option<(usize, usize)>,
    },
    Alias,
    Map(BlockMap),
    EmptyFlowMap,
    FlowMap,
    /// Block or flow sequence.
    Seq,
}

#[derive(Debug)]
enum State {
    Keep,
    /// Replace the scalar with this string.
    Set(String),
    /// The null or `{}` value becomes a block mapping with these keys.
    Map(NewMap),
}

#[derive(Debug, Default)]
struct BlockMap {
    /// Column of the keys.
    indent: usize,
    entries: Vec<Entry>,
    /// Live entries by key (removed ones are taken out).
    index: HashMap<String, usize>,
    /// Keys written more than once.
    dups: HashSet<String>,
    /// Keys to append after the last entry.
    added: NewMap,
}

#[derive(Debug)]
struct Entry {
    /// Start of the line holding the key.
    line_start: usize,
    /// Start of the key (or its tag or anchor).
    key_start: usize,
    /// Whether only blanks precede the key on its line (the entry owns its lines).
    own_line: bool,
    /// Whether `:` follows the key on its line (not an explicit `? key`).
    simple: bool,
    /// Whether the key or value defines an anchor (`&name`), which aliases elsewhere may use.
    anchored: bool,
    value: Value,
    removed: bool,
}

/// Keys that do not exist in the text yet, in insertion order.
#[derive(Debug, Default)]
struct NewMap {
    entries: Vec<(String, Option<NewValue>)>,
    index: HashMap<String, usize>,
}

#[derive(Debug)]
enum NewValue {
    Scalar(String),
    Map(NewMap),
}

impl NewMap {
    fn get_mut(&mut self, key: &str) -> Option<&mut NewValue> {
        let i = *self.index.get(key)?;
        self.entries.get_mut(i)?.1.as_mut()
    }

    fn set(&mut self, key: &str, value: NewValue) {
        if let Some(slot) = self.get_mut(key) {
            *slot = value;
        } else {
            self.index.insert(key.to_owned(), self.entries.len());
            self.entries.push((key.to_owned(), Some(value)));
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.index.remove(key).and_then(|i| self.entries.get_mut(i)) {
            entry.1 = None;
        }
    }

    fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn live(&self) -> impl Iterator<Item = (&str, &NewValue)> {
        self.entries.iter().filter_map(|(k, v)| Some((k.as_str(), v.as_ref()?)))
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing: events to tree.

fn parse_stream(text: &str) -> Result<Vec<Doc>> {
    let mut options = Options::default();
    // Comments are not needed (spans say where everything else is), and with them on a run of
    // more than `max_buffered_comment_events` comment lines is an error.
    options.emit_comments = false;
    // Anchor events give the `&name` spans, so a replaced value keeps its anchor.
    options.emit_anchor_events = true;
    let mut b =
        Builder { text, events: Parser::new_from_str_with_options(text, options).peekable(), step: None, anchors: 0 };
    let mut docs = Vec::new();
    loop {
        let (event, _) = b.next()?;
        match event {
            Event::StreamEnd => return Ok(docs),
            Event::DocumentStart(..) => {
                b.step = None;
                let root = b.document()?;
                while !matches!(b.next()?.0, Event::DocumentEnd) {}
                docs.push(Doc { root, step: b.step.unwrap_or(2) });
            }
            _ => {}
        }
    }
}

/// A block collection whose end has not been read yet.
enum Open {
    Map {
        node: Value,
        map: Box<BlockMap>,
        /// The key whose value comes next.
        key: Option<Key>,
        /// Anchors read before the current entry.
        anchors: usize,
        indent: usize,
    },
    Seq {
        node: Value,
        indent: usize,
    },
}

/// A mapping key waiting for its value.
struct Key {
    /// Its value, `None` for a complex key (`? [a, b]`), which no path can name.
    text: Option<String>,
    /// Start of the key with its tag and anchor.
    start: usize,
    end: usize,
    /// Position after the `:` on the key's line (`None` for an explicit `? key`).
    after_colon: Option<usize>,
}

struct Builder<'a> {
    text: &'a str,
    events: Peekable<Parser<'a, StrInput<'a>>>,
    /// First indentation step seen in the current document.
    step: Option<usize>,
    /// Anchors read so far.
    anchors: usize,
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span)> {
        match self.events.next() {
            Some(Ok(pair)) => Ok(pair),
            Some(Err(e)) => Err(parse_error(&e)),
            None => Err(RewriteError::Internal("the parser stopped before the end of the stream")),
        }
    }

    /// The anchor of the node just read, if any.
    fn anchor(&mut self) -> Result<Option<Range<usize>>> {
        if matches!(self.events.peek(), Some(Ok((Event::Anchor(..), _)))) {
            let (_, span) = self.next()?;
            self.anchors += 1;
            return Ok(Some(bytes(&span)?));
        }
        Ok(None)
    }

    /// Read the root node of a document whose `DocumentStart` was just read.
    ///
    /// Iterative, with the open block collections on a heap stack: nesting is bounded only by
    /// the parser's limit, and a deep document must not overflow a small thread stack.
    fn document(&mut self) -> Result<Value> {
        let mut open: Vec<Open> = Vec::new();
        loop {
            let (event, span) = self.next()?;
            // The value of a block mapping entry learns where its key's `:` is.
            let (header, want_key) = match open.last() {
                Some(Open::Map { key: Some(key), .. }) => (Some(key.after_colon.unwrap_or(key.end)), false),
                Some(Open::Map { key: None, .. }) => (None, true),
                _ => (None, false),
            };
            let mut indent = span.indent.unwrap_or_else(|| span.start.col());
            let (node, key_text) = match event {
                Event::MappingStart(StructureStyle::Block, ..) => {
                    let node = self.props(&span, header)?;
                    let anchors = self.anchors;
                    open.push(Open::Map { node, map: Box::default(), key: None, anchors, indent });
                    continue;
                }
                Event::SequenceStart(StructureStyle::Block, ..) => {
                    let node = self.props(&span, header)?;
                    open.push(Open::Seq { node, indent });
                    continue;
                }
                Event::MappingEnd | Event::SequenceEnd => match open.pop() {
                    Some(Open::Map { mut node, map, indent: start_indent, .. }) => {
                        node.last_end = map.entries.last().map_or(node.start, |e| e.value.last_end);
                        node.keep_tail = map.entries.last().is_some_and(|e| e.value.keep_tail);
                        node.end = node.last_end;
                        node.kind = Kind::Map(*map);
                        indent = start_indent;
                        (node, None)
                    }
                    Some(Open::Seq { mut node, indent: start_indent }) => {
                        node.end = node.last_end;
                        node.kind = Kind::Seq;
                        indent = start_indent;
                        (node, None)
                    }
                    None => return Err(RewriteError::Internal("a collection ended that never started")),
                },
                event => self.leaf(event, &span, header, want_key)?,
            };
            if let Some(root) = self.deliver(&mut open, node, key_text, indent)? {
                return Ok(root);
            }
        }
    }

    /// A node with its tag, anchor and header end; kind and extent are filled in by the caller.
    /// `header` is the position after `key:` when the node is the value of a mapping entry.
    fn props(&mut self, span: &Span, header: Option<usize>) -> Result<Value> {
        let r = bytes(span)?;
        let tag_start = span.tag_start().and_then(|m| m.byte_offset());
        let tag_end = match span.tag_span().and_then(|s| s.byte_range()) {
            Some(t) => Some(t.end),
            None => tag_start.map(|t| token_end(self.text, t)),
        };
        let anchor = self.anchor()?;
        let props_end = [header, tag_end, anchor.as_ref().map(|a| a.end)].into_iter().flatten().max();
        Ok(Value {
            kind: Kind::Scalar,
            start: r.start,
            end: r.end,
            tag_start,
            anchor,
            props_end: props_end.unwrap_or(r.start),
            last_end: r.end,
            keep_tail: false,
            state: State::Keep,
        })
    }

    /// Read a scalar, alias or flow collection; with `want_text`, also a scalar's value.
    fn leaf(
        &mut self,
        event: Event<'a>,
        span: &Span,
        header: Option<usize>,
        want_text: bool,
    ) -> Result<(Value, Option<String>)> {
        let r = bytes(span)?;
        let mut v = self.props(span, header)?;
        // Where a header ends if there is one (else the block scalar indicator is not looked for).
        let has_props = header.is_some() || v.tag_start.is_some() || v.anchor.is_some();
        match event {
            Event::Scalar(value, ScalarStyle::Literal | ScalarStyle::Folded, ..) => {
                // The span starts at the first content line (not at `|`) and runs to the next
                // token, over trailing blank lines and the next line's indentation.
                let content_end = trim_back(self.text, r.end);
                let found = if has_props { block_header(self.text, v.props_end) } else { None };
                if let Some((indicator, indicator_end, header_end)) = found {
                    v.start = indicator;
                    v.end = content_end.max(header_end);
                    v.kind = Kind::Block { header: Some((indicator_end, header_end)) };
                    v.keep_tail = self.text.get(indicator..indicator_end).is_some_and(|h| h.contains('+'));
                } else {
                    // Header not found (sequence item, document root): assume `|+`, which at
                    // worst drops a blank line after a removed entry.
                    v.end = content_end;
                    v.kind = Kind::Block { header: None };
                    v.keep_tail = true;
                }
                // The entry extends over the trailing blank lines: with `|+` they are part of the
                // value, so new keys go after them.
                v.last_end = block_extent_end(self.text, r.end).max(v.end);
                Ok((v, want_text.then(|| value.into_owned())))
            }
            Event::Scalar(value, style, _, tag) => {
                if r.is_empty() {
                    v.start = v.props_end;
                    v.end = v.props_end;
                }
                let null_tag = tag.as_ref().is_none_or(|t| t.core_suffix() == Some("null"));
                let null_text = matches!(value.as_ref(), "" | "~" | "null" | "Null" | "NULL");
                if matches!(style, ScalarStyle::Plain) && null_tag && null_text {
                    v.kind = Kind::Null;
                }
                v.last_end = v.end;
                Ok((v, want_text.then(|| value.into_owned())))
            }
            Event::Alias(_) => {
                v.kind = Kind::Alias;
                Ok((v, None))
            }
            Event::SequenceStart(StructureStyle::Flow, ..) | Event::MappingStart(StructureStyle::Flow, ..) => {
                let is_map = matches!(event, Event::MappingStart(..));
                let (empty, end) = self.skip_flow()?;
                v.end = end;
                v.last_end = end;
                v.kind = match (is_map, empty) {
                    (true, true) => Kind::EmptyFlowMap,
                    (true, false) => Kind::FlowMap,
                    (false, _) => Kind::Seq,
                };
                Ok((v, None))
            }
            _ => Err(RewriteError::Internal("unexpected parser event where a node should start")),
        }
    }

    /// Hand a finished node to the collection it belongs to: an item of a sequence, a key of a
    /// mapping (`key_text` is `None` for a complex key), or the value of the pending key. Returns
    /// the node if it is the document root.
    fn deliver(
        &mut self,
        open: &mut [Open],
        node: Value,
        key_text: Option<String>,
        indent: usize,
    ) -> Result<Option<Value>> {
        let text = self.text;
        match open.last_mut() {
            None => Ok(Some(node)),
            Some(Open::Seq { node: seq, .. }) => {
                seq.last_end = node.last_end;
                seq.keep_tail = node.keep_tail;
                Ok(None)
            }
            Some(Open::Map { map, key: pending @ None, .. }) => {
                if map.entries.is_empty() {
                    map.indent = indent;
                }
                let start = [Some(node.start), node.tag_start, node.anchor.as_ref().map(|a| a.start)]
                    .into_iter()
                    .flatten()
                    .min();
                let end = node.last_end;
                *pending = Some(Key {
                    text: key_text,
                    start: start.unwrap_or(node.start),
                    end,
                    after_colon: colon_after(text, end),
                });
                Ok(None)
            }
            Some(Open::Map { map, key: pending @ Some(_), anchors, .. }) => {
                let Some(key) = pending.take() else { return Err(RewriteError::Internal("pending key")) };
                if let Kind::Map(child) = &node.kind
                    && self.step.is_none()
                    && child.indent > map.indent
                {
                    self.step = Some(child.indent - map.indent);
                }
                let mut line_start = line_start(text, key.start);
                if text.get(line_start..key.start).is_some_and(|p| p.starts_with('\u{feff}')) {
                    line_start += '\u{feff}'.len_utf8();
                }
                let own_line = text.get(line_start..key.start).is_some_and(|p| p.bytes().all(is_blank));
                if let Some(k) = key.text {
                    if map.index.contains_key(&k) {
                        map.dups.insert(k);
                    } else {
                        map.index.insert(k, map.entries.len());
                    }
                }
                map.entries.push(Entry {
                    line_start,
                    key_start: key.start,
                    own_line,
                    simple: key.after_colon.is_some(),
                    anchored: self.anchors > *anchors,
                    value: node,
                    removed: false,
                });
                *anchors = self.anchors;
                Ok(None)
            }
        }
    }

    /// Skip a flow collection whose start was just read; return whether it was empty and the
    /// end of its closing bracket.
    fn skip_flow(&mut self) -> Result<(bool, usize)> {
        let mut depth = 1usize;
        let mut empty = true;
        loop {
            let (event, span) = self.next()?;
            match event {
                Event::Anchor(..) => self.anchors += 1,
                Event::SequenceStart(..) | Event::MappingStart(..) => depth += 1,
                Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth == 0 {
                return Ok((empty, bytes(&span)?.end));
            }
            empty = false;
        }
    }
}

fn parse_error(e: &ScanError) -> RewriteError {
    let mark = e.marker();
    RewriteError::Parse { line: mark.line(), column: mark.col().saturating_add(1), message: e.info() }
}

fn bytes(span: &Span) -> Result<Range<usize>> {
    span.byte_range().ok_or(RewriteError::Internal("the parser gave a span without byte offsets"))
}

// ---------------------------------------------------------------------------------------------
// Text helpers. All scan bytes for ASCII delimiters, which never occur inside a multi-byte
// UTF-8 sequence, so every position they return is a char boundary.

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Start of the line holding `pos`.
fn line_start(text: &str, pos: usize) -> usize {
    text.as_bytes().get(..pos).and_then(|t| t.iter().rposition(|&b| b == b'\n')).map_or(0, |i| i + 1)
}

/// Position after the line break of the line holding `pos` (or the end of the text).
fn line_end_after(text: &str, pos: usize) -> usize {
    let rest = text.as_bytes().get(pos..).unwrap_or_default();
    rest.iter().position(|&b| b == b'\n').map_or(text.len(), |i| pos + i + 1)
}

/// End of the content of the line holding `pos`, before its `\n` or `\r\n`.
fn line_content_end(text: &str, pos: usize) -> usize {
    let end = line_end_after(text, pos);
    let bytes = text.as_bytes();
    let mut e = end;
    if e > pos && bytes.get(e - 1) == Some(&b'\n') {
        e -= 1;
        if e > pos && bytes.get(e - 1) == Some(&b'\r') {
            e -= 1;
        }
    }
    e
}

/// Move back from `pos` over blanks and line breaks.
fn trim_back(text: &str, pos: usize) -> usize {
    let bytes = text.as_bytes();
    let mut p = pos.min(bytes.len());
    while p > 0 && bytes.get(p - 1).is_some_and(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')) {
        p -= 1;
    }
    p
}

/// A position on the last line of a block scalar whose span ends at `span_end`, counting its
/// trailing blank lines: back over the next line's indentation, then onto the last line break.
fn block_extent_end(text: &str, span_end: usize) -> usize {
    let bytes = text.as_bytes();
    let mut p = span_end.min(bytes.len());
    while p > 0 && bytes.get(p - 1).copied().is_some_and(is_blank) {
        p -= 1;
    }
    if p > 0 && bytes.get(p - 1) == Some(&b'\n') {
        p -= 1;
    }
    p
}

/// End of the lines after a removed entry (from `pos`, a line start) that go with it: comment
/// lines indented deeper than its key at column `indent` (left alone, they could become content
/// of a block scalar before the entry), the blank lines between them, and with `blanks` the
/// blank lines after them too.
fn owned_lines_end(text: &str, mut pos: usize, indent: usize, blanks: bool) -> usize {
    let mut end = pos;
    while let Some(line) = text.get(pos..line_end_after(text, pos)).filter(|l| !l.is_empty()) {
        let body = line.trim_start_matches([' ', '\t']);
        let column = line.len() - body.len();
        let blank = body.trim_end_matches(['\r', '\n']).is_empty();
        let deeper_comment = body.starts_with('#') && column > indent;
        if !blank && !deeper_comment {
            break;
        }
        pos += line.len();
        if blanks || !blank {
            end = pos;
        }
    }
    end
}

/// End of the token (tag) starting at `pos`: the next blank or line break.
fn token_end(text: &str, pos: usize) -> usize {
    let rest = text.as_bytes().get(pos..).unwrap_or_default();
    rest.iter().position(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')).map_or(text.len(), |i| pos + i)
}

/// Position after the `:` that follows a key ending at `key_end` on the same line.
fn colon_after(text: &str, key_end: usize) -> Option<usize> {
    let rest = text.as_bytes().get(key_end..)?;
    let i = rest.iter().position(|&b| !is_blank(b))?;
    (rest.get(i) == Some(&b':')).then_some(key_end + i + 1)
}

/// Find a block scalar header after `from`: (indicator start, indicator end, line content end).
fn block_header(text: &str, from: usize) -> Option<(usize, usize, usize)> {
    let bytes = text.as_bytes();
    let rest = bytes.get(from..)?;
    let start = from + rest.iter().position(|&b| !is_blank(b))?;
    if !matches!(bytes.get(start), Some(b'|' | b'>')) {
        return None;
    }
    let rest = bytes.get(start + 1..)?;
    let len = rest.iter().position(|&b| !matches!(b, b'+' | b'-' | b'0'..=b'9')).unwrap_or(rest.len());
    let end = start + 1 + len;
    Some((start, end, line_content_end(text, end)))
}

/// The line break the file uses: CRLF if its first line ends with one.
fn line_break(text: &str) -> &'static str {
    match text.find('\n') {
        Some(i) if i > 0 && text.as_bytes().get(i - 1) == Some(&b'\r') => "\r\n",
        _ => "\n",
    }
}

fn line_of(text: &str, pos: usize) -> usize {
    text.as_bytes().get(..pos).map_or(0, |t| t.iter().filter(|&&b| b == b'\n').count()) + 1
}

// ---------------------------------------------------------------------------------------------
// Applying edits to the tree.

/// Where an edit is, for error messages.
struct At<'e> {
    text: &'e str,
    doc: usize,
    path: &'e [String],
}

impl At<'_> {
    /// `path[..depth]` for messages.
    fn path(&self, depth: usize) -> String {
        let keys = self.path.get(..depth).unwrap_or(self.path);
        if keys.is_empty() {
            return "the document root".to_owned();
        }
        let shown: Vec<String> = keys
            .iter()
            .map(|k| {
                let safe = !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_/".contains(&b));
                if safe { k.clone() } else { yaml_scalar(k) }
            })
            .collect();
        format!("`{}`", shown.join("."))
    }

    fn not_a_mapping(&self, depth: usize, pos: usize) -> RewriteError {
        RewriteError::NotAMapping { doc: self.doc, line: line_of(self.text, pos), path: self.path(depth) }
    }

    fn not_a_scalar(&self, depth: usize, pos: usize) -> RewriteError {
        RewriteError::NotAScalar { doc: self.doc, line: line_of(self.text, pos), path: self.path(depth) }
    }

    fn unsupported(&self, depth: usize, pos: usize, what: &'static str) -> RewriteError {
        RewriteError::Unsupported { doc: self.doc, line: line_of(self.text, pos), path: self.path(depth), what }
    }
}

/// Apply `op` at `keys` below `v`, the value at `path[..depth]`.
fn walk_value(v: &mut Value, keys: &[String], op: &EditOp, at: &At<'_>, depth: usize) -> Result<()> {
    match &mut v.state {
        State::Map(new) => return walk_new(new, keys, op, at, depth, v.start),
        State::Set(_) => return Err(at.not_a_mapping(depth, v.start)),
        State::Keep => {}
    }
    match &mut v.kind {
        Kind::Map(map) => walk_block(map, keys, op, at, depth),
        Kind::Null | Kind::EmptyFlowMap => match op {
            EditOp::Remove => Ok(()),
            EditOp::Set(_) => {
                let mut new = NewMap::default();
                walk_new(&mut new, keys, op, at, depth, v.start)?;
                v.state = State::Map(new);
                Ok(())
            }
        },
        Kind::FlowMap => {
            Err(RewriteError::FlowStyle { doc: at.doc, line: line_of(at.text, v.start), path: at.path(depth) })
        }
        Kind::Scalar | Kind::Block { .. } | Kind::Alias | Kind::Seq => Err(at.not_a_mapping(depth, v.start)),
    }
}

fn walk_block(map: &mut BlockMap, keys: &[String], op: &EditOp, at: &At<'_>, depth: usize) -> Result<()> {
    let Some((key, rest)) = keys.split_first() else {
        return Err(RewriteError::Internal("empty key path"));
    };
    if map.dups.contains(key) {
        let pos = map.index.get(key).and_then(|&i| map.entries.get(i)).map_or(0, |e| e.key_start);
        return Err(RewriteError::DuplicateKey { doc: at.doc, line: line_of(at.text, pos), path: at.path(depth + 1) });
    }
    let Some(&i) = map.index.get(key) else {
        let pos = map.entries.first().map_or(0, |e| e.key_start);
        return walk_new(&mut map.added, keys, op, at, depth, pos);
    };
    let entry = map.entries.get_mut(i).ok_or(RewriteError::Internal("index out of step with entries"))?;
    if !entry.simple {
        return Err(at.unsupported(depth + 1, entry.key_start, "an explicit `? key`"));
    }
    if !rest.is_empty() {
        return walk_value(&mut entry.value, rest, op, at, depth + 1);
    }
    match op {
        EditOp::Set(s) => set_value(&mut entry.value, s, at, depth + 1),
        EditOp::Remove => {
            if entry.anchored {
                return Err(at.unsupported(depth + 1, entry.key_start, "it defines an anchor that aliases may use"));
            }
            if !entry.own_line {
                return Err(at.unsupported(
                    depth + 1,
                    entry.key_start,
                    "the key shares its line with `-`, `---` or `?`",
                ));
            }
            entry.removed = true;
            map.index.remove(key);
            Ok(())
        }
    }
}

fn set_value(v: &mut Value, s: &str, at: &At<'_>, depth: usize) -> Result<()> {
    if matches!(v.state, State::Map(_)) {
        return Err(at.not_a_scalar(depth, v.start));
    }
    match v.kind {
        Kind::Null | Kind::Scalar | Kind::Alias | Kind::Block { header: Some(_) } => {
            v.state = State::Set(s.to_owned());
            Ok(())
        }
        Kind::Block { header: None } => {
            Err(at.unsupported(depth, v.start, "a block scalar whose `|` or `>` is not on the key's line"))
        }
        Kind::Map(_) | Kind::EmptyFlowMap | Kind::FlowMap | Kind::Seq => Err(at.not_a_scalar(depth, v.start)),
    }
}

/// Apply `op` at `keys` inside keys that do not exist in the text yet; `pos` is the nearest
/// existing text, for error messages.
fn walk_new(new: &mut NewMap, keys: &[String], op: &EditOp, at: &At<'_>, depth: usize, pos: usize) -> Result<()> {
    let Some((key, rest)) = keys.split_first() else {
        return Err(RewriteError::Internal("empty key path"));
    };
    if matches!(op, EditOp::Set(_)) && yaml_scalar(key).len() > MAX_KEY {
        return Err(at.unsupported(depth + 1, pos, "a new key longer than 1024 characters"));
    }
    match (new.get_mut(key), rest.is_empty(), op) {
        (Some(NewValue::Map(_)), true, EditOp::Set(_)) => Err(at.not_a_scalar(depth + 1, pos)),
        (_, true, EditOp::Set(s)) => {
            new.set(key, NewValue::Scalar(s.clone()));
            Ok(())
        }
        (_, true, EditOp::Remove) | (None, false, EditOp::Remove) => {
            new.remove(key);
            Ok(())
        }
        (Some(NewValue::Map(inner)), false, _) => walk_new(inner, rest, op, at, depth + 1, pos),
        (Some(NewValue::Scalar(_)), false, _) => Err(at.not_a_mapping(depth + 1, pos)),
        (None, false, EditOp::Set(_)) => {
            let mut inner = NewMap::default();
            walk_new(&mut inner, rest, op, at, depth + 1, pos)?;
            new.set(key, NewValue::Map(inner));
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering the tree as splices of the original text.

/// Replace `text[start..end]` with `with`. `lines` marks whole lines inserted at a line start:
/// they get a line break first if the text before them does not end with one (end of file).
#[derive(Debug)]
struct Splice {
    start: usize,
    end: usize,
    with: String,
    lines: bool,
}

/// How the text of a node, as rewritten, ends.
#[derive(Debug, Clone, Copy)]
struct Tail {
    /// It ends with a keep-chomped block scalar.
    keep: bool,
    /// Where the text after it starts (after its last line break).
    end: usize,
}

struct Render<'t> {
    text: &'t str,
    nl: &'static str,
    step: usize,
    splices: Vec<Splice>,
}

impl Render<'_> {
    fn push(&mut self, start: usize, end: usize, with: String, lines: bool) {
        self.splices.push(Splice { start, end, with, lines });
    }

    fn root(&mut self, root: &Value) -> Result<()> {
        match &root.state {
            State::Keep => {
                if let Kind::Map(map) = &root.kind {
                    self.blocks(map)?;
                }
                Ok(())
            }
            State::Map(new) => {
                self.convert(root, new, 0);
                Ok(())
            }
            State::Set(_) => Err(RewriteError::Internal("a document root was set to a scalar")),
        }
    }

    /// Splices for a document's block mapping and all mappings nested in it.
    ///
    /// Depth first with a heap stack (deep documents must not overflow a small thread stack).
    /// A mapping's children come before its own insertion, so when both insert at the same place
    /// (its last value is itself a mapping) the deeper keys come first.
    fn blocks(&mut self, root: &BlockMap) -> Result<()> {
        struct Frame<'m> {
            map: &'m BlockMap,
            /// The mapping's node, `None` for the document root.
            owner: Option<&'m Value>,
            next: usize,
            /// How the text written so far at this level ends.
            tail: Tail,
        }
        let start = Tail { keep: false, end: usize::MAX };
        let mut stack = vec![Frame { map: root, owner: None, next: 0, tail: start }];
        let mut finished: Option<Tail> = None;
        while let Some(frame) = stack.last_mut() {
            if let Some(tail) = finished.take() {
                frame.tail = tail;
            }
            let (map, indent) = (frame.map, frame.map.indent);
            let Some(entry) = map.entries.get(frame.next) else {
                let tail = self.close_block(map, frame.owner, frame.tail);
                stack.pop();
                finished = Some(tail);
                continue;
            };
            frame.next += 1;
            let value = &entry.value;
            if entry.removed {
                // The blank lines after this entry would join a `|+` scalar right before it.
                let joins_keep = frame.tail.keep && frame.tail.end == entry.line_start;
                let end = line_end_after(self.text, value.last_end);
                let end = owned_lines_end(self.text, end, indent, joins_keep);
                self.push(entry.line_start, end, String::new(), false);
                frame.tail = Tail { keep: joins_keep, end };
                continue;
            }
            let plain = Tail { keep: false, end: line_end_after(self.text, value.last_end) };
            frame.tail = match (&value.state, &value.kind) {
                (State::Keep, Kind::Map(child)) => {
                    stack.push(Frame { map: child, owner: Some(value), next: 0, tail: start });
                    continue;
                }
                (State::Keep, _) => Tail { keep: value.keep_tail, ..plain },
                (State::Set(s), _) => {
                    self.replace(value, s)?;
                    plain
                }
                (State::Map(new), _) => {
                    self.convert(value, new, indent + self.step);
                    plain
                }
            };
        }
        Ok(())
    }

    /// After a mapping's entries: append its new keys, or write `{}` if none is left.
    fn close_block(&mut self, map: &BlockMap, owner: Option<&Value>, mut tail: Tail) -> Tail {
        if !map.added.is_empty() {
            let mut lines = String::new();
            self.new_lines(&mut lines, &map.added, map.indent);
            self.push(tail.end, tail.end, lines, true);
            tail.keep = false;
        } else if map.entries.iter().all(|e| e.removed) {
            match (owner, map.entries.first()) {
                (Some(v), _) => self.push(v.props_end, v.props_end, " {}".to_owned(), false),
                (None, Some(first)) => self.push(first.line_start, first.line_start, format!("{{}}{}", self.nl), true),
                (None, None) => {}
            }
            tail.keep = false;
        }
        tail
    }

    /// Replace a scalar (or alias) with `s`, keeping an anchor and a block scalar's header comment.
    fn replace(&mut self, v: &Value, s: &str) -> Result<()> {
        let start = v.tag_start.map_or(v.start, |t| t.min(v.start));
        let mut with = String::new();
        if start > 0 && !self.text.as_bytes().get(start - 1).copied().is_some_and(is_blank) {
            with.push(' ');
        }
        if let Some(anchor) = v.anchor.as_ref().filter(|a| a.start >= start) {
            with.push_str(self.text.get(anchor.clone()).ok_or(RewriteError::Internal("anchor span"))?);
            with.push(' ');
        }
        with.push_str(&yaml_scalar(s));
        if let Kind::Block { header: Some((indicator_end, header_end)) } = v.kind {
            with.push_str(self.text.get(indicator_end..header_end).ok_or(RewriteError::Internal("block header span"))?);
        }
        self.push(start, v.end, with, false);
        Ok(())
    }

    /// Turn a null or `{}` value into a block mapping holding `new`, indented at `indent`.
    fn convert(&mut self, v: &Value, new: &NewMap, indent: usize) {
        let start = v.tag_start.map_or(v.start, |t| t.min(v.start));
        let mut with = String::new();
        if let Some(anchor) = v.anchor.as_ref().filter(|a| a.start >= start) {
            with.push(' ');
            with.push_str(self.text.get(anchor.clone()).unwrap_or_default());
        }
        // Delete the old value and the blanks before it: `key: ~  # note` becomes `key:  # note`.
        let mut del = start;
        if start < v.end {
            while del > 0 && self.text.as_bytes().get(del - 1).copied().is_some_and(is_blank) {
                del -= 1;
            }
        }
        if new.is_empty() {
            with.push_str(" {}");
            self.push(del, v.end, with, false);
            return;
        }
        let mut lines = String::new();
        self.new_lines(&mut lines, new, indent);
        let at = line_end_after(self.text, v.last_end);
        // A document that is only `{}` or `~`: replace its line.
        let line = line_start(self.text, del);
        let line = line + self.text.get(line..).map_or(0, |l| l.len() - l.trim_start_matches('\u{feff}').len());
        let alone = with.is_empty()
            && del < v.end
            && self.text.get(line..del).is_some_and(|p| p.bytes().all(is_blank))
            && self.text.get(v.end..at).is_some_and(|r| r.trim().is_empty());
        if alone {
            self.push(line, at, lines, true);
            return;
        }
        if del < v.end || !with.is_empty() {
            self.push(del, v.end, with, false);
        }
        self.push(at, at, lines, true);
    }

    /// Write `new` as block mapping lines at column `indent`.
    fn new_lines(&self, out: &mut String, new: &NewMap, indent: usize) {
        for (key, value) in new.live() {
            out.extend(std::iter::repeat_n(' ', indent));
            out.push_str(&yaml_scalar(key));
            out.push(':');
            match value {
                NewValue::Scalar(s) => {
                    out.push(' ');
                    out.push_str(&yaml_scalar(s));
                    out.push_str(self.nl);
                }
                NewValue::Map(inner) if inner.is_empty() => {
                    out.push_str(" {}");
                    out.push_str(self.nl);
                }
                NewValue::Map(inner) => {
                    out.push_str(self.nl);
                    self.new_lines(out, inner, indent + self.step);
                }
            }
        }
    }

    /// Copy the text around the splices.
    fn finish(mut self) -> Result<String> {
        // Stable: splices at the same place keep the order they were made in.
        self.splices.sort_by_key(|s| (s.start, s.end));
        let text = self.text;
        let extra: usize = self.splices.iter().map(|s| s.with.len()).sum();
        let mut out = String::with_capacity(text.len() + extra);
        let mut pos = 0;
        for s in &self.splices {
            let before = text.get(pos..s.start).ok_or(RewriteError::Internal("overlapping or misplaced edits"))?;
            out.push_str(before);
            let line_start = out.is_empty() || out.ends_with('\n') || out == "\u{feff}";
            if s.lines && !line_start && s.start == text.len() {
                // Inserting after a last line without a line break: add one before, and keep
                // the file without a final line break.
                out.push_str(self.nl);
                out.push_str(s.with.strip_suffix(self.nl).unwrap_or(&s.with));
            } else {
                out.push_str(&s.with);
            }
            pos = s.end;
        }
        out.push_str(text.get(pos..).ok_or(RewriteError::Internal("edit past the end of the text"))?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value as Json, json};

    fn keys(path: &str) -> Vec<String> {
        path.split('.').map(str::to_owned).collect()
    }

    fn set(doc: usize, path: &str, value: &str) -> YamlEdit {
        YamlEdit { doc, path: keys(path), op: EditOp::Set(value.to_owned()) }
    }

    fn remove(doc: usize, path: &str) -> YamlEdit {
        YamlEdit { doc, path: keys(path), op: EditOp::Remove }
    }

    fn rewrite(text: &str, edits: &[YamlEdit]) -> String {
        match rewrite_yaml(text, edits) {
            Ok(out) => out,
            Err(e) => panic!("rewrite failed: {e}\n--- input:\n{text}"),
        }
    }

    fn parse_all(text: &str) -> Vec<Json> {
        serde_saphyr::from_multiple::<Json>(text).unwrap_or_else(|e| panic!("{e}\n--- text:\n{text}"))
    }

    /// Every document of the stream, empty ones as null (from_multiple leaves them out).
    fn parse_stream_values(text: &str) -> Vec<Json> {
        let values = parse_all(text);
        let indexes = non_empty_document_indexes(text).unwrap();
        assert_eq!(values.len(), indexes.len(), "{text:?}");
        let count = rewrite_yaml(text, &[set(usize::MAX, "a", "b")]).err().and_then(|e| match e {
            RewriteError::NoSuchDocument { count, .. } => Some(count),
            _ => None,
        });
        let mut all = vec![Json::Null; count.unwrap()];
        for (value, i) in values.into_iter().zip(indexes) {
            all[i] = value;
        }
        all
    }

    #[test]
    fn replacing_a_value_keeps_comments_and_other_keys_byte_identical() {
        let text = "# SealedSecret for the app\n\
                    apiVersion: bitnami.com/v1alpha1   # pinned\n\
                    kind: SealedSecret\n\
                    metadata:\n  name: app  # the name ü\n  namespace: prod\n\
                    spec:\n  encryptedData:\n    password: AgBy8hCi/old==   # rotated monthly\n    user: AgCx\n\
                    \n# trailing comment\n";
        let out = rewrite(text, &[set(0, "spec.encryptedData.password", "AgNEW+/=")]);
        assert_eq!(out, text.replace("AgBy8hCi/old==", "AgNEW+/="));
    }

    #[test]
    fn no_edits_return_the_text_unchanged() {
        let text = "a: [unparsed\n";
        assert_eq!(rewrite_yaml(text, &[]).unwrap(), text);
    }

    #[test]
    fn inserting_into_encrypted_data_at_two_space_indentation() {
        let text = "spec:\n  encryptedData:\n    a: AAA\n  template:\n    type: Opaque\n";
        let out = rewrite(text, &[set(0, "spec.encryptedData.b", "BBB")]);
        assert_eq!(out, "spec:\n  encryptedData:\n    a: AAA\n    b: BBB\n  template:\n    type: Opaque\n");
    }

    #[test]
    fn inserting_into_encrypted_data_at_four_space_indentation() {
        let text = "spec:\n    encryptedData:\n        a: AAA # first\n    # template follows\n    template:\n        type: Opaque\n";
        let out =
            rewrite(text, &[set(0, "spec.encryptedData.b", "BBB"), set(0, "spec.template.metadata.labels.app", "web")]);
        assert_eq!(
            out,
            "spec:\n    encryptedData:\n        a: AAA # first\n        b: BBB\n    # template follows\n    template:\n        type: Opaque\n        metadata:\n            labels:\n                app: web\n"
        );
    }

    #[test]
    fn new_keys_go_after_nested_children_and_multi_line_values() {
        let text = "a:\n  b:\n    c: 1\n  d: |\n    x\n    y\n\n# about e\ne: 2\n";
        let out = rewrite(text, &[set(0, "a.new", "v"), set(0, "a.b.new", "w")]);
        assert_eq!(out, "a:\n  b:\n    c: 1\n    new: w\n  d: |\n    x\n    y\n\n  new: v\n# about e\ne: 2\n");
    }

    #[test]
    fn creating_metadata_annotations_when_missing() {
        let text = "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: app\nspec:\n  encryptedData: {}\n";
        let edits = [
            YamlEdit {
                doc: 0,
                path: vec!["metadata".into(), "annotations".into(), "sealedsecrets.bitnami.com/cluster-wide".into()],
                op: EditOp::Set("true".into()),
            },
            set(0, "spec.encryptedData.password", "AgBy"),
        ];
        let out = rewrite(text, &edits);
        assert_eq!(
            out,
            "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: app\n  annotations:\n    sealedsecrets.bitnami.com/cluster-wide: \"true\"\nspec:\n  encryptedData:\n    password: AgBy\n"
        );
    }

    #[test]
    fn empty_and_null_mappings_become_block_mappings() {
        let text = "metadata:\n  annotations:\n  labels: ~ # none yet\n  finalizers: null\nspec: !!null\n";
        let out = rewrite(
            text,
            &[set(0, "metadata.annotations.a", "1x"), set(0, "metadata.labels.l", "v"), set(0, "spec.x.k", "z")],
        );
        assert_eq!(
            out,
            "metadata:\n  annotations:\n    a: 1x\n  labels: # none yet\n    l: v\n  finalizers: null\nspec:\n  x:\n    k: z\n"
        );
    }

    #[test]
    fn a_missing_parent_is_created_once_for_several_edits() {
        let text = "kind: A\n";
        let out = rewrite(text, &[set(0, "m.a", "1a"), set(0, "m.b", "2b"), set(0, "m.a", "3c")]);
        assert_eq!(out, "kind: A\nm:\n  a: 3c\n  b: 2b\n");
    }

    #[test]
    fn editing_document_one_leaves_the_other_documents_and_comments_between_them_alone() {
        let text = "# first\napiVersion: v1\nkind: A\n---\n# between\n\nkind: B\nmetadata:\n  name: b # keep\n...\n# after the end marker\n---\nkind: C\n";
        let out = rewrite(text, &[set(1, "metadata.name", "new"), set(1, "metadata.namespace", "ns")]);
        assert_eq!(out, text.replace("name: b # keep\n", "name: new # keep\n  namespace: ns\n"));
    }

    #[test]
    fn empty_documents_count_and_a_missing_document_is_an_error() {
        let text = "---\n# only a comment\n---\nkind: A\n";
        assert_eq!(non_empty_document_indexes(text).unwrap(), [1]);
        assert_eq!(rewrite(text, &[set(1, "kind", "B")]), "---\n# only a comment\n---\nkind: B\n");
        let err = rewrite_yaml(text, &[set(2, "kind", "B")]).unwrap_err();
        assert!(matches!(err, RewriteError::NoSuchDocument { doc: 2, count: 2 }), "{err:?}");
        assert_eq!(rewrite(text, &[set(0, "kind", "B")]), "---\nkind: B\n# only a comment\n---\nkind: A\n");
    }

    #[test]
    fn an_empty_document_becomes_a_mapping() {
        assert_eq!(rewrite("a: 1\n---\n", &[set(1, "k.l", "v")]), "a: 1\n---\nk:\n  l: v\n");
        assert_eq!(rewrite("--- ~ # none\n...\n", &[set(0, "k", "v")]), "--- # none\nk: v\n...\n");
        assert_eq!(rewrite("a: 1\n---", &[set(1, "k", "v")]), "a: 1\n---\nk: v");
        assert_eq!(rewrite("\u{feff}{}\n# end\n", &[set(0, "k", "v")]), "\u{feff}k: v\n# end\n");
    }

    #[test]
    fn quoted_keys_match_by_their_value() {
        let text = "\"metadata\":\n  'name': x\n  \"a\\u0062\": old # c\n";
        let out = rewrite(text, &[set(0, "metadata.name", "nm"), set(0, "metadata.ab", "z z")]);
        assert_eq!(out, "\"metadata\":\n  'name': nm\n  \"a\\u0062\": \"z z\" # c\n");
    }

    #[test]
    fn block_scalar_is_replaced_with_its_indicator_and_lines() {
        let text = "data:\n  script: |-   # the script\n    echo hi\n    echo there\n\n  cert: !!binary >\n    AAAA\n    BBBB\nnext: 1\n";
        let out = rewrite(text, &[set(0, "data.script", "x"), set(0, "data.cert", "QUJD")]);
        assert_eq!(out, "data:\n  script: x   # the script\n\n  cert: QUJD\nnext: 1\n");
    }

    #[test]
    fn keep_chomped_block_scalar_keeps_its_trailing_lines_when_a_key_is_added() {
        let text = "a:\n  s: |+\n    x\n\n\nb: 1\n";
        let out = rewrite(text, &[set(0, "a.t", "tv")]);
        assert_eq!(out, "a:\n  s: |+\n    x\n\n\n  t: tv\nb: 1\n");
        assert_eq!(parse_all(&out)[0]["a"]["s"], "x\n\n\n");
    }

    #[test]
    fn anchors_survive_and_tags_are_replaced() {
        let text = "a: &x old\nb: !!str &y 12\nc: *x\n";
        let out = rewrite(text, &[set(0, "a", "new"), set(0, "b", "v"), set(0, "c", "w")]);
        assert_eq!(out, "a: &x new\nb: &y v\nc: w\n");
        let err = rewrite_yaml(text, &[remove(0, "a")]).unwrap_err();
        assert!(err.to_string().contains("defines an anchor"), "{err}");
    }

    #[test]
    fn crlf_line_endings_and_a_bom_are_kept() {
        let text = "\u{feff}metadata:\r\n  name: a\r\nspec:\r\n  encryptedData:\r\n    k: v # é\r\n";
        let out = rewrite(
            text,
            &[set(0, "spec.encryptedData.k2", "v2"), set(0, "metadata.labels.l", "x"), set(0, "metadata.name", "b")],
        );
        assert_eq!(
            out,
            "\u{feff}metadata:\r\n  name: b\r\n  labels:\r\n    l: x\r\nspec:\r\n  encryptedData:\r\n    k: v # é\r\n    k2: v2\r\n"
        );
    }

    #[test]
    fn a_file_without_a_final_line_break_stays_without_one() {
        let out = rewrite("a:\n  b: 1", &[set(0, "a.c", "2x"), set(0, "d", "3x")]);
        assert_eq!(out, "a:\n  b: 1\n  c: 2x\nd: 3x");
    }

    #[test]
    fn flow_mapping_with_content_gives_an_error_that_says_what_to_do() {
        let text = "spec:\n  encryptedData: {a: b}\n";
        let err = rewrite_yaml(text, &[set(0, "spec.encryptedData.c", "d")]).unwrap_err();
        assert!(matches!(err, RewriteError::FlowStyle { doc: 0, line: 2, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("`spec.encryptedData` uses flow style"), "{msg}");
        assert!(msg.ends_with("rewrite it in block style or use --format json"), "{msg}");
    }

    #[test]
    fn a_path_through_a_scalar_or_a_sequence_is_an_error() {
        let text = "kind: A\nitems:\n- a: 1\n";
        let err = rewrite_yaml(text, &[set(0, "kind.x", "1")]).unwrap_err();
        assert!(matches!(err, RewriteError::NotAMapping { line: 1, .. }), "{err:?}");
        let err = rewrite_yaml(text, &[remove(0, "items.a")]).unwrap_err();
        assert!(matches!(err, RewriteError::NotAMapping { line: 3, .. }), "{err:?}");
        let err = rewrite_yaml(text, &[set(0, "items", "x")]).unwrap_err();
        assert!(err.to_string().contains("`items` holds a mapping or a sequence"), "{err}");
        let err = rewrite_yaml("- a\n", &[set(0, "a", "x")]).unwrap_err();
        assert!(err.to_string().contains("the document root is not a mapping"), "{err}");
    }

    #[test]
    fn duplicate_keys_empty_paths_and_overlong_new_keys_are_errors() {
        let err = rewrite_yaml("a: 1\na: 2\n", &[set(0, "a", "x")]).unwrap_err();
        assert!(matches!(err, RewriteError::DuplicateKey { line: 1, .. }), "{err:?}");
        let err = rewrite_yaml("a: 1\n", &[YamlEdit { doc: 0, path: vec![], op: EditOp::Remove }]).unwrap_err();
        assert!(matches!(err, RewriteError::BadPath { len: 0, .. }), "{err:?}");
        let err = rewrite_yaml("a: 1\n", &[set(0, &"k".repeat(1025), "v")]).unwrap_err();
        assert!(err.to_string().contains("longer than 1024"), "{err}");
    }

    #[test]
    fn a_parse_error_says_where() {
        let err = rewrite_yaml("a: 1\nb: [unclosed\n", &[set(0, "a", "x")]).unwrap_err();
        let RewriteError::Parse { line, .. } = err else { panic!("{err:?}") };
        assert!(line >= 2, "{err}");
    }

    #[test]
    fn removing_a_key_deletes_its_lines_and_its_comment() {
        let text = "spec:\n  encryptedData:\n    a: AAA # old key\n    b: |\n      multi\n      line\n    # about c\n    c: CCC\n  template: {}\n";
        let out = rewrite(text, &[remove(0, "spec.encryptedData.a"), remove(0, "spec.encryptedData.b")]);
        assert_eq!(out, "spec:\n  encryptedData:\n    # about c\n    c: CCC\n  template: {}\n");
        let out = rewrite(text, &[remove(0, "spec.template")]);
        assert_eq!(
            out,
            "spec:\n  encryptedData:\n    a: AAA # old key\n    b: |\n      multi\n      line\n    # about c\n    c: CCC\n"
        );
    }

    #[test]
    fn removing_a_missing_key_changes_nothing() {
        let text = "a:\n  b: 1\nc:\n";
        assert_eq!(rewrite(text, &[remove(0, "a.x"), remove(0, "x.y.z"), remove(0, "c.d")]), text);
    }

    #[test]
    fn removing_every_key_leaves_an_empty_mapping() {
        let text = "a:\n  b: 1 # c\n  c: 2\nd: 3\n";
        assert_eq!(rewrite(text, &[remove(0, "a.b"), remove(0, "a.c")]), "a: {}\nd: 3\n");
        assert_eq!(rewrite(text, &[remove(0, "a"), remove(0, "d")]), "{}\n");
        assert_eq!(rewrite(text, &[remove(0, "a"), set(0, "a", "back")]), "d: 3\na: back\n");
    }

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

    // ----- property test -------------------------------------------------------------------

    /// How many random cases to run (`REWRITE_CASES`, for longer local runs) and the seed
    /// (`REWRITE_SEED`).
    fn cases_and_seed(default: usize) -> (usize, u64) {
        let var = |name| std::env::var(name).ok().and_then(|v| v.parse().ok());
        (
            var("REWRITE_CASES").map_or(default, |c: u64| c as usize),
            var("REWRITE_SEED").unwrap_or(0x9e37_79b9_7f4a_7c15),
        )
    }

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        fn chance(&mut self, percent: usize) -> bool {
            self.below(100) < percent
        }
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    const KEYS: &[&str] = &[
        "apiVersion",
        "kind",
        "metadata",
        "name",
        "spec",
        "data",
        "a",
        "b",
        "c",
        "1",
        "true",
        "a.b",
        "with space",
        "ключ",
        "x-y_z",
    ];
    const NEW_KEYS: &[&str] = &["new", "n2", "", "-x", "k:v", "#h", "yes", "ü", "a", "spec", "metadata"];
    const COMMENTS: &[&str] = &["", "", "", " # note", "  # é ü", " #"];
    const PLAIN: &[&str] = &["v1", "AgBy+/=", "42", "true", "hello world", "x", "3.5", "no", "Secret"];
    const VALUES: &[&str] = &[
        "AgNew+/==",
        "true",
        "1e3",
        "",
        "a: b",
        "ünï",
        "multi\nline",
        " pad ",
        "\"q\"",
        "#",
        "-",
        "---",
        "null",
        "~",
        "x",
    ];

    struct Gen<'r> {
        rng: &'r mut Rng,
        step: usize,
        indent_seqs: bool,
        out: String,
    }

    impl Gen<'_> {
        fn key(&mut self, k: &str) -> String {
            match self.rng.below(4) {
                0 => format!("'{}'", k.replace('\'', "''")),
                1 => format!("\"{k}\""),
                _ if k.bytes().all(|b| b.is_ascii_alphanumeric()) => k.to_owned(),
                _ if k.is_ascii() => format!("\"{k}\""),
                _ => k.to_owned(),
            }
        }

        fn comment(&mut self) -> &'static str {
            self.rng.pick::<&str>(COMMENTS)
        }

        /// A block mapping whose first line starts after `first` (already written) and whose
        /// other lines are at column `indent`.
        fn map(&mut self, indent: usize, depth: usize, mut first: bool) {
            let mut pool: Vec<&str> = KEYS.to_vec();
            for _ in 0..1 + self.rng.below(4) {
                let key = pool.remove(self.rng.below(pool.len()));
                let pad = " ".repeat(indent);
                if !first {
                    if self.rng.chance(15) {
                        self.out.push('\n');
                    }
                    if self.rng.chance(15) {
                        let col = " ".repeat(self.rng.below(indent + 3));
                        self.out.push_str(&format!("{col}# comment ✓\n"));
                    }
                    self.out.push_str(&pad);
                }
                first = false;
                let key = self.key(key);
                self.out.push_str(&key);
                if self.rng.chance(5) {
                    self.out.push_str("  ");
                }
                self.out.push(':');
                self.value(indent, depth);
            }
        }

        /// The value of an entry whose key at column `indent` was just written (with `:`).
        fn value(&mut self, indent: usize, depth: usize) {
            let inner = " ".repeat(indent + self.step);
            let choice = if depth >= 3 { self.rng.below(8) } else { self.rng.below(12) };
            let comment = self.comment();
            match choice {
                0 => {
                    let v = *self.rng.pick(PLAIN);
                    self.out.push_str(&format!(" {v}{comment}\n"));
                }
                1 => {
                    let v = *self.rng.pick(&["it's", "a: b", "", "ü"]);
                    self.out.push_str(&format!(" '{}'{comment}\n", v.replace('\'', "''")));
                }
                2 => {
                    let v = *self.rng.pick(&["tab\\tq", "\\u00e9", "", "a\\nb", "x # y"]);
                    self.out.push_str(&format!(" \"{v}\"{comment}\n"));
                }
                3 => {
                    let v = *self.rng.pick(&["", " ~", " null", " !!null", " {}"]);
                    self.out.push_str(&format!("{v}{comment}\n"));
                }
                4 => {
                    let header = *self.rng.pick(&["|", "|-", "|+", ">", ">-", ">+", "|2", "|+2"]);
                    self.out.push_str(&format!(" {header}{comment}\n{inner}first\n"));
                    for _ in 0..self.rng.below(3) {
                        let line = *self.rng.pick(&["line one", "  more", "ü #notcomment", ""]);
                        if line.is_empty() {
                            self.out.push('\n');
                        } else {
                            self.out.push_str(&format!("{inner}{line}\n"));
                        }
                    }
                    self.out.push_str(&format!("{inner}last\n"));
                    if self.rng.chance(30) {
                        self.out.push('\n');
                    }
                }
                5 => {
                    let v = *self.rng.pick(&["[1, two]", "!!str 12", "\"multi\n{i}  line\"", "'single\n{i}line'"]);
                    self.out.push_str(&format!(" {}{comment}\n", v.replace("{i}", &inner)));
                }
                6 => {
                    self.out.push_str(&format!(" word{comment_free}\n{inner}continued\n", comment_free = ""));
                }
                7 => {
                    let v = *self.rng.pick(PLAIN);
                    self.out.push_str(&format!("\n{inner}{v}{comment}\n"));
                }
                8..=9 => {
                    self.out.push_str(&format!("{comment}\n{inner}"));
                    self.map(indent + self.step, depth + 1, true);
                }
                _ => {
                    self.out.push_str(&format!("{comment}\n"));
                    let dash = if self.indent_seqs { indent + self.step } else { indent };
                    for _ in 0..1 + self.rng.below(3) {
                        self.out.push_str(&" ".repeat(dash));
                        if self.rng.chance(50) {
                            let v = *self.rng.pick(PLAIN);
                            self.out.push_str(&format!("- {v}\n"));
                        } else {
                            self.out.push_str("- ");
                            self.map(dash + 2, depth + 1, true);
                        }
                    }
                }
            }
        }
    }

    fn random_stream(rng: &mut Rng) -> String {
        let step = *rng.pick(&[2, 4]);
        let indent_seqs = rng.chance(50);
        let mut g = Gen { rng, step, indent_seqs, out: String::new() };
        if g.rng.chance(30) {
            g.out.push_str("# leading comment\n");
        }
        let docs = 1 + g.rng.below(3);
        for i in 0..docs {
            if i > 0 || g.rng.chance(30) {
                g.out.push_str("---\n");
            }
            if g.rng.chance(30) {
                g.out.push_str("# doc comment\n\n");
            }
            if i > 0 && g.rng.chance(15) {
                // An empty document: serde_saphyr::from_multiple skips it, YamlEdit::doc counts it.
                let empty = *g.rng.pick(&["", "~\n", "null\n", "# nothing\n", "...\n"]);
                g.out.push_str(empty);
                continue;
            }
            g.map(0, 0, false);
            if g.rng.chance(20) {
                g.out.push_str("...\n# after end\n");
            }
        }
        let mut text = g.out;
        if rng.chance(20) {
            text = text.replace('\n', "\r\n");
        }
        if rng.chance(10) {
            text.insert(0, '\u{feff}');
        }
        if rng.chance(10) {
            while text.ends_with('\n') || text.ends_with('\r') {
                text.pop();
            }
        }
        text
    }

    /// The reference: the same edit on a parsed value tree. `Err` where the rewriter must fail.
    fn apply_reference(root: &mut Json, path: &[String], op: &EditOp) -> Result<(), ()> {
        let (last, parents) = path.split_last().ok_or(())?;
        let mut cur = root;
        for key in parents {
            if cur.is_null() {
                if *op == EditOp::Remove {
                    return Ok(());
                }
                *cur = Json::Object(Map::new());
            }
            let Json::Object(map) = cur else {
                return Err(());
            };
            if !map.contains_key(key) {
                if *op == EditOp::Remove {
                    return Ok(());
                }
                map.insert(key.clone(), Json::Object(Map::new()));
            }
            cur = map.get_mut(key).ok_or(())?;
        }
        if cur.is_null() {
            if *op == EditOp::Remove {
                return Ok(());
            }
            *cur = Json::Object(Map::new());
        }
        let Json::Object(map) = cur else {
            return Err(());
        };
        match op {
            EditOp::Set(s) => {
                if map.get(last).is_some_and(|v| v.is_object() || v.is_array()) {
                    return Err(());
                }
                map.insert(last.clone(), Json::String(s.clone()));
            }
            EditOp::Remove => {
                map.shift_remove(last);
            }
        }
        Ok(())
    }

    fn random_edit(rng: &mut Rng, docs: &[Json]) -> YamlEdit {
        let doc = rng.below(docs.len());
        let mut path = Vec::new();
        let mut cur = docs.get(doc);
        for _ in 0..1 + rng.below(4) {
            let existing: Vec<&String> = cur.and_then(Json::as_object).map(|m| m.keys().collect()).unwrap_or_default();
            let key = if !existing.is_empty() && rng.chance(75) {
                (*rng.pick(&existing)).clone()
            } else {
                (*rng.pick(NEW_KEYS)).to_owned()
            };
            cur = cur.and_then(|c| c.get(&key));
            path.push(key);
            if rng.chance(35) {
                break;
            }
        }
        let op = if rng.chance(70) { EditOp::Set((*rng.pick(VALUES)).to_owned()) } else { EditOp::Remove };
        YamlEdit { doc, path, op }
    }

    #[test]
    fn random_edits_reparse_to_the_original_tree_with_the_edits_applied() {
        let (mut checked, mut rejected) = (0, 0);
        let (cases, seed) = cases_and_seed(1000);
        let mut rng = Rng(seed);
        for case in 0..cases {
            let text = random_stream(&mut rng);
            // Keep the edits the reference accepts, and now and then one it rejects (then the
            // rewriter must reject the batch too).
            let mut reference = parse_stream_values(&text);
            let (mut edits, mut expect_ok) = (Vec::new(), true);
            for _ in 0..1 + rng.below(8) {
                let edit = random_edit(&mut rng, &reference);
                let mut trial = reference.clone();
                if trial.get_mut(edit.doc).is_some_and(|d| apply_reference(d, &edit.path, &edit.op).is_ok()) {
                    reference = trial;
                    edits.push(edit);
                } else if expect_ok && rng.chance(10) {
                    edits.push(edit);
                    expect_ok = false;
                    rejected += 1;
                }
            }
            match rewrite_yaml(&text, &edits) {
                Ok(out) => {
                    assert!(expect_ok, "case {case}: rewrite accepted {edits:?}\n--- text:\n{text}\n--- out:\n{out}");
                    if let Err(e) = serde_saphyr::from_multiple::<Json>(&out) {
                        panic!("case {case}: {e}\n{edits:?}\n--- text:\n{text:?}\n--- out:\n{out:?}");
                    }
                    let got = parse_stream_values(&out);
                    assert_eq!(got, reference, "case {case}: {edits:?}\n--- text:\n{text:?}\n--- out:\n{out:?}");
                    checked += 1;
                }
                Err(e) => assert!(!expect_ok, "case {case}: {e}\n{edits:?}\n--- text:\n{text}"),
            }
        }
        eprintln!("checked {checked} rejected {rejected}");
        assert!(checked > cases * 2 / 3, "only {checked} successful cases ({rejected} rejected edits)");
    }

    #[test]
    fn mangled_input_never_panics_and_edits_it_accepts_still_apply_exactly() {
        let (cases, seed) = cases_and_seed(300);
        let mut rng = Rng(seed);
        for _ in 0..cases {
            let text = random_stream(&mut rng);
            let docs = parse_stream_values(&text);
            let edits: Vec<YamlEdit> = (0..4).map(|_| random_edit(&mut rng, &docs)).collect();
            let mut broken = text.clone();
            for _ in 0..1 + rng.below(3) {
                let mut cut = rng.below(broken.len() + 1);
                while !broken.is_char_boundary(cut) {
                    cut -= 1;
                }
                let junk = *rng.pick(&[
                    "",
                    ":",
                    "- ",
                    "{",
                    "}",
                    "[",
                    "]",
                    "\"",
                    "'",
                    "|",
                    "|+",
                    ">-",
                    "&a ",
                    "*a",
                    "!t ",
                    "? ",
                    "\t",
                    "\u{feff}",
                    "---",
                    "...",
                    "\n",
                    "\r\n",
                    " ",
                    "#",
                    "a: b\n",
                    "%YAML 1.2\n",
                    ",",
                    "ü",
                ]);
                if rng.chance(30) {
                    let end = (cut + rng.below(8)).min(broken.len());
                    let end = (end..=broken.len()).find(|&e| broken.is_char_boundary(e)).unwrap_or(broken.len());
                    broken.replace_range(cut..end, junk);
                } else {
                    broken.insert_str(cut, junk);
                }
            }
            let out = rewrite_yaml(&broken, &edits);
            let _ = non_empty_document_indexes(&broken);
            // Anchors are left out: an edit of an anchored value changes its aliases too.
            if let (Ok(out), Ok(_)) = (&out, serde_saphyr::from_multiple::<Json>(&broken))
                && !broken.contains(['&', '*'])
            {
                if let Err(e) = serde_saphyr::from_multiple::<Json>(out) {
                    panic!("{e}\n{edits:?}\n--- broken:\n{broken:?}\n--- out:\n{out:?}");
                }
                let mut reference = parse_stream_values(&broken);
                let mut ok = true;
                for e in &edits {
                    ok &= reference.get_mut(e.doc).is_some_and(|d| apply_reference(d, &e.path, &e.op).is_ok());
                }
                if ok {
                    let got = parse_stream_values(out);
                    assert_eq!(got, reference, "{edits:?}\n--- broken:\n{broken:?}\n--- out:\n{out:?}");
                }
            }
        }
    }

    #[test]
    fn deeply_nested_input_is_handled_on_a_small_stack() {
        // 250 levels is about the parser's limit; a thread stack of 256 KiB is far below the
        // 2 MiB that Rust and tokio give their threads.
        let mut maps = String::new();
        for depth in 0..250 {
            maps.push_str(&format!("{}k:\n", " ".repeat(depth)));
        }
        maps.push_str(&format!("{}v: 1\n", " ".repeat(250)));
        let sequences = format!("a:\n{}x\n", "- ".repeat(250));
        let flows = format!("a: {}{}\n", "[".repeat(250), "]".repeat(250));
        let deep_set = YamlEdit { doc: 0, path: vec!["k".to_owned(); MAX_PATH], op: EditOp::Set("x".into()) };
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                for text in [&maps, &sequences, &flows] {
                    let out = rewrite_yaml(text, &[set(0, "z", "1z")]).unwrap();
                    assert_eq!(out, format!("{text}z: 1z\n"));
                }
                assert!(matches!(rewrite_yaml(&maps, &[deep_set]), Err(RewriteError::NotAScalar { .. })));
                let too_deep = format!("{}x\n", "- ".repeat(1000));
                assert!(matches!(rewrite_yaml(&too_deep, &[set(0, "z", "1")]), Err(RewriteError::Parse { .. })));
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn five_thousand_edits_over_a_megabyte() {
        let value: String = "AgBy8hCi+Ez/9w==".chars().cycle().take(200).collect();
        let mut text = String::from(
            "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: big\nspec:\n  encryptedData:\n",
        );
        for i in 0..5000 {
            text.push_str(&format!("    key{i}: {value} # c\n"));
        }
        assert!(text.len() > 1_000_000);
        let edits: Vec<YamlEdit> = (0..5000)
            .map(|i| match i % 3 {
                0 => set(0, &format!("spec.encryptedData.key{i}"), "NEW"),
                1 => set(0, &format!("spec.encryptedData.added{i}"), "ADD"),
                _ => remove(0, &format!("spec.encryptedData.key{i}")),
            })
            .collect();
        let started = std::time::Instant::now();
        let out = rewrite(&text, &edits);
        let took = started.elapsed();
        let got = &parse_all(&out)[0]["spec"]["encryptedData"];
        assert_eq!(got["key0"], "NEW");
        assert_eq!(got["added1"], "ADD");
        assert!(got.get("key2").is_none());
        let (removed, added) = ((0..5000).filter(|i| i % 3 == 2).count(), (0..5000).filter(|i| i % 3 == 1).count());
        assert_eq!(got.as_object().map(Map::len), Some(5000 - removed + added));
        // Generous: debug builds on a loaded CI machine; a release build takes a few ms.
        eprintln!("TOOK {took:?}");
        assert!(took.as_secs() < 10, "{took:?}");
    }
}
