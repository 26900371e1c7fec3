#!/usr/bin/env bash
# Creates the project-local Python virtualenv (.venv/) with the pinned MLflow stack that
# the tests and the `mlflow` runtime use. Idempotent: a no-op when .venv already holds
# exactly scripts/requirements-mlflow.txt (checked through a stamp of that file's hash).
#
#   bash scripts/setup-python.sh          # install or verify
#   SLUICE_PYTHON=python3.12 bash ...     # pick the interpreter (default: python3)
#   SLUICE_VENV_FORCE=1 bash ...          # rebuild from scratch
#
# Progress goes to stderr so callers can keep stdout clean.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib/venv.sh" setup-python .venv scripts/requirements-mlflow.txt

ERR="$(mktemp)"
trap 'rm -f "$ERR"' EXIT

want_hash="$( { cat "$REQS"; echo "$py_version"; } | sha256sum | cut -d' ' -f1)"

if [ "${SLUICE_VENV_FORCE:-0}" != "1" ] && [ -x "$VENV/bin/mlflow" ] && stamp_ok; then
  log "$VENV is up to date (mlflow $(sed -n 's/^mlflow==//p' "$REQS") / scikit-learn $(sed -n 's/^scikit-learn==//p' "$REQS")); nothing to do"
  exit 0
fi

start=$(date +%s)

# A venv whose interpreter vanished (Python upgraded, pyenv version removed) cannot be
# repaired in place, nor can a half-made one from an earlier failed `venv` call, nor one
# built on another Python than the one asked for (its wheels are for that version).
if [ -d "$VENV" ] && { [ "${SLUICE_VENV_FORCE:-0}" = "1" ] \
    || ! "$VENV/bin/python" -c 'import pip' >/dev/null 2>&1 \
    || [ "$("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])')" != "$py_version" ]; }; then
  log "removing $VENV (forced, unusable, or not Python $py_version)"
  rm -rf "$VENV"
fi

make_venv() {
  log "creating $VENV with $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
  if "$PY" -m venv "$VENV" 2>"$ERR"; then
    return 0
  fi
  rm -rf "$VENV"
  # Debian/Ubuntu ship venv without ensurepip unless python3-venv is installed.
  if grep -qi 'ensurepip' "$ERR" && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    pyver="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    log "python venv lacks ensurepip: apt-get install python3-venv python${pyver}-venv"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    apt-get install -y -qq python3-venv >&2 || true
    apt-get install -y -qq "python${pyver}-venv" >&2 || true
    if "$PY" -m venv "$VENV" 2>"$ERR"; then
      return 0
    fi
    rm -rf "$VENV"
  fi
  log "python -m venv failed ($(tail -n 1 "$ERR")); falling back to virtualenv from PyPI"
  "$PY" -m pip install -q --disable-pip-version-check --user virtualenv >&2 \
    || "$PY" -m pip install -q --disable-pip-version-check --break-system-packages --user virtualenv >&2 \
    || die "could not install virtualenv; install python3-venv (Debian) or virtualenv and re-run"
  "$PY" -m virtualenv -q "$VENV" >&2 || die "virtualenv failed to create $VENV"
}

[ -x "$VENV/bin/python" ] || make_venv

log "installing $(grep -cv '^\s*\(#\|$\)' "$REQS") pinned packages (mlflow $(sed -n 's/^mlflow==//p' "$REQS"), scikit-learn $(sed -n 's/^scikit-learn==//p' "$REQS")) into $VENV"
PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
  "$VENV/bin/python" -m pip install -q -r "$REQS" >&2

# Left-overs from an older requirements file would make the venv differ from the pins.
# Names are compared in PEP 503 normal form: pip versions disagree on `_` versus `-`.
extra="$("$VENV/bin/python" - "$REQS" <<'PYEOF'
import re, subprocess, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
pinned = {norm(l.split("==")[0]) for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")}
frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
                        capture_output=True, text=True, check=True).stdout.split()
print(" ".join(l.split("==")[0] for l in frozen if "==" in l and norm(l.split("==")[0]) not in pinned))
PYEOF
)"
if [ -n "$extra" ]; then
  log "removing packages not in the pins: $extra"
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip uninstall -q -y $extra >&2
fi

"$VENV/bin/mlflow" --version >/dev/null || die "mlflow did not install correctly in $VENV"
echo "$want_hash" > "$STAMP"
log "done in $(( $(date +%s) - start ))s: $("$VENV/bin/mlflow" --version 2>/dev/null | tail -n 1)"
