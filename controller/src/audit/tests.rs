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
