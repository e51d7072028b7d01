"""The GPU check's expectations (scripts/gpu_checks.py): what a model's GGUF header says
offloading should move (:class:`ModelBytes`). Pure."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

MB = 1024 * 1024


def rnd(value: Any, digits: int = 1) -> Any:
    """A number rounded for the summary (anything else as it is)."""
    return round(float(value), digits) if isinstance(value, (int, float)) else value


@dataclass(frozen=True)
class ModelBytes:
    """A model's bytes in MiB, from its tensor table: each layer's, its experts', the
    output's, and the f16 K and V cache a layer holds at ``n_ctx``."""

    n_layer: int
    layer_mb: dict[int, float]
    expert_mb_by_layer: dict[int, float]
    expert_tensors: int
    output_mb: float
    kv_mb_per_layer: float

    @classmethod
    def of(
        cls,
        sizes: Mapping[str, int],
        experts: Collection[str],
        n_layer: int,
        n_embd_kv: int,
        n_ctx: int = 4096,
    ) -> ModelBytes:
        """``sizes``: tensor name -> bytes; ``experts``: the expert tensors' names."""
        per_layer: dict[int, float] = {}
        expert_per_layer: dict[int, float] = {}
        for name, n in sizes.items():
            m = re.match(r"blk\.(\d+)\.", name)
            if m:
                i = int(m.group(1))
                per_layer[i] = per_layer.get(i, 0.0) + n / MB
                if name in experts:
                    expert_per_layer[i] = expert_per_layer.get(i, 0.0) + n / MB
        output = sizes.get("output.weight", 0) + sizes.get("output_norm.weight", 0)
        return cls(
            n_layer=n_layer,
            layer_mb=per_layer,
            expert_mb_by_layer=expert_per_layer,
            expert_tensors=len(set(experts)),
            output_mb=output / MB,
            kv_mb_per_layer=n_ctx * n_embd_kv * 2 * 2 / MB,
        )

    @property
    def expert_mb(self) -> float:
        return sum(self.expert_mb_by_layer.values())

    def first_layers_mb(self, k: int) -> float:
        """What n_gpu_layers=k should add: the first k layers and their KV cache."""
        return sum(self.layer_mb.get(i, 0.0) for i in range(k)) + k * self.kv_mb_per_layer

    @property
    def weights_on_gpu_mb(self) -> float:
        """What ngl=-1 puts on the GPU: every layer and the output (token_embd stays on
        the CPU); the KV cache and compute buffers come on top."""
        return sum(self.layer_mb.values()) + self.output_mb

    @property
    def all_layers_mb(self) -> float:
        """Every layer, the output and the KV cache: ngl=-1 against ngl=0."""
        return self.weights_on_gpu_mb + self.n_layer * self.kv_mb_per_layer

    def cpu_experts(self, layers: int | None) -> tuple[float, int]:
        """(MiB, tensors) cpu-moe (``layers`` None) or n_cpu_moe=layers keeps on the CPU."""
        if layers is None:
            return self.expert_mb, self.expert_tensors
        mb = sum(self.expert_mb_by_layer.get(i, 0.0) for i in range(layers))
        return mb, self.expert_tensors * layers // max(self.n_layer, 1)
