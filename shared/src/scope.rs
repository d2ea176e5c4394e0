//! Sealing scopes: which namespace/name a value may be unsealed as.
//!
//! The scope decides the OAEP label of the kubeseal format (Bitnami's `EncryptionLabel`) and the
//! binding line inside gitseal's age payload. It is read from the SealedSecret's *top-level*
//! annotations, exactly as Bitnami's controller does: cluster-wide wins over namespace-wide, and
//! only the exact string `"true"` counts.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

pub const CLUSTER_WIDE_ANNOTATION: &str = "sealedsecrets.bitnami.com/cluster-wide";
pub const NAMESPACE_WIDE_ANNOTATION: &str = "sealedsecrets.bitnami.com/namespace-wide";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// Bound to namespace and name (the default).
    #[default]
    Strict,
    /// Bound to the namespace; the name may change.
    NamespaceWide,
    /// Not bound; any namespace and name.
    ClusterWide,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Strict, Scope::NamespaceWide, Scope::ClusterWide];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Strict => "strict",
            Scope::NamespaceWide => "namespace-wide",
            Scope::ClusterWide => "cluster-wide",
        }
    }

    /// The scope an object's annotations declare (Bitnami's `SecretScope`).
    pub fn from_annotations(annotations: Option<&BTreeMap<String, String>>) -> Scope {
        let is_true = |k: &str| annotations.and_then(|a| a.get(k)).is_some_and(|v| v == "true");
        if is_true(CLUSTER_WIDE_ANNOTATION) {
            Scope::ClusterWide
        } else if is_true(NAMESPACE_WIDE_ANNOTATION) {
            Scope::NamespaceWide
        } else {
            Scope::Strict
        }
    }

    /// Make `annotations` declare exactly this scope. Unlike kubeseal, an explicit `strict`
    /// removes stale wide-scope annotations, so what is written is what was asked for.
    pub fn apply_to(self, annotations: &mut BTreeMap<String, String>) {
        annotations.remove(CLUSTER_WIDE_ANNOTATION);
        annotations.remove(NAMESPACE_WIDE_ANNOTATION);
        match self {
            Scope::Strict => {}
            Scope::NamespaceWide => {
                annotations.insert(NAMESPACE_WIDE_ANNOTATION.into(), "true".into());
            }
            Scope::ClusterWide => {
                annotations.insert(CLUSTER_WIDE_ANNOTATION.into(), "true".into());
            }
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "strict" => Ok(Scope::Strict),
            "namespace-wide" => Ok(Scope::NamespaceWide),
            "cluster-wide" => Ok(Scope::ClusterWide),
            other => Err(Error::InvalidScope(other.into())),
        }
    }
}

/// What a value is sealed for: a scope plus the namespace/name it needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Strict { namespace: String, name: String },
    NamespaceWide { namespace: String },
    ClusterWide,
}

impl Target {
    /// Build the target for `scope`, checking that the parts the scope needs are present.
    pub fn new(scope: Scope, namespace: Option<&str>, name: Option<&str>) -> Result<Target> {
        let need = |v: Option<&str>, what: &str| -> Result<String> {
            match v {
                Some(s) if !s.is_empty() => Ok(s.to_string()),
                _ => Err(Error::MissingTarget(format!(
                    "{scope} scope needs a {what}: set metadata.{what} or pass --{what}"
                ))),
            }
        };
        Ok(match scope {
            Scope::Strict => Target::Strict { namespace: need(namespace, "namespace")?, name: need(name, "name")? },
            Scope::NamespaceWide => Target::NamespaceWide { namespace: need(namespace, "namespace")? },
            Scope::ClusterWide => Target::ClusterWide,
        })
    }

    pub fn scope(&self) -> Scope {
        match self {
            Target::Strict { .. } => Scope::Strict,
            Target::NamespaceWide { .. } => Scope::NamespaceWide,
            Target::ClusterWide => Scope::ClusterWide,
        }
    }

    /// The OAEP label of the kubeseal format: `"<ns>/<name>"`, `"<ns>"` or empty.
    pub fn label(&self) -> Vec<u8> {
        match self {
            Target::Strict { namespace, name } => format!("{namespace}/{name}").into_bytes(),
            Target::NamespaceWide { namespace } => namespace.clone().into_bytes(),
            Target::ClusterWide => Vec::new(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Strict { namespace, name } => write!(f, "strict {namespace}/{name}"),
            Target::NamespaceWide { namespace } => write!(f, "namespace-wide {namespace}"),
            Target::ClusterWide => f.write_str("cluster-wide"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn labels_match_bitnami_encryption_label_exactly() {
        let strict = Target::new(Scope::Strict, Some("myns"), Some("mysecret")).unwrap();
        assert_eq!(strict.label(), b"myns/mysecret");
        let ns = Target::new(Scope::NamespaceWide, Some("myns"), Some("x")).unwrap();
        assert_eq!(ns.label(), b"myns");
        assert_eq!(Target::new(Scope::ClusterWide, None, None).unwrap().label(), b"");
    }

    #[test]
    fn cluster_wide_annotation_wins_and_only_the_string_true_counts() {
        let both = ann(&[(CLUSTER_WIDE_ANNOTATION, "true"), (NAMESPACE_WIDE_ANNOTATION, "true")]);
        assert_eq!(Scope::from_annotations(Some(&both)), Scope::ClusterWide);
        let yes = ann(&[(CLUSTER_WIDE_ANNOTATION, "True")]);
        assert_eq!(Scope::from_annotations(Some(&yes)), Scope::Strict);
        assert_eq!(Scope::from_annotations(None), Scope::Strict);
    }

    #[test]
    fn explicit_strict_removes_wide_annotations() {
        let mut a = ann(&[(CLUSTER_WIDE_ANNOTATION, "true"), ("keep", "me")]);
        Scope::Strict.apply_to(&mut a);
        assert_eq!(a, ann(&[("keep", "me")]));
        Scope::NamespaceWide.apply_to(&mut a);
        assert_eq!(Scope::from_annotations(Some(&a)), Scope::NamespaceWide);
    }

    #[test]
    fn strict_scope_without_a_name_says_which_flag_to_pass() {
        let err = Target::new(Scope::Strict, Some("ns"), None).unwrap_err().to_string();
        assert!(err.contains("--name"), "{err}");
    }
}
