//! The data-driven runner both golden-vector suites share: one directory per case holding a
//! `case.json`, `fail_*` directories for what must be rejected, every failure listed at once.

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A case's one-line description, printed beside its name when it fails.
pub trait Described {
    fn description(&self) -> &str;
}

/// Every case directory under `dir`, `fail_*` or not, sorted by name.
pub fn cases<C: DeserializeOwned>(dir: &Path, fail: bool) -> Vec<(String, PathBuf, C)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if !path.is_dir() {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("fail_") != fail {
            continue;
        }
        let text = std::fs::read_to_string(path.join("case.json")).unwrap_or_else(|e| panic!("{name}/case.json: {e}"));
        let case: C = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}/case.json: {e}"));
        out.push((name, path, case));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Run `f` for every case of `dir`, collecting failures and panics, and fail once listing them
/// all. Returns the number of cases run.
pub fn run_all<F, C: DeserializeOwned + Described>(
    dir: &Path,
    fail: bool,
    fixture: &F,
    f: impl Fn(&F, &Path, &C) -> Result<(), String>,
) -> usize {
    let all = cases::<C>(dir, fail);
    let (mut failed, mut failures) = (0, String::new());
    for (name, path, case) in &all {
        let msg = match catch_unwind(AssertUnwindSafe(|| f(fixture, path, case))) {
            Ok(Ok(())) => continue,
            Ok(Err(msg)) => msg,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                format!("PANICKED: {msg}")
            }
        };
        failed += 1;
        writeln!(failures, "{name} ({}): {msg}", case.description()).unwrap();
    }
    assert!(failed == 0, "{failed} of {} vectors failed:\n{failures}", all.len());
    all.len()
}
