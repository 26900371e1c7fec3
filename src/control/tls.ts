// TLS on the gateway and admin ports, as the control plane runs it. At start-up each
// configured certificate and key are read and checked (a bad pair stops the start, naming
// the field). Then their directories are watched, and on a change or SIGHUP a pair that
// reads and checks is handed to its port; one that does not is logged, and the pair in use
// stays.

import { createHash, createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { HstsConfig, TlsConfig } from '../config/index.js';
import type { Logger } from '../telemetry/index.js';

export interface CertificatePair {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** Of both files' bytes: a check that finds them unchanged does nothing. */
  readonly digest: string;
  readonly serial: string;
  readonly subject: string;
  readonly notAfter: string;
}

/** Why a pair cannot be used, and which of its two files is at fault. */
export interface CertificateProblem {
  readonly field: 'cert_file' | 'key_file';
  readonly reason: string;
}

/**
 * Reads the pair and checks that the key is the certificate's and that it is valid now (not
 * expired, not valid only later);
 * `gatewayPort`: also that uWebSockets.js's BoringSSL can load it.
 */
export async function readCertificatePair(tls: TlsConfig, boringSsl = false): Promise<CertificatePair | CertificateProblem> {
  let cert: Buffer;
  let key: Buffer;
  try {
    cert = await readFile(tls.cert_file);
  } catch (err) {
    return { field: 'cert_file', reason: `cannot read ${tls.cert_file}: ${(err as Error).message}` };
  }
  try {
    key = await readFile(tls.key_file);
  } catch (err) {
    return { field: 'key_file', reason: `cannot read ${tls.key_file}: ${(err as Error).message}` };
  }
  let x509: X509Certificate;
  try {
    // The first certificate of the file: the leaf, followed by its chain.
    x509 = new X509Certificate(cert);
  } catch (err) {
    return { field: 'cert_file', reason: `${tls.cert_file} holds no PEM certificate (${(err as Error).message})` };
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    return { field: 'key_file', reason: `${tls.key_file} holds no unencrypted PEM private key (${(err as Error).message})` };
  }
  if (!x509.checkPrivateKey(privateKey)) return { field: 'key_file', reason: `${tls.key_file} is not the key of the certificate in ${tls.cert_file}` };
  // Node's OpenSSL reads it, but BoringSSL (the uws front end's) has no Ed448: its workers
  // could only fail with uWS's bare "App construction failed".
  if (boringSsl && privateKey.asymmetricKeyType === 'ed448') return { field: 'key_file', reason: `${tls.key_file} is an Ed448 key, which the gateway port's TLS (BoringSSL, in uWebSockets.js) cannot load: use RSA, ECDSA or Ed25519` };
  const now = Date.now();
  if (Date.parse(x509.validTo) < now) return { field: 'cert_file', reason: `the certificate in ${tls.cert_file} expired on ${x509.validTo}` };
  // Not valid yet (issued ahead, or this host's clock behind the issuer's): every client
  // would refuse it as surely as an expired one. Refused, a reload keeps the one in use, and
  // the minute's check puts it in use once it is valid (its files unchanged, so no new event).
  if (Date.parse(x509.validFrom) > now) return { field: 'cert_file', reason: `the certificate in ${tls.cert_file} is not valid before ${x509.validFrom}` };
  const digest = createHash('sha256').update(cert).update('\0').update(key).digest('hex');
  return { cert, key, digest, serial: x509.serialNumber, subject: x509.subject.replace(/\n/g, ', '), notAfter: x509.validTo };
}

export function isProblem(p: CertificatePair | CertificateProblem): p is CertificateProblem {
  return 'reason' in p;
}

/** The Strict-Transport-Security value of config listen.hsts. */
export function hstsValue(h: HstsConfig): string {
  return `max-age=${h.max_age_s}${h.include_subdomains ? '; includeSubDomains' : ''}${h.preload ? '; preload' : ''}`;
}

/** One port whose certificate is reloaded. */
export interface TlsPort {
  /** `listen` or `admin`: the config section, in log lines. */
  readonly name: string;
  readonly config: TlsConfig;
  /** Served by uWebSockets.js (listen.front_end uws), whose BoringSSL has no Ed448. */
  readonly boringSsl: boolean;
  /** The pair in use. */
  current: CertificatePair;
  /** Puts a pair in use; resolves with why it could not (the pair in use then stays), or null. */
  readonly apply: (pair: CertificatePair) => Promise<string | null>;
}

// Certificate managers write the certificate and the key one after the other: a check made
// between the two would log a mismatch for nothing.
const DEBOUNCE_MS = 300;
// Where the watch sees nothing (network file systems), the files are still checked this often.
const POLL_MS = 60_000;

export class CertificateReloader {
  readonly #ports: readonly TlsPort[];
  readonly #logger: Logger;
  readonly #watchers: FSWatcher[] = [];
  #debounce: NodeJS.Timeout | null = null;
  #poll: NodeJS.Timeout | null = null;
  /** Per port, the digest of the last pair that could not be used: not tried again until the files change (or SIGHUP). */
  readonly #refused = new Map<TlsPort, string>();
  /** The check running, and whether another was asked for meanwhile (one runs at a time). */
  #running: Promise<void> | null = null;
  #again: { reason: string; force: boolean } | null = null;

  constructor(ports: readonly TlsPort[], logger: Logger) {
    this.#ports = ports;
    this.#logger = logger;
  }

  /**
   * Watches the directories of the files rather than the files: a certificate replaced by
   * a rename (an atomic write, a Kubernetes secret's symlink swap) leaves a watch on the old
   * file blind.
   */
  start(): void {
    const files = new Set(this.#ports.flatMap((p) => [p.config.cert_file, p.config.key_file]));
    const dirs = new Map<string, Set<string>>();
    for (const f of files) {
      const names = dirs.get(dirname(f)) ?? new Set<string>();
      names.add(basename(f));
      dirs.set(dirname(f), names);
    }
    for (const [dir, names] of dirs) {
      try {
        const w = watch(dir, (_event, name) => {
          // A symlink swap names the link's target directory (`..data`), not the file.
          if (name === null || names.has(name) || name.startsWith('..')) this.#soon();
        });
        w.on('error', (err) => this.#logger.warn({ err, dir }, 'cannot watch the certificate directory: its files are checked every minute'));
        this.#watchers.push(w);
      } catch (err) {
        this.#logger.warn({ err, dir }, 'cannot watch the certificate directory: its files are checked every minute');
      }
    }
    this.#poll = setInterval(() => void this.check('poll'), POLL_MS);
    this.#poll.unref();
  }

  stop(): void {
    for (const w of this.#watchers) w.close();
    this.#watchers.length = 0;
    if (this.#debounce !== null) clearTimeout(this.#debounce);
    if (this.#poll !== null) clearInterval(this.#poll);
    this.#debounce = null;
    this.#poll = null;
  }

  /**
   * Reads every pair again and puts in use those that changed and check out. `force`
   * (SIGHUP) also retries a pair refused before and says when nothing changed.
   */
  check(reason: string, force = false): Promise<void> {
    if (this.#running !== null) {
      this.#again = { reason, force: force || this.#again?.force === true };
      return this.#running;
    }
    this.#running = (async () => {
      let next: { reason: string; force: boolean } | null = { reason, force };
      while (next !== null) {
        this.#again = null;
        for (const port of this.#ports) await this.#checkPort(port, next.reason, next.force);
        next = this.#again;
      }
      this.#running = null;
    })();
    return this.#running;
  }

  #soon(): void {
    if (this.#debounce !== null) clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => {
      this.#debounce = null;
      void this.check('files changed');
    }, DEBOUNCE_MS);
  }

  async #checkPort(port: TlsPort, reason: string, force: boolean): Promise<void> {
    const log = { port: port.name, reason, cert_file: port.config.cert_file, key_file: port.config.key_file };
    const pair = await readCertificatePair(port.config, port.boringSsl);
    if (isProblem(pair)) {
      const digest = `problem:${pair.reason}`;
      if (!force && this.#refused.get(port) === digest) return;
      this.#refused.set(port, digest);
      this.#logger.error({ ...log, problem: pair.reason }, 'certificate not reloaded: the one in use stays');
      return;
    }
    if (pair.digest === port.current.digest) {
      this.#refused.delete(port);
      if (force) this.#logger.info(log, 'certificate unchanged');
      return;
    }
    if (!force && this.#refused.get(port) === pair.digest) return;
    const error = await port.apply(pair);
    if (error !== null) {
      this.#refused.set(port, pair.digest);
      this.#logger.error({ ...log, problem: error }, 'certificate not reloaded: the one in use stays');
      return;
    }
    this.#refused.delete(port);
    port.current = pair;
    this.#logger.info({ ...log, serial: pair.serial, subject: pair.subject, not_after: pair.notAfter }, 'certificate reloaded');
  }
}
