#!/usr/bin/env bash
# Creates the project-local virtualenv .venv-schemathesis/ with the pinned schemathesis
# (scripts/requirements-schemathesis.txt) that test/admin/fuzz.test.ts runs against the
# admin API. Idempotent: a no-op when the venv already holds exactly those pins (checked
# through a stamp of their hash).
#
#   bash scripts/setup-schemathesis.sh       # install or verify
#   SLUICE_PYTHON=python3.12 bash ...        # pick the interpreter (default: python3)
#   SLUICE_VENV_FORCE=1 bash ...             # rebuild from scratch
#
# Progress goes to stderr so callers can keep stdout clean.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib/venv.sh" setup-schemathesis .venv-schemathesis scripts/requirements-schemathesis.txt

want_hash="$( { cat "$REQS"; echo "$py_version"; } | sha256sum | cut -d' ' -f1)"
version="$(sed -n 's/^schemathesis==//p' "$REQS")"

if [ "${SLUICE_VENV_FORCE:-0}" != "1" ] && stamp_ok; then
  log "$VENV is up to date (schemathesis $version); nothing to do"
  exit 0
fi

start=$(date +%s)
fresh_venv
PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
  "$VENV/bin/python" -m pip install -q --only-binary :all: -r "$REQS" >&2

"$VENV/bin/schemathesis" --version >/dev/null || die "schemathesis did not install correctly in $VENV"
echo "$want_hash" > "$STAMP"
log "done in $(( $(date +%s) - start ))s: schemathesis $version"
