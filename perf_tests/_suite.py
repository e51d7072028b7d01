"""Which models the project's own suite runs: built-in tiny models unless told otherwise.

Point the suite at real models by registry id (see [tool.llmperf.models] in
pyproject.toml, where each real model's file comes from an environment variable):

    LLMPERF_MOE_MODELS=gpt-oss-20b-mxfp4,gpt-oss-20b-q4_k_m  pytest perf_tests
"""

from __future__ import annotations

import os


def _models(var: str, default: str) -> list[str]:
    return [m.strip() for m in os.environ.get(var, default).split(",") if m.strip()]


#: the primary model: load time, generation, context depth
PRIMARY = _models("LLMPERF_PRIMARY_MODEL", "tiny-moe-mxfp4")[0]
#: dense models for CPU tuning
DENSE = _models("LLMPERF_DENSE_MODELS", "tiny-dense-q4_k_m")
#: one MoE model in several quantizations (quant comparison, cpu-moe offload)
MOE = _models("LLMPERF_MOE_MODELS", "tiny-moe-q8_0,tiny-moe-q4_k_m,tiny-moe-mxfp4")
#: threads for the tiny models (2-core CI machines)
THREADS = int(os.environ.get("LLMPERF_THREADS", "2"))
