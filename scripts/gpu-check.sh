#!/usr/bin/env bash
# On the bare GPU machine (no network): install llama-cpp-python with CUDA (the wheel that
# scripts/gpu-bundle.sh --cuda-wheel prebuilt, or a build from the bundled source), gguf
# and diskcache beside the machine's own packages, then run scripts/gpu_checks.py
# (docs/GPU.md says what each check is).
#
#   bash scripts/gpu-check.sh OUTDIR           CUDA, the GPU checks
#   bash scripts/gpu-check.sh OUTDIR --cpu     a CPU build, the same flow; GPU-only checks
#                                              report "skipped: no GPU" (the dry run here)
#   ... --build-only                           only build (or reuse) the wheel
#   ... --portable                             GGML_NATIVE=OFF (AVX2 baseline) and, with
#                                              CUDA, no driver-API memory pool: a wheel
#                                              that runs on another x86-64 machine
#
# Writes OUTDIR/gpu-summary.{json,md}, gpu-check.log, build.log (when it builds),
# pytest.log and the baseline pytest recorded: at most 8 files, none in a subfolder.
# Exits 0 when no check failed. Everything runs against a deadline (GPU_CHECK_BUDGET_S
# after the start, default 540): a build is stopped before it and checks that would not
# fit are skipped, so a summary comes back inside a 600 s command.
#
#   PYTHON=python3               the interpreter (the device's has numpy, scipy, pytest ...)
#   GPU_BUNDLE_DIR               default build/gpu-bundle
#   GPU_CHECK_BUILD=source       build from the bundled source even if a wheel is prebuilt
#   GPU_CHECK_CACHE              built wheels and CMake build trees, default build/gpu-cache
#                                (not carried: on a warm machine a rerun reuses them)
#   GPU_CHECK_WORK               installed packages and models, default /tmp/llmperf-gpu-check
#   CMAKE_CUDA_ARCHITECTURES     default 90 (H100/H200)
#   GPU_CHECK_FA=on              also build the CUDA flash-attention kernels (a longer build)
set -euo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
REPO=$(pwd)

usage() {
  echo "usage: bash scripts/gpu-check.sh OUTDIR [--cpu] [--build-only] [--portable]" >&2
  exit 2
}
[ $# -ge 1 ] || usage
OUT=$1
shift
MODE=cuda
BUILD_ONLY=0
PORTABLE=0
for arg in "$@"; do
  case "$arg" in
    --cpu) MODE=cpu ;;
    --build-only) BUILD_ONLY=1 ;;
    --portable) PORTABLE=1 ;;
    *) usage ;;
  esac
done

PY=${PYTHON:-python3}
VERSION=${LLMPERF_LLAMA_VERSION:-0.3.36}
BUNDLE=${GPU_BUNDLE_DIR:-build/gpu-bundle}
CACHE=${GPU_CHECK_CACHE:-build/gpu-cache}
WORK=${GPU_CHECK_WORK:-${TMPDIR:-/tmp}/llmperf-gpu-check}
BUDGET=${GPU_CHECK_BUDGET_S:-540}
CUDA_ARCH=${CMAKE_CUDA_ARCHITECTURES:-90}
FA=${GPU_CHECK_FA:-off}
START=$(date +%s)
DEADLINE=$((START + BUDGET))

mkdir -p "$OUT" "$CACHE" "$WORK"
OUT=$(cd "$OUT" && pwd)
CACHE=$(cd "$CACHE" && pwd)
LOG=$OUT/gpu-check.log
: > "$LOG"

log() {
  local line
  line=$(printf '[%s +%ss] %s' "$(date +%H:%M:%S)" "$(($(date +%s) - START))" "$*")
  echo "$line"
  echo "$line" >> "$LOG"
}

ARGS=""
FA_BUILT=0
checks() {  # the Python part; with --build-failed it only writes the summary
  "$PY" scripts/gpu_checks.py --out "$OUT" --mode "$MODE" --deadline "$DEADLINE" \
    --cmake-args "$ARGS" --fa-built "$FA_BUILT" "$@"
}
give_up() {  # a failure before the checks: say why in the summary too
  log "$1"
  [ "$BUILD_ONLY" = 1 ] || checks --build-seconds "${2:-0}" --build-failed "$1" || true
  exit 1
}

log "gpu-check: mode $MODE, $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])'), $(nproc) cores, out $OUT"
sdist="$BUNDLE/llama_cpp_python-$VERSION.tar.gz"
prebuilt="$BUNDLE/prebuilt/llama_cpp-cuda.tar.gz"
[ -s "$prebuilt" ] || prebuilt=""
USE_PREBUILT=0
if [ "$MODE" = cuda ] && [ "$BUILD_ONLY" = 0 ] && [ -n "$prebuilt" ] && [ "${GPU_CHECK_BUILD:-}" != source ]; then
  USE_PREBUILT=1
fi
if ! ls "$BUNDLE"/wheels/*.whl >/dev/null 2>&1 || { [ "$USE_PREBUILT" = 0 ] && [ ! -s "$sdist" ]; }; then
  give_up "no bundle at $BUNDLE: run scripts/gpu-bundle.sh where there is network, and carry it"
fi

if [ "$MODE" = cuda ]; then
  # -- CUDA: the toolkit (nvcc, only to build), cuBLAS and the runtime libraries ---------
  if ! command -v nvcc >/dev/null 2>&1; then
    for d in /usr/local/cuda/bin /usr/local/cuda-*/bin /opt/cuda/bin; do
      if [ -x "$d/nvcc" ]; then PATH="$d:$PATH"; break; fi
    done
  fi
  nvcc_path=$(command -v nvcc || true)
  roots=()
  while read -r root; do
    [ -d "$root" ] && roots+=("$root")
  done < <(printf '%s\n' "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda \
    "${nvcc_path:+$(dirname "$(dirname "$(readlink -f "$nvcc_path")")")}" | awk 'NF && !seen[$0]++')
  first() {  # the first file named $1 in the toolkit
    [ "${#roots[@]}" -gt 0 ] || return 0
    find -L "${roots[@]}" -maxdepth 4 -name "$1" 2>/dev/null | head -n 1 || true
  }
  # A toolkit assembled from NVIDIA's pip wheels (as on these machines) may lack cuBLAS,
  # which the machine's Python has as the nvidia-cublas package (with a libcudart too).
  pyinfo=$("$PY" - <<'PY'
import glob, os, sys
inc = so = lt = ""
libs = []
for base in sys.path:
    for lib in sorted(glob.glob(os.path.join(base, "nvidia", "*", "lib"))):
        if glob.glob(os.path.join(lib, "libcublas.so.[0-9]*")) or glob.glob(os.path.join(lib, "libcudart.so.[0-9]*")):
            libs.append(lib)
        header = os.path.join(os.path.dirname(lib), "include", "cublas_v2.h")
        found = [sorted(glob.glob(os.path.join(lib, f"lib{n}.so.[0-9]*"))) for n in ("cublas", "cublasLt")]
        if not inc and os.path.exists(header) and all(found):
            inc, so, lt = os.path.dirname(header), found[0][0], found[1][0]
print(inc or "-", so or "-", lt or "-", ":".join(dict.fromkeys(libs)) or "-")
PY
  )
  read -r cublas_inc cublas_so cublaslt_so py_libs <<< "$pyinfo"
  cudart=$(first 'libcudart.so*')
  tk_cublas=$(first 'libcublas.so*')
  lib_path=""
  for d in "${cudart%/*}" "${tk_cublas%/*}" ${py_libs//:/ }; do
    [ -n "$d" ] && [ "$d" != - ] && lib_path="$lib_path:$d"
  done
  # the built libraries find libcudart and libcublas through the loader (RPATH is $ORIGIN)
  export LD_LIBRARY_PATH="${lib_path#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  log "CUDA libraries: ${lib_path#:}"
  log "nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader 2>&1 | head -n 2 || true)"
  if [ -n "$nvcc_path" ]; then
    GPU_CHECK_NVCC="$nvcc_path: $(nvcc --version | tail -n 1)"
    export GPU_CHECK_NVCC
    log "nvcc: $GPU_CHECK_NVCC"
  fi
fi

build_args() {  # sets ARGS and FA_BUILT: no multimodal, tools, tests or server
  ARGS="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
  ARGS="$ARGS -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_OPENSSL=OFF"
  if [ "$PORTABLE" = 1 ]; then
    ARGS="$ARGS -DGGML_NATIVE=OFF"
  else
    ARGS="$ARGS -DGGML_NATIVE=ON"
    # AMX: a CPU may advertise it while the (virtual) machine refuses its use; a native
    # build then dies with SIGILL on quantized models (scripts/build-llama-cpp.sh)
    if [ "$(uname -m)" = x86_64 ] && grep -qw amx_tile /proc/cpuinfo 2>/dev/null \
      && ! "$PY" -c 'import ctypes, sys; sys.exit(0 if ctypes.CDLL(None).syscall(158, 0x1023, 18) == 0 else 1)'; then
      local noamx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
      ARGS="$ARGS -DCMAKE_C_FLAGS='$noamx' -DCMAKE_CXX_FLAGS='$noamx'"
      log "AMX advertised but not permitted here: building without it"
    fi
  fi
  [ "$MODE" = cuda ] || return 0
  [ -n "$nvcc_path" ] || give_up "nvcc not found: no CUDA toolkit on PATH or in /usr/local/cuda"
  export CUDACXX=${CUDACXX:-$nvcc_path}
  # one architecture; no NCCL (one GPU)
  ARGS="$ARGS -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH -DGGML_CUDA_NCCL=OFF"
  if [ "$FA" = on ]; then FA_BUILT=1; else ARGS="$ARGS -DGGML_CUDA_FA=OFF"; fi
  if [ -n "$(first cublas_v2.h)" ] && [ -n "$tk_cublas" ]; then
    log "cuBLAS: in the CUDA toolkit"
  elif [ "$cublas_inc" != - ]; then
    ARGS="$ARGS -DCMAKE_CUDA_FLAGS=-I$cublas_inc -DCUDA_cublas_LIBRARY=$cublas_so"
    ARGS="$ARGS -DCUDA_cublasLt_LIBRARY=$cublaslt_so"
    log "cuBLAS: not in the toolkit; using ${cublas_so%/*} (Python package nvidia-cublas)"
  else
    give_up "cuBLAS not found: no cublas_v2.h in the CUDA toolkit (${roots[*]}) nor an nvidia-cublas package"
  fi
  # the driver library, for CUDA's virtual memory pool; a portable build leaves it out
  local libcuda=""
  if [ "$PORTABLE" = 0 ]; then
    libcuda=$({ first libcuda.so
      ldconfig -p 2>/dev/null | awk '/libcuda\.so(\.1)? /{print $NF}'
      for d in ${LD_LIBRARY_PATH:+${LD_LIBRARY_PATH//:/ }} /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu /usr/lib64; do
        ls "$d"/libcuda.so.1 "$d"/libcuda.so 2>/dev/null
      done; } | head -n 1 || true)
  fi
  if [ -z "$libcuda" ]; then
    ARGS="$ARGS -DGGML_CUDA_NO_VMM=ON"
    log "no driver library linked: without CUDA's virtual memory pool (GGML_CUDA_NO_VMM)"
  elif [ -z "$(first libcuda.so)" ]; then
    ARGS="$ARGS -DCUDA_cuda_driver_LIBRARY=$libcuda"
    log "driver library: $libcuda"
  fi
}

build_wheel() {  # sets whl, build_s, cached: builds (or reuses) the wheel for ARGS
  local src_sha key wheel_dir src_dir left t0 rc why
  src_sha=$(sha256sum "$sdist" | cut -c1-16)
  key=$(printf '%s|%s|%s|%s' "$VERSION" "$ARGS" "$src_sha" "$(uname -m)" | sha256sum | cut -c1-16)
  wheel_dir="$CACHE/wheel-$key"
  src_dir="$CACHE/src-$src_sha"
  build_s=0
  cached=0
  whl=$(find "$wheel_dir" -maxdepth 1 -name 'llama_cpp_python-*.whl' 2>/dev/null | head -n 1 || true)
  if [ -n "$whl" ]; then
    cached=1
    log "reusing $whl (CMAKE_ARGS=$ARGS)"
    return 0
  fi
  if [ ! -f "$src_dir/llama_cpp_python-$VERSION/pyproject.toml" ]; then
    rm -rf "$src_dir" && mkdir -p "$src_dir"
    tar -xzf "$sdist" -C "$src_dir"
  fi
  left=$((DEADLINE - $(date +%s) - 75))
  [ "$left" -ge 60 ] || left=60
  log "building llama-cpp-python $VERSION ($MODE, $(nproc) jobs, stopped after ${left} s): CMAKE_ARGS=$ARGS"
  rm -rf "$wheel_dir.tmp"
  t0=$(date +%s)
  rc=0
  # the CMake build tree is kept: a rerun on a warm machine continues a stopped build
  CMAKE_ARGS="$ARGS" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) SKBUILD_BUILD_DIR="$CACHE/cmake-$key" \
    timeout -k 20 "$left" "$PY" -m pip wheel -v --no-index --no-deps --no-build-isolation \
    --no-cache-dir -w "$wheel_dir.tmp" "$src_dir/llama_cpp_python-$VERSION" \
    > "$OUT/build.log" 2>&1 || rc=$?
  build_s=$(($(date +%s) - t0))
  if [ "$rc" -ne 0 ]; then
    tail -n 40 "$OUT/build.log" | cut -c1-400
    why="exit $rc"
    [ "$rc" -eq 124 ] && why="stopped at its ${left} s limit (a rerun within 30 s continues it)"
    give_up "llama-cpp-python build $why after ${build_s} s; see build.log" "$build_s"
  fi
  printf '%s\n' "$ARGS" > "$wheel_dir.tmp/CMAKE_ARGS"
  mv "$wheel_dir.tmp" "$wheel_dir"
  whl=$(find "$wheel_dir" -maxdepth 1 -name 'llama_cpp_python-*.whl' | head -n 1)
  log "built $(basename "$whl") ($(du -m "$whl" | cut -f1) MB) in ${build_s} s"
}

# -- install beside the machine's own packages (its python3 is itself a virtualenv, so a
# --system-site-packages venv would not see them): a --target folder on PYTHONPATH -------
SITE="$WORK/site"
install_and_import() {  # the bundle's wheels, then the prebuilt package or the built wheel
  local out
  rm -rf "$SITE"
  if [ "$USE_PREBUILT" = 1 ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
      "$BUNDLE"/wheels/*.whl || return 1
    "$PY" -c 'import sys, tarfile
with tarfile.open(sys.argv[1]) as tf:
    tf.extractall(sys.argv[2], **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))' \
      "$prebuilt" "$SITE" || return 1
  else
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
      "$whl" "$BUNDLE"/wheels/*.whl || return 1
  fi
  if ! out=$(PYTHONPATH="$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c 'import diskcache, gguf, llama_cpp, pytest_llmperf
print("imports ok: llama_cpp", llama_cpp.__version__, "from", llama_cpp.__file__)' 2>&1); then
    echo "$out" | tail -n 15
    return 1
  fi
  log "$out"
}

if [ "$USE_PREBUILT" = 1 ]; then
  ARGS=$(cat "$BUNDLE/prebuilt/CMAKE_ARGS" 2>/dev/null || echo "?")
  case "$ARGS" in *GGML_CUDA_FA=OFF*) ;; *) FA_BUILT=1 ;; esac
  build_s=0
  cached=2
  log "using llama-cpp-python prebuilt by gpu-bundle.sh --cuda-wheel: CMAKE_ARGS=$ARGS"
  if ! install_and_import; then
    log "the prebuilt package does not load here: building from the bundled source instead"
    USE_PREBUILT=0
    FA_BUILT=0
  fi
fi
if [ "$USE_PREBUILT" = 0 ]; then
  [ -s "$sdist" ] || give_up "no source in the bundle ($sdist)"
  build_args
  build_wheel
  if [ "$BUILD_ONLY" = 1 ]; then
    echo "wheel: $whl"
    printf '%s\n' "$whl" > "$OUT/wheel-path"
    exit 0
  fi
  install_and_import || give_up "llama-cpp-python built but does not import (see above)" "$build_s"
fi
export PYTHONPATH="$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export LLMPERF_CACHE_DIR="$WORK/models"
log "installed into $SITE"

rc=0
checks --build-seconds "$build_s" --build-cached "$cached" || rc=$?
log "gpu-check finished: exit $rc, $(($(date +%s) - START)) s in all; summary in $OUT/gpu-summary.md"
exit "$rc"
