#!/usr/bin/env bash
# Builds the Go test peers gitseal is tested against and caches them by version:
#   kube-apiserver + kube-controller-manager + etcd (the real control plane of the test harness),
#   kubectl (same k8s.io/kubernetes module and version, so the README quick start runs as written),
#   kubeseal + the Bitnami controller (compatibility), age (multi-recipient format), helm (chart checks).
#
# Usage: tests/peers/install.sh [--print-dir]
# Cache: $GITSEAL_TEST_CACHE (default ~/.cache/gitseal-test)/<peer>-<version>/, one directory per
# version, so a second run only checks that the binaries are there.
set -euo pipefail

K8S_VERSION=v1.36.3          # k8s.io/kubernetes; staging modules pinned at v0.36.3 in kube-apiserver/go.mod
ETCD_VERSION=v3.6.16         # go.etcd.io/etcd/server/v3, see etcd/go.mod
SEALED_SECRETS_VERSION=v0.36.6
AGE_VERSION=v1.3.2
HELM_VERSION=v3.22.0

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${GITSEAL_TEST_CACHE:-$HOME/.cache/gitseal-test}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath

if [[ ${1:-} == --print-dir ]]; then
  echo "$cache"
  exit 0
fi
mkdir -p "$cache"

log() { printf '[peers] %s\n' "$*" >&2; }

# An interrupted build must not leave its temporary directory behind.
trap 'rm -rf "$cache"/.build.*' EXIT

# have DIR BIN... : true when every binary already exists in DIR.
have() {
  local dir=$1; shift
  for b in "$@"; do [[ -x $dir/$b ]] || return 1; done
}

# build_into DIR CMD... : run CMD with $out pointing at a temp dir, then move it into place, so an
# interrupted build never leaves a half-filled cache directory behind.
build_into() {
  local dir=$1; shift
  local out
  out=$(mktemp -d "$cache/.build.XXXXXX")
  local start=$SECONDS
  if ! out=$out "$@"; then
    rm -rf "$out"
    return 1
  fi
  rm -rf "$dir"
  mv "$out" "$dir"
  log "built $(basename "$dir") in $((SECONDS - start))s"
}

k8s_ldflags() {
  local v=$K8S_VERSION now minor
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  minor=$(echo "$v" | cut -d. -f2)
  local flags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags="$flags -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$now"
  done
  echo "$flags"
}

build_kube_apiserver() {
  local ldflags
  ldflags=$(k8s_ldflags)
  (cd "$here/kube-apiserver" &&
    go build -ldflags "$ldflags" -o "$out/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver &&
    go build -ldflags "$ldflags" -o "$out/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager)
}
# kubectl from the same wrapper module and version as kube-apiserver (k8s.io/kubernetes cmd/kubectl,
# staging k8s.io/kubectl pinned in kube-apiserver/go.mod), cached in its own directory so adding it
# does not rebuild the control plane.
build_kubectl() {
  local ldflags
  ldflags=$(k8s_ldflags)
  (cd "$here/kube-apiserver" && go build -ldflags "$ldflags" -o "$out/kubectl" k8s.io/kubernetes/cmd/kubectl)
}
build_etcd() {
  (cd "$here/etcd" && go build -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
}
install_sealed_secrets() {
  GOBIN=$out go install -ldflags "-s -w" "github.com/bitnami-labs/sealed-secrets/cmd/kubeseal@$SEALED_SECRETS_VERSION"
  GOBIN=$out go install -ldflags "-s -w" "github.com/bitnami-labs/sealed-secrets/cmd/controller@$SEALED_SECRETS_VERSION"
  # The controller's CRD, as Bitnami ships it, for the side-by-side tests.
  local mod
  mod=$(go mod download -json "github.com/bitnami-labs/sealed-secrets@$SEALED_SECRETS_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  cp "$mod/helm/sealed-secrets/crds/bitnami.com_sealedsecrets.yaml" "$out/"
}
install_age() {
  GOBIN=$out go install -ldflags "-s -w" "filippo.io/age/cmd/...@$AGE_VERSION"
}
install_helm() {
  GOBIN=$out go install -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

# GITSEAL_PEERS="" builds none (system packages and the wasm target only); unset builds all.
want=${GITSEAL_PEERS-etcd kube-apiserver kubectl sealed-secrets age helm}
for peer in $want; do
  case $peer in
    etcd) have "$cache/etcd-$ETCD_VERSION" etcd || build_into "$cache/etcd-$ETCD_VERSION" build_etcd ;;
    kube-apiserver) have "$cache/kube-apiserver-$K8S_VERSION" kube-apiserver kube-controller-manager || build_into "$cache/kube-apiserver-$K8S_VERSION" build_kube_apiserver ;;
    kubectl) have "$cache/kubectl-$K8S_VERSION" kubectl || build_into "$cache/kubectl-$K8S_VERSION" build_kubectl ;;
    sealed-secrets) have "$cache/sealed-secrets-$SEALED_SECRETS_VERSION" kubeseal controller || build_into "$cache/sealed-secrets-$SEALED_SECRETS_VERSION" install_sealed_secrets ;;
    age) have "$cache/age-$AGE_VERSION" age age-keygen || build_into "$cache/age-$AGE_VERSION" install_age ;;
    helm) have "$cache/helm-$HELM_VERSION" helm || build_into "$cache/helm-$HELM_VERSION" install_helm ;;
    *) log "unknown peer '$peer' (known: etcd kube-apiserver kubectl sealed-secrets age helm)"; exit 2 ;;
  esac
done

# Debian packages, not Go builds: SoftHSM2 (the PKCS#11 token of the key-custody tests) and
# Chromium with its WebDriver (the sealing page's tests run in a real headless browser).
debs=()
command -v softhsm2-util >/dev/null && [ -e /usr/lib/softhsm/libsofthsm2.so ] || debs+=(softhsm2)
command -v chromium >/dev/null || debs+=(chromium)
command -v chromedriver >/dev/null || debs+=(chromium-driver)
if ((${#debs[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing ${debs[*]} (apt-get)"
    apt-get update -qq && apt-get install -y -qq "${debs[@]}"
  else
    log "missing: ${debs[*]}: install them (apt-get install ${debs[*]}) for the PKCS#11 and browser tests"
  fi
fi

# The sealing page's core is compiled to WebAssembly (web/build.sh, checked by tests/run.sh).
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding the wasm32-unknown-unknown Rust target (rustup)"
  rustup target add wasm32-unknown-unknown
fi

# One file the Rust harness reads to find every binary, whatever the versions are.
cat > "$cache/peers.env" <<ENV
GITSEAL_ETCD=$cache/etcd-$ETCD_VERSION/etcd
GITSEAL_KUBE_APISERVER=$cache/kube-apiserver-$K8S_VERSION/kube-apiserver
GITSEAL_KUBE_CONTROLLER_MANAGER=$cache/kube-apiserver-$K8S_VERSION/kube-controller-manager
GITSEAL_KUBECTL=$cache/kubectl-$K8S_VERSION/kubectl
GITSEAL_KUBESEAL=$cache/sealed-secrets-$SEALED_SECRETS_VERSION/kubeseal
GITSEAL_BITNAMI_CONTROLLER=$cache/sealed-secrets-$SEALED_SECRETS_VERSION/controller
GITSEAL_BITNAMI_CRD=$cache/sealed-secrets-$SEALED_SECRETS_VERSION/bitnami.com_sealedsecrets.yaml
GITSEAL_AGE=$cache/age-$AGE_VERSION/age
GITSEAL_AGE_KEYGEN=$cache/age-$AGE_VERSION/age-keygen
GITSEAL_HELM=$cache/helm-$HELM_VERSION/helm
ENV
# kubectl on PATH for the README's commands: export PATH="$HOME/.cache/gitseal-test/bin:$PATH".
mkdir -p "$cache/bin"
if [[ -x $cache/kubectl-$K8S_VERSION/kubectl ]]; then
  ln -sfn "../kubectl-$K8S_VERSION/kubectl" "$cache/bin/kubectl"
fi
[[ -z $want ]] || log "peers ready in $cache (see $cache/peers.env; kubectl in $cache/bin)"
