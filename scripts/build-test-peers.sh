#!/usr/bin/env bash
# Builds the Go-built peers the tests talk to, once, into .cache/peers (gitignored), reusing Go's
# module and build caches:
#  - a real kube-apiserver with embedded etcd (test/kube-apiserver), and kubectl from the same
#    Kubernetes release (it renders deploy/'s kustomizations and dry-runs them);
#  - the real Istio control plane and VM agent at ISTIO_VERSION: pilot-discovery (istiod),
#    pilot-agent and istioctl, plus the Istio CRDs that version ships.
# Without Go this prints why and exits 0: the tests that need the peers then skip, saying so.
set -uo pipefail
cd "$(dirname "$0")/.."

# The one place the Istio version is written. The release commits (1.30.x) are not served by the
# module proxy here; this pseudo-version of istio/istio master (2026-08-27) is, with its whole graph.
ISTIO_VERSION=v0.0.0-20260827124520-eed52ebb66ad

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

# build_istio <binary> <package path in istio.io/istio>: `go install` at the pinned version, so the
# module's own go.mod (and nothing of ours) decides its dependency graph.
build_istio() {
  local started
  started=$(date +%s)
  if [ -x "$peers/$1" ] && [ "$(cat "$peers/$1.version" 2>/dev/null)" = "$ISTIO_VERSION" ]; then
    echo "peers: $1 $ISTIO_VERSION already built"
    return
  fi
  if GOBIN=$peers "$GO" install "istio.io/istio/$2@$ISTIO_VERSION"; then
    echo "$ISTIO_VERSION" > "$peers/$1.version"
    echo "peers: built $1 ($ISTIO_VERSION) in $(( $(date +%s) - started ))s"
  else
    echo "peers: could not build $1 (see above); the real-Istio tests that need it will be skipped"
    rm -f "$peers/$1" "$peers/$1.version"
  fi
}

build kube-apiserver-for-tests . "tests that need a real kube-apiserver"
build kubectl k8s.io/kubernetes/cmd/kubectl "the deploy/ dry-run tests"
build_istio pilot-discovery pilot/cmd/pilot-discovery
build_istio pilot-agent pilot/cmd/pilot-agent
build_istio istioctl istioctl/cmd/istioctl

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
