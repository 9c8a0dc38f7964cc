#!/usr/bin/env bash
# meshrelay bench against the real istiod: starts the interop tests' mesh (kube-apiserver, Istio
# CRDs, pilot-discovery at the pinned version, the VM fixture) on loopback, then runs
# `meshrelay bench --upstream-target <istiod's plaintext xDS> --upstream-pid <istiod>
# --upstream-kubeconfig <its API server>` with the
# arguments given (e.g. --compare --clients 1000; or `replicas --clients 10000` for meshrelay
# bench replicas), and stops the mesh. Needs the peers
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
# --bound-every K: bind config to every K-th simulated VM's address (one ServiceEntry whose endpoints
# are those VMs, the mesh-expansion shape), so group mode must set them apart (docs/ADDRESS-BINDING.md).
args=" $* "
every=$(sed -n 's/.* --bound-every \([0-9]*\) .*/\1/p' <<< "$args")
clients=$(sed -n 's/.* --clients \([0-9]*\) .*/\1/p' <<< "$args")
if [ -n "$every" ] && [ "$every" -gt 0 ]; then
  node -e '
    const [every, clients] = process.argv.slice(1).map(Number);
    const endpoints = [];
    for (let i = every - 1; i < clients; i += every) endpoints.push({ address: `172.16.${(i >> 8) & 255}.${i & 255}` });
    console.log(JSON.stringify({ apiVersion: "networking.istio.io/v1", kind: "ServiceEntry", metadata: { name: "bench-bound", namespace: "vm" },
      spec: { hosts: ["bench-bound.vm.svc.cluster.local"], location: "MESH_INTERNAL", resolution: "STATIC", ports: [{ number: 7777, name: "http", protocol: "HTTP" }], endpoints } }));
  ' "$every" "${clients:-1000}" | .cache/peers/kubectl --kubeconfig "$kubeconfig" apply -f - >&2
  sleep 2
fi
# `replicas` first: relay replicas behind HAProxy in front of this istiod (meshrelay bench replicas).
kind=()
if [ "${1:-}" = replicas ]; then kind=(replicas); shift; fi
# The relay reads what istiod binds to VM addresses from the same API server (docs/ADDRESS-BINDING.md).
node dist/src/cli/main.js bench "${kind[@]}" --upstream-target "$address" --upstream-pid "$pid" --upstream-kubeconfig "$kubeconfig" "$@"
