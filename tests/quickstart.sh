#!/usr/bin/env bash
# Runs the README's quick start as written, so the README cannot drift from what works:
#
#   tests/quickstart.sh           # needs tests/peers/install.sh (kubectl) and the debug build
#
# - the `export PATH=…` line of "Set up, run, test" is evaluated at the repository root (it names
#   target/debug and the peers' bin directory);
# - every ```sh block of the "## Quick start" section runs, in order, as one bash script with
#   `set -euo pipefail`, in a fresh temporary directory; the playground it starts in the
#   background is stopped by the script's own `kill %1`, or by this script if anything fails;
# - the whole run is bounded (QUICKSTART_TIMEOUT seconds, default 120).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readme=$root/README.md
timeout=${QUICKSTART_TIMEOUT:-120}

cargo build --locked -q -p gitseal-cli -p gitseal-controller -p gitseal-tests --bins --manifest-path "$root/Cargo.toml"

path_line=$(grep -m1 '^export PATH=' "$readme") || { echo "quickstart: README has no 'export PATH=' line" >&2; exit 1; }
work=$(mktemp -d)
script=$work/quickstart.bash
{
  echo 'set -euo pipefail'
  echo "cd '$root'"
  echo "$path_line"
  echo "cd '$work'"
  # The ```sh blocks between "## Quick start" and the next "## " heading.
  awk '
    /^## /            { in_section = ($0 ~ /^## Quick start/) ; next }
    !in_section       { next }
    /^```sh$/         { in_block = 1; next }
    /^```$/           { if (in_block) { in_block = 0; print "" }; next }
    in_block          { print }
  ' "$readme"
} >"$script"
if ! grep -q 'gitseal-playground' "$script"; then
  echo "quickstart: found no playground command in the README's quick start" >&2
  exit 1
fi

pid=
cleanup() {
  if [[ -n $pid ]] && kill -0 -- "-$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

start=$SECONDS
# Its own process group, so whatever it starts (the playground) can be stopped as one.
setsid bash -x "$script" </dev/null &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
  if ((SECONDS - start > timeout)); then
    echo "quickstart: still running after ${timeout}s: stopping it" >&2
    kill -TERM -- "-$pid" 2>/dev/null || true
    break
  fi
  sleep 1
done
rc=0
wait "$pid" || rc=$?
if [[ $rc -ne 0 ]]; then
  echo "quickstart: the README's quick start failed (exit $rc) after $((SECONDS - start))s; script: see the trace above" >&2
  exit 1
fi
echo "quickstart: the README's quick start ran as written in $((SECONDS - start))s" >&2
