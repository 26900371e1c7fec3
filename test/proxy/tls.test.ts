// TLS on the gateway and admin ports, through the real gateway: which protocol versions a
// client gets, forwarding and streaming over TLS, Strict-Transport-Security, and
// certificates replaced while the gateway runs (file changes and SIGHUP), without cutting
// a stream in flight and without giving up a good certificate for a bad one.

import { once } from 'node:events';
import { mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, createServer as createTlsServer, type ConnectionOptions } from 'node:tls';
import t from 'tap';
import { selfSignedCertificate, type Certificate } from '../../bench/lib/certificate.js';
import { loadConfig } from '../../src/config/index.js';
import { responseText } from '../../src/sim/fake.js';
import { httpRequest, json, type Reply, type RequestOptions } from '../helpers/http.js';
import { eventually, jsonLogs, sleep, spawnCli, startGateway, type Gateway } from '../helpers/procs.js';

const TOKENS = 10;
const SLOW_TOKENS = 30;
const SLOW_TOKEN_MS = 100;
const HSTS = 'max-age=600; includeSubDomains';

// Replica ports 18850-18869 belong to this file (18866-18869: gateways with no deployments).
const dir = mkdtempSync(join(tmpdir(), 'sluice-tls-test-'));
// Each subject names its certificate: a new connection's peer certificate says which is served.
const certs: Record<string, Certificate> = {};
for (const name of ['gw-a', 'gw-b', 'gw-c', 'admin-a', 'admin-b', 'only13']) certs[name] = selfSignedCertificate(dir, name);
// Node (OpenSSL) accepts an Ed448 certificate; the uws front end's BoringSSL does not.
certs['ed448'] = selfSignedCertificate(dir, 'ed448', 'ed448');
// The files the gateway is configured with; tests put other certificates there.
const live = { gateway: { cert_file: join(dir, 'gateway.crt'), key_file: join(dir, 'gateway.key') }, admin: { cert_file: join(dir, 'admin.crt'), key_file: join(dir, 'admin.key') } };

/** Replaces the live files, each by a rename (as certificate managers write them). */
function install(files: { cert_file: string; key_file: string }, cert: string | Buffer, key: string | Buffer): void {
  writeFileSync(`${files.cert_file}.new`, cert);
  writeFileSync(`${files.key_file}.new`, key);
  renameSync(`${files.cert_file}.new`, files.cert_file);
  renameSync(`${files.key_file}.new`, files.key_file);
}
const pem = (c: Certificate): [Buffer, Buffer] => [readFileSync(c.certFile), readFileSync(c.keyFile)];
install(live.gateway, ...pem(certs['gw-a']!));
install(live.admin, ...pem(certs['admin-a']!));

let gw: Gateway;
let only13: Gateway;
const gwUrl = (): string => `https://127.0.0.1:${gw.port}`;

/** A request over TLS that trusts `ca` (by default the certificate the gateway started with). */
const get = (url: string, opts: RequestOptions = {}): Promise<Reply> => httpRequest(url, { ca: readFileSync(certs['gw-a']!.certFile), ...opts });

interface Handshake {
  readonly protocol: string | null;
  /** The peer certificate's CN: which of `certs` is served. */
  readonly subject: string;
}

/** One TLS handshake with `port` (no verification: the test reads what it is given). */
function handshake(port: number, opts: ConnectionOptions = {}): Promise<Handshake> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts }, () => {
      resolve({ protocol: socket.getProtocol(), subject: String(socket.getPeerCertificate().subject.CN) });
      socket.end();
    });
    socket.once('error', reject);
  });
}

/** The subjects `n` new connections are given (two workers: the kernel spreads them). */
async function servedSubjects(port: number, n = 8): Promise<string[]> {
  const out = new Set<string>();
  for (let i = 0; i < n; i++) out.add((await handshake(port)).subject);
  return [...out];
}

// TLS 1.1 needs SHA-1 signatures, which OpenSSL 3 refuses at its default security level:
// without @SECLEVEL=0 the client would give up before sending anything.
const TLS11: ConnectionOptions = { minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' };

const logCount = (gateway: Gateway, msg: string, port: string): number => jsonLogs(gateway).filter((l) => l['msg'] === msg && l['port'] === port).length;
/** Waits for one more log line `msg` about `port` than `before`, and returns it. */
async function nextLog(gateway: Gateway, msg: string, port: string, before: number): Promise<Record<string, unknown>> {
  return eventually(() => jsonLogs(gateway).filter((l) => l['msg'] === msg && l['port'] === port)[before], 10_000, `log line '${msg}' for ${port}`);
}

t.before(async () => {
  gw = await startGateway({
    listen: { host: '127.0.0.1', port: 0, forwarded_for: true, tls: live.gateway, hsts: { max_age_s: 600, include_subdomains: true } },
    admin: { host: '127.0.0.1', port: 0, tls: live.admin },
    workers: 2,
    ports: { from: 18850, to: 18859 },
    deployments: [
      { model: 'demo', version: '1', runtime: 'sim', args: ['--ttft-ms', '20', '--token-ms', '50', '--tokens', String(TOKENS)] },
      { model: 'slow', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', String(SLOW_TOKEN_MS), '--tokens', String(SLOW_TOKENS)] },
    ],
  }, {}, false);
  // The admin port is HTTPS: the helper's own readiness wait speaks HTTP.
  await eventually(async () => {
    const r = await httpRequest(`https://127.0.0.1:${gw.adminPort}/v1/deployments`, { ca: readFileSync(certs['admin-a']!.certFile) });
    const body = json<{ deployments: Array<{ replicas: Array<{ state: string }> }> }>(r);
    return body.deployments.length === 2 && body.deployments.every((d) => d.replicas.every((x) => x.state === 'ready')) ? true : undefined;
  }, 60_000, 'the deployments to be ready');
  const o = certs['only13']!;
  only13 = await startGateway({ listen: { host: '127.0.0.1', port: 0, tls: { cert_file: o.certFile, key_file: o.keyFile, min_version: 'TLSv1.3' } }, ports: { from: 18860, to: 18869 } });
});
t.teardown(async () => {
  await Promise.all([gw?.stop(), only13?.stop()]);
});

t.test('config: listen.tls, listen.hsts and admin.tls are checked, naming the field', async (t) => {
  const load = (yaml: string): ReturnType<typeof loadConfig> => {
    const file = join(dir, 'check.yaml');
    writeFileSync(file, yaml);
    return loadConfig(file, {});
  };
  const tls = `tls: { cert_file: ${live.gateway.cert_file}, key_file: ${live.gateway.key_file} }`;
  t.same(load(`listen: { ${tls} }`).listen.tls, { ...live.gateway, min_version: 'TLSv1.2' }, 'min_version defaults to TLSv1.2');
  t.equal(load('{}').listen.tls, undefined, 'plain HTTP by default');
  t.same(load(`listen: { ${tls}, hsts: {} }`).listen.hsts, { max_age_s: 31_536_000, include_subdomains: false, preload: false });
  const refused: Array<[string, string, RegExp]> = [
    ['listen: { hsts: {} }', 'listen.hsts', /needs listen.tls/],
    [`listen: { ${tls}, hsts: { preload: true } }`, 'listen.hsts.preload', /include_subdomains/],
    [`listen: { tls: { cert_file: ${live.gateway.cert_file}, key_file: ${live.gateway.key_file}, min_version: TLSv1.1 } }`, 'listen.tls.min_version', /TLSv1.2, TLSv1.3/],
    [`listen: { tls: { key_file: ${live.gateway.key_file} } }`, 'listen.tls.cert_file', /required/],
    [`admin: { tls: { cert_file: a, key_file: b, ciphers: x } }`, 'admin.tls.ciphers', /unknown option/],
  ];
  for (const [yaml, field, reason] of refused) {
    t.throws(() => load(yaml), { name: 'ConfigError', field, reason }, `${yaml}: ${field}`);
  }
  // The files themselves are checked at start-up, before anything listens.
  const file = join(dir, 'bad-start.yaml');
  writeFileSync(file, JSON.stringify({
    listen: { host: '127.0.0.1', port: 0, tls: { cert_file: certs['gw-a']!.certFile, key_file: certs['gw-b']!.keyFile } },
    admin: { host: '127.0.0.1', port: 0 }, workers: 1, state_dir: join(dir, 'bad-start-state'),
  }));
  const proc = spawnCli(['serve', '--config', file]);
  const [code] = (await once(proc.child, 'close')) as [number | null];
  t.equal(code, 1, 'a key that is not the certificate\'s stops the start');
  t.match(proc.stderr.join('\n'), /config: listen\.tls\.key_file: .* is not the key of the certificate/);
  // An Ed448 pair: Node reads it, the uws front end's BoringSSL cannot (it used to stop the
  // start with uWS's bare "App construction failed", naming no field).
  const ed448Tls = { cert_file: certs['ed448']!.certFile, key_file: certs['ed448']!.keyFile };
  const ed448 = join(dir, 'ed448-start.yaml');
  writeFileSync(ed448, JSON.stringify({
    listen: { host: '127.0.0.1', port: 0, tls: ed448Tls, front_end: 'uws' },
    admin: { host: '127.0.0.1', port: 0 }, workers: 1, state_dir: join(dir, 'ed448-start-state'),
  }));
  const edProc = spawnCli(['serve', '--config', ed448]);
  const [edCode] = (await once(edProc.child, 'close')) as [number | null];
  t.equal(edCode, 1, 'an Ed448 key on the uws front end stops the start');
  t.match(edProc.stderr.join('\n'), /config: listen\.tls\.key_file: .* is an Ed448 key, which the gateway port's TLS .* cannot load/);
  // The node front end (the default) serves it.
  const edGw = await startGateway({ listen: { host: '127.0.0.1', port: 0, tls: ed448Tls }, ports: { from: 18868, to: 18869 } });
  try {
    t.equal((await handshake(edGw.port)).subject, 'ed448', 'the node front end serves an Ed448 certificate');
  } finally {
    await edGw.stop();
  }
});

t.test('TLS 1.1 is refused; TLS 1.2 and 1.3 are served', async (t) => {
  // The client can speak TLS 1.1 (a server that allows it gets it), so a refusal is the gateway's.
  const [cert, key] = pem(certs['gw-a']!);
  const old = createTlsServer({ cert, key, minVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' }, (s) => s.end());
  old.listen(0, '127.0.0.1');
  await once(old, 'listening');
  const oldPort = (old.address() as { port: number }).port;
  t.equal((await handshake(oldPort, TLS11)).protocol, 'TLSv1.1', 'this client does offer TLS 1.1');
  old.close();

  await t.rejects(handshake(gw.port, TLS11), { code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' }, 'the gateway answers TLS 1.1 with a protocol_version alert');
  await t.rejects(handshake(gw.port, { minVersion: 'TLSv1', maxVersion: 'TLSv1', ciphers: 'DEFAULT:@SECLEVEL=0' }), { code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' }, 'and TLS 1.0');
  t.equal((await handshake(gw.port, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' })).protocol, 'TLSv1.2');
  t.equal((await handshake(gw.port, { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' })).protocol, 'TLSv1.3');
  t.equal((await handshake(gw.port)).protocol, 'TLSv1.3', 'a client that offers both gets 1.3');
});

t.test('min_version TLSv1.3 refuses TLS 1.2', async (t) => {
  await t.rejects(handshake(only13.port, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' }), { code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' }, 'a protocol_version alert');
  t.equal((await handshake(only13.port, { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' })).protocol, 'TLSv1.3');
  t.equal((await handshake(gw.port, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' })).protocol, 'TLSv1.2', 'the other gateway (TLSv1.2, the default) still serves 1.2');
});

t.test('a request over TLS reaches the model server with x-forwarded-proto: https', async (t) => {
  const r = await get(`${gwUrl()}/demo-1/_sim/echo`);
  t.equal(r.status, 200);
  const upstream = json<{ headers: Record<string, string> }>(r).headers;
  t.equal(upstream['x-forwarded-proto'], 'https');
  t.equal(upstream['x-forwarded-for'], '127.0.0.1');
  t.equal(r.headers['strict-transport-security'], HSTS);
  // The certificate is valid for 127.0.0.1 (subjectAltName): the client verified it.
  await t.rejects(httpRequest(`${gwUrl()}/demo-1/_sim/echo`), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }, 'an untrusted certificate is not accepted (the helper does verify)');
});

t.test('SSE over TLS arrives chunk by chunk', async (t) => {
  const r = await get(`${gwUrl()}/demo-1/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'demo', stream: true, messages: [{ role: 'user', content: 'hello' }] }),
  });
  t.equal(r.status, 200);
  t.match(r.headers['content-type'], /^text\/event-stream/);
  t.equal(r.headers['strict-transport-security'], HSTS);
  // Tokens are 50 ms apart upstream: a gateway that buffered would deliver them at the end.
  t.ok(r.chunks.length >= TOKENS / 2, `arrived in ${r.chunks.length} separate chunks (>= ${TOKENS / 2})`);
  t.ok(r.chunks[r.chunks.length - 1]!.at - r.chunks[0]!.at >= (TOKENS - 1) * 50 * 0.7, 'spread over the generation time');
  const events = r.body.split('\n\n').filter((e) => e !== '');
  t.equal(events[events.length - 1], 'data: [DONE]');
  const text = events.slice(0, -1).map((e) => (JSON.parse(e.slice(6)) as { choices: Array<{ delta: { content?: string } }> }).choices[0]!.delta.content ?? '').join('');
  t.equal(text, responseText(TOKENS), 'the deltas are the generated text');
});

t.test('Strict-Transport-Security is on every response when configured, gateway errors included', async (t) => {
  const answers: Array<[string, Reply]> = [
    ['no route (404)', await get(`${gwUrl()}/nope-1/x`)],
    ['/healthz', await get(`${gwUrl()}/healthz`)],
    ['/readyz', await get(`${gwUrl()}/readyz`)],
    ['method not allowed (405)', await get(`${gwUrl()}/healthz`, { method: 'POST', body: '' })],
    ['HEAD', await get(`${gwUrl()}/healthz`, { method: 'HEAD' })],
    ['a model server\'s 404', await get(`${gwUrl()}/demo-1/no/such/path`)],
  ];
  for (const [what, r] of answers) t.equal(r.headers['strict-transport-security'], HSTS, `${what}: ${r.status}`);
  t.equal(answers[0]![1].status, 404);
  t.equal(answers[3]![1].status, 405);
  // Not configured (the TLS 1.3 gateway): absent, on its own answers and on errors.
  const ca = readFileSync(certs['only13']!.certFile);
  for (const path of ['/healthz', '/nope-1/x']) {
    const r = await httpRequest(`https://127.0.0.1:${only13.port}${path}`, { ca });
    t.equal(r.headers['strict-transport-security'], undefined, `absent without listen.hsts (${path}: ${r.status})`);
  }
});

/** Sends `request` as raw bytes over a TLS connection to the gateway and reads until the gateway closes it. */
function rawOverTls(request: Buffer | string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = tlsConnect({ host: '127.0.0.1', port: gw.port, rejectUnauthorized: false }, () => socket.write(request));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.once('error', reject);
    socket.once('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
  });
}

t.test('over TLS the node front end serves what uWebSockets.js dropped or mangled', async (t) => {
  // uWS.js 20.30 closed the connection on each of these without an answer (README, Known limits, with front_end: uws).
  const http10 = await rawOverTls('GET /healthz HTTP/1.0\r\n\r\n');
  t.match(http10, /^HTTP\/1\.1 200 /, 'an HTTP/1.0 request is answered');
  const lower = await rawOverTls(`get /demo-1/_sim/echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
  t.match(lower, /^HTTP\/1\.1 \d{3} /, 'a lower-case method gets an answer');
  const noHost = await rawOverTls('GET /healthz HTTP/1.1\r\nconnection: close\r\n\r\n');
  t.match(noHost, /^HTTP\/1\.1 200 /, 'an HTTP/1.1 request without Host is served, as over plain HTTP');
  // uWS.js answered a request it could not parse itself, without Strict-Transport-Security.
  const malformed = await rawOverTls('GET /healthz HTTP/1.1\r\nhost: x\r\nbad name: x\r\n\r\n');
  t.match(malformed, /^HTTP\/1\.1 400 /, 'a malformed head is answered 400');
  t.match(malformed, new RegExp(`\r\nstrict-transport-security: ${HSTS}\r\n`, 'i'), 'with Strict-Transport-Security, as every answer sluice makes');
  // UTF-8 in header values reached the server as sent (uWS dropped bytes of 0x80 and above at a value's ends: `café` became `caf`).
  const cafe = Buffer.from('café', 'utf8');
  const echoed = await rawOverTls(Buffer.concat([
    Buffer.from('GET /demo-1/_sim/echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-name: '), cafe,
    Buffer.from('\r\nx-request-id: id-'), cafe, Buffer.from('\r\n\r\n'),
  ]));
  t.match(echoed, /^HTTP\/1\.1 200 /);
  const body = JSON.parse(Buffer.from(echoed.slice(echoed.indexOf('\r\n\r\n') + 4), 'latin1').toString('utf8')) as { headers: Record<string, string> };
  t.equal(Buffer.from(body.headers['x-name']!, 'latin1').toString('utf8'), 'café', 'the header value reached the model server byte for byte');
  t.match(echoed, `\r\nx-request-id: id-${cafe.toString('latin1')}\r\n`, 'and the request id came back as sent');
  t.notMatch(echoed, /\r\nuwebsockets:/i, 'no uWebSockets header');
});

/** One handshake with the gateway offering `session`: whether it was resumed, and the session to offer next (a new ticket, or the same). */
function resume(session: Buffer | undefined): Promise<{ session: Buffer | undefined; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: gw.port, rejectUnauthorized: false, session });
    let reused = false;
    let ticket = session;
    // TLS 1.3 sends its tickets after the handshake: a request and its answer make sure they came.
    socket.once('secureConnect', () => {
      reused = socket.isSessionReused();
      socket.write('GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    });
    socket.on('session', (s: Buffer) => {
      ticket = s;
    });
    socket.on('data', () => {});
    socket.once('error', reject);
    socket.once('close', () => resolve({ session: ticket, reused }));
  });
}

t.test('a TLS session resumes on either worker (their ticket keys are shared)', async (t) => {
  let { session } = await resume(undefined);
  t.ok(session !== undefined, 'a ticket came');
  const reused: boolean[] = [];
  // Two workers: the kernel spreads twelve connections over both.
  for (let i = 0; i < 12; i++) {
    const r = await resume(session);
    reused.push(r.reused);
    session = r.session;
  }
  t.same(reused, reused.map(() => true), 'every reconnection resumed its session');
});

t.test('a new certificate: new connections get it, a stream in flight completes', async (t) => {
  t.same(await servedSubjects(gw.port), ['gw-a']);
  const before = logCount(gw, 'certificate reloaded', 'listen');
  let done = false;
  const stream = get(`${gwUrl()}/slow-1/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'slow', stream: true, messages: [{ role: 'user', content: 'a long story' }] }),
  }).finally(() => {
    done = true;
  });
  await sleep(300);
  install(live.gateway, ...pem(certs['gw-b']!));
  const line = await nextLog(gw, 'certificate reloaded', 'listen', before);
  t.equal(line['subject'], 'CN=gw-b');
  t.equal(line['reason'], 'files changed');
  t.notOk(done, 'the stream was still in flight when the certificate changed');
  t.same(await servedSubjects(gw.port), ['gw-b'], 'every new connection, on every worker, gets the new certificate');
  // The stream goes on, on its connection, with the certificate it started with.
  const r = await stream;
  t.equal(r.status, 200);
  t.ok(r.complete, 'the stream ended properly');
  const events = r.body.split('\n\n').filter((e) => e !== '');
  t.equal(events.length, SLOW_TOKENS + 2, 'every token, the final chunk and [DONE]');
  t.equal(events[events.length - 1], 'data: [DONE]');
  // The old certificate is no longer trusted by a new client that pins it...
  await t.rejects(get(`${gwUrl()}/healthz`), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }, 'a client trusting only the old certificate fails on a new connection');
  // ...and requests with the new one work.
  t.equal((await get(`${gwUrl()}/demo-1/_sim/echo`, { ca: readFileSync(certs['gw-b']!.certFile) })).status, 200);
});

t.test('a certificate that cannot serve is logged and the one in use stays', async (t) => {
  const [certB, keyB] = pem(certs['gw-b']!);
  const [certA] = pem(certs['gw-a']!);
  const cases: Array<[string, Buffer | string, Buffer | string, RegExp]> = [
    ['not a certificate', 'garbage\n', keyB, /holds no PEM certificate/],
    ['a key that is not the certificate\'s', certA, keyB, /is not the key of the certificate/],
  ];
  for (const [what, cert, key, problem] of cases) {
    const before = logCount(gw, 'certificate not reloaded: the one in use stays', 'listen');
    install(live.gateway, cert, key);
    const line = await nextLog(gw, 'certificate not reloaded: the one in use stays', 'listen', before);
    t.match(line['problem'], problem, `${what}: logged`);
    t.same(await servedSubjects(gw.port), ['gw-b'], `${what}: the certificate in use stays`);
    t.equal((await get(`${gwUrl()}/demo-1/_sim/echo`, { ca: certB })).status, 200, `${what}: requests are served`);
  }
  // Back to the pair in use: nothing to reload. Its file-watch check ends before the next test.
  install(live.gateway, certB, keyB);
  await sleep(600);
});

t.test('SIGHUP reads the certificates again', async (t) => {
  const before = logCount(gw, 'certificate reloaded', 'listen');
  install(live.gateway, ...pem(certs['gw-c']!));
  // Sent before the file watch's debounce ends: the reload is the signal's.
  gw.child.kill('SIGHUP');
  const line = await nextLog(gw, 'certificate reloaded', 'listen', before);
  t.equal(line['reason'], 'SIGHUP');
  t.equal(line['subject'], 'CN=gw-c');
  t.same(await servedSubjects(gw.port), ['gw-c']);
  // Files unchanged: said so, and the process lives on (Node's default for SIGHUP is to exit).
  const unchanged = logCount(gw, 'certificate unchanged', 'listen');
  gw.child.kill('SIGHUP');
  await nextLog(gw, 'certificate unchanged', 'listen', unchanged);
  t.equal(gw.child.exitCode, null);
  t.equal((await get(`${gwUrl()}/healthz`, { ca: readFileSync(certs['gw-c']!.certFile) })).status, 200);
});

t.test('the admin port over TLS, its certificate reloaded too', async (t) => {
  const admin = `https://127.0.0.1:${gw.adminPort}`;
  const r = await httpRequest(`${admin}/healthz`, { ca: readFileSync(certs['admin-a']!.certFile) });
  t.equal(r.status, 200);
  await t.rejects(handshake(gw.adminPort, TLS11), 'TLS 1.1 is refused');
  t.equal((await handshake(gw.adminPort, { maxVersion: 'TLSv1.2' })).protocol, 'TLSv1.2');
  await t.rejects(httpRequest(`http://127.0.0.1:${gw.adminPort}/healthz`, { timeoutMs: 2000 }), 'plain HTTP gets no answer');
  const before = logCount(gw, 'certificate reloaded', 'admin');
  install(live.admin, ...pem(certs['admin-b']!));
  const line = await nextLog(gw, 'certificate reloaded', 'admin', before);
  t.equal(line['subject'], 'CN=admin-b');
  t.same(await servedSubjects(gw.adminPort, 2), ['admin-b']);
  t.equal((await httpRequest(`${admin}/healthz`, { ca: readFileSync(certs['admin-b']!.certFile) })).status, 200);
  t.same(await servedSubjects(gw.port), ['gw-c'], 'the gateway port keeps its own');
});

t.test('front_end uws over TLS: served, and its certificate reloaded (a new app beside the old)', async (t) => {
  const files = { cert_file: join(dir, 'uws.crt'), key_file: join(dir, 'uws.key') };
  install(files, ...pem(certs['gw-a']!));
  const uwsGw = await startGateway({ listen: { host: '127.0.0.1', port: 0, tls: files, front_end: 'uws' }, ports: { from: 18866, to: 18867 } });
  try {
    const r = await httpRequest(`https://127.0.0.1:${uwsGw.port}/healthz`, { ca: readFileSync(certs['gw-a']!.certFile) });
    t.equal(r.status, 200);
    t.equal(r.headers['uwebsockets'], '20', 'uWS.js writes its header (README, Known limits)');
    const before = logCount(uwsGw, 'certificate reloaded', 'listen');
    install(files, ...pem(certs['gw-b']!));
    uwsGw.child.kill('SIGHUP');
    await nextLog(uwsGw, 'certificate reloaded', 'listen', before);
    t.same(await servedSubjects(uwsGw.port, 2), ['gw-b'], 'new connections get the new certificate');
  } finally {
    await uwsGw.stop();
  }
});

t.test('the gateway stops cleanly after reloads, and wrote no warnings to stderr', async (t) => {
  t.equal(await gw.stop(), 0);
  t.same(gw.stderr.filter((l) => /warn|error/i.test(l)), []);
});
