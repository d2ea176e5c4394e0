//! Property-based fuzzing on stable Rust (issue #9, item 10): the value parser, the manifest
//! parser and the template renderer take hostile input and must answer `Err` or a bounded
//! result, never panic.
//!
//! A CI-sized run with a fixed seed is part of the normal test suite. A long run:
//!
//! ```text
//! GITSEAL_FUZZ_CASES=200000 cargo test -p gitseal-shared --test fuzz --release
//! ```
//!
//! `GITSEAL_FUZZ_SEED=<u64>` explores other inputs. A failing case is shrunk by proptest and
//! printed; it then becomes a named `#[test]` in the regression section at the end.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gitseal_keys::{Certificate, parse_private_keys};
use gitseal_shared::manifest::parse_documents;
use gitseal_shared::seal::unseal;
use gitseal_shared::template::{self, MAX_SECRET_BYTES, MAX_TEMPLATE_BYTES};
use gitseal_shared::types::sealed_secret_from_value;
use gitseal_shared::value::{DecryptionKey, Format, Recipient, RecipientSet, decode_base64, open};
use gitseal_shared::{Error, Scope, SecretBytes, Target};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// Cases per property: `GITSEAL_FUZZ_CASES`, else `ci` (sized so the whole file runs in a few
/// seconds in a debug build).
fn config(ci: u32) -> Config {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    Config {
        cases: env("GITSEAL_FUZZ_CASES").map_or(ci, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        rng_seed: RngSeed::Fixed(env("GITSEAL_FUZZ_SEED").unwrap_or(0x6173_6561_6c39)),
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    }
}

struct Fixture {
    /// The kubeseal vectors' RSA-4096 key.
    rsa: DecryptionKey,
    age: DecryptionKey,
    /// kubeseal format (the certificate alone) and age format (certificate + age recipient).
    kubeseal: RecipientSet,
    multi: RecipientSet,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/testdata/kubeseal");
        let pem = std::fs::read_to_string(dir.join("key.pem")).unwrap();
        let rsa = parse_private_keys(&pem).unwrap().remove(0).key;
        let cert = Certificate::from_pem(&std::fs::read_to_string(dir.join("cert.pem")).unwrap()).unwrap();
        let identity = age::x25519::Identity::generate();
        let age_recipient = Recipient::age(identity.to_public());
        Fixture {
            rsa,
            age: DecryptionKey::from_age(identity),
            kubeseal: RecipientSet::new(vec![cert.recipient().unwrap()]).unwrap(),
            multi: RecipientSet::new(vec![cert.recipient().unwrap(), age_recipient]).unwrap(),
        }
    })
}

fn target() -> Target {
    Target::new(Scope::Strict, Some("prod"), Some("db")).unwrap()
}

/// No error message may carry this.
const PLAINTEXT: &[u8] = b"correct-horse-battery-staple";

fn never_quotes_plaintext(e: &Error) {
    let msg = e.to_string();
    assert!(!msg.contains("correct-horse"), "{msg}");
}

// --- value parser ------------------------------------------------------------------------------

/// Bytes that look like the start of either format, or nothing in particular.
fn value_like() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..1200),
        vec(any::<u8>(), 0..1200).prop_map(|tail| [b"age-encryption.org/v1\n".as_slice(), &tail].concat()),
        (prop_oneof![Just(512u16), Just(256u16), any::<u16>()], vec(any::<u8>(), 0..1200)).prop_map(|(len, tail)| [
            len.to_be_bytes().as_slice(),
            &tail
        ]
        .concat()),
        "[-> a-zA-Z0-9+/=\n]{0,400}".prop_map(|s| format!("age-encryption.org/v1\n-> {s}").into_bytes()),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Truncate { at: usize },
    Insert { at: usize, byte: u8 },
    Remove { at: usize, len: usize },
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        (any::<usize>(), 1..64usize).prop_map(|(at, len)| Mutation::Remove { at, len }),
        vec(any::<u8>(), 1..32).prop_map(Mutation::Append),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len().max(1);
    match m {
        Mutation::Flip { at, mask } => {
            if !bytes.is_empty() {
                bytes[at % n] ^= mask;
            }
        }
        Mutation::Truncate { at } => bytes.truncate(at % n),
        Mutation::Insert { at, byte } => bytes.insert(at % (bytes.len() + 1), *byte),
        Mutation::Remove { at, len } => {
            let start = at % n;
            let end = (start + len).min(bytes.len());
            bytes.drain(start.min(end)..end);
        }
        Mutation::Append(tail) => bytes.extend_from_slice(tail),
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn arbitrary_bytes_never_open_as_a_sealed_value(bytes in value_like()) {
        let f = fixture();
        let _ = Format::detect(&bytes);
        let result = open(&[&f.rsa, &f.age], &target(), &bytes);
        prop_assert!(result.is_err());
    }

    #[test]
    fn mutated_sealed_values_never_open(
        plain in vec(any::<u8>(), 0..300),
        age_format in any::<bool>(),
        mutations in vec(mutation(), 1..4),
    ) {
        let f = fixture();
        let set = if age_format { &f.multi } else { &f.kubeseal };
        let sealed = set.seal(&target(), &plain).unwrap();
        let opened = open(&[&f.rsa], &target(), &sealed).unwrap();
        prop_assert_eq!(opened.plaintext.expose(), &plain[..]);
        let mut bytes = sealed.clone();
        for m in &mutations {
            mutate(&mut bytes, m);
        }
        prop_assume!(bytes != sealed);
        let keys: [&DecryptionKey; 2] = [&f.rsa, &f.age];
        match open(&keys, &target(), &bytes) {
            Ok(_) => prop_assert!(false, "a mutated value opened: {mutations:?}"),
            Err(e) => never_quotes_plaintext(&e),
        }
    }

    #[test]
    fn base64_decoding_of_arbitrary_text_never_panics(text in "\\PC{0,200}|[A-Za-z0-9+/=\\s_-]{0,200}") {
        let _ = decode_base64(&text);
    }
}

// --- manifest parser ---------------------------------------------------------------------------

/// A SealedSecret manifest as kubeseal writes it (YAML) and as JSON.
fn manifests() -> &'static [String; 2] {
    static M: OnceLock<[String; 2]> = OnceLock::new();
    M.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/testdata/kubeseal/namespace_wide");
        let yaml = std::fs::read_to_string(dir.join("sealed.yaml")).unwrap();
        let docs = parse_documents(&yaml).unwrap();
        let json = serde_json::to_string_pretty(&docs[0].value).unwrap();
        [yaml, json]
    })
}

/// Parse `text`, read every document as a SealedSecret and unseal those that read: whatever
/// happens, no panic. Bounded work: at most a few documents reach the private key.
fn parse_read_unseal(text: &str) {
    if let Ok(docs) = parse_documents(text) {
        read_unseal(docs);
    }
}

fn read_unseal(docs: Vec<gitseal_shared::manifest::Document>) {
    let f = fixture();
    for doc in docs.into_iter().take(4) {
        if let Ok(ss) = sealed_secret_from_value(doc.value)
            && let Err(e) = unseal(&ss, &[&f.rsa])
        {
            never_quotes_plaintext(&e);
        }
    }
}

/// Characters that YAML and JSON give meaning to, and some that they do not.
fn yamlish() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            Just(":".to_string()),
            Just("- ".to_string()),
            Just("\n".to_string()),
            Just("  ".to_string()),
            Just("{".to_string()),
            Just("}".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just("---\n".to_string()),
            Just("&a ".to_string()),
            Just("*a".to_string()),
            Just("!!binary ".to_string()),
            Just("\"".to_string()),
            Just("'".to_string()),
            Just("|\n".to_string()),
            Just(">-\n".to_string()),
            Just("<<: *a\n".to_string()),
            Just("kind: SealedSecret\n".to_string()),
            Just("apiVersion: bitnami.com/v1alpha1\n".to_string()),
            Just("encryptedData:\n".to_string()),
            Just("template:\n".to_string()),
            Just("data:\n".to_string()),
            Just("{{ .a }}".to_string()),
            "[a-z]{1,8}",
            "\\PC{1,4}",
        ],
        0..80,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn arbitrary_text_never_panics_the_manifest_parser(text in prop_oneof!["\\PC{0,300}", yamlish()]) {
        parse_read_unseal(&text);
    }

    #[test]
    fn mutated_manifests_never_panic_the_parser_or_unseal(
        json in any::<bool>(),
        edits in vec((any::<usize>(), 0..16usize, yamlish()), 1..4),
    ) {
        let mut text = manifests()[usize::from(json)].clone();
        for (at, len, insert) in &edits {
            let mut start = at % (text.len() + 1);
            while !text.is_char_boundary(start) { start -= 1; }
            let mut end = (start + len).min(text.len());
            while !text.is_char_boundary(end) { end -= 1; }
            text.replace_range(start..end, insert);
        }
        parse_read_unseal(&text);
    }
}

/// Deep nesting and huge counts finish quickly, in every syntax the parser accepts: JSON's
/// recursion limit and serde-saphyr's budgets (depth, documents, nodes) refuse them.
#[test]
fn deep_nesting_and_huge_counts_are_bounded() {
    let depth = 20_000;
    let cases: Vec<(&str, String, bool)> = vec![
        ("json arrays", "[".repeat(depth) + &"]".repeat(depth), false),
        ("json objects", "{\"a\":".repeat(depth) + "1" + &"}".repeat(depth), false),
        ("yaml flow sequences", "a: ".to_string() + &"[".repeat(depth) + &"]".repeat(depth), false),
        ("yaml flow mappings", "a: ".to_string() + &"{a: ".repeat(depth) + "1" + &"}".repeat(depth), false),
        ("yaml block", (0..2000).map(|i| format!("{}- ", " ".repeat(i * 2))).collect::<Vec<_>>().join("\n"), false),
        ("yaml documents", "---\nkind: Secret\n".repeat(100_000), false),
        ("yaml keys", (0..10_000).map(|i| format!("k{i}: v\n")).collect(), true),
        (
            "yaml aliases",
            {
                // The billion-laughs shape: each level lists the previous one ten times.
                let mut s = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n".to_string();
                for i in 1..12 {
                    let p = i - 1;
                    s += &format!(
                        "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
                    );
                }
                s
            },
            false,
        ),
        (
            "json list of many items",
            format!("{{\"kind\":\"List\",\"items\":[{}]}}", vec!["{}"; 100_000].join(",")),
            true,
        ),
    ];
    for (name, text, accepted) in cases {
        let start = Instant::now();
        match parse_documents(&text) {
            Ok(docs) => {
                assert!(accepted, "{name}: {} documents", docs.len());
                read_unseal(docs);
            }
            Err(e) => assert!(!accepted && !e.to_string().contains('\n'), "{name}: {e}"),
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{name}: {:?}", start.elapsed());
    }
}

// --- template renderer -------------------------------------------------------------------------

/// Template text: fragments of actions, trim markers, quotes and plain text.
fn template_text() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            Just("{{".to_string()),
            Just("}}".to_string()),
            Just("{{ .a }}".to_string()),
            Just("{{.b}}".to_string()),
            Just("{{- .a -}}".to_string()),
            Just("{{ index . \"a-b\" }}".to_string()),
            Just("{{ index . `b` }}".to_string()),
            Just(" ".to_string()),
            Just("\n".to_string()),
            Just("-".to_string()),
            Just(".".to_string()),
            Just("index".to_string()),
            Just("\"".to_string()),
            Just("|".to_string()),
            Just("{{/* */}}".to_string()),
            "[a-z]{1,6}",
            "\\PC{1,3}",
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

fn value_map() -> impl Strategy<Value = BTreeMap<String, Vec<u8>>> {
    btree_map(
        prop_oneof![Just("a".to_string()), Just("b".to_string()), Just("a-b".to_string()), "[a-z]{1,3}"],
        prop_oneof![8 => vec(any::<u8>(), 0..64), 1 => (0..400_000usize).prop_map(|n| vec![b'x'; n])],
        0..4,
    )
}

fn secret_values(m: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, SecretBytes> {
    m.iter().map(|(k, v)| (k.clone(), SecretBytes::from(v.as_slice()))).collect()
}

/// A template that is valid by construction, and what it must render to.
#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Dot(String),
    Index(String),
}

proptest! {
    #![proptest_config(config(160))]

    #[test]
    fn arbitrary_templates_render_bounded_or_fail_cleanly(
        templates in btree_map("[a-z]{1,3}", template_text(), 0..6),
        values in value_map(),
    ) {
        let data_bytes: usize = values.values().map(Vec::len).sum();
        match template::render(&templates, secret_values(&values)) {
            Ok(out) => {
                let total: usize = out.values().map(SecretBytes::len).sum();
                if templates.is_empty() {
                    prop_assert_eq!(total, data_bytes);
                } else {
                    prop_assert!(total <= MAX_SECRET_BYTES, "{total}");
                }
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(!msg.contains('\n') && msg.len() < 400, "{msg}");
                let known = matches!(e, Error::Template(_) | Error::SecretTooLarge { .. });
                prop_assert!(known, "{e:?}");
            }
        }
    }

    #[test]
    fn well_formed_templates_render_exactly_the_decrypted_values(
        pieces in vec(prop_oneof![
            "[a-z =:/@]{0,12}".prop_map(Piece::Text),
            "[a-z_][a-z0-9_]{0,5}".prop_map(Piece::Dot),
            "[a-z0-9._-]{1,8}".prop_map(Piece::Index),
        ], 0..12),
        extra in vec(any::<u8>(), 0..32),
    ) {
        let mut values = BTreeMap::new();
        let (mut text, mut expected) = (String::new(), Vec::new());
        for (i, p) in pieces.iter().enumerate() {
            match p {
                Piece::Text(t) => { text += t; expected.extend_from_slice(t.as_bytes()); }
                Piece::Dot(name) | Piece::Index(name) => {
                    let v = values.entry(name.clone()).or_insert_with(|| [name.as_bytes(), &extra, &[i as u8]].concat()).clone();
                    text += &match p { Piece::Dot(_) => format!("{{{{ .{name} }}}}"), _ => format!("{{{{ index . \"{name}\" }}}}") };
                    expected.extend_from_slice(&v);
                }
            }
        }
        let templates = BTreeMap::from([("out".to_string(), text)]);
        let out = template::render(&templates, secret_values(&values)).unwrap();
        prop_assert_eq!(out["out"].expose(), &expected[..]);
        for (k, v) in &values {
            prop_assert_eq!(out[k].expose(), &v[..], "decrypted values pass through");
        }
    }
}

// --- regression cases --------------------------------------------------------------------------

#[test]
fn a_template_of_the_maximum_length_made_only_of_references_stays_within_the_limit() {
    // ~5,000 references to a 1 KiB value would be 5 MiB: refused before allocation.
    let text = "{{.a}}".repeat(MAX_TEMPLATE_BYTES / 6);
    let templates = BTreeMap::from([("t".to_string(), text)]);
    let values = BTreeMap::from([("a".to_string(), SecretBytes::from(vec![b'x'; 1024]))]);
    assert!(matches!(template::render(&templates, values), Err(Error::SecretTooLarge { .. })));
}

/// Found by `arbitrary_templates_render_bounded_or_fail_cleanly`: an unclosed action ran into
/// the next line, and the error quoted the newline, so the message was two lines.
#[test]
fn an_action_spanning_lines_is_quoted_on_one_line() {
    let templates = BTreeMap::from([("a".to_string(), "{{.\n{{ .a }}".to_string())]);
    let msg = template::render(&templates, BTreeMap::new()).unwrap_err().to_string();
    assert!(!msg.contains('\n'), "{msg}");
    assert!(msg.contains("{{ .\\n{{ .a }}"), "{msg}");
}

#[test]
fn the_plaintext_marker_is_never_in_a_mutated_value_error() {
    let f = fixture();
    let mut sealed = f.kubeseal.seal(&target(), PLAINTEXT).unwrap();
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    never_quotes_plaintext(&open(&[&f.rsa], &target(), &sealed).unwrap_err());
}
