//! `gitseal reseal`: re-encrypt SealedSecret files in place for new recipients, offline (this
//! module), or through the controller ([`super::reseal_online`]).
//!
//! Per file: open every value with the old keys, seal it again for the new recipients, and
//! write the file (atomically, comments kept) only if every value in it succeeded. Files with
//! a failure are left untouched and listed; the run then exits non-zero.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use gitseal_shared::seal::{key_hints, target_of};
use gitseal_shared::types::{ApiGroup, SealedSecretObject};
use gitseal_shared::value::{DecryptionKey, Format, RecipientSet, decode_base64, encode_base64, order_by_hints};
use gitseal_shared::{KeyId, Target};

use crate::commands::open_value;
use crate::commands::seal::bitnami_can_open;
use crate::config::{RecipientSources, ResealConfig, ResealMode};
use crate::edit::{self, ObjectEdits};
use crate::{io, material, output, table, tree};

/// What happened to one file that holds SealedSecrets.
#[derive(Debug, Default)]
struct Outcome {
    path: PathBuf,
    objects: usize,
    values: usize,
    /// Objects already sealed for exactly the new recipients: left byte for byte as they were.
    up_to_date: usize,
    old: BTreeSet<KeyId>,
    /// Key ids the objects declare (key-id annotation), shown when none of them opened.
    declared: BTreeSet<KeyId>,
    /// (object, item, reason); the file is left unchanged when any exists.
    failures: Vec<(String, String, String)>,
}

pub fn run(cfg: &ResealConfig) -> Result<()> {
    match &cfg.mode {
        ResealMode::Offline { keys, recipients } => offline(cfg, keys, recipients),
        ResealMode::Online(cluster) => super::reseal_online::run(cfg, cluster),
    }
}

fn offline(cfg: &ResealConfig, keys: &[PathBuf], recipients: &RecipientSources) -> Result<()> {
    let keys = material::load_keys(keys)?;
    let handles = material::handles(&keys);
    let recipients = material::load_recipients(recipients)?;
    let files = tree::collect_files(&cfg.paths)?;

    let bar = output::progress(files.len() as u64);
    let mut outcomes = Vec::new();
    for file in &files {
        bar.set_message(file.display().to_string());
        if let Some(o) = reseal_file(file, &handles, &recipients, cfg.dry_run) {
            outcomes.push(o);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    if outcomes.is_empty() {
        bail!("no SealedSecret found in {} file(s) under the given paths: nothing to re-seal", files.len());
    }
    let new_ids: Vec<KeyId> = recipients.key_ids().cloned().collect();
    io::write_stdout(report(&outcomes, &new_ids, files.len(), cfg.dry_run).as_bytes())?;
    let bad: Vec<&Outcome> = outcomes.iter().filter(|o| !o.failures.is_empty()).collect();
    if !bad.is_empty() {
        let problems: usize = bad.iter().map(|o| o.failures.len()).sum();
        bail!(
            "{problems} problem(s) in {} file(s), which were left unchanged: give the keys that open them (--key) or fix the files, then run again",
            bad.len()
        );
    }
    Ok(())
}

/// Re-seal one file; `None` when it holds no SealedSecret.
fn reseal_file(path: &Path, keys: &[&DecryptionKey], recipients: &RecipientSet, dry_run: bool) -> Option<Outcome> {
    let mut out = Outcome { path: path.to_path_buf(), ..Default::default() };
    let file_failure = |mut out: Outcome, e: anyhow::Error| {
        out.failures.push(("-".into(), "-".into(), output::one_line(&e)));
        Some(out)
    };
    let text = match io::read_file(path) {
        Ok(t) => t,
        Err(e) => return file_failure(out, e),
    };
    let found = match tree::sealed_secrets(&text) {
        Ok(f) if f.is_empty() => return None,
        Ok(f) => f,
        Err(e) => return file_failure(out, e),
    };
    out.objects = found.len();
    if let Err(e) = io::ensure_writable(path) {
        return file_failure(out, e);
    }
    let new_ids = KeyId::join(recipients.key_ids().cloned());
    let mut edits = Vec::with_capacity(found.len());
    for f in &found {
        let target = match target_of(&f.object) {
            Ok(t) => t,
            Err(e) => {
                out.failures.push((f.label.clone(), "-".into(), e.to_string()));
                continue;
            }
        };
        if f.object.spec.data.is_some() {
            let why = "deprecated spec.data format: unseal it and seal it again";
            out.failures.push((f.label.clone(), "(spec.data)".into(), why.into()));
            continue;
        }
        let hints = key_hints(&f.object);
        out.declared.extend(hints.iter().cloned());
        if up_to_date(&f.object, &hints, recipients, keys, &target) {
            out.up_to_date += 1;
            out.old.extend(recipients.key_ids().cloned());
            continue;
        }
        if ApiGroup::of(&f.object) == Some(ApiGroup::Bitnami) && bitnami_can_open(recipients).is_err() {
            let why = "bitnami.com objects open in Bitnami's controller only when sealed for one certificate: re-seal for one --cert, or make it gitseal.dev/v1";
            out.failures.push((f.label.clone(), "-".into(), why.into()));
            continue;
        }
        let ordered = order_by_hints(keys, &hints);
        let mut e = ObjectEdits::new(f.doc, f.item);
        for (item, value) in &f.object.spec.encrypted_data {
            let opened = match open_value(&ordered, &target, value) {
                Ok(o) => o,
                Err(reason) => {
                    out.failures.push((f.label.clone(), item.clone(), reason));
                    continue;
                }
            };
            match recipients.seal(&target, opened.plaintext.expose()) {
                Ok(sealed) => {
                    out.old.insert(opened.key_id);
                    out.values += 1;
                    e.set(&["spec", "encryptedData", item], encode_base64(&sealed));
                }
                Err(err) => out.failures.push((f.label.clone(), item.clone(), err.to_string())),
            }
        }
        e.set_key_ids(&f.object, new_ids.clone());
        edits.push(e);
    }
    if out.failures.is_empty() && !dry_run && !edits.is_empty() {
        let written = edit::apply(&text, &edits).and_then(|updated| io::replace(path, updated.as_bytes()));
        if let Err(e) = written {
            return file_failure(out, e);
        }
    }
    Some(out)
}

/// Sealed for exactly `recipients` already, as key ids tell: the key-id annotation, or for a
/// kubeseal-made object without one, the key that opens each value. Every value must also be in
/// the format those recipients give. Re-sealing such an object would only churn Git (Bitnami
/// issue #1468). Issue #16.
fn up_to_date(
    object: &SealedSecretObject,
    hints: &[KeyId],
    recipients: &RecipientSet,
    keys: &[&DecryptionKey],
    target: &Target,
) -> bool {
    let wanted: BTreeSet<&KeyId> = recipients.key_ids().collect();
    let values = &object.spec.encrypted_data;
    let formats_agree = values
        .values()
        .all(|v| decode_base64(v).ok().and_then(|b| Format::detect(&b).ok()).is_some_and(|f| f == recipients.format()));
    if object.spec.data.is_some() || values.is_empty() || !formats_agree {
        return false;
    }
    if !hints.is_empty() {
        // The annotation is only a claim: a value that one of our keys opens tells the truth,
        // so an object claiming the new key but sealed for an old one is still re-sealed.
        return hints.iter().collect::<BTreeSet<_>>() == wanted
            && values.values().all(|v| open_value(keys, target, v).map_or(true, |o| wanted.contains(&o.key_id)));
    }
    // One RSA recipient: the key that opens each value says whom it was sealed for.
    recipients.format() == Format::Kubeseal
        && values.values().all(|v| open_value(keys, target, v).is_ok_and(|o| wanted.contains(&o.key_id)))
}

fn report(outcomes: &[Outcome], new_ids: &[KeyId], scanned: usize, dry_run: bool) -> String {
    let short =
        |ids: &mut dyn Iterator<Item = &KeyId>| ids.map(|k| k.short().to_string()).collect::<Vec<_>>().join(",");
    let new = short(&mut new_ids.iter());
    let rows: Vec<[String; 5]> = outcomes
        .iter()
        .map(|o| {
            let old = match (o.old.is_empty(), o.declared.is_empty()) {
                (false, _) => short(&mut o.old.iter()),
                (true, false) => short(&mut o.declared.iter()),
                (true, true) => "?".to_string(),
            };
            let status = match (o.failures.is_empty(), dry_run) {
                (false, _) => "FAILED, unchanged",
                (true, _) if o.up_to_date == o.objects => "up to date",
                (true, true) => "would re-seal",
                (true, false) => "re-sealed",
            };
            [
                o.path.display().to_string(),
                o.objects.to_string(),
                o.values.to_string(),
                format!("{old} → {new}"),
                status.into(),
            ]
        })
        .collect();
    let mut out = table::render(["FILE", "OBJECTS", "VALUES", "KEYS (OLD → NEW)", "STATUS"], &rows);
    let ok: Vec<&Outcome> = outcomes.iter().filter(|o| o.failures.is_empty()).collect();
    let values: usize = ok.iter().map(|o| o.values).sum();
    let objects: usize = ok.iter().map(|o| o.objects).sum();
    let skipped = scanned - outcomes.len();
    let current: usize = ok.iter().map(|o| o.up_to_date).sum();
    let changed = ok.iter().filter(|o| o.up_to_date < o.objects).count();
    let up_to_date = match current {
        0 => String::new(),
        n => format!("; {n} object(s) already sealed for the new keys left as they were"),
    };
    out.push_str(&format!(
        "\n{} {values} value(s) in {} object(s) across {changed} file(s){up_to_date}; {skipped} file(s) without SealedSecrets skipped\n",
        if dry_run { "Dry run, nothing written: would re-seal" } else { "Re-sealed" },
        objects - current,
    ));
    let failures: Vec<[String; 4]> = outcomes
        .iter()
        .flat_map(|o| {
            o.failures
                .iter()
                .map(|(obj, item, why)| [o.path.display().to_string(), obj.clone(), item.clone(), why.clone()])
        })
        .collect();
    if !failures.is_empty() {
        out.push_str("\nCould not be re-sealed (these files were left unchanged):\n");
        out.push_str(&table::render(["FILE", "OBJECT", "ITEM", "REASON"], &failures));
    }
    out
}
