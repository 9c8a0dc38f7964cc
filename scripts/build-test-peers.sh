#!/usr/bin/env bash
# Builds the Go-built peers the tests talk to, once, into .cache/peers (gitignored), reusing Go's
# module and build caches. Today: a real kube-apiserver with embedded etcd (test/kube-apiserver).
# Without Go this prints why and exits 0: the tests that need the peers then skip, saying so.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=$(command -v go || true)
[ -z "$GO" ] && [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go
if [ -z "$GO" ]; then
  echo "peers: Go is not installed; tests that need a real kube-apiserver will be skipped"
  exit 0
fi
mkdir -p .cache/peers
out=.cache/peers/kube-apiserver-for-tests
started=$(date +%s)
if (cd test/kube-apiserver && GOFLAGS=-mod=mod "$GO" build -o "../../$out" .); then
  echo "peers: built $out in $(( $(date +%s) - started ))s"
else
  echo "peers: could not build kube-apiserver (see above); tests that need it will be skipped"
  rm -f "$out"
fi
exit 0
