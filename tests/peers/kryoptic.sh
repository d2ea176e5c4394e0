#!/usr/bin/env bash
# Build kryoptic (the Rust PKCS#11 soft token; it does CKM_RSA_PKCS_OAEP with SHA-256 and a
# label natively) into ~/.cache/gitseal-test/kryoptic-$VERSION/libkryoptic_pkcs11.so for the
# opt-in test keys/tests/pkcs11_kryoptic.rs. Not part of tests/peers/install.sh: it took 17.5
# minutes on one core of the 2-core CI machine (OpenSSL bindings through bindgen, release build).
# Needs libssl-dev, libsqlite3-dev and libclang-dev (apt-get). tests/run.sh uses the result when
# it exists.
set -euo pipefail
VERSION=1.5.4
cache="${GITSEAL_TEST_CACHE:-$HOME/.cache/gitseal-test}/kryoptic-$VERSION"
if [ -e "$cache/libkryoptic_pkcs11.so" ]; then
  echo "kryoptic $VERSION: $cache/libkryoptic_pkcs11.so"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Fetch the published crate through cargo (a throw-away project depending on it), then build
# its cdylib from the unpacked source with its own Cargo.lock.
mkdir -p "$work/fetch/src"
printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nkryoptic = "=%s"\n' "$VERSION" >"$work/fetch/Cargo.toml"
: >"$work/fetch/src/lib.rs"
cargo fetch --manifest-path "$work/fetch/Cargo.toml" -q
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/kryoptic-"$VERSION" | head -n1)
cp -r "$src" "$work/kryoptic"
# minimal: sqlite storage, AES, RSA, hashes; dynamic: link the system OpenSSL 3.
cargo build --manifest-path "$work/kryoptic/Cargo.toml" --release --locked \
  --no-default-features --features kryoptic-lib/minimal,kryoptic-lib/dynamic
mkdir -p "$cache"
cp "$work/kryoptic/target/release/libkryoptic_pkcs11.so" "$cache/"
echo "kryoptic $VERSION: $cache/libkryoptic_pkcs11.so"
