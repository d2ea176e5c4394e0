//! Rendering the tree as splices of the original text, copied around them front to back.

use super::text::{is_blank, line_end_after, line_start};
use super::tree::{BlockMap, Kind, NewMap, NewValue, State, Value};
use super::{Result, RewriteError, yaml_scalar};

/// Replace `text[start..end]` with `with`. `lines` marks whole lines inserted at a line start:
/// they get a line break first if the text before them does not end with one (end of file).
#[derive(Debug)]
pub(super) struct Splice {
    start: usize,
    end: usize,
    with: String,
    lines: bool,
}

pub(super) struct Render<'t> {
    pub(super) text: &'t str,
    pub(super) nl: &'static str,
    pub(super) step: usize,
    pub(super) splices: Vec<Splice>,
}

impl Render<'_> {
    fn push(&mut self, start: usize, end: usize, with: String, lines: bool) {
        self.splices.push(Splice { start, end, with, lines });
    }

    pub(super) fn root(&mut self, root: &Value) -> Result<()> {
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
            next: usize,
            /// Where the text after the entries written so far starts (after their last line break).
            tail: usize,
        }
        let mut stack = vec![Frame { map: root, next: 0, tail: usize::MAX }];
        let mut finished: Option<usize> = None;
        while let Some(frame) = stack.last_mut() {
            if let Some(tail) = finished.take() {
                frame.tail = tail;
            }
            let (map, indent) = (frame.map, frame.map.indent);
            let Some(entry) = map.entries.get(frame.next) else {
                // After a mapping's entries: append its new keys.
                if !map.added.is_empty() {
                    let mut lines = String::new();
                    self.new_lines(&mut lines, &map.added, map.indent);
                    self.push(frame.tail, frame.tail, lines, true);
                }
                finished = Some(frame.tail);
                stack.pop();
                continue;
            };
            frame.next += 1;
            let value = &entry.value;
            frame.tail = line_end_after(self.text, value.last_end);
            match (&value.state, &value.kind) {
                (State::Keep, Kind::Map(child)) => {
                    stack.push(Frame { map: child, next: 0, tail: usize::MAX });
                }
                (State::Keep, _) => {}
                (State::Set(s), _) => self.replace(value, s)?,
                (State::Map(new), _) => self.convert(value, new, indent + self.step),
            }
        }
        Ok(())
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
        for (key, value) in new.iter() {
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
    pub(super) fn finish(mut self) -> Result<String> {
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
    use crate::tests::{parse_all, rewrite, set};

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
    fn an_empty_document_becomes_a_mapping() {
        assert_eq!(rewrite("a: 1\n---\n", &[set(1, "k.l", "v")]), "a: 1\n---\nk:\n  l: v\n");
        assert_eq!(rewrite("--- ~ # none\n...\n", &[set(0, "k", "v")]), "--- # none\nk: v\n...\n");
        assert_eq!(rewrite("a: 1\n---", &[set(1, "k", "v")]), "a: 1\n---\nk: v");
        assert_eq!(rewrite("\u{feff}{}\n# end\n", &[set(0, "k", "v")]), "\u{feff}k: v\n# end\n");
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
}
