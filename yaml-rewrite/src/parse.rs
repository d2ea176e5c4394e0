//! Parsing: granit-parser events to the tree of spans.

use std::iter::Peekable;
use std::ops::Range;

use serde_saphyr::granit_parser::{Event, Options, Parser, ScalarStyle, ScanError, Span, StrInput, StructureStyle};

use super::text::{block_extent_end, block_header, colon_after, token_end, trim_back};
use super::tree::{BlockMap, Doc, Entry, Kind, State, Value};
use super::{Result, RewriteError};

pub(super) fn parse_stream(text: &str) -> Result<Vec<Doc>> {
    let mut options = Options::default();
    // Comments are not needed (spans say where everything else is), and with them on a run of
    // more than `max_buffered_comment_events` comment lines is an error.
    options.emit_comments = false;
    // Anchor events give the `&name` spans, so a replaced value keeps its anchor.
    options.emit_anchor_events = true;
    let mut b = Builder { text, events: Parser::new_from_str_with_options(text, options).peekable(), step: None };
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
                    open.push(Open::Map { node, map: Box::default(), key: None, indent });
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
                } else {
                    // Header not found (sequence item, document root): the value cannot be set.
                    v.end = content_end;
                    v.kind = Kind::Block { header: None };
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
            Some(Open::Map { map, key: pending @ Some(_), .. }) => {
                let Some(key) = pending.take() else { return Err(RewriteError::Internal("pending key")) };
                if let Kind::Map(child) = &node.kind
                    && self.step.is_none()
                    && child.indent > map.indent
                {
                    self.step = Some(child.indent - map.indent);
                }
                if let Some(k) = key.text {
                    if map.index.contains_key(&k) {
                        map.dups.insert(k);
                    } else {
                        map.index.insert(k, map.entries.len());
                    }
                }
                map.entries.push(Entry { key_start: key.start, simple: key.after_colon.is_some(), value: node });
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

#[cfg(test)]
mod tests {
    use crate::tests::{rewrite, set};
    use crate::{RewriteError, rewrite_yaml};

    #[test]
    fn quoted_keys_match_by_their_value() {
        let text = "\"metadata\":\n  'name': x\n  \"a\\u0062\": old # c\n";
        let out = rewrite(text, &[set(0, "metadata.name", "nm"), set(0, "metadata.ab", "z z")]);
        assert_eq!(out, "\"metadata\":\n  'name': nm\n  \"a\\u0062\": \"z z\" # c\n");
    }

    #[test]
    fn a_parse_error_says_where() {
        let err = rewrite_yaml("a: 1\nb: [unclosed\n", &[set(0, "a", "x")]).unwrap_err();
        let RewriteError::Parse { line, .. } = err else { panic!("{err:?}") };
        assert!(line >= 2, "{err}");
    }
}
