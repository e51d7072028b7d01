#!/usr/bin/env bash
# Prepare, here (with network), what scripts/gpu-check.sh needs on the bare GPU machine,
# which has no network and lacks llama-cpp-python, gguf and diskcache:
#
#   build/gpu-bundle/llama_cpp_python-<version>.tar.gz   the sdist, trimmed to what a
#                                                        CPU + CUDA build compiles
#   build/gpu-bundle/wheels/*.whl                        gguf, diskcache (pure Python)
#   build/gpu-bundle/MANIFEST.txt                        sizes and sha256 of the above
#
# build/ is already in .gitignore, so nothing here is committed; name the folder in the
# device call's carry (carry: ["build/gpu-bundle"]). Everything that travels (the tracked
# and untracked-not-ignored files plus the bundle) must stay under 64 MiB: this script
# fails past GPU_BUNDLE_LIMIT_MIB (default 60).
#
#   --cuda-wheel            also build, here, the CUDA wheel the device then only installs
#                           (build/gpu-bundle/prebuilt/): `gpu-check.sh --build-only
#                           --portable` for sm_90, an AVX2 CPU baseline and no driver-API
#                           pool, so it needs no driver here and runs there. It needs nvcc
#                           and a Python (GPU_BUILD_PYTHON) with scikit-build-core, cmake,
#                           ninja and cuBLAS (the toolkit's or the nvidia-cublas package).
#                           On 2 cores this takes hours, once: the wheel is cached in
#                           build/gpu-cache. Without it the device builds from source.
#
#   PYTHON=python3          the interpreter whose pip downloads (any version: the wheels
#                           are fetched for the device's CPython 3.12 x86-64)
#   GPU_BUILD_PYTHON        the interpreter that builds the CUDA wheel (default $PYTHON)
#   GPU_BUNDLE_DIR          default build/gpu-bundle
#   LLMPERF_LLAMA_VERSION   default 0.3.36
set -euo pipefail
cd "$(dirname "$0")/.."

CUDA_WHEEL=0
for arg in "$@"; do
  case "$arg" in
    --cuda-wheel) CUDA_WHEEL=1 ;;
    *) echo "usage: bash scripts/gpu-bundle.sh [--cuda-wheel]" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
VERSION=${LLMPERF_LLAMA_VERSION:-0.3.36}
BUNDLE=${GPU_BUNDLE_DIR:-build/gpu-bundle}
LIMIT_MIB=${GPU_BUNDLE_LIMIT_MIB:-60}
# the sdist download is kept here (not carried) so a re-run does not fetch 77 MB again
DL=${GPU_BUNDLE_DOWNLOADS:-build/gpu-downloads}
# pure-Python wheels the device lacks; their own needs (numpy, pyyaml, requests, tqdm)
# are on the device (KINDS.md), which the Requires-Dist check below verifies
WHEELS=(gguf==0.19.0 diskcache==5.6.3)
# packages the device's python3 already has (KINDS.md, "Python packages already there"):
# only those that this project, llama-cpp-python, gguf and diskcache can ask for
DEVICE_HAS="numpy scipy psutil pyyaml pytest pytest-benchmark nvidia-ml-py filelock
requests tqdm jinja2 markupsafe typing-extensions packaging sentencepiece"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

mkdir -p "$DL"
sdist="$DL/llama_cpp_python-$VERSION.tar.gz"
if [ ! -s "$sdist" ]; then
  log "downloading the llama-cpp-python $VERSION sdist (about 77 MB)"
  "$PY" -m pip download -q --no-deps --no-binary :all: -d "$DL" "llama-cpp-python==$VERSION"
fi
[ -s "$sdist" ] || { echo "gpu-bundle: $sdist was not downloaded" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/wheels"

log "trimming the sdist: $(du -m "$sdist" | cut -f1) MB"
tar -xzf "$sdist" -C "$tmp"
top="llama_cpp_python-$VERSION"
src="$tmp/$top"
v="$src/vendor/llama.cpp"
[ -f "$v/CMakeLists.txt" ] || { echo "gpu-bundle: unexpected sdist layout" >&2; exit 1; }

# The llama-cpp-python side: the package, its CMake and pyproject (README.md is the
# metadata's readme) are kept; examples, docs and tests are not built.
rm -rf "$src"/{docs,docker,examples,tests,scripts,Makefile,mkdocs.yml,CHANGELOG.md,CONTRIBUTING.md}
# llama.cpp: llama-cpp-python adds it as a subproject (not standalone), so tests,
# examples, tools, server and app are off by default; mtmd (tools/mtmd) is only added
# with LLAVA_BUILD=ON, which gpu-check.sh turns off. common/ and vendor/ are built
# (llama-cpp-python forces LLAMA_BUILD_COMMON=ON; vendor/CMakeLists adds its libraries
# unconditionally). A ggml backend's folder is only entered when GGML_<NAME>=ON.
rm -rf "${v:?}"/{models,docs,media,tests,examples,pocs,benches,tools,app,gguf-py,scripts} \
  "${v:?}"/{conversion,grammars,requirements,skills,ci,.github,.devops} \
  "$v"/convert_*.py "$v"/*.nix "$v"/build-xcframework.sh
for backend in cann et hexagon metal opencl openvino rpc sycl virtgpu vulkan webgpu zdnn zendnn; do
  rm -rf "$v/ggml/src/ggml-$backend"
done
find "$src" -name '.git*' -prune -exec rm -rf {} +

# what is kept must be all that the CPU and CUDA builds include: no #include and no
# add_subdirectory may point into a removed folder
bad=$(grep -rnE '#include "\.\./(ggml-(cann|et|hexagon|metal|opencl|openvino|rpc|sycl|virtgpu|vulkan|webgpu|zdnn|zendnn)|tools|examples|tests)/' \
  "$v/ggml/src/ggml-cpu" "$v/ggml/src/ggml-cuda" "$v/src" "$v/common" 2>/dev/null || true)
if [ -n "$bad" ]; then
  echo "gpu-bundle: kept sources include removed files:" >&2
  echo "$bad" >&2
  exit 1
fi
for f in "$v/ggml/src/ggml-cpu/CMakeLists.txt" "$v/ggml/src/ggml-cuda/CMakeLists.txt" \
  "$v/common/CMakeLists.txt" "$v/src/CMakeLists.txt" "$v/vendor/CMakeLists.txt" \
  "$v/LICENSE" "$src/llama_cpp/__init__.py" "$src/README.md" "$src/PKG-INFO"; do
  [ -e "$f" ] || { echo "gpu-bundle: trimmed too much: ${f#"$tmp/"} is missing" >&2; exit 1; }
done

out="$BUNDLE/$top.tar.gz"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2026-01-01 00:00Z' \
  -C "$tmp" -cf - "$top" | gzip -n -9 > "$out"
log "trimmed sdist: $(du -sm "$src" | cut -f1) MB unpacked, $(du -k "$out" | cut -f1) KiB packed"

log "downloading wheels for the device (CPython 3.12, x86-64): ${WHEELS[*]}"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d "$BUNDLE/wheels" "${WHEELS[@]}"

# every requirement of what the device will install must be there or in the bundle
"$PY" - "$BUNDLE/wheels" "$src/pyproject.toml" "$DEVICE_HAS" "${WHEELS[@]}" <<'PY'
import re, sys, zipfile
from pathlib import Path

wheel_dir, llama_pyproject, device_has, *bundled = sys.argv[1:]
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
have = {norm(n) for n in device_has.split()} | {norm(w.split("==")[0]) for w in bundled}
have |= {"llama-cpp-python", "pynvml"}  # built on the device; pynvml is nvidia-ml-py's module
needs: dict[str, str] = {}
for whl in sorted(Path(wheel_dir).glob("*.whl")):
    py, _abi, plat = whl.name[:-4].split("-")[-3:]
    if not (py in ("py3", "py2.py3", "cp312") and (plat == "any" or "x86_64" in plat)):
        sys.exit(f"gpu-bundle: {whl.name} is not a wheel for CPython 3.12 on x86-64")
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        for line in z.read(meta).decode().splitlines():
            if line.startswith("Requires-Dist:") and "extra ==" not in line:
                needs[norm(re.split(r"[ ;<>=!~\[(]", line.split(":", 1)[1].strip())[0])] = whl.name
text = Path(llama_pyproject).read_text()
deps = re.search(r"^dependencies = \[(.*?)\]", text, re.S | re.M)
for dep in re.findall(r'"([^"]+)"', deps.group(1) if deps else ""):
    needs[norm(re.split(r"[ ;<>=!~\[(]", dep)[0])] = "llama-cpp-python"
project = Path("pyproject.toml").read_text()
deps = re.search(r"^dependencies = \[(.*?)\]", project, re.S | re.M)
for dep in re.findall(r'"([^"]+)"', deps.group(1) if deps else ""):
    if "python_version < '3.11'" not in dep:
        needs[norm(re.split(r"[ ;<>=!~\[(]", dep)[0])] = "pytest-llmperf"
missing = {n: by for n, by in needs.items() if n not in have}
if missing:
    sys.exit(f"gpu-bundle: needed on the device but neither there nor bundled: {missing}")
print(f"requirements covered: {', '.join(sorted(needs))}")
PY

if [ "$CUDA_WHEEL" = 1 ]; then
  log "building the CUDA wheel (portable, sm_${CMAKE_CUDA_ARCHITECTURES:-90}); cached in build/gpu-cache"
  rm -f "$DL/prebuild/wheel-path"
  GPU_BUNDLE_DIR="$BUNDLE" PYTHON="${GPU_BUILD_PYTHON:-$PY}" \
    GPU_CHECK_BUDGET_S="${GPU_BUNDLE_BUILD_S:-21600}" \
    bash scripts/gpu-check.sh "$DL/prebuild" --build-only --portable
  built=$(cat "$DL/prebuild/wheel-path" 2>/dev/null || true)
  [ -f "$built" ] || { echo "gpu-bundle: the CUDA wheel was not built (see $DL/prebuild)" >&2; exit 1; }
  mkdir -p "$BUNDLE/prebuilt"
  cp "$(dirname "$built")/CMAKE_ARGS" "$BUNDLE/prebuilt/CMAKE_ARGS"
  # The wheel holds each library six times (symlinks become copies in a wheel, and
  # llama.cpp installs a second set into lib/): 186 MB. Carry the package once, with
  # symlinks, as a tarball that gpu-check.sh unpacks into its --target folder.
  "$PY" - "$built" "$BUNDLE/prebuilt/llama_cpp-cuda.tar.gz" <<'PY'
import hashlib, os, sys, tarfile, tempfile, zipfile

whl, out = sys.argv[1:]
with tempfile.TemporaryDirectory() as d:
    with zipfile.ZipFile(whl) as z:
        z.extractall(d, [n for n in z.namelist() if n.split("/")[0] == "llama_cpp" or ".dist-info/" in n])
    lib = os.path.join(d, "llama_cpp", "lib")
    groups: dict[str, list[str]] = {}
    for name in sorted(os.listdir(lib)):
        with open(os.path.join(lib, name), "rb") as fh:
            groups.setdefault(hashlib.sha256(fh.read()).hexdigest(), []).append(name)
    for names in groups.values():
        keep = max(names, key=len)  # libggml-cuda.so.0.25.3; the others link to it
        os.chmod(os.path.join(lib, keep), 0o755)
        for name in names:
            if name != keep:
                os.remove(os.path.join(lib, name))
                os.symlink(keep, os.path.join(lib, name))
    with tarfile.open(out, "w:gz", compresslevel=9) as tf:
        for top in sorted(os.listdir(d)):
            tf.add(os.path.join(d, top), arcname=top)
print(f"prebuilt: {out}, {os.path.getsize(out) / 2**20:.1f} MiB")
PY
fi

{
  echo "# pytest-llmperf GPU bundle, made $(date -u +%Y-%m-%dT%H:%M:%SZ) by scripts/gpu-bundle.sh"
  echo "# llama-cpp-python $VERSION (trimmed sdist), wheels: ${WHEELS[*]}"
  (cd "$BUNDLE" && find . -type f -printf '%P\n' | sort) | while read -r f; do
    printf '%10d  %s  %s\n' "$(stat -c %s "$BUNDLE/$f")" "$(sha256sum "$BUNDLE/$f" | cut -c1-16)" "$f"
  done
} > "$tmp/MANIFEST.txt"
mv "$tmp/MANIFEST.txt" "$BUNDLE/MANIFEST.txt"

bundle_b=$(du -sb "$BUNDLE" | cut -f1)
tree_b=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
total_b=$((bundle_b + tree_b))
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
cat "$BUNDLE/MANIFEST.txt"
log "bundle $(mib "$bundle_b") + working tree that travels $(mib "$tree_b") = $(mib "$total_b") (limit 64 MiB, this script's ${LIMIT_MIB} MiB)"
if [ "$total_b" -gt $((LIMIT_MIB * 1048576)) ]; then
  echo "gpu-bundle: FAILED: $(mib "$total_b") would travel, over ${LIMIT_MIB} MiB" >&2
  exit 1
fi
log "ready: $BUNDLE (device call: carry [\"$BUNDLE\"])"
