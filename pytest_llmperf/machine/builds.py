"""Builds and launchers: which llama.cpp a worker runs, and what starts the worker.

A **build** is one llama.cpp library: a folder holding libllama and the ggml libraries
(llama-cpp-python loads from ``LLAMA_CPP_LIB_PATH``), the Python interpreter of another
environment with its own llama-cpp-python, or an environment variable naming such a
folder. The installed one is always there as ``default``. Builds come from ``builds:`` in
llmperf.yaml (``[tool.llmperf.builds]``) and from ``llmperf build NAME``, which builds a
named variant into the cache (see :func:`build`): a **release build** is a
llama-cpp-python release in an environment of its own (its own bindings and library, so
any two releases run side by side), a library folder comes from a llama.cpp source tree.

A **launcher** is a command prefix for the worker process: ``numactl -N 0 -m 0``,
``taskset -c 0-7``, ``nice -n -5``, ``env GGML_X=1``. The program must exist (checked
when the registry is read).

Pure apart from :func:`build`, which runs the compiler.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_llmperf import paths
from pytest_llmperf.errors import UsageError
from pytest_llmperf.fileio import write_atomic
from pytest_llmperf.options import split_words

DEFAULT = "default"
#: the llama-cpp-python this project is pinned to (scripts/build-llama-cpp.sh)
PINNED_VERSION = "0.3.36"
#: CMake arguments every build gets: no multimodal, tests or examples (a shorter build)
BASE_CMAKE_ARGS = "-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
#: what a release build's environment holds beside llama-cpp-python (which brings numpy):
#: what the worker imports (pytest_llmperf itself comes from the package's own folder),
#: with this project's own requirements (pyproject.toml)
WORKER_REQUIREMENTS = ("numpy>=1.24", "psutil>=5.9", "pynvml>=11.5", "gguf>=0.10", "pyyaml>=6.0")
#: a release build's environment puts pytest_llmperf's folder, named by this variable,
#: after its own packages (PYTHONPATH would put it, and what lies beside it, first)
PACKAGE_PATH_ENV = "LLMPERF_PACKAGE_PATH"
#: the kinds of ``llmperf build``: a release's own environment, a library folder, a
#: llama-bench binary; where each keeps what it built, under the build's folder
BUILD_TARGETS = {"release": "venv/bin/python", "lib": "lib", "llama_bench": "bin/llama-bench"}


@dataclass(frozen=True)
class Runtime:
    """How to start a worker for a build: its interpreter and environment."""

    python: str
    env: Mapping[str, str]
    #: the library folder, when the build is one
    lib: str = ""
    #: the llama-bench binary, when the build is one
    llama_bench: str = ""


@dataclass(frozen=True)
class BuildSource:
    """A build in the registry: exactly one of ``lib``, ``python`` or ``env``."""

    name: str
    lib: str = ""
    python: str = ""
    env: str = ""
    #: a llama-bench binary: measured through it (pytest_llmperf.backends.llamabench)
    llama_bench: str = ""
    defined_in: str = "built-in"
    #: a ``python`` build that is a release build's environment: that llama-cpp-python
    #: version (it finds pytest_llmperf after its own packages)
    release: str = ""

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT and not (self.lib or self.python or self.env)

    def runtime(self) -> tuple[Runtime | None, str]:
        """(runtime, "") when the build is usable here, else (None, why and the fix)."""
        if self.is_default:
            return Runtime(sys.executable, {}), ""
        where = f"build {self.name!r} ({self.defined_in})"
        if self.llama_bench:
            exe = shutil.which(self.llama_bench) or self.llama_bench
            if not Path(exe).is_file():
                return None, f"{where}: llama-bench {self.llama_bench} does not exist; fix its path"
            return Runtime(exe, {}, llama_bench=exe), ""
        if self.python:
            exe = shutil.which(self.python) or self.python
            if not Path(exe).is_file():
                return None, f"{where}: interpreter {self.python} does not exist; fix its path"
            if self.release:
                return Runtime(exe, {PACKAGE_PATH_ENV: _package_root()}), ""
            return Runtime(exe, {"PYTHONPATH": _package_root()}), ""
        lib = self.lib
        if self.env:
            lib = os.environ.get(self.env, "")
            if not lib:
                return None, (
                    f"{where}: set the environment variable {self.env} to the folder holding "
                    "its libllama"
                )
        folder = Path(lib).expanduser()
        if not folder.is_dir():
            return None, f"{where}: folder {folder} does not exist; build it or fix the path"
        if not any(folder.glob("libllama.*")) and not any(folder.glob("llama.dll")):
            return None, (
                f"{where}: {folder} holds no libllama (.so, .dylib or .dll); point it at the "
                "folder with the built libraries (llama_cpp/lib of a llama-cpp-python wheel, "
                "or build/bin of a llama.cpp build with BUILD_SHARED_LIBS=ON)"
            )
        return Runtime(sys.executable, {"LLAMA_CPP_LIB_PATH": str(folder)}, str(folder)), ""


def _package_root() -> str:
    """The folder holding pytest_llmperf, for a worker started by another interpreter."""
    return str(Path(__file__).resolve().parents[2])


def parse_build(name: str, value: Any, source: str, base: Path) -> BuildSource:
    key = f"builds.{name}"
    if name == DEFAULT:
        raise UsageError(
            f"{source}: {key}: 'default' is the installed llama-cpp-python; pick another name"
        )
    if isinstance(value, str):
        value = {"lib": value}
    if not isinstance(value, Mapping):
        raise UsageError(
            f"{source}: {key}: expected {{lib: DIR}}, {{python: PATH}} or {{env: VAR}}, got "
            f"{type(value).__name__}"
        )
    kinds = [k for k in ("lib", "python", "env", "llama_bench") if k in value]
    unknown = sorted(set(value) - {"lib", "python", "env", "llama_bench", "description"})
    if unknown or len(kinds) != 1:
        raise UsageError(
            f"{source}: {key}: give exactly one of lib, python, env or llama_bench"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    text = value[kinds[0]]
    if not isinstance(text, str) or not text.strip():
        raise UsageError(f"{source}: {key}.{kinds[0]}: must be a non-empty string")
    if (
        kinds[0] in ("lib", "python", "llama_bench")
        and not os.path.isabs(os.path.expanduser(text))
        and ("/" in text or kinds[0] == "lib")
    ):
        text = str(base / text)
    return BuildSource(name, **{kinds[0]: text}, defined_in=source)


@dataclass(frozen=True)
class Launcher:
    name: str
    argv: tuple[str, ...]
    defined_in: str = "built-in"


def parse_launcher(name: str, value: Any, source: str) -> Launcher:
    key = f"launchers.{name}"
    if isinstance(value, str):
        argv = tuple(split_words(value, f"{source}: {key}"))
    elif isinstance(value, list) and all(isinstance(x, str) for x in value):
        argv = tuple(value)
    else:
        raise UsageError(
            f"{source}: {key}: write the command prefix as a string ('taskset -c 0-3') or a "
            "list of words"
        )
    if not argv:
        raise UsageError(f"{source}: {key}: empty command")
    if shutil.which(argv[0]) is None:
        raise UsageError(
            f"{source}: {key}: program {argv[0]!r} not found on PATH; install it or fix the command"
        )
    return Launcher(name, argv, source)


# -- llmperf build ---------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltInfo:
    """One build in the cache, as seen under ``name`` (one of its ``names``: a build may
    have several, each an alias of the same library)."""

    name: str
    key: str
    #: the library folder (kind "lib"), the environment's interpreter (kind "release"),
    #: or the llama-bench binary (kind "llama_bench")
    lib: Path
    version: str
    cmake_args: str
    source: str
    reused: bool
    kind: str = "lib"
    #: every name of the build, in the order they were given
    names: tuple[str, ...] = ()
    #: a name given again for other arguments: the build it was taken from (its key and
    #: the names it keeps), "" otherwise
    moved_from: str = ""

    def source_entry(self) -> BuildSource:
        where = "llmperf build"
        if self.kind == "llama_bench":
            return BuildSource(self.name, llama_bench=str(self.lib), defined_in=where)
        if self.kind == "release":
            return BuildSource(
                self.name, python=str(self.lib), release=self.version, defined_in=where
            )
        return BuildSource(self.name, lib=str(self.lib), defined_in=where)

    @property
    def what(self) -> str:
        """What was built, in words: ``llama-cpp-python 0.3.16 (its own environment)``."""
        if self.source:
            return f"source {self.source}"
        if self.kind == "release":
            return f"llama-cpp-python {self.version} (its own environment)"
        return f"llama-cpp-python {self.version}"


def build_key(version: str, cmake_args: str, source: str) -> str:
    blob = json.dumps([version, cmake_args, source, sys.platform, os.uname().machine])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _names(data: Mapping[str, Any]) -> list[str]:
    """The names of a build.json: ``names`` (a list), or the one ``name`` that files
    written before aliases hold."""
    raw = data.get("names")
    if isinstance(raw, list):
        return [n for n in raw if isinstance(n, str) and n]
    name = data.get("name")
    return [name] if isinstance(name, str) and name else []


def _read_meta(meta: Path) -> BuiltInfo | None:
    """The build a build.json describes (under its first name, "" when it has none), or
    None when it cannot be read."""
    try:
        data = json.loads(meta.read_text())
        kind = data.get("kind", "lib")
        names = tuple(_names(data))
        target = meta.parent / BUILD_TARGETS[kind]
        return BuiltInfo(
            names[0] if names else "",
            data["key"],
            target,
            data["version"],
            data["cmake_args"],
            data.get("source", ""),
            True,
            kind,
            names,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def cached_build_list() -> list[BuiltInfo]:
    """Every build in the cache (with all its names; a build whose names all moved to
    other builds has none), oldest first."""
    root = paths.builds_dir()
    if not root.is_dir():
        return []
    out = []
    for meta in sorted(root.glob("*/build.json"), key=lambda p: p.stat().st_mtime):
        info = _read_meta(meta)
        if info is not None:
            out.append(info)
    return out


def cached_builds() -> dict[str, BuiltInfo]:
    """Named builds in the cache, by name (every alias of a build is a name); a name two
    builds hold (files of an older version) is the newest's."""
    out: dict[str, BuiltInfo] = {}
    for info in cached_build_list():
        for name in info.names:
            out[name] = dataclasses.replace(info, name=name)
    return out


def amx_usable() -> bool:
    """Whether this machine runs AMX tile instructions: ``native/amx_probe.c`` compiled
    and run in a child process (a CPU flag, even the kernel's permission, is not enough
    on some virtual machines). False without a C compiler."""
    try:
        if "amx_tile" not in Path("/proc/cpuinfo").read_text():
            return False
    except OSError:
        return False
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return False
    probe = Path(__file__).resolve().parents[1] / "native" / "amx_probe.c"
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "amx"
        try:
            made = subprocess.run(
                [cc, "-O1", "-mamx-tile", str(probe), "-o", str(exe)],
                capture_output=True,
                timeout=60,
                check=False,
            )
            if made.returncode != 0:
                return False
            ran = subprocess.run([str(exe)], capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return ran.returncode == 0


def _native_flags() -> str:
    """What scripts/build-llama-cpp.sh adds to a native build: AMX off unless this
    machine runs it (:func:`amx_usable`)."""
    if amx_usable():
        return ""
    try:
        if "amx_tile" not in Path("/proc/cpuinfo").read_text():
            return ""
    except OSError:
        return ""
    noamx = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    return f"-DCMAKE_C_FLAGS='{noamx}' -DCMAKE_CXX_FLAGS='{noamx}'"


def build(
    name: str,
    *,
    version: str = PINNED_VERSION,
    cmake_args: str = "",
    source: str = "",
    kind: str = "lib",
    log: Any = None,
) -> BuiltInfo:
    """Build llama.cpp as build ``name`` into the cache. ``kind``:

    - "release": llama-cpp-python ``version`` built from source with ``cmake_args``, in a
      virtual environment of its own with what the worker needs
      (:data:`WORKER_REQUIREMENTS`): its own bindings run its own library, so any release
      runs beside any other;
    - "lib": a library folder, of a local llama.cpp source tree ``source`` built with
      BUILD_SHARED_LIBS, or of llama-cpp-python ``version``'s wheel (loaded by the
      installed bindings: the same release only);
    - "llama_bench": the llama-bench binary of that tree (the sdist's vendored llama.cpp
      by default), linked statically.

    The same version, args, source and kind twice reuse the first build."""
    if not name or name == DEFAULT or "/" in name:
        raise UsageError(f"build name {name!r}: pick a name other than 'default', without '/'")
    if kind not in BUILD_TARGETS:
        raise UsageError(f"build kind {kind!r}: {', '.join(BUILD_TARGETS)}")
    if kind == "release" and source:
        raise UsageError(
            f"build {name}: a release build is a llama-cpp-python version; a source tree "
            "builds a library folder (kind lib) or llama-bench"
        )
    split_words(cmake_args, f"build {name}: --cmake-args")  # refused before anything runs
    args = f"{BASE_CMAKE_ARGS} {_native_flags()} {cmake_args}".strip()
    src = str(Path(source).resolve()) if source else ""
    what = f" kind={kind}"
    if kind == "release":  # the environment is of this interpreter, with these packages
        what += f" python={sys.version_info[0]}.{sys.version_info[1]} " + " ".join(
            WORKER_REQUIREMENTS
        )
    key = build_key(version if not src else "", args + what, src)
    root = paths.builds_dir() / key
    meta = root / "build.json"
    target = root / BUILD_TARGETS[kind]
    old = _read_meta(meta) if meta.is_file() else None
    names = [*(old.names if old is not None else ()), name]
    names = list(dict.fromkeys(names))  # a name given again for the same build: once
    if meta.is_file() and target.exists():
        moved = _take_name(name, key)
        _write_meta(meta, names, key, version, args, src, kind)
        return BuiltInfo(name, key, target, version, args, src, True, kind, tuple(names), moved)
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{key}.", dir=root.parent) as tmp:
        work = Path(tmp)
        if kind == "llama_bench":
            tree = Path(src) if src else _vendored_tree(version, work, log)
            _build_llama_bench(tree, work, args, log)
        elif kind == "release":
            _build_release(version, args, work, log)
        else:
            lib = work / "lib"
            lib.mkdir()
            if src:
                _build_source(Path(src), work, args, lib, log)
            else:
                _build_wheel(version, args, work, lib, log)
            if not any(lib.glob("libllama.*")):
                raise UsageError(f"build {name}: the build produced no libllama; see its output")
        if root.exists():
            shutil.rmtree(root)
        work.rename(root)
    moved = _take_name(name, key)
    _write_meta(meta, names, key, version, args, src, kind)
    return BuiltInfo(name, key, target, version, args, src, False, kind, tuple(names), moved)


def _take_name(name: str, key: str) -> str:
    """Take ``name`` off every other build that holds it (a name given again for other
    arguments moves to the new build; the old build keeps its other names). Returns what
    it was taken from ("" when no other build had it)."""
    moved: list[str] = []
    for info in cached_build_list():
        if info.key == key or name not in info.names:
            continue
        meta = paths.builds_dir() / info.key / "build.json"
        keep = [n for n in info.names if n != name]
        _write_meta(meta, keep, info.key, info.version, info.cmake_args, info.source, info.kind)
        kept = f"keeps {', '.join(keep)}" if keep else "has no name left"
        moved.append(f"build {info.key} ({info.what}), which {kept}")
    return "; ".join(moved)


def _vendored_tree(version: str, work: Path, log: Any) -> Path:
    """llama.cpp as vendored in the llama-cpp-python sdist of ``version``."""
    import tarfile

    dl = work / "sdist"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "-d",
            str(dl),
            f"llama-cpp-python=={version}",
        ],
        None,
        log,
    )
    archive = next(dl.glob("llama_cpp_python-*.tar.gz"))
    with tarfile.open(archive) as tf:
        tf.extractall(work / "src", filter="data")
    return next((work / "src").glob("llama_cpp_python-*")) / "vendor" / "llama.cpp"


def _cmake(tree: Path, out: Path, args: str, log: Any, *, shared: bool, target: str = "") -> None:
    """Configure and build a llama.cpp tree: Release, no curl, server or tests."""
    if not (tree / "CMakeLists.txt").is_file():
        raise UsageError(f"{tree}: not a llama.cpp source tree (no CMakeLists.txt)")
    flags = [
        *split_words(args, "CMake arguments"),
        f"-DBUILD_SHARED_LIBS={'ON' if shared else 'OFF'}",
        "-DCMAKE_BUILD_TYPE=Release",
        "-DLLAMA_CURL=OFF",
        "-DLLAMA_OPENSSL=OFF",
        "-DLLAMA_BUILD_SERVER=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
    ]
    _run(["cmake", "-S", str(tree), "-B", str(out), *flags], None, log)
    targets = ["--target", target] if target else []
    _run(["cmake", "--build", str(out), *targets, "-j", str(os.cpu_count() or 1)], None, log)


def _build_llama_bench(tree: Path, work: Path, args: str, log: Any) -> None:
    out = work / "cmake"
    _cmake(tree, out, args, log, shared=False, target="llama-bench")
    (work / "bin").mkdir()
    shutil.copy2(out / "bin" / "llama-bench", work / "bin" / "llama-bench")
    shutil.rmtree(out)
    shutil.rmtree(work / "src", ignore_errors=True)
    shutil.rmtree(work / "sdist", ignore_errors=True)


def _write_meta(
    meta: Path,
    names: list[str],
    key: str,
    version: str,
    args: str,
    src: str,
    kind: str = "lib",
) -> None:
    """build.json: every name of the build (``name``, the first, for older readers)."""
    data: dict[str, Any] = {
        "names": names,
        "name": names[0] if names else "",
        "key": key,
        "version": version,
        "cmake_args": args,
        "source": src,
        "kind": kind,
    }
    write_atomic(meta, json.dumps(data, indent=2) + "\n")


def _run(cmd: list[str], env: Mapping[str, str] | None, log: Any) -> None:
    """Run one build step in its own process group; interrupted (a stop signal, Ctrl-C),
    the whole group (cmake, make, the compilers) is stopped before the exception goes on,
    so no compiler outlives the command."""
    proc = subprocess.Popen(
        cmd, env=dict(env) if env else None, stdout=log, stderr=log, start_new_session=True
    )
    try:
        returncode = proc.wait()
    except BaseException:
        _stop_group(proc)
        raise
    if returncode != 0:
        raise UsageError(f"build failed ({' '.join(cmd[:4])} ...: exit {returncode})")


def _stop_group(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM to the process group of ``proc``, SIGKILL to what is left after 10 s."""
    import signal

    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone; members of its group may not be
            os.killpg(proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return


def _build_wheel(version: str, args: str, work: Path, lib: Path, log: Any) -> None:
    env = dict(os.environ, CMAKE_ARGS=args)
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
    wheels = work / "wheel"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-cache-dir",
            "-w",
            str(wheels),
            f"llama-cpp-python=={version}",
        ],
        env,
        log,
    )
    wheel = next(wheels.glob("llama_cpp_python-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        for item in zf.namelist():
            if item.startswith("llama_cpp/lib/") and not item.endswith("/"):
                target = lib / Path(item).name
                target.write_bytes(zf.read(item))
    shutil.rmtree(wheels)


def _build_release(version: str, args: str, work: Path, log: Any) -> None:
    """A virtual environment in ``work/venv`` with llama-cpp-python ``version`` built from
    source with ``args`` and :data:`WORKER_REQUIREMENTS`; a ``.pth`` file appends the
    folder :data:`PACKAGE_PATH_ENV` names to its path (pytest_llmperf, found after the
    environment's own packages), and the environment is checked: it imports that release
    and what the worker needs. (The environment is moved to the build's folder after:
    it is only ever run as ``venv/bin/python``, which does not depend on where it lies.)"""
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], None, log)
    python = str(venv / "bin" / "python")
    env = dict(os.environ, CMAKE_ARGS=args)
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
    pip = [python, "-m", "pip", "install", "--no-cache-dir", "--no-binary", "llama-cpp-python"]
    _run([*pip, f"llama-cpp-python=={version}", *WORKER_REQUIREMENTS], env, log)
    [site] = venv.glob("lib/python*/site-packages")
    (site / "llmperf_package_path.pth").write_text(
        f"import os, sys; p = os.environ.get({PACKAGE_PATH_ENV!r}); "
        "p and p not in sys.path and sys.path.append(p)\n"
    )
    check = (
        "import llama_cpp, numpy, psutil, pynvml, gguf, yaml; "
        f"v = llama_cpp.__version__; assert v == {version!r}, v"
    )
    _run([python, "-W", "ignore::FutureWarning", "-c", check], None, log)  # pynvml warns


def _build_source(src: Path, work: Path, args: str, lib: Path, log: Any) -> None:
    out = work / "cmake"
    _cmake(src, out, f"{args} -DLLAMA_BUILD_TOOLS=OFF", log, shared=True)
    for so in [*out.glob("bin/lib*.so*"), *out.glob("bin/*.dylib"), *out.glob("**/libllama.so*")]:
        if so.is_file():
            shutil.copy2(so, lib / so.name)
