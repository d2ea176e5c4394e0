#!/usr/bin/env bash
# The whole test suite, as CI runs it: Go-built peers (cached by version), formatting, lints,
# generated files up to date, then every Rust test against the real control plane.
#
#   tests/run.sh            # everything
#   tests/run.sh --quick    # skip fmt/clippy/generated checks
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

# System packages and the wasm32 target first (fast when present; the wasm checks need them),
# then the Go peers in the background: building them takes most of a fresh machine's first run
# and needs none of the Rust steps below, so the two overlap; the tests wait for them.
step "system packages and Rust targets the tests use"
GITSEAL_PEERS="" bash tests/peers/install.sh
step "Go-built test peers (kube-apiserver, etcd, kube-controller-manager, kubectl, kubeseal, Bitnami controller, age, helm), in the background"
mkdir -p "${CARGO_TARGET_DIR:-target}"
peers_log="${CARGO_TARGET_DIR:-target}/peers.log"
bash tests/peers/install.sh >"$peers_log" 2>&1 &
peers_pid=$!
trap 'kill "$peers_pid" 2>/dev/null || true' EXIT
wait_for_peers() {
  step "waiting for the Go-built test peers (log: $peers_log)"
  if ! wait "$peers_pid"; then
    cat "$peers_log" >&2
    echo "tests/peers/install.sh failed (log above)" >&2
    exit 1
  fi
  trap - EXIT
  tail -n 1 "$peers_log" >&2
}

if [[ ${1:-} != --quick ]]; then
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "cargo clippy -D warnings"
  cargo clippy --workspace --all-targets --locked -- -D warnings
  cargo clippy -p gitseal-web --lib --target wasm32-unknown-unknown --locked -- -D warnings
  step "generated CRDs are current"
  cargo build --locked -q -p gitseal-controller
  for g in gitseal:gitseal.dev bitnami:bitnami.com; do
    "${CARGO_TARGET_DIR:-target}/debug/gitseal-controller" crd "${g%%:*}" | diff -u "deploy/crds/${g#*:}_sealedsecrets.yaml" - ||
      { echo "deploy/crds is stale: run 'gitseal-controller crd ${g%%:*}' and commit the result" >&2; exit 1; }
  done
  step "web/page/seal.wasm is current (rebuilt reproducibly, compared byte for byte)"
  bash web/build.sh --check
fi

step "build every test binary"
cargo test --workspace --locked --no-run
wait_for_peers

if [[ ${1:-} != --quick ]]; then
  step "deploy/ is current (chart copies of CRDs and dashboard, deploy/manifests, argocd-cm)"
  bash deploy/generate.sh --check
fi

# Includes controller/tests/faults: kube-apiserver and etcd SIGKILLed and restarted, the controller
# SIGKILLed mid-write, connections cut, key Secrets deleted (500 SealedSecrets each, ~3 min).
# The native-OAEP token test runs where kryoptic was built (tests/peers/kryoptic.sh, opt-in: slow).
kryoptic="${GITSEAL_TEST_CACHE:-$HOME/.cache/gitseal-test}/kryoptic-1.5.4/libkryoptic_pkcs11.so"
[ -e "$kryoptic" ] && export GITSEAL_KRYOPTIC_MODULE="${GITSEAL_KRYOPTIC_MODULE:-$kryoptic}"
step "cargo test"
cargo test --workspace --locked --no-fail-fast

step "README quick start, run as written (playground and kubectl included)"
bash tests/quickstart.sh
