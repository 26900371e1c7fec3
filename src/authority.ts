// host:port as a URL or a Host header writes it: an IPv6 address in brackets. A leaf module:
// the data plane (Host headers, its listen messages), ports/ (a server's URL) and the
// start-up line all need it.

export function authority(host: string, port: number): string {
  return `${uriHost(host)}:${port}`;
}

/** The host alone, as a URL or a Host header writes it when the port is the scheme's own. */
export function uriHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
