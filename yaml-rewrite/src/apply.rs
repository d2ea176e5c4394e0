//! Applying edits to the tree: replace a scalar, remember keys to append.

use super::text::line_of;
use super::tree::{BlockMap, Kind, NewMap, NewValue, State, Value};
use super::{EditOp, MAX_KEY, Result, RewriteError, yaml_scalar};

/// Where an edit is, for error messages.
pub(super) struct At<'e> {
    pub(super) text: &'e str,
    pub(super) doc: usize,
    pub(super) path: &'e [String],
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
pub(super) fn walk_value(v: &mut Value, keys: &[String], op: &EditOp, at: &At<'_>, depth: usize) -> Result<()> {
    match &mut v.state {
        State::Map(new) => return walk_new(new, keys, op, at, depth, v.start),
        State::Set(_) => return Err(at.not_a_mapping(depth, v.start)),
        State::Keep => {}
    }
    match &mut v.kind {
        Kind::Map(map) => walk_block(map, keys, op, at, depth),
        Kind::Null | Kind::EmptyFlowMap => {
            let mut new = NewMap::default();
            walk_new(&mut new, keys, op, at, depth, v.start)?;
            v.state = State::Map(new);
            Ok(())
        }
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
    let EditOp::Set(s) = op;
    set_value(&mut entry.value, s, at, depth + 1)
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
    if yaml_scalar(key).len() > MAX_KEY {
        return Err(at.unsupported(depth + 1, pos, "a new key longer than 1024 characters"));
    }
    let EditOp::Set(s) = op;
    match (new.get_mut(key), rest.is_empty()) {
        (Some(NewValue::Map(_)), true) => Err(at.not_a_scalar(depth + 1, pos)),
        (_, true) => {
            new.set(key, NewValue::Scalar(s.clone()));
            Ok(())
        }
        (Some(NewValue::Map(inner)), false) => walk_new(inner, rest, op, at, depth + 1, pos),
        (Some(NewValue::Scalar(_)), false) => Err(at.not_a_mapping(depth + 1, pos)),
        (None, false) => {
            let mut inner = NewMap::default();
            walk_new(&mut inner, rest, op, at, depth + 1, pos)?;
            new.set(key, NewValue::Map(inner));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{rewrite, set};
    use crate::{EditOp, RewriteError, YamlEdit, rewrite_yaml};

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
        let err = rewrite_yaml(text, &[set(0, "items.a", "x")]).unwrap_err();
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
        let err =
            rewrite_yaml("a: 1\n", &[YamlEdit { doc: 0, path: vec![], op: EditOp::Set("x".into()) }]).unwrap_err();
        assert!(matches!(err, RewriteError::BadPath { len: 0, .. }), "{err:?}");
        let err = rewrite_yaml("a: 1\n", &[set(0, &"k".repeat(1025), "v")]).unwrap_err();
        assert!(err.to_string().contains("longer than 1024"), "{err}");
    }
}
