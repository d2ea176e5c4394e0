//! Snapshot tests of the command line: `--help`, usage errors and bad input (trycmd cases in
//! `tests/cmd/`), plus stdin→stdout sealing, whose ciphertext is random (snapbox wildcards).

// Test code: a failed unwrap is a failed test with its message. clippy.toml's
// allow-unwrap-in-tests covers #[test] functions only, not the helpers they call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use snapbox::cmd::{Command, cargo_bin};
use snapbox::str;

#[test]
fn command_line_cases_match_their_snapshots() {
    trycmd::TestCases::new()
        .default_bin_name("gitseal")
        .env("KUBECONFIG", "/nonexistent")
        .env("COLUMNS", "100")
        .case("tests/cmd/*.trycmd")
        .case("tests/cmd/*.toml");
}

#[test]
fn a_secret_on_stdin_is_sealed_to_stdout_as_yaml() {
    Command::new(cargo_bin!("gitseal"))
        .current_dir("tests/cmd/errors.in")
        .env("KUBECONFIG", "/nonexistent")
        .args(["seal", "--cert", "cert.pem"])
        .stdin(std::fs::read_to_string("tests/cmd/errors.in/secret.yaml").unwrap())
        .assert()
        .success()
        .stderr_eq(str![""])
        .stdout_eq(str![[r#"
---
apiVersion: gitseal.dev/v1
kind: SealedSecret
metadata:
  annotations:
    gitseal.dev/key-id: SHA256:[..]
  name: db
  namespace: app
spec:
  encryptedData:
    password: [..]
  template:
    metadata:
      name: db
      namespace: app

"#]]);
}

#[test]
fn json_output_and_the_bitnami_api_give_a_kubeseal_shaped_object() {
    Command::new(cargo_bin!("gitseal"))
        .current_dir("tests/cmd/errors.in")
        .env("KUBECONFIG", "/nonexistent")
        .args(["seal", "--cert", "cert.pem", "--format", "json", "--api", "bitnami", "--scope", "namespace-wide"])
        .stdin(std::fs::read_to_string("tests/cmd/errors.in/secret.yaml").unwrap())
        .assert()
        .success()
        .stdout_eq(str![[r#"
{
  "apiVersion": "bitnami.com/v1alpha1",
  "kind": "SealedSecret",
  "metadata": {
    "annotations": {
      "gitseal.dev/key-id": "SHA256:[..]",
      "sealedsecrets.bitnami.com/namespace-wide": "true"
    },
    "name": "db",
    "namespace": "app"
  },
  "spec": {
    "template": {
      "metadata": {
        "annotations": {
          "sealedsecrets.bitnami.com/namespace-wide": "true"
        },
        "name": "db",
        "namespace": "app"
      }
    },
    "encryptedData": {
      "password": "[..]"
    }
  }
}

"#]]);
}

/// Issue #16: kubeseal's bare form, `kubeseal --cert c.pem < s.yaml`, gives what kubeseal gives:
/// a `bitnami.com` SealedSecret as JSON.
#[test]
fn the_kubeseal_form_without_a_subcommand_seals_stdin_as_kubeseal_does() {
    Command::new(cargo_bin!("gitseal"))
        .current_dir("tests/cmd/errors.in")
        .env("KUBECONFIG", "/nonexistent")
        .args(["--cert", "cert.pem"])
        .stdin(std::fs::read_to_string("tests/cmd/errors.in/secret.yaml").unwrap())
        .assert()
        .success()
        .stderr_eq(str![""])
        .stdout_eq(str![[r#"
{
  "apiVersion": "bitnami.com/v1alpha1",
  "kind": "SealedSecret",
  "metadata": {
    "annotations": {
      "gitseal.dev/key-id": "SHA256:[..]"
    },
    "name": "db",
    "namespace": "app"
  },
  "spec": {
    "template": {
      "metadata": {
        "name": "db",
        "namespace": "app"
      }
    },
    "encryptedData": {
      "password": "[..]"
    }
  }
}

"#]]);
}

/// Issue #16 / #13 item 7: with no namespace in the manifest and no `-n`, the kubeconfig context
/// gives it, read from every `$KUBECONFIG` file merged (the current context named in the first
/// file, defined in the second), as kubectl and the online commands read it.
#[test]
fn the_namespace_comes_from_every_kubeconfig_file_merged() {
    Command::new(cargo_bin!("gitseal"))
        .current_dir("tests/cmd/habits.in")
        .env("KUBECONFIG", "first.kubeconfig:second.kubeconfig")
        .args(["seal", "--cert", "cert.pem", "-f", "no-namespace.yaml"])
        .assert()
        .success()
        .stderr_eq(str![""])
        .stdout_eq(str![[r#"
---
apiVersion: gitseal.dev/v1
kind: SealedSecret
metadata:
  annotations:
    gitseal.dev/key-id: SHA256:08AwOgD6G6+3HcH8fHx80xFy3aWImVmb1hErciyxfRQ
  name: db
  namespace: team
spec:
  encryptedData:
    password: [..]
  template:
    metadata:
      name: db
      namespace: team

"#]]);
}
