#!/usr/bin/env bash
# Regenerates the kubeseal golden vectors in tests/testdata/kubeseal/ with the REAL kubeseal.
#
# Usage: tests/tools/make-golden.sh [--new-key]
#
#   --new-key   also replace the test key pair (key.pem, cert.pem, key-secret.yaml). Without it an
#               existing key is kept, so a rerun only re-seals (values differ on every run anyway:
#               RSA-OAEP and the session keys are random).
#
# Needs: bash, coreutils (base64 -w0), openssl, jq, perl, and kubeseal v0.36.6 from
# tests/peers/install.sh (found through $GITSEAL_KUBESEAL, else the peers.env of the peer cache).
#
# What it writes, per case directory (tests/testdata/kubeseal/<case>/):
#   case.json      what the case is: description, the kubeseal arguments used, and either the
#                  targets (scope/namespace/name) of each sealed object, or for raw cases the
#                  target of the value, or for fail_* cases the error gitseal must give
#                  (`expect_error`, a substring) and what kubeseal itself said (`kubeseal_error`).
#   input.yaml     the Secret(s) given to kubeseal (input.bin for --raw cases)
#   sealed.yaml|sealed.json|sealed.txt   kubeseal's output, verbatim (fail_* and a few other cases
#                  are derived from it by the edit described in case.json)
#   expected.yaml  `kubeseal --recovery-unseal -o yaml` of sealed.*, verbatim: the Secret Bitnami
#                  builds (its ownerReference, with an empty uid, is the controller's business; the
#                  runner drops it). Raw cases compare with input.bin instead.
# and, once for all cases:
#   key.pem        the test RSA-4096 private key (PKCS#8, TEST ONLY: it protects nothing)
#   cert.pem       its self-signed certificate, empty subject like Bitnami's, valid for 100 years so
#                  CI never meets an expired certificate
#   key-secret.yaml  the same key as Bitnami's controller stores it (kubernetes.io/tls Secret, PKCS#1
#                  tls.key, the sealed-secrets-key=active label); kubeseal is checked to accept it
#
# The runner is shared/tests/kubeseal_vectors.rs (`cargo test -p gitseal-shared --test kubeseal_vectors`).
# The 1 MiB case keeps only sealed.yaml: its value is generated (byte i = i mod 251), see case.json.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$root/tests/testdata/kubeseal
new_key=false
[[ ${1:-} == --new-key ]] && new_key=true

for tool in openssl jq perl base64; do
  command -v "$tool" >/dev/null || { echo "make-golden: $tool is required" >&2; exit 1; }
done

kubeseal=${GITSEAL_KUBESEAL:-}
if [[ -z $kubeseal ]]; then
  cache=${GITSEAL_TEST_CACHE:-$HOME/.cache/gitseal-test}
  kubeseal=$(sed -n 's/^GITSEAL_KUBESEAL=//p' "$cache/peers.env" 2>/dev/null || true)
fi
if [[ -z $kubeseal || ! -x $kubeseal ]]; then
  echo "make-golden: kubeseal not found (GITSEAL_KUBESEAL or peers.env): run tests/peers/install.sh" >&2
  exit 1
fi
version=$("$kubeseal" --version)
[[ $version == *v0.36.6* ]] || echo "make-golden: warning: expected kubeseal v0.36.6, got: $version" >&2

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# An empty kubeconfig: no cluster is contacted and the host's ~/.kube/config cannot leak in.
printf 'apiVersion: v1\nkind: Config\n' >"$tmp/kubeconfig"
export KUBECONFIG=$tmp/kubeconfig

log() { printf '[golden] %s\n' "$*" >&2; }
ks() { "$kubeseal" "$@"; }

mkdir -p "$out"
cd "$out"

# ---------------------------------------------------------------------------------------------
# The test key.
if $new_key || [[ ! -f key.pem || ! -f cert.pem ]]; then
  log "generating the RSA-4096 test key"
  openssl req -x509 -newkey rsa:4096 -nodes -keyout key.pem -out cert.pem -days 36500 -subj / 2>/dev/null
fi
{
  echo "# TEST ONLY. The key of tests/testdata/kubeseal/key.pem as Bitnami's controller stores it."
  echo "apiVersion: v1"
  echo "kind: Secret"
  echo "metadata:"
  echo "  name: sealed-secrets-keytest0"
  echo "  namespace: kube-system"
  echo "  labels:"
  echo "    sealedsecrets.bitnami.com/sealed-secrets-key: active"
  echo "type: kubernetes.io/tls"
  echo "data:"
  echo "  tls.crt: $(base64 -w0 <cert.pem)"
  echo "  tls.key: $(openssl rsa -in key.pem -traditional 2>/dev/null | base64 -w0)"
} >key-secret.yaml

# Remove every old case directory, so a case dropped from this script disappears too.
find . -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +

# ---------------------------------------------------------------------------------------------
# Helpers.

# case_json DIR JQ_ARGS... FILTER: write DIR/case.json from a jq filter over --arg/--argjson values.
case_json() {
  local dir=$1; shift
  jq -n "$@" >"$dir/case.json"
}

# json_array ARGS...: the arguments (none containing a newline) as a JSON array of strings.
json_array() {
  printf '%s\n' "$@" | jq -R . | jq -sc .
}

# unseal_expected DIR SEALED: kubeseal --recovery-unseal every object of SEALED into expected.yaml.
# kubeseal reads one object per run, so a stream is split first (JSON with jq, YAML on '---').
unseal_expected() {
  local dir=$1 sealed=$2 keyfile=${3:-$out/key.pem}
  : >"$dir/expected.yaml"
  local parts=$tmp/parts
  rm -rf "$parts" && mkdir -p "$parts"
  case $sealed in
    *.json) jq -c . "$dir/$sealed" | split -l1 -a3 - "$parts/doc." ;;
    *) awk -v d="$parts" '/^---$/ {n++; next} {f=sprintf("%s/doc.%03d", d, n); print > f}' "$dir/$sealed" ;;
  esac
  for part in "$parts"/doc.*; do
    ks --recovery-unseal --recovery-private-key "$keyfile" -o yaml <"$part" >>"$dir/expected.yaml"
  done
}

# target SCOPE NAMESPACE NAME: one target as JSON.
target() {
  jq -nc --arg s "$1" --arg ns "$2" --arg n "$3" \
    '{scope: $s} + (if $ns == "" then {} else {namespace: $ns} end) + {name: $n}'
}

# seal_case DIR DESCRIPTION FORMAT TARGETS_JSON [KUBESEAL_ARGS...]: DIR/input.yaml must exist.
seal_case() {
  local dir=$1 desc=$2 format=$3 targets=$4; shift 4
  local sealed=sealed.$format
  ks --cert "$out/cert.pem" -o "$format" "$@" <"$dir/input.yaml" >"$dir/$sealed"
  unseal_expected "$dir" "$sealed"
  local args
  args=$(json_array --cert cert.pem -o "$format" "$@")
  case_json "$dir" --arg d "$desc" --arg s "$sealed" --argjson a "$args" --argjson t "$targets" \
    '{description: $d, kubeseal: $a, sealed: $s, expected: "expected.yaml", targets: $t}'
  log "$dir"
}

# raw_case DIR DESCRIPTION SCOPE NAMESPACE NAME: DIR/input.bin must exist.
raw_case() {
  local dir=$1 desc=$2 scope=$3 ns=$4 name=$5
  local args=(--raw --from-file="$dir/input.bin" --scope "$scope")
  [[ -n $ns ]] && args+=(-n "$ns")
  [[ -n $name ]] && args+=(--name "$name")
  ks --cert "$out/cert.pem" "${args[@]}" >"$dir/sealed.txt"
  # kubeseal cannot open a bare value; wrap it as the SealedSecret a user would write and check
  # that kubeseal gives the input back.
  jq -n --arg v "$(cat "$dir/sealed.txt")" --arg s "$scope" --arg ns "$ns" --arg n "$name" '{
      apiVersion: "bitnami.com/v1alpha1", kind: "SealedSecret",
      metadata: ({name: (if $n == "" then "any" else $n end), namespace: (if $ns == "" then "any" else $ns end)}
        + (if $s == "strict" then {} else {annotations: {("sealedsecrets.bitnami.com/" + $s): "true"}} end)),
      spec: {encryptedData: {value: $v}}}' >"$tmp/raw-wrapped.json"
  ks --recovery-unseal --recovery-private-key "$out/key.pem" -o json <"$tmp/raw-wrapped.json" \
    | jq -r '.data.value // ""' | base64 -d >"$tmp/raw-back.bin"
  cmp -s "$tmp/raw-back.bin" "$dir/input.bin" || { log "$dir: kubeseal does not open its own raw value"; exit 1; }
  local kargs
  local shown=(--cert cert.pem --raw --from-file=input.bin --scope "$scope")
  [[ -n $ns ]] && shown+=(-n "$ns")
  [[ -n $name ]] && shown+=(--name "$name")
  kargs=$(json_array "${shown[@]}")
  case_json "$dir" --arg d "$desc" --argjson a "$kargs" --argjson t "$(target "$scope" "$ns" "$name")" \
    '{description: $d, kubeseal: $a, raw: true, input: "input.bin", sealed: "sealed.txt", target: $t}'
  log "$dir"
}

# fail_case DIR DESCRIPTION EXPECT_ERROR: DIR/sealed.json (or .yaml) must exist, made as $derived
# says. Records what kubeseal --recovery-unseal says about it (it must fail too, unless
# KUBESEAL_ACCEPTS says why it does not); PENDING marks a rejection gitseal does not make yet.
fail_case() {
  local dir=$1 desc=$2 expect=$3
  local sealed
  sealed=$(cd "$dir" && ls sealed.* | head -1)
  local kerr="" krc=0
  kerr=$(ks --recovery-unseal --recovery-private-key "$out/key.pem" -o yaml <"$dir/$sealed" 2>&1 >/dev/null) || krc=$?
  if [[ $krc == 0 && -z ${KUBESEAL_ACCEPTS:-} ]]; then
    log "$dir: kubeseal accepted a fail case"
    exit 1
  fi
  [[ $krc == 0 ]] && kerr="(kubeseal accepts it: ${KUBESEAL_ACCEPTS})"
  case_json "$dir" --arg d "$desc" --arg f "$derived" --arg s "$sealed" --arg e "$expect" \
    --arg k "$(head -1 <<<"$kerr")" --arg p "${PENDING:-}" \
    '{description: $d, derived_from: $f, sealed: $s, expect_error: $e, kubeseal_error: $k}
     + (if $p == "" then {} else {pending: $p} end)'
  log "$dir"
}

new() { mkdir -p "$1"; }


# ---------------------------------------------------------------------------------------------
# Scopes, manifest mode.
new strict
cat >strict/input.yaml <<'EOF'
apiVersion: v1
kind: Secret
metadata:
  name: db-credentials
  namespace: prod
type: Opaque
data:
  username: YWRtaW4=
stringData:
  password: correct horse battery staple
EOF
seal_case strict "strict scope (the default): data and stringData, YAML output" yaml \
  "[$(target strict prod db-credentials)]"

new strict_json
cp strict/input.yaml strict_json/input.yaml
seal_case strict_json "strict scope, kubeseal's default JSON output" json "[$(target strict prod db-credentials)]"

new namespace_wide
sed 's/db-credentials/app-config/' strict/input.yaml >namespace_wide/input.yaml
seal_case namespace_wide "namespace-wide scope from --scope" yaml "[$(target namespace-wide prod app-config)]" \
  --scope namespace-wide

new cluster_wide
sed 's/db-credentials/shared-token/' strict/input.yaml >cluster_wide/input.yaml
seal_case cluster_wide "cluster-wide scope from --scope, with a namespace" yaml \
  "[$(target cluster-wide prod shared-token)]" --scope cluster-wide

new cluster_wide_without_namespace
cat >cluster_wide_without_namespace/input.yaml <<'EOF'
apiVersion: v1
kind: Secret
metadata:
  name: registry-token
stringData:
  token: ghp_0123456789abcdef
EOF
seal_case cluster_wide_without_namespace "cluster-wide scope, no namespace anywhere (kubeseal keeps it empty)" yaml \
  "[$(target cluster-wide "" registry-token)]" --scope cluster-wide

new scope_from_annotation
cat >scope_from_annotation/input.yaml <<'EOF'
apiVersion: v1
kind: Secret
metadata:
  name: api-key
  namespace: staging
  annotations:
    sealedsecrets.bitnami.com/namespace-wide: "true"
stringData:
  key: from-annotation
EOF
seal_case scope_from_annotation "namespace-wide scope chosen by the input Secret's annotation, no --scope" yaml \
  "[$(target namespace-wide staging api-key)]"

# ---------------------------------------------------------------------------------------------
# Raw mode.
new raw_strict
printf 'correct horse battery staple' >raw_strict/input.bin
raw_case raw_strict "--raw, strict scope" strict prod db-credentials

new raw_namespace_wide
printf 'namespace wide value' >raw_namespace_wide/input.bin
raw_case raw_namespace_wide "--raw, namespace-wide scope" namespace-wide prod app-config

new raw_cluster_wide
printf 'cluster wide value' >raw_cluster_wide/input.bin
raw_case raw_cluster_wide "--raw, cluster-wide scope (empty OAEP label)" cluster-wide "" ""

new raw_binary
perl -e 'print map { chr } 0 .. 255' >raw_binary/input.bin
raw_case raw_binary "--raw, all 256 byte values" strict prod binary

new raw_empty
: >raw_empty/input.bin
raw_case raw_empty "--raw, an empty value (2 + 512 + 16 bytes)" strict prod empty

new raw_unicode_target
printf 'значение 値 🔑' >raw_unicode_target/input.bin
raw_case raw_unicode_target "--raw, strict scope with a non-ASCII namespace and name (UTF-8 OAEP label)" \
  strict "пространство" "секрет-🔑"

# ---------------------------------------------------------------------------------------------
# Values and item names.
new binary_values
{
  echo "apiVersion: v1"
  echo "kind: Secret"
  echo "metadata:"
  echo "  name: binary"
  echo "  namespace: prod"
  echo "data:"
  echo "  all-bytes: $(perl -e 'print map { chr } 0 .. 255' | base64 -w0)"
  echo "  all-bytes-reversed: $(perl -e 'print map { chr } reverse 0 .. 255' | base64 -w0)"
  echo "  nul: AA=="
} >binary_values/input.yaml
seal_case binary_values "binary values: all 256 byte values, reversed, a lone NUL" yaml "[$(target strict prod binary)]"

new empty_value
cat >empty_value/input.yaml <<'EOF'
apiVersion: v1
kind: Secret
metadata:
  name: empty
  namespace: prod
data:
  empty-data: ""
stringData:
  empty-string-data: ""
  not-empty: x
EOF
seal_case empty_value "empty values from data and from stringData" yaml "[$(target strict prod empty)]"

new unicode_keys
cat >unicode_keys/input.yaml <<'EOF'
apiVersion: v1
kind: Secret
metadata:
  name: unicode
  namespace: prod
stringData:
  пароль: значение
  鍵: 値
  "🔑": "🗝️ emoji value"
  plain: ascii
EOF
seal_case unicode_keys "non-ASCII item names (kubeseal writes the emoji key as \"\\U0001F511\")" yaml \
  "[$(target strict prod unicode)]"

new large_value
{
  echo "apiVersion: v1"
  echo "kind: Secret"
  echo "metadata:"
  echo "  name: large"
  echo "  namespace: prod"
  echo "data:"
  echo "  big: $(perl -e 'print map { chr($_ % 251) } 0 .. 1048575' | base64 -w0)"
  echo "  small: c21hbGw="
} >large_value/input.yaml
seal_case large_value "a 1 MiB value (byte i = i mod 251) beside a small one" yaml "[$(target strict prod large)]"
# Keep the repository small: the input and the big expected value are generated by the runner.
awk '$1 != "big:"' large_value/expected.yaml >"$tmp/expected" && mv "$tmp/expected" large_value/expected.yaml
rm large_value/input.yaml
jq '. + {input: null, generated: {big: {len: 1048576, modulus: 251}}}' large_value/case.json >"$tmp/case" \
  && mv "$tmp/case" large_value/case.json

# ---------------------------------------------------------------------------------------------
# Streams and metadata.
new multi_document_yaml
cat >multi_document_yaml/input.yaml <<'EOF'
# A stream with comments and empty documents, which kubeseal skips.
---
apiVersion: v1
kind: Secret
metadata:
  name: first
  namespace: prod
stringData:
  a: one
---
---
apiVersion: v1
kind: Secret
metadata:
  name: second
  namespace: staging
  annotations:
    sealedsecrets.bitnami.com/namespace-wide: "true"
stringData:
  b: two
---
apiVersion: v1
kind: Secret
metadata:
  name: third
  annotations:
    sealedsecrets.bitnami.com/cluster-wide: "true"
stringData:
  c: three
EOF
targets="[$(target strict prod first),$(target namespace-wide staging second),$(target cluster-wide "" third)]"
seal_case multi_document_yaml "three Secrets in one YAML stream, three scopes: a '---' stream out" yaml "$targets"

new multi_document_json
cp multi_document_yaml/input.yaml multi_document_json/input.yaml
seal_case multi_document_json "three Secrets in one stream: concatenated JSON objects out" json "$targets"

new full_metadata
cat >full_metadata/input.yaml <<'EOF'
apiVersion: v1
kind: Secret
metadata:
  name: web-login
  namespace: prod
  labels:
    app.kubernetes.io/name: web
    tier: frontend
  annotations:
    example.com/owner: team-a
    kubectl.kubernetes.io/last-applied-configuration: '{"stringData":{"password":"leaked"}}'
  finalizers:
  - example.com/keep
  uid: 3f1c2b9e-0000-4000-8000-000000000001
  resourceVersion: "12345"
  creationTimestamp: "2024-01-02T03:04:05Z"
type: kubernetes.io/basic-auth
immutable: true
stringData:
  username: admin
  password: s3cr3t
EOF
seal_case full_metadata \
  "labels, annotations (last-applied dropped), finalizers, type, immutable; server fields dropped" yaml \
  "[$(target strict prod web-login)]"

new old_style_null_timestamps
# kubeseal <= v0.31 (apimachinery < 0.34) wrote creationTimestamp: null in both metadata blocks,
# and older builds status: {}. Today's kubeseal does not, so the edit is made on its output.
awk '/^ *metadata:$/ { print; match($0, /^ */); printf "%*screationTimestamp: null\n", RLENGTH + 2, ""; next } { print }' \
  strict/sealed.yaml >old_style_null_timestamps/sealed.yaml
echo 'status: {}' >>old_style_null_timestamps/sealed.yaml
unseal_expected old_style_null_timestamps sealed.yaml
case_json old_style_null_timestamps --argjson t "[$(target strict prod db-credentials)]" '{
  description: "an old kubeseal manifest: creationTimestamp: null in both metadata blocks and status: {}",
  derived_from: "strict/sealed.yaml, creationTimestamp: null and status: {} added",
  sealed: "sealed.yaml", expected: "expected.yaml", targets: $t}'
log old_style_null_timestamps

new renamed_item
# Item names are not bound by the crypto (reference section 1.4): a renamed item still opens.
jq '.spec.encryptedData |= with_entries(.key |= if . == "password" then "renamed-password" else . end)' \
  strict_json/sealed.json >renamed_item/sealed.json
unseal_expected renamed_item sealed.json
case_json renamed_item --argjson t "[$(target strict prod db-credentials)]" '{
  description: "an item renamed after sealing still opens: item names are not bound",
  derived_from: "strict_json/sealed.json, item password renamed to renamed-password",
  sealed: "sealed.json", expected: "expected.yaml", targets: $t}'
log renamed_item

# ---------------------------------------------------------------------------------------------
# fail_*: what must be rejected. All are edits of strict_json/sealed.json (prod/db-credentials,
# items password and username) unless said otherwise.
base=strict_json/sealed.json
# edit DIR JQ_FILTER: DIR/sealed.json is the base with the filter applied.
edit() {
  jq "$2" "$base" >"$1/sealed.json"
  derived="$base, edited with jq: $2"
}

new fail_wrong_namespace
edit fail_wrong_namespace '.metadata.namespace = "staging" | .spec.template.metadata.namespace = "staging"'
fail_case fail_wrong_namespace "strict SealedSecret moved to another namespace" \
  "no key could decrypt item (password)"

new fail_wrong_name
edit fail_wrong_name '.metadata.name = "db-credentials-copy" | .spec.template.metadata.name = "db-credentials-copy"'
fail_case fail_wrong_name "strict SealedSecret renamed" "no key could decrypt item (password)"

new fail_scope_widened
edit fail_scope_widened '.metadata.annotations = {"sealedsecrets.bitnami.com/cluster-wide": "true"}'
fail_case fail_scope_widened "strict values under a cluster-wide annotation added afterwards (empty label)" \
  "no key could decrypt item (password)"

new fail_scope_narrowed
ks --cert "$out/cert.pem" -o json --scope namespace-wide <namespace_wide/input.yaml \
  | jq 'del(.metadata.annotations)' >fail_scope_narrowed/sealed.json
derived="kubeseal -o json --scope namespace-wide < namespace_wide/input.yaml, edited with jq: del(.metadata.annotations)"
fail_case fail_scope_narrowed "namespace-wide values whose namespace-wide annotation was removed (now strict)" \
  "no key could decrypt item (password)"

new fail_truncated_value
trunc=$(jq -r '.spec.encryptedData.password' "$base" | base64 -d | head -c 300 | base64 -w0)
edit fail_truncated_value ".spec.encryptedData.password = \"$trunc\""
derived="$base, the password value cut to its first 300 bytes"
fail_case fail_truncated_value "a value cut to 300 bytes (shorter than its 512-byte RSA part)" \
  "encryptedData[password] is truncated (300 bytes)"

new fail_empty_value
edit fail_empty_value '.spec.encryptedData.password = ""'
fail_case fail_empty_value "an encryptedData entry emptied" "encryptedData[password] is truncated (0 bytes)"

# flip BYTE_INDEX: the password value with one bit flipped at that byte (negative: from the end).
flip() {
  jq -r '.spec.encryptedData.password' "$base" | base64 -d \
    | perl -0777 -pe "my \$i = $1; \$i += length(\$_) if \$i < 0; substr(\$_, \$i, 1) ^= chr(1)" | base64 -w0
}
new fail_flipped_tag_byte
edit fail_flipped_tag_byte ".spec.encryptedData.password = \"$(flip -1)\""
derived="$base, bit 0 of the password value's last byte flipped"
fail_case fail_flipped_tag_byte "one bit flipped in the last byte (the GCM tag)" "no key could decrypt item (password)"

new fail_flipped_wrapped_key_byte
edit fail_flipped_wrapped_key_byte ".spec.encryptedData.password = \"$(flip 100)\""
derived="$base, bit 0 of the password value's byte 100 flipped"
fail_case fail_flipped_wrapped_key_byte "one bit flipped inside the RSA-OAEP part" "no key could decrypt item (password)"

new fail_bad_base64
edit fail_bad_base64 '.spec.encryptedData.password = "AgB%not*base64"'
fail_case fail_bad_base64 "a value that is not standard base64" "encryptedData[password] is not valid base64"

new fail_other_key
openssl req -x509 -newkey rsa:4096 -nodes -keyout "$tmp/other-key.pem" -out fail_other_key/other-cert.pem \
  -days 36500 -subj / 2>/dev/null
ks --cert fail_other_key/other-cert.pem -o json <strict/input.yaml >fail_other_key/sealed.json
derived="kubeseal --cert other-cert.pem -o json < strict/input.yaml"
fail_case fail_other_key "sealed by kubeseal for another RSA-4096 key (other-cert.pem)" \
  "no key could decrypt item (password)"

new fail_other_key_2048
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/other-key-2048.pem" -out fail_other_key_2048/other-cert.pem \
  -days 36500 -subj / 2>/dev/null
ks --cert fail_other_key_2048/other-cert.pem -o json <strict/input.yaml >fail_other_key_2048/sealed.json
derived="kubeseal --cert other-cert.pem -o json < strict/input.yaml"
fail_case fail_other_key_2048 "sealed by kubeseal for an RSA-2048 key (values start AQA; other-cert.pem)" \
  "no key could decrypt item (password)"

new fail_data_and_encrypted_data
edit fail_data_and_encrypted_data ".spec.data = \"$(cat raw_strict/sealed.txt)\""
derived="$base, spec.data set to raw_strict/sealed.txt"
fail_case fail_data_and_encrypted_data "the deprecated spec.data beside encryptedData" \
  "cannot use the field 'encryptedData' and the deprecated field 'data' at the same time"

new fail_missing_encrypted_data
edit fail_missing_encrypted_data 'del(.spec.encryptedData)'
KUBESEAL_ACCEPTS="it prints a Secret with no data; Bitnami's CRD requires encryptedData, so the API server never stores such an object" \
PENDING="gitseal-shared reads a missing encryptedData as empty and unseals an empty Secret" \
  fail_case fail_missing_encrypted_data "spec.encryptedData missing altogether (and no spec.data)" "encryptedData"

# ---------------------------------------------------------------------------------------------
# kubeseal must accept the key Secret as well as the PEM key.
ks --recovery-unseal --recovery-private-key key-secret.yaml -o yaml <strict/sealed.yaml >"$tmp/via-secret.yaml"
cmp -s "$tmp/via-secret.yaml" strict/expected.yaml || { log "key-secret.yaml does not unseal like key.pem"; exit 1; }

log "done: $(find . -mindepth 1 -maxdepth 1 -type d | wc -l) cases, $(du -sh . | cut -f1) in $out"
