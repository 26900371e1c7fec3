#!/usr/bin/env bash
# Creates the project-local virtualenv .venv-llama/ with llama-cpp-python's OpenAI-compatible
# server and the `gguf` writer (scripts/requirements-llama.txt), for the tests' real
# token-streaming model server (test/fixtures/llama-server.ts). Idempotent: a no-op when the
# venv already holds exactly those pins (checked through a stamp of their hash).
#
# llama-cpp-python ships only an sdist, and compiling llama.cpp takes minutes, so the wheel is
# built once per machine into a cache outside the tree and installed from there afterwards:
#   ${SLUICE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice/wheels}/llama-cpp-python-<version>-<key>/
# where <key> hashes the CMake options and the machine type (a rebuilt venv never recompiles).
#
#   bash scripts/setup-llama.sh          # install or verify
#   SLUICE_PYTHON=python3.12 bash ...    # pick the interpreter (default: python3)
#   SLUICE_VENV_FORCE=1 bash ...         # rebuild the venv from scratch (the cached wheel stays)
#
# Progress goes to stderr so callers can keep stdout clean.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib/venv.sh" setup-llama .venv-llama scripts/requirements-llama.txt

# CPU only and portable: no -march=native and no AVX, so a cached wheel never dies of SIGILL
# on another CPU (the tests' model is 64 wide: speed does not matter); no multimodal (mtmd)
# library, tests or tools, which the server does not need and which would double the build.
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF -DGGML_SSE42=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"

LLAMA_VERSION="$(sed -n 's/^llama-cpp-python\(\[[a-z,]*\]\)\?==//p' "$REQS")"
[ -n "$LLAMA_VERSION" ] || die "no llama-cpp-python==<version> pin in $REQS"

want_hash="$( { cat "$REQS"; echo "$py_version"; echo "$LLAMA_CMAKE_ARGS"; } | sha256sum | cut -d' ' -f1)"

if [ "${SLUICE_VENV_FORCE:-0}" != "1" ] && stamp_ok; then
  log "$VENV is up to date (llama-cpp-python $LLAMA_VERSION); nothing to do"
  exit 0
fi

start=$(date +%s)
CACHE_ROOT="${SLUICE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice/wheels}"
wheel_key="$( { echo "$LLAMA_CMAKE_ARGS"; uname -m; } | sha256sum | cut -c1-12)"
WHEELS="$CACHE_ROOT/llama-cpp-python-$LLAMA_VERSION-$wheel_key"

if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  # scikit-build-core fetches cmake and ninja from PyPI when the machine lacks them; a
  # compiler it cannot fetch.
  command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 \
    || die "building llama-cpp-python needs a C/C++ compiler (Debian: apt-get install build-essential)"
  log "compiling llama-cpp-python $LLAMA_VERSION from its sdist (once per machine; 5-8 min on 2 cores) into $WHEELS"
  mkdir -p "$CACHE_ROOT"
  # Built in a scratch directory and moved in whole: an interrupted build leaves no wheel behind.
  scratch="$(mktemp -d "$CACHE_ROOT/.build-XXXXXX")"
  trap 'rm -rf "$scratch"' EXIT
  build_log="$scratch/build.log"
  jobs="$(nproc 2>/dev/null || echo 2)"
  if ! CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$jobs" MAKEFLAGS="-j$jobs" \
      PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
      "$PY" -m pip wheel --no-deps --no-binary llama-cpp-python -w "$scratch/out" \
      "llama-cpp-python==$LLAMA_VERSION" >"$build_log" 2>&1; then
    tail -n 40 "$build_log" >&2
    die "building llama-cpp-python $LLAMA_VERSION failed (last lines above)"
  fi
  mkdir -p "$WHEELS"
  mv "$scratch"/out/llama_cpp_python-*.whl "$WHEELS"/
  rm -rf "$scratch"
  trap - EXIT
  log "built $(basename "$WHEELS"/llama_cpp_python-*.whl) in $(( $(date +%s) - start ))s"
else
  log "using the cached wheel in $WHEELS"
fi

fresh_venv
# --only-binary: llama-cpp-python must come from the cached wheel, never compile again here.
PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
  "$VENV/bin/python" -m pip install -q --find-links "$WHEELS" --only-binary llama-cpp-python -r "$REQS" >&2

# Loads libllama and the server's FastAPI app: a wheel that does not load fails here, not in a test.
"$VENV/bin/python" -c 'import gguf, llama_cpp, llama_cpp.server.app; print(llama_cpp.__version__)' >/dev/null \
  || die "llama-cpp-python did not install correctly in $VENV"
echo "$want_hash" > "$STAMP"
log "done in $(( $(date +%s) - start ))s: llama-cpp-python $LLAMA_VERSION, gguf $(sed -n 's/^gguf==//p' "$REQS")"
