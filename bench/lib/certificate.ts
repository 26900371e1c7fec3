// A self-signed certificate for 127.0.0.1 and localhost, made with openssl: the one nginx
// and sluice both serve in the TLS section, and the TLS tests' (test/proxy/tls.test.ts).

import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

export interface Certificate {
  readonly certFile: string;
  readonly keyFile: string;
}

/** `<dir>/<name>.crt` and `.key`, subject CN=<name>; `newkey` as openssl's -newkey (rsa:2048, ec:..., ed448). */
export function selfSignedCertificate(dir: string, name: string, newkey = 'rsa:2048'): Certificate {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', newkey, '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2',
    '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], { stdio: 'ignore' });
  return { certFile, keyFile };
}
