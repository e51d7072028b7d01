#!/usr/bin/env python3
"""A llama.cpp git repository with one slow commit among six, for ``llmperf bisect``.

The tree is llama.cpp as vendored in the llama-cpp-python sdist of ``--version``
(fetched and unpacked by :func:`pytest_llmperf.machine.builds._vendored_tree`), committed
as it is, then six commits on top of it. Five change nothing a timing could see (docs,
comments); the third takes the AVX2 path of ggml-cpu's q8_0 dot product away from
machines with AVX-512 (a plausible slip: "the compiler vectorizes the plain loop for
AVX-512 anyway"), so the Q8_0 weights of a model (the attention and output weights of
the built-in tiny MXFP4 MoE model) go through the plain C loop on such a machine, and
its decode is about a quarter slower. Every commit is dated and authored the same
way, so two runs give the same hashes.

    python scripts/bisect_demo_repo.py --out /tmp/llama.cpp-bisect [--version 0.3.36]
    llmperf bisect --source /tmp/llama.cpp-bisect --good HEAD~6 --bad HEAD \\
        --model tiny-moe-mxfp4 --args "-t 2" -n 64
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pytest_llmperf.machine import builds

_ENV = {
    "GIT_AUTHOR_NAME": "llmperf demo",
    "GIT_AUTHOR_EMAIL": "demo@example.invalid",
    "GIT_COMMITTER_NAME": "llmperf demo",
    "GIT_COMMITTER_EMAIL": "demo@example.invalid",
}
_QUANTS = "ggml/src/ggml-cpu/arch/x86/quants.c"
_Q8_DOT = "void ggml_vec_dot_q8_0_q8_0("

#: (message, file, edits, appended): each edit (anchor, old, new) replaces the first
#: ``old`` after ``anchor``; ``appended`` is added at the end of the file
COMMITS: tuple[tuple[str, str, tuple[tuple[str, str, str], ...], str], ...] = (
    (
        "docs: say where the CPU backend's repacked weights are described",
        "docs/build.md",
        (),
        "\n<!-- The CPU backend repacks some quantized weights at load time. -->\n",
    ),
    (
        "llama: a comment on the graph reserve",
        "src/llama-context.cpp",
        (),
        "\n// note: the graph is reserved once per context (graph_reserve)\n",
    ),
    (
        "ggml-cpu: x86 q8_0 dot product: AVX-512 builds take the compiler's vectorized loop",
        _QUANTS,
        (
            (
                _Q8_DOT,
                "#if defined(__AVX2__)\n",
                "#if defined(__AVX2__) && !defined(__AVX512F__)\n",
            ),
            (_Q8_DOT, "#elif defined(__AVX__)\n", "#elif defined(__AVX__) && !defined(__AVX2__)\n"),
        ),
        "",
    ),
    (
        "common: a comment on the sampling defaults",
        "common/sampling.cpp",
        (),
        "\n// the defaults of common_params_sampling are the llama-cli help's\n",
    ),
    ("ggml: a comment in ggml.c", "ggml/src/ggml.c", (), "\n// end of ggml.c\n"),
    (
        "docs: a line on bisecting performance",
        "docs/build.md",
        (),
        "\n<!-- Performance regressions: bisect with paired runs of both builds. -->\n",
    ),
)


def git(repo: Path, *args: str, date: int = 0) -> str:
    stamp = f"@{1767225600 + date * 3600} +0000"
    env = dict(os.environ, **_ENV, GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp)
    out = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def make(out: Path, version: str) -> list[str]:
    """The repository at ``out`` (which must not exist); its commits' hashes, oldest
    first."""
    if out.exists():
        raise SystemExit(f"{out} exists; name a new folder")
    with tempfile.TemporaryDirectory() as tmp:
        tree = builds._vendored_tree(version, Path(tmp), sys.stderr)
        shutil.move(str(tree), str(out))
    dot_git = out / ".git"  # the sdist's submodule pointer, to a repository it lacks
    if dot_git.is_file():
        dot_git.unlink()
    git(out, "init", "-q", "-b", "main")
    git(out, "add", "-A")
    git(out, "commit", "-q", "-m", f"llama.cpp as vendored in llama-cpp-python {version}")
    for i, (message, name, edits, appended) in enumerate(COMMITS, start=1):
        path = out / name
        text = path.read_text(encoding="utf-8")
        for anchor, old, new in edits:
            start = text.index(anchor)
            at = text.index(old, start)
            text = text[:at] + new + text[at + len(old) :]
        text += appended
        path.write_text(text, encoding="utf-8")
        git(out, "add", name)
        git(out, "commit", "-q", "-m", message, date=i)
    return git(out, "log", "--first-parent", "--reverse", "--format=%H %s").splitlines()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--version", default=builds.PINNED_VERSION)
    args = parser.parse_args()
    for line in make(args.out, args.version):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
