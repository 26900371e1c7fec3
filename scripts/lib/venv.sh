# Sourced by scripts/setup-python.sh, setup-llama.sh, setup-tools.sh and setup-schemathesis.sh, which each keep one
# project-local virtualenv in step with a pinned requirements file:
#   . scripts/lib/venv.sh <log tag> <venv dir> <requirements file>   (paths from the root)
# Sets ROOT, TAG, VENV, REQS, PY, STAMP and py_version, checks the interpreter, and takes a
# per-checkout lock so that two test runs never pip-install (or build) into one venv at once.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TAG="$1"
VENV="$ROOT/$2"
REQS="$ROOT/$3"
PY="${SLUICE_PYTHON:-python3}"
STAMP="$VENV/.sluice-requirements.sha256"

log() { printf '[%s] %s\n' "$TAG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$TAG" "$*" >&2; exit 1; }

[ -f "$REQS" ] || die "missing $REQS"
command -v "$PY" >/dev/null 2>&1 || die "$PY not found; install Python >= 3.11 (Debian: apt-get install python3 python3-venv)"
# The pinned numpy (and pandas/scipy) wheels need 3.11; failing here beats a pip resolver
# error about numpy three screens down.
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  die "$("$PY" -c 'import sys; print(sys.version.split()[0])') is too old: the pinned packages need Python >= 3.11"
fi

# The lock lives outside the tree so it never shows up in `git status`.
LOCK="${TMPDIR:-/tmp}/sluice-$TAG-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12).lock"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$LOCK"
  flock 9
fi

py_version="$("$PY" -c 'import sys; print(sys.version.split()[0])')"

# The venv was completed for these pins (want_hash, set by the caller) and still runs.
stamp_ok() {
  [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_hash" ] \
    && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1
}

# Makes the venv anew: it is the calling script's alone, and rebuilding it whole is simpler
# than reconciling it with changed pins. The caller then pip-installs $REQS into it.
fresh_venv() {
  if [ -d "$VENV" ]; then
    log "removing $VENV (forced, outdated pins, or unusable)"
    rm -rf "$VENV"
  fi
  log "creating $VENV with $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
  "$PY" -m venv "$VENV" >&2 \
    || die "python -m venv failed; install python3-venv (Debian) and re-run"
  log "installing $(grep -cv '^\s*\(#\|$\)' "$REQS") pinned packages into $VENV"
}
