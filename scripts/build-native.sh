#!/usr/bin/env bash
# Builds the Node-API addon native/reuseport.c into native/build/reuseport.node: each
# data-plane worker's own SO_REUSEPORT listening socket, which Node 20 cannot make
# (src/proxy/front-end/reuseport.ts loads it). Needs gcc and the headers of the running
# node (node_api.h). Skipped when the .node is newer than the .c.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { printf '[build-native] %s\n' "$*" >&2; }

src=native/reuseport.c
out=native/build/reuseport.node
if [ -f "$out" ] && [ "$out" -nt "$src" ]; then
  exit 0
fi

if ! command -v gcc >/dev/null 2>&1; then
  log "gcc is missing: install it (Debian: apt-get install gcc libc6-dev; or bash scripts/setup.sh as root) to build $out"
  exit 1
fi
# The headers of the node that will load the addon: <prefix>/include/node next to <prefix>/bin/node.
include="$(node -p "require('path').resolve(process.execPath, '../../include/node')")"
if [ ! -f "$include/node_api.h" ]; then
  log "node_api.h is missing from $include (the headers of $(command -v node) $(node -v)): install them with node (Debian: the nodejs package; official builds ship include/node) to build $out"
  exit 1
fi

log "compiling $src"
mkdir -p native/build
# Into a temporary file, renamed when done: a failed build leaves no .node newer than the .c.
gcc -O2 -Wall -Werror -shared -fPIC -I"$include" -o "$out.tmp" "$src"
mv -f "$out.tmp" "$out"
