use super::*;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gitseal-audit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn open(path: &Path, key: SigningKey, anchor: Option<&Checkpoint>) -> AuditLog {
    AuditLog::open(Some(path), "replica-a", key, anchor, true, CheckpointPolicy { records: 0 }).unwrap()
}

fn key() -> SigningKey {
    SigningKey::generate().unwrap().0
}

#[test]
fn a_failing_sink_does_not_advance_the_head_and_the_file_follows_the_path_back() {
    let dir = temp_dir("fail");
    let path = dir.join("audit.log");
    let (k, der) = SigningKey::generate().unwrap();
    let log = open(&path, k, None);
    log.write(AuditLog::record("Unseal", Outcome::Success));
    assert_eq!(log.head().seq(), 2);
    assert!(log.ready_for_work().is_ok());

    // The path stops naming a writable file.
    std::fs::rename(&path, dir.join("audit.log.1")).unwrap();
    std::fs::create_dir(&path).unwrap();
    assert!(log.ready_for_work().is_err());
    let err = log.try_write(AuditLog::record("Unseal", Outcome::Success)).unwrap_err();
    assert_eq!(err.to_string(), "cannot write the audit record", "the cause is the source, not the message");
    let io = std::error::Error::source(&err).expect("the I/O error is the source").to_string();
    assert_eq!(crate::error::report(&err), format!("cannot write the audit record: {io}"));
    assert_eq!(log.head().seq(), 2, "the head never passes an unwritten record");
    assert_eq!(log.write_errors.get(), 1);

    std::fs::remove_dir(&path).unwrap();
    assert!(log.ready_for_work().is_ok());
    log.write(AuditLog::record("Unseal", Outcome::Success));
    let old = std::fs::read_to_string(dir.join("audit.log.1")).unwrap();
    let new = std::fs::read_to_string(&path).unwrap();
    let pk = SigningKey::from_pkcs8(&der).unwrap().public_key();
    let s = gitseal_shared::audit::verify_log(&[("1", &old), ("2", &new)], Some(&pk), None).unwrap();
    assert_eq!((s.records, s.last_seq), (3, Some(3)), "{s:?}");
}

#[test]
fn a_restart_resumes_from_the_file_even_after_a_torn_last_line() {
    let dir = temp_dir("resume");
    let path = dir.join("audit.log");
    let (k, der) = SigningKey::generate().unwrap();
    drop(open(&path, k, None));
    // A crash in the middle of a write.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"time\":\"2026-").unwrap();
    drop(f);
    let log = open(&path, SigningKey::from_pkcs8(&der).unwrap(), None);
    assert_eq!(log.head().seq(), 2);
    let text = std::fs::read_to_string(&path).unwrap();
    let pk = log.public_key();
    let s = gitseal_shared::audit::verify_log(&[("a", &text)], Some(&pk), None).unwrap();
    assert_eq!((s.records, s.skipped, s.segments), (2, 1, 2), "{text}");
    assert!(text.lines().last().unwrap().contains("not records signed by this key"), "{text}");
}

#[test]
fn without_a_file_the_chain_resumes_after_the_checkpoint_and_never_silently_at_genesis() {
    let dir = temp_dir("anchor");
    let k = key();
    let cp = Checkpoint::new("replica-z", &Chain::at(41, &"ab".repeat(32)), "2026-01-01T00:00:00Z", &k);
    let log = open(&dir.join("a.log"), k, Some(&cp));
    assert_eq!(log.head().seq(), 42);

    let path = dir.join("garbage.log");
    std::fs::write(&path, "not a record\n").unwrap();
    let log = open(&path, key(), None);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("UnreadableHistory"), "{text}");
    assert_eq!(log.head().seq(), 1);
}

#[test]
fn a_restart_on_a_file_cut_below_its_own_checkpoint_says_so_in_the_first_record() {
    let dir = temp_dir("cut");
    let path = dir.join("audit.log");
    let (k, der) = SigningKey::generate().unwrap();
    let log = open(&path, k, None);
    for _ in 0..4 {
        log.write(AuditLog::record("Unseal", Outcome::Success));
    }
    let cp = log.checkpoint();
    assert_eq!(cp.seq, 5);
    drop(log);
    // The last three records are cut from the file; the checkpoint this replica wrote remains.
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text.lines().take(2).collect();
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    let log = open(&path, SigningKey::from_pkcs8(&der).unwrap(), Some(&cp));
    assert_eq!(log.head().seq(), 6, "the chain goes on after the checkpoint");
    let last = std::fs::read_to_string(&path).unwrap().lines().last().unwrap().to_string();
    assert!(last.contains("AuditFileTruncated") && last.contains("records 3 to 5 were cut"), "{last}");
    assert!(last.contains("\"outcome\":\"failure\""), "{last}");
    let text = std::fs::read_to_string(&path).unwrap();
    let s = gitseal_shared::audit::verify_log(&[("a", &text)], Some(&log.public_key()), None).unwrap();
    assert!(s.notes.iter().any(|n| n.contains("records cut from its audit file")), "{:?}", s.notes);

    // Another replica's newer checkpoint is no sign of a cut.
    let other = Checkpoint::new("replica-b", &Chain::at(9, &"cd".repeat(32)), "2026-01-01T00:00:00Z", &key());
    let dir = temp_dir("cut-other");
    let p2 = dir.join("audit.log");
    drop(open(&p2, key(), None));
    drop(open(&p2, key(), Some(&other)));
    let text = std::fs::read_to_string(&p2).unwrap();
    assert!(!text.contains("AuditFileTruncated"), "{text}");
}
