//! The tree of spans: where each key, value and entry of a document sits in the text, and what
//! the edits did to it.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

/// One document of the stream.
#[derive(Debug)]
pub(super) struct Doc {
    pub(super) root: Value,
    /// How much deeper nested block mappings indent than their parent (2 if none is nested).
    pub(super) step: usize,
}

/// A node with where it sits in the text and what the edits did to it.
#[derive(Debug)]
pub(super) struct Value {
    pub(super) kind: Kind,
    /// Start of the node's own text; for a block scalar its `|`/`>` indicator; for an empty
    /// scalar the place where a value would be written.
    pub(super) start: usize,
    /// End of the node's own text; for a block scalar the end of its last non-blank line.
    pub(super) end: usize,
    /// Start of a tag (`!!str`) written before the node.
    pub(super) tag_start: Option<usize>,
    /// The node's anchor (`&name`).
    pub(super) anchor: Option<Range<usize>>,
    /// End of the node's header: after `key:` and any tag or anchor. ` {}` goes here.
    pub(super) props_end: usize,
    /// End of the last token of the node and all its children.
    pub(super) last_end: usize,
    pub(super) state: State,
}

#[derive(Debug)]
pub(super) enum Kind {
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
pub(super) enum State {
    Keep,
    /// Replace the scalar with this string.
    Set(String),
    /// The null or `{}` value becomes a block mapping with these keys.
    Map(NewMap),
}

#[derive(Debug, Default)]
pub(super) struct BlockMap {
    /// Column of the keys.
    pub(super) indent: usize,
    pub(super) entries: Vec<Entry>,
    /// Entries by key (the first one of a duplicated key).
    pub(super) index: HashMap<String, usize>,
    /// Keys written more than once.
    pub(super) dups: HashSet<String>,
    /// Keys to append after the last entry.
    pub(super) added: NewMap,
}

#[derive(Debug)]
pub(super) struct Entry {
    /// Start of the key (or its tag or anchor).
    pub(super) key_start: usize,
    /// Whether `:` follows the key on its line (not an explicit `? key`).
    pub(super) simple: bool,
    pub(super) value: Value,
}

/// Keys that do not exist in the text yet, in insertion order.
#[derive(Debug, Default)]
pub(super) struct NewMap {
    pub(super) entries: Vec<(String, NewValue)>,
    pub(super) index: HashMap<String, usize>,
}

#[derive(Debug)]
pub(super) enum NewValue {
    Scalar(String),
    Map(NewMap),
}

impl NewMap {
    pub(super) fn get_mut(&mut self, key: &str) -> Option<&mut NewValue> {
        let i = *self.index.get(key)?;
        Some(&mut self.entries.get_mut(i)?.1)
    }

    pub(super) fn set(&mut self, key: &str, value: NewValue) {
        if let Some(slot) = self.get_mut(key) {
            *slot = value;
        } else {
            self.index.insert(key.to_owned(), self.entries.len());
            self.entries.push((key.to_owned(), value));
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &NewValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
}
