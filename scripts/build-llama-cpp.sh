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
  # AMX needs both the CPU flag and the kernel's permission (arch_prctl
  # ARCH_REQ_XCOMP_PERM for XTILEDATA). Virtual machines often advertise the flag
  # but refuse the permission: a native build then dies with SIGILL (tileloadd) on
  # every quantized model.
  grep -qw amx_tile /proc/cpuinfo 2>/dev/null || return 1
  "$PYTHON" - <<'PY'
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
sys.exit(0 if libc.syscall(158, 0x1023, 18) == 0 else 1)
PY
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
"$PYTHON" -m pip install --no-index --find-links "$dir" "llama-cpp-python==$VERSION" \
  || "$PYTHON" -m pip install --find-links "$dir" "llama-cpp-python==$VERSION"
