#!/usr/bin/env bash
# Build (or reuse) a llama-cpp-python wheel that runs on this machine and install it
# into the Python given as $PYTHON (default: python3).
#
#   LLMPERF_LLAMA_BUILD=native    (default) tuned for this CPU; AMX is switched off
#                                  unless the kernel lets this process use it (see below)
#   LLMPERF_LLAMA_BUILD=portable  no -march=native: runs on any x86-64 CI runner
#   LLMPERF_LLAMA_BUILD=cuda      CUDA build; set CMAKE_CUDA_ARCHITECTURES (e.g. 90)
#   LLMPERF_LLAMA_CMAKE_ARGS      extra CMake arguments, appended
#   LLMPERF_LLAMA_VERSION         llama-cpp-python version (default 0.3.36)
#
# Wheels are kept in ${LLMPERF_WHEEL_DIR:-~/.cache/pytest-llmperf/wheels}/<key>, where
# key hashes the version and the full CMake arguments: a changed flag never reuses a
# stale build (pip's own wheel cache ignores CMAKE_ARGS, so it is bypassed).
set -euo pipefail

PYTHON=${PYTHON:-python3}
VERSION=${LLMPERF_LLAMA_VERSION:-0.3.36}
MODE=${LLMPERF_LLAMA_BUILD:-native}
# mtmd/llava (multimodal) is not used by the plugin and is a large part of the build.
args="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"

amx_usable() {
  # AMX needs the CPU flag, the kernel's permission and a hypervisor that really runs
  # the tile instructions: pytest_llmperf/native/amx_probe.c executes them in a child
  # process; anything short of a clean exit (no compiler, a fault) means AMX is off.
  grep -qw amx_tile /proc/cpuinfo 2>/dev/null || return 1
  local cc=${CC:-cc} probe dir rc=1
  probe="$(cd "$(dirname "$0")/.." && pwd)/pytest_llmperf/native/amx_probe.c"
  command -v "$cc" >/dev/null 2>&1 && [ -f "$probe" ] || return 1
  dir=$(mktemp -d)
  if "$cc" -O1 -mamx-tile "$probe" -o "$dir/amx" >/dev/null 2>&1; then
    # in a shell of its own, so that its fault is not reported on this script's stderr
    sh -c '"$1"' probe "$dir/amx" >/dev/null 2>&1 && rc=0
  fi
  rm -rf "$dir"
  return $rc
}

case "$MODE" in
  native)
    args="$args -DGGML_NATIVE=ON"
    if [ "$(uname -m)" = x86_64 ] && ! amx_usable; then
      noamx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
      args="$args -DCMAKE_C_FLAGS='$noamx' -DCMAKE_CXX_FLAGS='$noamx'"
    fi ;;
  portable)
    # One binary for any x86-64 machine: ggml picks AVX/AVX2/AVX-512 kernels at run time.
    args="$args -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON" ;;
  cuda)
    args="$args -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=${CMAKE_CUDA_ARCHITECTURES:-native}" ;;
  *) echo "LLMPERF_LLAMA_BUILD must be native, portable or cuda (got '$MODE')" >&2; exit 2 ;;
esac
args="$args ${LLMPERF_LLAMA_CMAKE_ARGS:-}"

pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
key=$(printf '%s|%s|%s|%s' "$VERSION" "$args" "$pyver" "$(uname -m)" | sha256sum | cut -c1-16)
root=${LLMPERF_WHEEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pytest-llmperf/wheels}
dir="$root/$key"

if ! ls "$dir"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $VERSION ($MODE): CMAKE_ARGS=$args"
  echo "this compiles llama.cpp from source: about 7 minutes on 2 cores"
  tmp="$dir.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  start=$(date +%s)
  CMAKE_ARGS="$args" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
    "$PYTHON" -m pip wheel --no-cache-dir --no-deps -w "$tmp" "llama-cpp-python==$VERSION"
  printf '%s\n' "$args" > "$tmp/CMAKE_ARGS"
  rm -rf "$dir"; mv "$tmp" "$dir"
  echo "built in $(( $(date +%s) - start )) s: $dir"
else
  echo "reusing llama-cpp-python build $dir"
fi
# The wheel from the cache (never pip's own sdist build), its dependencies from the index.
# pip keeps an installed llama-cpp-python of the same version whatever flags built it, so
# the build's key is stamped into the environment and a different key reinstalls.
wheel=$(ls "$dir"/llama_cpp_python-"$VERSION"-*.whl | head -n 1)
stamp=$("$PYTHON" -c 'import sys; print(sys.prefix)')/.llmperf-llama-build
if [ "$(cat "$stamp" 2>/dev/null)" != "$key" ]; then
  "$PYTHON" -m pip install -q --force-reinstall --no-deps "$wheel"
fi
"$PYTHON" -m pip install -q "$wheel"
printf '%s\n' "$key" > "$stamp"
