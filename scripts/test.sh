#!/usr/bin/env bash
# `npm test`: installs what is missing (node packages, redis-server, the MLflow virtualenv),
# builds, and runs the whole tap suite against real processes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh --test
exec npx tap "$@"
