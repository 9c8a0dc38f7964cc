#!/usr/bin/env bash
# meshrelay bench against the real istiod: starts the interop tests' mesh (kube-apiserver, Istio
# CRDs, pilot-discovery at the pinned version, the VM fixture) on loopback, then runs
# `meshrelay bench --upstream-target <istiod's plaintext xDS> --upstream-pid <istiod>
# --upstream-kubeconfig <its API server>` with the
# arguments given (e.g. --compare --clients 1000), and stops the mesh. Needs the peers
# (npm run peers) and a build (npm run build).
set -euo pipefail
cd "$(dirname "$0")/.."
info=$(mktemp)
node dist/test/helpers/real-mesh-process.js > "$info" &
mesh=$!
trap 'kill "$mesh" 2>/dev/null; wait "$mesh" 2>/dev/null; rm -f "$info"' EXIT
until [ -s "$info" ]; do
  kill -0 "$mesh" 2>/dev/null || { echo "bench-real-istiod: the real mesh did not start" >&2; exit 1; }
  sleep 1
done
upstream=$(node -e 'const m = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(m.istiod.grpc, m.pid, m.kubeconfig)' "$info")
read -r address pid kubeconfig <<< "$upstream"
echo "bench-real-istiod: istiod (pid $pid) serves plaintext xDS on $address" >&2
# The relay reads what istiod binds to VM addresses from the same API server (docs/ADDRESS-BINDING.md).
node dist/src/cli/main.js bench --upstream-target "$address" --upstream-pid "$pid" --upstream-kubeconfig "$kubeconfig" "$@"
