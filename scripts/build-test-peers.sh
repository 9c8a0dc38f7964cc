#!/usr/bin/env bash
# Builds the Go-built peers the tests talk to, once, into .cache/peers (gitignored), reusing Go's
# module and build caches:
#  - a real kube-apiserver with embedded etcd (test/kube-apiserver), and kubectl from the same
#    Kubernetes release (it renders deploy/'s kustomizations and dry-runs them);
#  - the real Istio control plane and VM agent at ISTIO_VERSION: pilot-discovery (istiod),
#    pilot-agent and istioctl, plus the Istio CRDs that version ships;
#  - Toxiproxy at TOXIPROXY_VERSION, the fault injector between an edge relay and its upstream;
#  - Helm at HELM_VERSION, which lints and renders deploy/helm/meshrelay.
# Without Go this prints why and exits 0: the tests that need the peers then skip, saying so.
set -uo pipefail
cd "$(dirname "$0")/.."

# The one place the Istio version is written. The release commits (1.30.x) are not served by the
# module proxy here; this pseudo-version of istio/istio master (2026-08-27) is, with its whole graph.
ISTIO_VERSION=v0.0.0-20260827124520-eed52ebb66ad
TOXIPROXY_VERSION=v2.5.0
HELM_VERSION=v3.22.0

GO=$(command -v go || true)
[ -z "$GO" ] && [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go
if [ -z "$GO" ]; then
  echo "peers: Go is not installed; tests that need a real kube-apiserver, kubectl or istiod will be skipped"
  exit 0
fi
mkdir -p .cache/peers
peers=$PWD/.cache/peers

# build <output> <package> <what needs it>: a package of the test/kube-apiserver module.
build() {
  local out=$peers/$1 started
  started=$(date +%s)
  if (cd test/kube-apiserver && GOFLAGS=-mod=mod "$GO" build -o "$out" "$2"); then
    echo "peers: built $1 in $(( $(date +%s) - started ))s"
  else
    echo "peers: could not build $1 (see above); $3 will be skipped"
    rm -f "$out"
  fi
}

# install <binary> <package> <version> <what needs it>: `go install package@version`, so the
# module's own go.mod (and nothing of ours) decides its dependency graph; kept until the version changes.
install() {
  local out=$peers/$1 started tmp
  started=$(date +%s)
  if [ -x "$out" ] && [ "$(cat "$out.version" 2>/dev/null)" = "$3" ]; then
    echo "peers: $1 $3 already built"
    return
  fi
  tmp=$(mktemp -d)
  if GOBIN=$tmp "$GO" install "$2@$3"; then
    mv "$tmp/$(basename "$2")" "$out"
    echo "$3" > "$out.version"
    echo "peers: built $1 ($3) in $(( $(date +%s) - started ))s"
  else
    echo "peers: could not build $1 (see above); $4 will be skipped"
    rm -f "$out" "$out.version"
  fi
  rm -rf "$tmp"
}

build kube-apiserver-for-tests . "tests that need a real kube-apiserver"
build kubectl k8s.io/kubernetes/cmd/kubectl "the deploy/ dry-run tests"
install pilot-discovery istio.io/istio/pilot/cmd/pilot-discovery "$ISTIO_VERSION" "the real-Istio tests"
install pilot-agent istio.io/istio/pilot/cmd/pilot-agent "$ISTIO_VERSION" "the real-Istio tests"
install istioctl istio.io/istio/istioctl/cmd/istioctl "$ISTIO_VERSION" "the real-Istio tests"
install toxiproxy-server github.com/Shopify/toxiproxy/v2/cmd/server "$TOXIPROXY_VERSION" "the edge link tests"
install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" "the Helm chart tests"

# Files of that version the tests need beside the binaries: the CRDs istiod watches (Helm chart
# "base") and the Envoy bootstrap template pilot-agent renders (installed on VMs by the packages).
istio_module="$("$GO" env GOMODCACHE)/istio.io/istio@$ISTIO_VERSION"
copy_istio_file() { # copy_istio_file <path in the module> <name in .cache/peers>
  if [ -f "$istio_module/$1" ]; then
    cp "$istio_module/$1" "$peers/$2" && chmod u+w "$peers/$2"
  else
    echo "peers: $1 was not found in the module cache; the real-Istio tests will be skipped"
    rm -f "$peers/$2"
  fi
}
copy_istio_file manifests/charts/base/files/crd-all.gen.yaml istio-crds-all.yaml
copy_istio_file tools/packaging/common/envoy_bootstrap.json envoy_bootstrap.json
exit 0
