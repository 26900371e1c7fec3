// Ollama's DNS-rebinding guard (protocols.md B1.1, `allowedHostsMiddleware`): when bound to
// a loopback address, a request whose Host is not local gets 403. A page whose name was
// rebound to 127.0.0.1 is same-origin for its browser, so CORS does not stop it; its Host
// still names it. The simulator answers as Ollama does (an empty body); the gateway's own
// front door, bound to loopback, uses the same rule (config listen.allowed_hosts).

import { hostname as osHostname, networkInterfaces } from 'node:os';
import { isIP } from 'node:net';

export const HostVerdict = Object.freeze({
  Forbidden: 0,
  /** Allowed because the Host is a loopback, private, unspecified or local IP. */
  AllowedByIp: 1,
  /** Allowed by name; Ollama answers OPTIONS with 204 on this branch only. */
  AllowedByName: 2,
} as const);
export type HostVerdict = (typeof HostVerdict)[keyof typeof HostVerdict];

const CACHE_MAX = 1024;
const UNIQUE_LOCAL_V6 = /^f[cd][0-9a-f]{0,2}:/;

export function isLoopbackAddress(host: string): boolean {
  const h = unmap(host.toLowerCase());
  return h === 'localhost' || h === '::1' || (isIP(h) === 4 && h.startsWith('127.'));
}

function unmap(ip: string): string {
  return ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
}

/** Go's net.SplitHostPort, keeping the input unchanged where Go would return an error. */
function hostOnly(hostHeader: string): string {
  if (hostHeader.startsWith('[')) {
    const close = hostHeader.indexOf(']');
    if (close !== -1 && hostHeader.charCodeAt(close + 1) === 58 /* ':' */) return hostHeader.slice(1, close);
    return hostHeader;
  }
  const colon = hostHeader.indexOf(':');
  if (colon === -1 || colon !== hostHeader.lastIndexOf(':')) return hostHeader;
  return hostHeader.slice(0, colon);
}

function ipv4Allowed(ip: string): boolean {
  const parts = ip.split('.');
  const a = Number(parts[0]);
  const b = Number(parts[1]);
  return a === 127 || a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || ip === '0.0.0.0';
}

function ipv6Allowed(ip: string): boolean {
  const v = ip.toLowerCase().split('%')[0]!;
  if (v === '::1' || v === '::' || v === '0:0:0:0:0:0:0:1' || v === '0:0:0:0:0:0:0:0') return true;
  // fc00::/7 (unique local) is Go's IsPrivate for IPv6.
  return UNIQUE_LOCAL_V6.test(v);
}

export class HostGuard {
  readonly #hostname = osHostname().toLowerCase();
  readonly #localIps: ReadonlySet<string>;
  readonly #cache = new Map<string, HostVerdict>();

  readonly #extraNames: ReadonlySet<string>;
  readonly #singleLabel: boolean;

  /**
   * `extraNames`: more host names allowed, beside the local ones. `singleLabel`: a name
   * without a dot is allowed too (the gateway's rule, not Ollama's): a rebinding page needs
   * a name its author's DNS answers, which has a dot; a dotless one is the machine's or its
   * network's own (a container's service name, a hosts-file alias).
   */
  constructor(extraNames: readonly string[] = [], singleLabel = false) {
    this.#extraNames = new Set(extraNames.map((n) => n.toLowerCase()));
    this.#singleLabel = singleLabel;
    const ips = new Set<string>();
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) ips.add(a.address.toLowerCase());
    }
    this.#localIps = ips;
  }

  check(hostHeader: string | undefined): HostVerdict {
    if (hostHeader === undefined || hostHeader === '') return HostVerdict.AllowedByName;
    let v = this.#cache.get(hostHeader);
    if (v === undefined) {
      v = this.#decide(hostHeader);
      if (this.#cache.size >= CACHE_MAX) this.#cache.clear();
      this.#cache.set(hostHeader, v);
    }
    return v;
  }

  #decide(hostHeader: string): HostVerdict {
    const host = hostOnly(hostHeader);
    const family = isIP(host);
    if (family !== 0) {
      const ip = unmap(host.toLowerCase());
      const ok = isIP(ip) === 4 ? ipv4Allowed(ip) : ipv6Allowed(ip);
      if (ok || this.#localIps.has(ip)) return HostVerdict.AllowedByIp;
    }
    const h = host.toLowerCase();
    if (h === '' || h === 'localhost' || h === this.#hostname || this.#extraNames.has(h)) return HostVerdict.AllowedByName;
    if (this.#singleLabel && !h.includes('.') && family === 0) return HostVerdict.AllowedByName;
    if (h.endsWith('.localhost') || h.endsWith('.local') || h.endsWith('.internal')) return HostVerdict.AllowedByName;
    return HostVerdict.Forbidden;
  }
}
