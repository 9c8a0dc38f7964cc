#!/usr/bin/env bash
# Builds the Go-built peers the tests talk to, once, into .cache/peers (gitignored), reusing Go's
# module and build caches: a real kube-apiserver with embedded etcd (test/kube-apiserver), and
# kubectl from the same Kubernetes release (it renders deploy/'s kustomizations and dry-runs them).
# Without Go this prints why and exits 0: the tests that need the peers then skip, saying so.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=$(command -v go || true)
[ -z "$GO" ] && [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go
if [ -z "$GO" ]; then
  echo "peers: Go is not installed; tests that need a real kube-apiserver or kubectl will be skipped"
  exit 0
fi
mkdir -p .cache/peers
build() { # build <output> <package> <what needs it>
  local out=.cache/peers/$1 started
  started=$(date +%s)
  if (cd test/kube-apiserver && GOFLAGS=-mod=mod "$GO" build -o "../../$out" "$2"); then
    echo "peers: built $out in $(( $(date +%s) - started ))s"
  else
    echo "peers: could not build $1 (see above); $3 will be skipped"
    rm -f "$out"
  fi
}
build kube-apiserver-for-tests . "tests that need a real kube-apiserver"
build kubectl k8s.io/kubernetes/cmd/kubectl "the deploy/ dry-run tests"
exit 0
