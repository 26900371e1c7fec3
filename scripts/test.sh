#!/usr/bin/env bash
# `npm test`: installs what is missing (node packages, redis-server, tini, the MLflow, llama.cpp, tools and schemathesis virtualenvs),
# builds, type-checks the tests, and runs the whole tap suite against real processes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh --test
# tap runs the tests without type-checking them: a type error there must fail too.
echo '[test] type-checking src, test and bench (tsconfig.test.json)' >&2
npx tsc -p tsconfig.test.json
exec npx tap "$@"
