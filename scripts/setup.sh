#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv, llama-cpp-python built for this
# machine (see scripts/build-llama-cpp.sh: about 4-7 minutes the first time, then reused
# from ~/.cache/pytest-llmperf/wheels), and this project with its dev and plot extras.
#
#   PYTHON=python3.12 ./scripts/setup.sh          # another interpreter
#   LLMPERF_LLAMA_BUILD=cuda CMAKE_CUDA_ARCHITECTURES=90 ./scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
PYTHON=.venv/bin/python bash scripts/build-llama-cpp.sh
.venv/bin/python -m pip install -q -e ".[dev,plots]"
echo "ready: .venv/bin/pytest perf_tests -m smoke   |   .venv/bin/pytest tests"
