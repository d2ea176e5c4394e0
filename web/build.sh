#!/usr/bin/env bash
# Build the page's sealing core (web/page/seal.wasm) from this crate, reproducibly: paths are
# remapped (the checkout and the cargo home never end up in the file) and symbols stripped, so a
# fresh clone with the same rustc builds the same bytes. tests/run.sh runs `web/build.sh --check`.
#
#   web/build.sh           # rebuild and replace web/page/seal.wasm
#   web/build.sh --check   # rebuild and fail if the committed file differs
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
cargo_home=${CARGO_HOME:-$HOME/.cargo}
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
target_dir=${CARGO_TARGET_DIR:-target}
RUSTFLAGS="--remap-path-prefix=$root=/gitseal --remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$rustup_home=/rustup" \
  cargo build --locked -q -p gitseal-web --lib --target wasm32-unknown-unknown --profile wasm
built="$target_dir/wasm32-unknown-unknown/wasm/gitseal_web.wasm"
# The compiler is part of the input: the committed file records which one made it.
rustc=$(rustc -V)
if [[ ${1:-} == --check ]]; then
  recorded=$(cat web/page/BUILT_WITH 2>/dev/null || echo unknown)
  [[ $recorded == "$rustc" ]] ||
    { echo "web/page/seal.wasm was built with '$recorded', this is '$rustc': run web/build.sh and commit the result" >&2; exit 1; }
  cmp -s "$built" web/page/seal.wasm ||
    { echo "web/page/seal.wasm is stale: run web/build.sh and commit the result" >&2; exit 1; }
else
  cp "$built" web/page/seal.wasm
  echo "$rustc" >web/page/BUILT_WITH
  echo "web/page/seal.wasm: $(wc -c <web/page/seal.wasm) bytes, $(sha256sum web/page/seal.wasm | cut -c1-16)…" >&2
fi
