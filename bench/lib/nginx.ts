// nginx instances the bench owns: each gets its own prefix under the bench's temp dir
// (pid, error log and every *_temp_path there, nothing under /etc or /var), runs in the
// foreground as a child and is stopped like any other child.

import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CHAT_COMPLETION } from './ai-request.js';
import type { Certificate } from './certificate.js';
import type { Proc, ProcessGroup } from './procs.js';

/** A proxied location: `/<prefix>/rest` goes to `127.0.0.1:<port>/rest`, as sluice does. */
export interface ProxyRoute {
  readonly prefix: string;
  readonly port: number;
  /** Answer repeated POSTs from nginx's proxy_cache (key: URI and body) instead of forwarding them. */
  readonly cache?: boolean;
  /** Append the client address to X-Forwarded-For (default false), as sluice does with `listen.forwarded_for`. */
  readonly forwardedFor?: boolean;
  /** Log every request, one JSON line with the request id, buffered (64 KiB) as a user would run it. */
  readonly accessLog?: boolean;
}

// The fields of sluice's access line that nginx has; escape=json as sluice escapes.
const ACCESS_FORMAT = `log_format bench_json escape=json '{"time":"$time_iso8601","request_id":"$request_id","method":"$request_method","path":"$uri",'
    '"client":"$remote_addr","upstream":"$upstream_addr","status":$status,"duration_ms":$request_time,'
    '"ttfb_ms":"$upstream_header_time","request_bytes":$request_length,"response_bytes":$bytes_sent,"msg":"request"}';`;

// proxy_cache keys on the body, which must then be in memory: client_body_buffer_size
// holds it. A response is stored only when read with buffering on (nginx does not cache
// an unbuffered response), so this location leaves proxy_buffering at its default.
const CACHE_DIRECTIVES = `proxy_cache bench;
      proxy_cache_methods POST;
      proxy_cache_key "$request_uri|$request_body";
      proxy_cache_valid 200 10m;
      client_body_buffer_size 16k;
      add_header X-Cache-Status $upstream_cache_status;`;

function frame(prefix: string, servers: string): string {
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `${t}_temp_path ${prefix}/${t};`).join(' ');
  // One worker: the throughput target is "one core". keepalive_requests is raised on every
  // hop because nginx's default (1000) would make both proxies reconnect every 1000
  // requests and measure connection set-up instead of forwarding.
  return `worker_processes 1;
daemon off;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  ${temp}
  keepalive_requests 100000000;
  keepalive_timeout 300s;
${servers}
}
`;
}

/**
 * What a vLLM replica's /metrics says about its queue, idle: the page the queue_aware
 * strategy scrapes (at UPSTREAM_METRICS_PATH), so that its pick reads reported figures
 * rather than falling back to sluice's in-flight counts.
 */
export const UPSTREAM_METRICS_PATH = '/vllm-metrics';
const VLLM_METRICS = ['vllm:num_requests_waiting{model_name="m"} 0', 'vllm:num_requests_running{model_name="m"} 0', 'vllm:kv_cache_usage_perc{model_name="m"} 0.1'];

/**
 * The fast upstream: a canned JSON answer, far cheaper than any proxy in front of it. Every
 * port serves the same answers: a second port is a second replica to balance over (sluice
 * keeps one connection pool per host:port, so one URL listed twice would share one pool).
 */
export function upstreamConf(prefix: string, ports: readonly number[]): string {
  return frame(prefix, `  server {
${ports.map((p) => `    listen 127.0.0.1:${p} backlog=4096;`).join('\n')}
    location / { default_type application/json; return 200 '{"predictions":[0,1,2]}'; }
    location = /v1/chat/completions { default_type application/json; return 200 '${CHAT_COMPLETION}'; }
    location = ${UPSTREAM_METRICS_PATH} { default_type text/plain; return 200 '${VLLM_METRICS.join('\\n')}\\n'; }
  }`);
}

/** The reference proxy: HTTP/1.1 keep-alive pool to each upstream, no buffering; HTTPS with `tls` (TLS 1.2 and 1.3). */
export function proxyConf(prefix: string, port: number, routes: readonly ProxyRoute[], tls?: Certificate): string {
  // One pool per upstream port, however many locations lead to it.
  const upstreams = [...new Set(routes.map((r) => r.port))].map((p) => `  upstream u${p} {
    server 127.0.0.1:${p};
    keepalive 128;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
  }`).join('\n');
  // Host is set to the origin, as sluice sends it: the simulator rejects non-local Hosts
  // the way Ollama does, and nginx would otherwise send the upstream block's name.
  const locations = routes.map((r) => `    location /${r.prefix}/ {
      proxy_pass http://u${r.port}/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host 127.0.0.1:${r.port};
      # The same work sluice does on every request: forwarding headers and a request id.
      ${r.forwardedFor === true ? 'proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;' : ''}
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Request-ID $request_id;
      add_header X-Request-ID $request_id;
      ${r.cache === true ? CACHE_DIRECTIVES : 'proxy_buffering off;'}
      ${r.accessLog === true ? `access_log ${prefix}/access-${r.prefix}.log bench_json buffer=64k flush=1s;` : ''}
    }`).join('\n');
  const cachePath = routes.some((r) => r.cache === true) ? `  proxy_cache_path ${prefix}/cache keys_zone=bench:1m;\n` : '';
  return frame(prefix, `${cachePath}  ${ACCESS_FORMAT}
${upstreams}
  server {
    listen 127.0.0.1:${port}${tls === undefined ? '' : ' ssl'} backlog=4096;
${tls === undefined ? '' : `    ssl_certificate ${tls.certFile};
    ssl_certificate_key ${tls.keyFile};
    ssl_protocols TLSv1.2 TLSv1.3;
`}${locations}
  }`);
}

export async function startNginx(group: ProcessGroup, nginxBin: string, name: string, port: number, conf: (prefix: string) => string, cpus: string | null): Promise<Proc> {
  const prefix = join(group.dir, name);
  mkdirSync(prefix, { recursive: true });
  // nginx's workers drop to `nobody` when the master is root; they must reach the prefix.
  chmodSync(group.dir, 0o755);
  chmodSync(prefix, 0o755);
  const file = join(prefix, 'nginx.conf');
  writeFileSync(file, conf(prefix));
  return group.start(
    { name, command: nginxBin, args: ['-p', prefix, '-e', join(prefix, 'error.log'), '-c', file], cpus },
    { port },
  );
}
