#!/usr/bin/env bash
# A/B of one data-plane change, in CPU per request of sluice's worker thread.
#
#   bench/ab-dataplane.sh <file under dist/> '<sed expression>' [pairs]
#   bench/ab-dataplane.sh proxy/gateway.js 's/clientAddress(res)/"127.0.0.1"/g' 4
#   bench/ab-dataplane.sh --against <git revision> [pairs]
#
# Copies the built dist/ twice, applies the sed expression to one copy (B), and runs the
# two copies alternately (A B A B ...) against an nginx `return 200` upstream: sluice alone
# on CPU 1, wrk and the upstream on CPU 0, 64 connections, 2 s warm-up and 5 s measured per
# run. Prints req/s and the worker thread's user and system CPU per request, read from
# /proc/<pid>/task/<tid>/stat, then the medians. Alternating copies, and per-thread CPU
# rather than req/s, keep this usable on a machine whose speed drifts between runs: a
# throughput ratio against nginx moves by 10% there, a same-run A/B difference does not.
# With --against, A is the given revision (built from a temporary git worktree) and B is
# the current dist/: the before and after of uncommitted work.
# AB_POLICIES=on runs both copies with every policy on, as the bench's policies row does.
# AB_WORKLOAD=sse measures SSE streams instead (POST /v1/chat/completions with
# "stream": true to the simulator, 20 tokens, no delays; figures are per stream), and
# AB_WORKLOAD=post a 32-byte JSON POST to /invocations (the bench's cache-section body),
# and AB_WORKLOAD=ai the bench's AI request (POST /v1/chat/completions, ~500-byte chat
# body, the OpenAI SDK's headers, a ~300-byte answer), AB_WORKLOAD=ai-root the same at
# the root (/v1/chat/completions, routed by the body's model). AB_POLICIES=defaults runs sluice's
# default policies (no override) and AB_LOG=on its access log (to a file), as shipped.
# Both copies append X-Forwarded-For (as the default was before it turned off, so earlier
# A/B tables stay comparable); AB_XFF=false runs them without it, as shipped now.
# Needs nginx, wrk and taskset (npm run bench installs the first two). Loopback only.
set -euo pipefail

USAGE='usage: bench/ab-dataplane.sh <file under dist/> <sed expression> [pairs] | --against <git revision> [pairs]'
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REV=
if [ "${1:-}" = --against ]; then
  REV=${2:?$USAGE}
  PAIRS=${3:-3}
  git -C "$ROOT" rev-parse --verify -q "$REV^{commit}" >/dev/null || { echo "ab-dataplane: $REV is not a revision" >&2; exit 2; }
else
  FILE=${1:?$USAGE}
  EXPR=${2:?$USAGE}
  PAIRS=${3:-3}
fi
WORKLOAD=${AB_WORKLOAD:-get}
POLICIES='{ breaker: { enabled: false }, retry: { attempts: 0 }, cache: { enabled: false } }'
if [ "${AB_POLICIES:-off}" = on ]; then
  # The same as POLICIES_ON in bench/run.ts.
  POLICIES='{ breaker: { enabled: true }, retry: { attempts: 2 }, queue: { max_inflight_per_replica: 100000, max_length: 1000 }, rate_limit: { requests_per_second: 1000000000 }, cache: { enabled: true, ttl_ms: 600000 }, total_timeout_ms: 60000 }'
fi
[ "${AB_POLICIES:-off}" = defaults ] && POLICIES=
LOG='{ level: warn, access: false }'
[ "${AB_LOG:-off}" = on ] && LOG='{ level: info, access: true }'
case "$WORKLOAD" in get | sse | post | ai | ai-root) ;; *) echo "ab-dataplane: AB_WORKLOAD must be get, sse, post, ai or ai-root" >&2; exit 2 ;; esac
UPSTREAM_PORT=19911
SIM_PORT=19912
PORT=19980
ADMIN_PORT=19981
SECONDS_PER_RUN=5

for tool in nginx wrk taskset; do
  command -v "$tool" >/dev/null || { echo "ab-dataplane: $tool is not installed" >&2; exit 2; }
done
[ -n "$REV" ] || [ -f "$ROOT/dist/$FILE" ] || { echo "ab-dataplane: dist/$FILE not found (npm run build first)" >&2; exit 2; }
[ -f "$ROOT/dist/cli.js" ] || { echo "ab-dataplane: dist/ not built (npm run build first)" >&2; exit 2; }

WORK=$(mktemp -d)
NGINX_PID=
SIM_PID=
SLUICE_PID=
cleanup() {
  [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null || true
  [ -n "$REV" ] && git -C "$ROOT" worktree remove --force "$WORK/rev" 2>/dev/null || true
  [ -n "$SLUICE_PID" ] && kill "$SLUICE_PID" 2>/dev/null || true
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

for v in a b; do
  mkdir -p "$WORK/$v"
  cp -r "$ROOT/dist" "$WORK/$v/dist"
  cp "$ROOT/package.json" "$WORK/$v/"
  ln -s "$ROOT/node_modules" "$WORK/$v/node_modules"
  # The node front end's SO_REUSEPORT addon (scripts/build-native.sh), found from dist/.
  ln -s "$ROOT/native" "$WORK/$v/native"
done
if [ -n "$REV" ]; then
  git -C "$ROOT" worktree add -q --detach "$WORK/rev" "$REV"
  ln -s "$ROOT/node_modules" "$WORK/rev/node_modules"
  rm -rf "$WORK/a/dist"
  (cd "$WORK/rev" && npx tsc -p tsconfig.json --outDir "$WORK/a/dist")
  echo "A: $(git -C "$ROOT" log -1 --format='%h %s' "$REV" | cut -c1-80)"
  echo "B: the current dist/"
else
  sed -i "$EXPR" "$WORK/b/dist/$FILE"
  if cmp -s "$ROOT/dist/$FILE" "$WORK/b/dist/$FILE"; then
    echo "ab-dataplane: the sed expression changed nothing in dist/$FILE" >&2
    exit 2
  fi
  diff "$ROOT/dist/$FILE" "$WORK/b/dist/$FILE" || true
fi

# The AI request and its answer are the bench's own (bench/lib/ai-request.ts, built into dist-bench/).
[ -f "$ROOT/dist-bench/lib/ai-request.js" ] || (cd "$ROOT" && npx tsc -p tsconfig.bench.json)
CHAT_COMPLETION=$(node "$ROOT/dist-bench/lib/ai-request.js" chat-completion)
mkdir -p "$WORK/nginx"
chmod 755 "$WORK" "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $WORK/nginx/nginx.pid; error_log $WORK/nginx/error.log warn;
events { worker_connections 8192; }
http {
  access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  client_body_temp_path $WORK/nginx/cb; proxy_temp_path $WORK/nginx/p; fastcgi_temp_path $WORK/nginx/f;
  uwsgi_temp_path $WORK/nginx/u; scgi_temp_path $WORK/nginx/s;
  server { listen 127.0.0.1:$UPSTREAM_PORT backlog=4096;
    location / { default_type application/json; return 200 '{"predictions":[0,1,2]}'; }
    location = /v1/chat/completions { default_type application/json; return 200 '$CHAT_COMPLETION'; } }
}
EOF
taskset -c 0 nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
NGINX_PID=$!

cat > "$WORK/sluice.yaml" <<EOF
listen: { host: 127.0.0.1, port: $PORT, forwarded_for: ${AB_XFF:-true} }
admin: { port: $ADMIN_PORT }
workers: 1
state_dir: $WORK/state
log: $LOG
${POLICIES:+policies: $POLICIES}
deployments:
  - { model: up, version: "1", runtime: remote, urls: ["http://127.0.0.1:$UPSTREAM_PORT"] }
  - { model: sim, version: "1", runtime: remote, urls: ["http://127.0.0.1:$SIM_PORT"] }
EOF

TARGET="http://127.0.0.1:$PORT/up-1/predict"
WRK_ARGS=()
# Makes wrk POST the JSON body $2 to sluice's path $1.
post_workload() {
  printf 'wrk.method = "POST"\nwrk.body = [==[%s]==]\nwrk.headers["Content-Type"] = "application/json"\n' "$2" > "$WORK/post.lua"
  TARGET="http://127.0.0.1:$PORT$1"
  WRK_ARGS=(-s "$WORK/post.lua")
}
if [ "$WORKLOAD" = sse ]; then
  taskset -c 0 node "$ROOT/dist/cli.js" sim --port "$SIM_PORT" --protocol openai --ttft-ms 0 --token-ms 0 --tokens 20 > "$WORK/sim.log" 2>&1 &
  SIM_PID=$!
  post_workload "/sim-1/v1/chat/completions" '{"model":"demo","messages":[{"role":"user","content":"hi"}],"stream":true}'
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$SIM_PORT/" && break; sleep 0.1; done
fi
[ "$WORKLOAD" = post ] && post_workload "/up-1/invocations" '{"inputs":{"a":[1,2],"b":[3,4]}}'
if [ "$WORKLOAD" = ai ]; then
  node "$ROOT/dist-bench/lib/ai-request.js" wrk-lua > "$WORK/post.lua"
  TARGET="http://127.0.0.1:$PORT/up-1/v1/chat/completions"
  WRK_ARGS=(-s "$WORK/post.lua")
fi
if [ "$WORKLOAD" = ai-root ]; then
  node "$ROOT/dist-bench/lib/ai-request.js" wrk-lua-root > "$WORK/post.lua"
  TARGET="http://127.0.0.1:$PORT/v1/chat/completions"
  WRK_ARGS=(-s "$WORK/post.lua")
fi

# Prints "<req/s> <user us/req> <system us/req>" for one run of copy $1.
run_once() {
  taskset -c 1 node "$WORK/$1/dist/cli.js" serve --config "$WORK/sluice.yaml" > "$WORK/sluice-$1.log" 2>&1 &
  SLUICE_PID=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null && break; sleep 0.1; done
  taskset -c 0 wrk -t1 -c64 -d2s "${WRK_ARGS[@]}" "$TARGET" >/dev/null
  # The data-plane worker is the thread that used the most CPU during the warm-up.
  local task
  task=$(for t in /proc/$SLUICE_PID/task/*; do echo "$(awk '{print $14+$15}' "$t/stat") $t"; done | sort -n | tail -1 | cut -d' ' -f2)
  local u0 s0 u1 s1 out rps
  read -r u0 s0 < <(awk '{print $14, $15}' "$task/stat")
  out=$(taskset -c 0 wrk -t1 -c64 -d${SECONDS_PER_RUN}s "${WRK_ARGS[@]}" "$TARGET")
  read -r u1 s1 < <(awk '{print $14, $15}' "$task/stat")
  kill "$SLUICE_PID"; wait "$SLUICE_PID" 2>/dev/null || true
  SLUICE_PID=
  rps=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
  local hz
  hz=$(getconf CLK_TCK)
  awk -v r="$rps" -v du=$((u1 - u0)) -v ds=$((s1 - s0)) -v s=$SECONDS_PER_RUN -v hz="$hz" \
    'BEGIN { n = r * s; printf "%.0f %.2f %.2f\n", r, du * 1e6 / hz / n, ds * 1e6 / hz / n }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "run  copy  req/s  user_us/req  sys_us/req  total_us/req"
for i in $(seq "$PAIRS"); do
  for v in a b; do
    read -r rps u s < <(run_once "$v")
    echo "$i $v $rps $u $s" >> "$WORK/runs"
    printf '%-4s %-5s %-6s %-12s %-11s %s\n' "$i" "$v" "$rps" "$u" "$s" "$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')"
  done
done
for v in a b; do
  printf 'median %s: total %s us/req (user %s, sys %s), %s req/s\n' "$v" \
    "$(awk -v v=$v '$2 == v { print $4 + $5 }' "$WORK/runs" | median)" \
    "$(awk -v v=$v '$2 == v { print $4 }' "$WORK/runs" | median)" \
    "$(awk -v v=$v '$2 == v { print $5 }' "$WORK/runs" | median)" \
    "$(awk -v v=$v '$2 == v { print $3 }' "$WORK/runs" | median)"
done
