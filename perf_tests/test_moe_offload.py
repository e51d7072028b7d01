"""MoE CPU offload: without and with cpu-moe (VRAM, tg_tps, TTFT), and n_gpu_layers at
0/25/50/100% of the layers (GPU only)."""

import pytest
from _suite import MOE, THREADS

from pytest_llmperf import configs
from pytest_llmperf.machine import gguf_info, tiny


@pytest.mark.smoke
@pytest.mark.parametrize(
    "llmperf_config", configs(MOE[-1:], n_threads=THREADS, n_gpu_layers=-1, cpu_moe=[False, True])
)
def test_cpu_moe(llm_perf, llm_model):
    m = llm_perf.measure("pp64+tg64", repetitions=5)
    expected = len(gguf_info.inspect(llm_model.path).expert_tensors)
    assert m.resolved["cpu_moe_tensors"] == (expected if llm_model.params.cpu_moe else 0)


def _layers() -> int:
    return tiny.MOE.n_layer if MOE[-1].startswith("tiny-") else 100


@pytest.mark.gpu
@pytest.mark.parametrize(
    "llmperf_config",
    configs(
        MOE[-1:],
        n_threads=THREADS,
        n_gpu_layers=sorted({round(f * _layers()) for f in (0, 0.25, 0.5, 1.0)}),
    ),
)
def test_gpu_layers(llm_perf):
    llm_perf.measure("pp128+tg64")
