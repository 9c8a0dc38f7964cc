/**
 * The real mesh of the interop tests (kube-apiserver, Istio CRDs, istiod, the VM fixture) as a
 * process of its own, for measuring against the real istiod (scripts/bench-real-istiod.sh):
 * prints one JSON line with istiod's addresses, its pid and the API server's kubeconfig, and stops
 * everything on SIGTERM or SIGINT.
 */
import { realIstioUnavailable, startRealMesh } from './real-istio.js';
import { installVmMeshFixture } from './vm-mesh-fixture.js';

const unavailable = realIstioUnavailable();
if (unavailable) {
  process.stderr.write(`real mesh: ${unavailable}\n`);
  process.exit(2);
}
const mesh = await startRealMesh();
await installVmMeshFixture(mesh);
process.stdout.write(`${JSON.stringify({ istiod: mesh.istiod, pid: mesh.istiodPid(), kubeconfig: mesh.kube.kubeconfig })}\n`);
const stop = () => {
  void mesh.close().finally(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
