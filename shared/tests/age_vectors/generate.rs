//! The generator of `tests/testdata/gitseal-age/`, run when `GITSEAL_REGENERATE_VECTORS` is set.

use super::*;

pub(super) fn all(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    keys(dir);
    let fx = load_fixture(dir);
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        }
    }

    let scopes = [("strict", strict()), ("namespace_wide", namespace_wide()), ("cluster_wide", cluster_wide())];
    // One RSA certificate alone gives kubeseal's format, so RSA-only age values are sealed for
    // two clusters.
    let sets: [(&str, &[&str]); 3] = [("rsa", &["rsa", "other-rsa"]), ("age", &["age"]), ("both", &["rsa", "age"])];
    for (scope_name, target) in &scopes {
        for (set_name, recipients) in sets {
            let input: Vec<u8> = match *scope_name {
                "strict" => TEXT.to_vec(),
                "namespace_wide" => (0..=255u8).collect(),
                _ => Vec::new(),
            };
            let description = format!(
                "{} value sealed for {}",
                target.scope,
                match set_name {
                    "rsa" => "two clusters' RSA certificates, no X25519",
                    "age" => "the X25519 age identity alone",
                    _ => "the RSA certificate and the X25519 identity",
                }
            );
            sealed_case(dir, &fx, &format!("{scope_name}_{set_name}"), &description, target, recipients, &input);
        }
    }
    // Past one 64 KiB age STREAM chunk.
    let large = Case {
        generated_len: Some(70_000),
        ..sealed_case_spec("a 70,000-byte strict value (two STREAM chunks) for both keys", strict(), &["rsa", "age"])
    };
    write_case(dir, "large_value", &large, None, &seal(&fx, &large.recipients, &strict(), &generated(70_000)));

    let both = "strict_both";
    let text = TEXT.to_vec();
    let sealed_both = std::fs::read(dir.join(both).join("sealed.age")).unwrap();
    let control = |key: &str, target: TargetSpec| Some(Control { key: key.into(), target });
    let moved = |description: &str, from: &str, target: TargetSpec, open_as: TargetSpec, recipients: &[&str]| {
        let value = std::fs::read(dir.join(from).join("sealed.age")).unwrap();
        let case = Case {
            derived_from: Some(from.into()),
            open_as: Some(open_as),
            keys: vec!["rsa".into(), "age".into()],
            expect_error: Some(DECRYPTION_FAILED.into()),
            private_ops: Some(u32::from(recipients.contains(&"rsa"))),
            control: control("age", target.clone()),
            ..fail_spec(description, target, recipients)
        };
        (case, value)
    };
    let strict_in = |ns: &str, name: &str| TargetSpec::new("strict", Some(ns), Some(name));
    for (name, description, from, target, open_as) in [
        ("fail_wrong_name", "a strict value under another name", both, strict(), strict_in("vectors", "other-name")),
        (
            "fail_wrong_namespace",
            "a strict value in another namespace",
            both,
            strict(),
            strict_in("elsewhere", "app-credentials"),
        ),
        (
            "fail_namespace_wide_wrong_namespace",
            "a namespace-wide value in another namespace",
            "namespace_wide_both",
            namespace_wide(),
            TargetSpec::new("namespace-wide", Some("elsewhere"), None),
        ),
        (
            "fail_scope_narrowed",
            "a namespace-wide value read as strict in its own namespace",
            "namespace_wide_both",
            namespace_wide(),
            strict(),
        ),
        ("fail_scope_widened", "a strict value read as namespace-wide", both, strict(), namespace_wide()),
        (
            "fail_cluster_wide_read_as_namespace_wide",
            "a cluster-wide value read as namespace-wide",
            "cluster_wide_both",
            cluster_wide(),
            namespace_wide(),
        ),
    ] {
        let (case, value) = moved(description, from, target, open_as, &["rsa", "age"]);
        write_case(dir, name, &case, Some(input_for(from)), &value);
    }

    let edited = |description: &str, expect: &str, ops: u32, value: Vec<u8>, name: &str| {
        let case = Case {
            derived_from: Some(both.into()),
            keys: vec!["rsa".into(), "age".into()],
            expect_error: Some(expect.into()),
            private_ops: Some(ops),
            ..fail_spec(description, strict(), &["rsa", "age"])
        };
        write_case(dir, name, &case, Some(text.clone()), &value);
    };
    let header = header_end(&sealed_both).unwrap();
    edited("cut inside the header", DECRYPTION_FAILED, 0, sealed_both[..header / 2].to_vec(), "fail_truncated_header");
    edited(
        "the last payload byte cut off",
        DECRYPTION_FAILED,
        1,
        sealed_both[..sealed_both.len() - 1].to_vec(),
        "fail_truncated_payload",
    );
    edited("one bit of the header MAC flipped", DECRYPTION_FAILED, 1, flip_mac(&sealed_both), "fail_tampered_header");
    let mut payload = sealed_both.clone();
    payload[header + 16 + 5] ^= 0x01;
    edited("one payload byte flipped after the nonce", DECRYPTION_FAILED, 1, payload, "fail_tampered_payload");
    let age_only = std::fs::read(dir.join("strict_age").join("sealed.age")).unwrap();
    let case = Case {
        derived_from: Some("strict_age".into()),
        keys: vec!["age".into()],
        expect_error: Some(DECRYPTION_FAILED.into()),
        private_ops: Some(0),
        ..fail_spec("one bit of the X25519 stanza body flipped", strict(), &["age"])
    };
    write_case(dir, "fail_tampered_stanza", &case, Some(text.clone()), &flip_x25519_body(&age_only));

    for (name, description, recipient) in [
        (
            "fail_unknown_rsa_stanza",
            "sealed for another cluster's RSA key and another identity: no stanza is ours",
            "other-rsa",
        ),
        ("fail_wrong_identity", "sealed for another X25519 identity only", "other-age"),
    ] {
        let recipients: &[&str] = if recipient == "other-rsa" { &["other-rsa", "other-age"] } else { &["other-age"] };
        let case = Case {
            keys: vec!["rsa".into(), "age".into()],
            expect_error: Some(DECRYPTION_FAILED.into()),
            // The stanza names another key id, so no private operation is spent on it.
            private_ops: Some(0),
            control: control(recipient, strict()),
            ..fail_spec(description, strict(), recipients)
        };
        write_case(dir, name, &case, Some(text.clone()), &seal(&fx, &case.recipients, &strict(), &text));
    }

    // An age file for the identity whose payload carries no gitseal binding line.
    let case = Case {
        keys: vec!["age".into()],
        expect_error: Some(DECRYPTION_FAILED.into()),
        private_ops: Some(0),
        ..fail_spec("a plain age file for the identity, without the gitseal binding line", strict(), &["plain-age"])
    };
    let recipient = fx.age.to_public();
    let encryptor = age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient)).unwrap();
    let mut plain = Vec::new();
    let mut w = encryptor.wrap_output(&mut plain).unwrap();
    w.write_all(&text).unwrap();
    w.finish().unwrap();
    write_case(dir, "fail_no_binding", &case, Some(text.clone()), &plain);
}

const DECRYPTION_FAILED: &str = "no key could decrypt the value";

fn input_for(case: &str) -> Vec<u8> {
    if case.starts_with("strict") {
        TEXT.to_vec()
    } else if case.starts_with("namespace_wide") {
        (0..=255u8).collect()
    } else {
        Vec::new()
    }
}

fn sealed_case_spec(description: &str, target: TargetSpec, recipients: &[&str]) -> Case {
    Case {
        description: description.into(),
        target,
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        input: None,
        generated_len: None,
        sealed: "sealed.age".into(),
        opens_with: recipients.iter().map(|r| r.to_string()).collect(),
        derived_from: None,
        open_as: None,
        keys: Vec::new(),
        expect_error: None,
        private_ops: None,
        control: None,
    }
}

fn fail_spec(description: &str, target: TargetSpec, recipients: &[&str]) -> Case {
    Case { opens_with: Vec::new(), ..sealed_case_spec(description, target, recipients) }
}

fn sealed_case(
    dir: &Path,
    fx: &Fixture,
    name: &str,
    description: &str,
    target: &TargetSpec,
    recipients: &[&str],
    input: &[u8],
) {
    let case = sealed_case_spec(description, target.clone(), recipients);
    write_case(dir, name, &case, Some(input.to_vec()), &seal(fx, &case.recipients, target, input));
}

fn seal(fx: &Fixture, recipients: &[String], target: &TargetSpec, input: &[u8]) -> Vec<u8> {
    let set = RecipientSet::new(recipients.iter().map(|r| fx.recipient(r)).collect()).unwrap();
    set.seal(&target.target(), input).unwrap()
}

fn write_case(dir: &Path, name: &str, case: &Case, input: Option<Vec<u8>>, sealed: &[u8]) {
    let path = dir.join(name);
    std::fs::create_dir_all(&path).unwrap();
    let mut case = serde_json::to_value(case).unwrap();
    if let Some(input) = input {
        std::fs::write(path.join("input.bin"), input).unwrap();
        case["input"] = "input.bin".into();
    }
    std::fs::write(path.join("sealed.age"), sealed).unwrap();
    std::fs::write(path.join("case.json"), serde_json::to_string_pretty(&case).unwrap() + "\n").unwrap();
}

fn flip_mac(value: &[u8]) -> Vec<u8> {
    let end = header_end(value).unwrap();
    let start = value[..end].windows(4).rposition(|w| w == b"--- ").unwrap() + 4;
    let mut mac = STANDARD_NO_PAD.decode(&value[start..end - 1]).unwrap();
    mac[0] ^= 0x01;
    [&value[..start], STANDARD_NO_PAD.encode(mac).as_bytes(), &value[end - 1..]].concat()
}

fn flip_x25519_body(value: &[u8]) -> Vec<u8> {
    let stanza = value.windows(10).position(|w| w == b"-> X25519 ").unwrap();
    let body = stanza + value[stanza..].iter().position(|b| *b == b'\n').unwrap() + 1;
    let body_end = body + value[body..].iter().position(|b| *b == b'\n').unwrap();
    let mut wrapped = STANDARD_NO_PAD.decode(&value[body..body_end]).unwrap();
    wrapped[0] ^= 0x01;
    [&value[..body], STANDARD_NO_PAD.encode(wrapped).as_bytes(), &value[body_end..]].concat()
}

/// Keep existing key files; make the missing ones (RSA-2048 and certificates valid for 100
/// years, X25519 identities in `age-keygen`'s file format).
fn keys(dir: &Path) {
    for (key, cert, cn) in
        [("key.pem", "cert.pem", "gitseal-age-vectors"), ("other-key.pem", "other-cert.pem", "other")]
    {
        if dir.join(key).is_file() && dir.join(cert).is_file() {
            continue;
        }
        let ttl = time::Duration::days(365 * 100 + 25);
        let pair =
            gitseal_keys::generate_key_pair(gitseal_keys::RsaBits::Rsa2048, cn, time::OffsetDateTime::now_utc(), ttl)
                .unwrap();
        std::fs::write(dir.join(key), pair.rsa.to_pkcs1_pem().unwrap().as_bytes()).unwrap();
        std::fs::write(dir.join(cert), pair.cert.pem()).unwrap();
    }
    for file in ["age-identity.txt", "other-age-identity.txt"] {
        if dir.join(file).is_file() {
            continue;
        }
        let identity = age::x25519::Identity::generate();
        let text = format!(
            "# test only: protects nothing\n# public key: {}\n{}\n",
            identity.to_public(),
            identity.to_string().expose_secret()
        );
        std::fs::write(dir.join(file), text).unwrap();
    }
}
