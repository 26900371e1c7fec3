#!/usr/bin/env bash
# Installs what sluice needs and a fresh machine lacks. Idempotent; each step is skipped
# when already satisfied.
#   bash scripts/setup.sh          # node packages + build (enough to run the gateway)
#   bash scripts/setup.sh --test   # also redis-server, tini, promtool (prometheus), chromium, the Python/MLflow virtualenv, the
#                                  # llama-cpp-python one (its first build compiles llama.cpp: minutes),
#                                  # the tools one (hadolint, kubernetes-validate) and the schemathesis one
#                                  # (the admin API's fuzzer)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { printf '[setup] %s\n' "$*" >&2; }

# npm ci when node_modules is missing or older than the lock file.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing node packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != "0" ]; then
    log "need Debian packages ${missing[*]}: run as root or install them (apt-get install ${missing[*]})"
    return 1
  fi
  log "installing ${missing[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${missing[@]}" >&2 2>/dev/null || { apt-get update -qq >&2 && apt-get install -y -qq "${missing[@]}" >&2; }
}

if [ "${1:-}" = "--test" ]; then
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  # The image's init (Dockerfile ENTRYPOINT), which test/deploy/container.test.ts runs as the image does.
  [ -x /usr/bin/tini ] || apt_install tini
  # A terminal for the CLI's live views (top, logs -f, deploy --wait's spinner): test/cli/live-views.test.ts.
  command -v tmux >/dev/null 2>&1 || apt_install tmux
  # promtool checks the /metrics page (test/telemetry/llm-metrics.test.ts).
  command -v promtool >/dev/null 2>&1 || apt_install prometheus
  # The browser test/admin/dashboard.test.ts drives with playwright-core (a browser download fails here).
  [ -x /usr/bin/chromium ] || apt_install chromium
  bash scripts/setup-python.sh
  bash scripts/setup-llama.sh
  bash scripts/setup-tools.sh
  bash scripts/setup-schemathesis.sh
fi

# The C compiler for native/reuseport.c (scripts/build-native.sh); libc6-dev: gcc only recommends it.
command -v gcc >/dev/null 2>&1 || apt_install gcc libc6-dev

log "building (tsc)"
npx tsc -p tsconfig.json
bash scripts/build-native.sh
