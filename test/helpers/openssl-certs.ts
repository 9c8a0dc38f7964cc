import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface TestPki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  read(file: string): Buffer;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'ignore' });
}

/** A throwaway CA with a serving certificate for istiod's name and a SPIFFE client certificate. */
export function makeTestPki(): TestPki {
  const dir = mkdtempSync(path.join(tmpdir(), 'meshrelay-pki-'));
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/O=meshrelay-test/CN=root'], dir);
  const issue = (name: string, ext: string) => {
    writeFileSync(path.join(dir, `${name}.ext`), ext);
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/O=meshrelay-test/CN=${name}`], dir);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '1', '-extfile', `${name}.ext`], dir);
  };
  issue('server', 'subjectAltName=DNS:istiod.istio-system.svc\nextendedKeyUsage=serverAuth\n');
  issue('client', 'subjectAltName=URI:spiffe://cluster.local/ns/vm/sa/vm-sa\nextendedKeyUsage=clientAuth\n');
  const at = (file: string) => path.join(dir, file);
  return {
    dir,
    caCert: at('ca.pem'),
    serverCert: at('server.pem'),
    serverKey: at('server.key'),
    clientCert: at('client.pem'),
    clientKey: at('client.key'),
    read: (file) => readFileSync(file),
  };
}

export interface EdgePki {
  dir: string;
  rootCert: string;
  /** The central relay's serving certificate, for istiod's name. */
  serverCert: string;
  serverKey: string;
  /** Plugged-CA directories (ca-cert, ca-key, cert-chain, root-cert): each site's intermediate, signed by the mesh root. */
  centralCaDir: string;
  edgeCaDir: string;
  /** The edge relay's own workload certificate (from the edge intermediate), with the intermediate after it. */
  edgeRelayCert: string;
  edgeRelayKey: string;
  edgeRelayId: string;
  /** Another relay's certificate, from the same root but not trusted as a relay. */
  otherRelayCert: string;
  otherRelayKey: string;
}

/**
 * A mesh root, made with openssl as an operator would, with an intermediate per site: the central
 * relay's, and the edge relay's, which signs its VMs' certificates and its own.
 */
export function makeEdgePki(): EdgePki {
  const dir = mkdtempSync(path.join(tmpdir(), 'meshrelay-edge-pki-'));
  const at = (file: string) => path.join(dir, file);
  const newKey = (name: string) => openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/O=meshrelay-test/CN=${name}`], dir);
  const sign = (name: string, signer: string, ext: string) => {
    writeFileSync(at(`${name}.ext`), ext);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${signer}.pem`, '-CAkey', `${signer}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '1', '-extfile', `${name}.ext`], dir);
  };
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'root.key', '-out', 'root.pem', '-days', '2', '-subj', '/O=meshrelay-test/CN=mesh root',
    '-addext', 'basicConstraints=critical,CA:true', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  const caExt = 'basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\n';
  const pluggedCa = (site: string) => {
    newKey(site);
    sign(site, 'root', caExt);
    const caDir = at(`${site}-cacerts`);
    mkdirSync(caDir);
    copyFileSync(at(`${site}.pem`), path.join(caDir, 'ca-cert.pem'));
    copyFileSync(at(`${site}.key`), path.join(caDir, 'ca-key.pem'));
    copyFileSync(at(`${site}.pem`), path.join(caDir, 'cert-chain.pem'));
    copyFileSync(at('root.pem'), path.join(caDir, 'root-cert.pem'));
    return caDir;
  };
  const centralCaDir = pluggedCa('central-ca');
  const edgeCaDir = pluggedCa('edge-ca');
  newKey('server');
  sign('server', 'root', 'subjectAltName=DNS:istiod.istio-system.svc\nextendedKeyUsage=serverAuth\n');
  const edgeRelayId = 'spiffe://cluster.local/ns/istio-system/sa/meshrelay-edge';
  newKey('edge-relay');
  sign('edge-relay', 'edge-ca', `subjectAltName=URI:${edgeRelayId}\nextendedKeyUsage=clientAuth,serverAuth\n`);
  writeFileSync(at('edge-relay-chain.pem'), readFileSync(at('edge-relay.pem'), 'utf8') + readFileSync(at('edge-ca.pem'), 'utf8'));
  newKey('other-relay');
  sign('other-relay', 'root', 'subjectAltName=URI:spiffe://cluster.local/ns/istio-system/sa/other-relay\nextendedKeyUsage=clientAuth\n');
  return {
    dir, rootCert: at('root.pem'), serverCert: at('server.pem'), serverKey: at('server.key'), centralCaDir, edgeCaDir,
    edgeRelayCert: at('edge-relay-chain.pem'), edgeRelayKey: at('edge-relay.key'), edgeRelayId,
    otherRelayCert: at('other-relay.pem'), otherRelayKey: at('other-relay.key'),
  };
}
