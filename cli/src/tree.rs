//! Finding SealedSecrets on disk: files named on the command line, directory trees walked
//! for `*.yaml`, `*.yml` and `*.json` (hidden directories such as `.git` skipped), and the
//! SealedSecret objects of either API group inside each file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use gitseal_shared::manifest::parse_documents;
use gitseal_shared::types::{SealedSecretObject, is_sealed_secret, sealed_secret_from_value};

/// Files to look at, in a stable order. A path named explicitly is kept whatever its
/// extension; `-` stands for stdin.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for root in paths {
        if root.as_os_str() == "-" || !root.is_dir() {
            if root.as_os_str() != "-" && !root.exists() {
                bail!("{} not found: give existing files or directories", root.display());
            }
            out.push(root.clone());
            continue;
        }
        let walker = walkdir::WalkDir::new(root)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
        for entry in walker {
            let entry = entry.with_context(|| format!("cannot walk {}", root.display()))?;
            if entry.file_type().is_file() && is_manifest_name(entry.path()) {
                out.push(entry.into_path());
            }
        }
    }
    Ok(out)
}

fn is_manifest_name(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(),
        Some("yaml" | "yml" | "json")
    )
}

/// One SealedSecret found in a file.
#[derive(Debug)]
pub struct Found {
    /// `Document::index` of its document.
    pub doc: usize,
    /// Its position in a `kind: List`.
    pub item: Option<usize>,
    /// `namespace/name`, for reports.
    pub label: String,
    pub object: SealedSecretObject,
}

/// The SealedSecrets of a manifest file. A file that does not parse is an error only if it
/// mentions SealedSecret (a Helm template in the tree is not our business).
pub fn sealed_secrets(text: &str) -> Result<Vec<Found>> {
    let docs = match parse_documents(text) {
        Ok(d) => d,
        Err(e) if text.contains("SealedSecret") => return Err(e.into()),
        Err(_) => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for doc in docs {
        if !is_sealed_secret(&doc.value) {
            continue;
        }
        let describe = doc.describe();
        let object = sealed_secret_from_value(doc.value).with_context(|| describe.clone())?;
        let ns = object.metadata.namespace.as_deref().unwrap_or("");
        let name = object.metadata.name.as_deref().unwrap_or("?");
        let label = if ns.is_empty() { name.to_string() } else { format!("{ns}/{name}") };
        out.push(Found { doc: doc.index, item: doc.item, label, object });
    }
    Ok(out)
}
