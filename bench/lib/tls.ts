// The TLS section (`--only tls`): sluice's gateway port over TLS against nginx's, the same
// GET as the throughput section, the same self-signed RSA certificate, keep-alive
// connections (a handshake per connection, so what is measured is the record layer on
// every request and answer). Each row pins the protocol and the suite on the client: wrk
// offers exactly one, through an OpenSSL config file (OPENSSL_CONF), because sluice's
// BoringSSL cannot narrow its TLS 1.3 suites and both servers take the client's first
// choice among equals. Before the rounds, openssl s_client with the same config checks
// that each server agrees to it.

import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Certificate } from './certificate.js';
import { proxyConf, startNginx } from './nginx.js';
import type { Proc, ProcessGroup } from './procs.js';
import type { Target } from './rotation.js';

interface TlsRow {
  readonly key: 'tls13' | 'tls12';
  readonly protocol: 'TLSv1.3' | 'TLSv1.2';
  /** OpenSSL's name for it, as s_client prints it. */
  readonly suite: string;
  /** The OpenSSL config lines that make a client offer this protocol and suite alone. */
  readonly conf: string;
}

// AES-128-GCM in both, with ECDHE (X25519 by both servers' default) and the RSA certificate.
const ROWS: readonly TlsRow[] = [
  { key: 'tls13', protocol: 'TLSv1.3', suite: 'TLS_AES_128_GCM_SHA256', conf: 'MinProtocol = TLSv1.3\nCiphersuites = TLS_AES_128_GCM_SHA256' },
  { key: 'tls12', protocol: 'TLSv1.2', suite: 'ECDHE-RSA-AES128-GCM-SHA256', conf: 'MaxProtocol = TLSv1.2\nCipherString = ECDHE-RSA-AES128-GCM-SHA256' },
];

/** One server under test, on its TLS port. */
export interface TlsServer {
  /** `nginx` or `sluice`: the rows' keys are `<name>-tls13`, `<name>-tls12`. */
  readonly name: 'nginx' | 'sluice';
  readonly label: string;
  readonly port: number;
  readonly pgid: number;
}

/** nginx as the throughput section's proxy (`/up-1/` to the upstream), HTTPS only. */
export function startNginxTls(group: ProcessGroup, nginxBin: string, port: number, upstreamPort: number, cert: Certificate, cpus: string | null): Promise<Proc> {
  return startNginx(group, nginxBin, 'nginx-tls', port, (p) => proxyConf(p, port, [{ prefix: 'up-1', port: upstreamPort }], cert), cpus);
}

/**
 * The targets, each sluice row paired with nginx's of the same protocol: `path` over
 * `connections` keep-alive connections. Throws when a server does not agree to a row's
 * suite (its figures would compare different ciphers).
 */
export function tlsTargets(dir: string, servers: readonly TlsServer[], path: string, connections: number): Target[] {
  const targets: Target[] = [];
  for (const row of ROWS) {
    const conf = join(dir, `openssl-client-${row.key}.cnf`);
    writeFileSync(conf, `openssl_conf = conf\n[conf]\nssl_conf = ssl\n[ssl]\nsystem_default = client\n[client]\n${row.conf}\n`);
    for (const s of servers) {
      const got = negotiated(s.port, conf);
      if (got !== `${row.protocol} ${row.suite}`) throw new Error(`tls: ${s.label} negotiated '${got}' with a client offering only ${row.protocol} ${row.suite}`);
      targets.push({
        key: `${s.name}-${row.key}`,
        label: `${s.label}, ${row.protocol} ${row.suite}`,
        spec: { url: `https://127.0.0.1:${s.port}${path}`, connections, env: { OPENSSL_CONF: conf } },
        pgid: s.pgid,
        ...(s.name === 'sluice' ? { pairedWith: `nginx-${row.key}` } : {}),
      });
    }
  }
  return targets;
}

/** "<protocol> <suite>" that a client configured by `conf` gets from 127.0.0.1:`port`. */
function negotiated(port: number, conf: string): string {
  const out = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-brief'], { input: '', encoding: 'utf8', env: { ...process.env, OPENSSL_CONF: conf }, timeout: 10_000 });
  const text = `${out.stdout}${out.stderr}`;
  const protocol = /^Protocol version: (\S+)/m.exec(text)?.[1];
  const suite = /^Ciphersuite: (\S+)/m.exec(text)?.[1];
  return protocol === undefined || suite === undefined ? `no handshake (${text.trim().split('\n').pop() ?? ''})` : `${protocol} ${suite}`;
}
