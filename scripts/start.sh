#!/usr/bin/env bash
# `npm start`: installs what is missing, builds, and runs the gateway on :8080 (admin on
# 127.0.0.1:8081) with the demo deployment `demo` version `1` on the built-in simulator.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# The Node flags sluice runs with (src/node-flags.ts says why), then the gateway.
# shellcheck disable=SC2046
exec node $(node "$ROOT/dist/cli.js" node-flags) "$ROOT/dist/cli.js" serve --config "${SLUICE_CONFIG:-$ROOT/config/default.yaml}"
