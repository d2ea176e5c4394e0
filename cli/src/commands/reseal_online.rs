//! `gitseal reseal` without `--key`: the controller re-seals each SealedSecret for its latest
//! key through the authenticated API (`sealedsecretreseals`, in the object's namespace, with
//! the user's credentials and an audit record naming them).
//!
//! Flow: read and parse every file and check it is writable (no request yet); send the
//! objects, a few at a time, behind a progress bar; then write each file whose objects all
//! came back (atomically, comments and order kept). A file with any failure is left as it
//! was; an unreachable cluster stops the run before any file is written. Objects already on
//! the latest key are left byte for byte as they are, so a second run changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Result, bail};
use futures::StreamExt;
use gitseal_shared::KeyId;
use gitseal_shared::keyid::KEY_ID_ANNOTATION;

use crate::api::{self, RESEAL, Resealed};
use crate::cluster::{self, Cluster};
use crate::config::{ClusterConfig, ResealConfig};
use crate::edit::{self, ObjectEdits};
use crate::{io, output, table, tree};

/// Re-seal requests in flight at once.
const CONCURRENCY: usize = 8;

/// One file with SealedSecrets, and what happened to it.
#[derive(Debug)]
struct FileRun {
    path: PathBuf,
    text: String,
    found: Vec<tree::Found>,
    edits: Vec<ObjectEdits>,
    /// Objects re-sealed, and their values.
    resealed: usize,
    values: usize,
    /// Objects that were already on the latest key.
    current: usize,
    old: BTreeSet<String>,
    new: BTreeSet<String>,
    /// (object, reason); the file is left unchanged when any exists.
    failures: Vec<(String, String)>,
}

pub fn run(cfg: &ResealConfig, cluster_cfg: &ClusterConfig) -> Result<()> {
    let files = tree::collect_files(&cfg.paths)?;
    let mut runs = Vec::new();
    for path in &files {
        if let Some(r) = read(path) {
            runs.push(r);
        }
    }
    if runs.is_empty() {
        bail!("no SealedSecret found in {} file(s) under the given paths: nothing to re-seal", files.len());
    }
    cluster::run(ask_controller(cluster_cfg, &mut runs))?;
    for r in &mut runs {
        let changed = !r.edits.is_empty();
        if r.failures.is_empty() && changed && !cfg.dry_run {
            let written = edit::apply(&r.text, &r.edits).and_then(|t| io::replace(&r.path, t.as_bytes()));
            if let Err(e) = written {
                r.failures.push(("-".into(), output::one_line(&e)));
            }
        }
    }
    io::write_stdout(report(&runs, files.len(), cfg.dry_run).as_bytes())?;
    let bad: Vec<&FileRun> = runs.iter().filter(|r| !r.failures.is_empty()).collect();
    if !bad.is_empty() {
        let problems: usize = bad.iter().map(|r| r.failures.len()).sum();
        bail!(
            "{problems} problem(s) in {} file(s), which were left unchanged: see the report above, fix them and run again",
            bad.len()
        );
    }
    Ok(())
}

/// Read one file; `None` when it holds no SealedSecret.
fn read(path: &std::path::Path) -> Option<FileRun> {
    let mut r = FileRun {
        path: path.to_path_buf(),
        text: String::new(),
        found: Vec::new(),
        edits: Vec::new(),
        resealed: 0,
        values: 0,
        current: 0,
        old: BTreeSet::new(),
        new: BTreeSet::new(),
        failures: Vec::new(),
    };
    let text = match io::read_file(path) {
        Ok(t) => t,
        Err(e) => {
            r.failures.push(("-".into(), output::one_line(&e)));
            return Some(r);
        }
    };
    match tree::sealed_secrets(&text) {
        Ok(f) if f.is_empty() => return None,
        Ok(f) => r.found = f,
        Err(e) => r.failures.push(("-".into(), output::one_line(&e))),
    }
    r.text = text.to_string();
    if let Err(e) = io::ensure_writable(path) {
        r.failures.push(("-".into(), output::one_line(&e)));
    }
    for f in &r.found {
        if f.object.spec.data.is_some() {
            r.failures.push((f.label.clone(), "deprecated spec.data format: unseal it and seal it again".into()));
        }
    }
    Some(r)
}

/// Send every object of the files that can still be written; record results in place.
async fn ask_controller(cfg: &ClusterConfig, runs: &mut [FileRun]) -> Result<()> {
    let jobs: Vec<(usize, usize)> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.failures.is_empty())
        .flat_map(|(i, r)| (0..r.found.len()).map(move |j| (i, j)))
        .collect();
    if jobs.is_empty() {
        return Ok(());
    }
    let cluster = Cluster::connect(cfg).await?;
    let cluster = &cluster;
    let bar = output::progress(jobs.len() as u64);
    let requests: Vec<_> = jobs
        .iter()
        .map(|&(i, j)| {
            let ss = &runs[i].found[j].object;
            let ns = api::namespace_of(ss, cluster).to_string();
            (i, j, ns, api::request_name(ss), api::spec_for(ss, api::namespace_of(ss, cluster)))
        })
        .collect();
    let mut answers = futures::stream::iter(requests)
        .map(|(i, j, ns, name, spec)| async move {
            let answer = RESEAL.create::<Resealed>(cluster, &ns, &name, spec).await;
            (i, j, ns, answer)
        })
        .buffer_unordered(CONCURRENCY);
    while let Some((i, j, ns, answer)) = answers.next().await {
        bar.inc(1);
        let r = &mut runs[i];
        let label = r.found[j].label.clone();
        bar.set_message(label.clone());
        match answer {
            Ok(resealed) => record(r, j, resealed),
            Err(kube::Error::Api(s)) if s.code == 409 => r.failures.push((
                label,
                "the controller's keys do not open it (sealed for another cluster, a revoked key, or altered)".into(),
            )),
            Err(e @ kube::Error::Api(_)) => {
                r.failures.push((label, output::one_line(&RESEAL.explain(cluster, &ns, e))))
            }
            Err(e) => {
                bar.finish_and_clear();
                return Err(cluster.fail("re-sealing SealedSecrets", e));
            }
        }
    }
    bar.finish_and_clear();
    Ok(())
}

/// Turn one answer into edits of its object, unless it was already on the latest key.
fn record(r: &mut FileRun, j: usize, resealed: Resealed) {
    let f = &r.found[j];
    let new_id = resealed.key_id.clone().unwrap_or_default();
    let old: BTreeSet<String> = resealed.old_key_ids.iter().cloned().collect();
    if !new_id.is_empty() && old.len() == 1 && old.contains(&new_id) {
        r.current += 1;
        return;
    }
    let mut e = ObjectEdits::new(f.doc, f.item);
    for (item, value) in &resealed.sealed_secret.spec.encrypted_data {
        e.set(&["spec", "encryptedData", item], value.clone());
    }
    let annotation = resealed
        .sealed_secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(KEY_ID_ANNOTATION))
        .cloned()
        .unwrap_or_else(|| new_id.clone());
    if !annotation.is_empty() {
        e.set(&["metadata", "annotations", KEY_ID_ANNOTATION], annotation);
    }
    r.values += resealed.sealed_secret.spec.encrypted_data.len();
    r.resealed += 1;
    r.old.extend(old);
    if !new_id.is_empty() {
        r.new.insert(new_id);
    }
    r.edits.push(e);
}

fn short(ids: &BTreeSet<String>) -> String {
    let v: Vec<String> = ids.iter().cloned().collect();
    super::validate::short_ids(&v)
}

fn report(runs: &[FileRun], scanned: usize, dry_run: bool) -> String {
    let rows: Vec<[String; 5]> = runs
        .iter()
        .map(|r| {
            let status = match (r.failures.is_empty(), r.edits.is_empty(), dry_run) {
                (false, _, _) => "FAILED, unchanged",
                (true, true, _) => "up to date",
                (true, false, true) => "would re-seal",
                (true, false, false) => "re-sealed",
            };
            let keys =
                if r.edits.is_empty() { "-".to_string() } else { format!("{} → {}", short(&r.old), short(&r.new)) };
            [r.path.display().to_string(), r.found.len().to_string(), r.resealed.to_string(), keys, status.into()]
        })
        .collect();
    let mut out = table::render(["FILE", "OBJECTS", "RE-SEALED", "KEYS (OLD → NEW)", "STATUS"], &rows);

    // Files changed per old key id.
    let mut per_key: BTreeMap<String, (BTreeSet<&PathBuf>, usize)> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.failures.is_empty() && !r.edits.is_empty()) {
        for id in &r.old {
            let e = per_key.entry(id.clone()).or_default();
            e.0.insert(&r.path);
            e.1 += r.resealed;
        }
    }
    if !per_key.is_empty() {
        let rows: Vec<[String; 3]> = per_key
            .iter()
            .map(|(id, (files, objects))| {
                let id = id.parse::<KeyId>().map(|k| k.short().to_string()).unwrap_or_else(|_| id.clone());
                [id, files.len().to_string(), objects.to_string()]
            })
            .collect();
        out.push('\n');
        out.push_str(&table::render(["OLD KEY", "FILES", "OBJECTS"], &rows));
    }
    let ok: Vec<&FileRun> = runs.iter().filter(|r| r.failures.is_empty()).collect();
    let (objects, values, current) =
        ok.iter().fold((0, 0, 0), |a, r| (a.0 + r.resealed, a.1 + r.values, a.2 + r.current));
    let files = ok.iter().filter(|r| !r.edits.is_empty()).count();
    out.push_str(&format!(
        "\n{} {values} value(s) in {objects} object(s) across {files} file(s); {current} object(s) already on the latest key; {} file(s) without SealedSecrets skipped\n",
        if dry_run { "Dry run, nothing written: would re-seal" } else { "Re-sealed" },
        scanned - runs.len()
    ));
    let failures: Vec<[String; 3]> = runs
        .iter()
        .flat_map(|r| r.failures.iter().map(|(obj, why)| [r.path.display().to_string(), obj.clone(), why.clone()]))
        .collect();
    if !failures.is_empty() {
        out.push_str("\nCould not be re-sealed (these files were left unchanged):\n");
        out.push_str(&table::render(["FILE", "OBJECT", "REASON"], &failures));
    }
    out
}
