// A certificate whose validity starts later (issued ahead, or this host's clock behind the
// issuer's) is refused as an expired one is: a reload keeps the certificate in use, and a
// start stops naming the field. It used to be put in use, and every client then failed
// its handshake ("certificate is not yet valid") until the date came.

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import t from 'tap';
import { selfSignedCertificate } from '../../bench/lib/certificate.js';
import { eventually, jsonLogs, sleep, spawnCli, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 25380-25389 belong to this file (model-server ports, unused).
const dir = mkdtempSync(join(tmpdir(), 'sluice-tls-not-yet-valid-'));
const now = selfSignedCertificate(dir, 'valid-now');

/** A self-signed pair for 127.0.0.1 valid from next year only (`openssl ca` sets the start date). */
function futureCertificate(): { certFile: string; keyFile: string } {
  const db = join(dir, 'ca-db');
  mkdirSync(db);
  writeFileSync(join(db, 'index.txt'), '');
  writeFileSync(join(db, 'serial'), '1000\n');
  const cnf = join(dir, 'ca.cnf');
  writeFileSync(cnf, `[ca]\ndefault_ca = z\n[z]\ndatabase = ${db}/index.txt\nserial = ${db}/serial\nnew_certs_dir = ${db}\ndefault_md = sha256\npolicy = p\ncopy_extensions = copy\n[p]\ncommonName = supplied\n`);
  const keyFile = join(dir, 'future.key');
  const csr = join(dir, 'future.csr');
  const certFile = join(dir, 'future.crt');
  execFileSync('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', csr, '-subj', '/CN=future', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const year = new Date().getUTCFullYear() + 1;
  execFileSync('openssl', ['ca', '-batch', '-config', cnf, '-selfsign', '-keyfile', keyFile, '-in', csr, '-out', certFile, '-notext', '-startdate', `${year}0101000000Z`, '-enddate', `${year}0201000000Z`], { stdio: 'ignore' });
  return { certFile, keyFile };
}
const future = futureCertificate();
const live = { cert_file: join(dir, 'live.crt'), key_file: join(dir, 'live.key') };
function install(c: { certFile: string; keyFile: string }): void {
  writeFileSync(`${live.cert_file}.new`, readFileSync(c.certFile));
  writeFileSync(`${live.key_file}.new`, readFileSync(c.keyFile));
  renameSync(`${live.cert_file}.new`, live.cert_file);
  renameSync(`${live.key_file}.new`, live.key_file);
}
install(now);

/** The CN a new connection is served. */
function served(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      resolve(String(s.getPeerCertificate().subject.CN));
      s.end();
    });
    s.once('error', reject);
  });
}

let gw: Gateway;
t.before(async () => {
  gw = await startGateway({ listen: { host: '127.0.0.1', port: 0, tls: live }, workers: 1, ports: { from: 25380, to: 25384 } });
});
t.teardown(() => gw?.stop());

t.test('a reload to a certificate not valid yet is refused: the one in use stays', async (t) => {
  t.equal(await served(gw.port), 'valid-now');
  install(future);
  const line = await eventually(() => jsonLogs(gw).find((l) => l['msg'] === 'certificate not reloaded: the one in use stays' || l['msg'] === 'certificate reloaded'), 10_000, 'the reload\'s log line');
  t.equal(line['msg'], 'certificate not reloaded: the one in use stays');
  t.match(line['problem'], /is not valid before/);
  t.equal(await served(gw.port), 'valid-now', 'new connections still get the valid certificate');
});

t.test('a start with a certificate not valid yet stops, naming the field', async (t) => {
  const file = join(dir, 'start.yaml');
  writeFileSync(file, JSON.stringify({
    listen: { host: '127.0.0.1', port: 0, tls: { cert_file: future.certFile, key_file: future.keyFile } },
    admin: { host: '127.0.0.1', port: 0 }, workers: 1, ports: { from: 25385, to: 25389 }, state_dir: join(dir, 'start-state'),
  }));
  const proc = spawnCli(['serve', '--config', file]);
  // A start that takes the certificate runs on: it is stopped after a while.
  const code = await Promise.race([proc.exited, sleep(15_000).then(() => 'still running')]);
  if (code === 'still running') await proc.stop();
  t.equal(code, 1);
  t.match(proc.lines.join('\n'), /listen\.tls\.cert_file: .*not valid before/);
});
