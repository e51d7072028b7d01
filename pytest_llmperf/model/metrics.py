"""Pure metric definitions and arithmetic: per-sample metrics, percentiles, summaries.

Definitions (the README's "What is measured" table); every time is from
``time.perf_counter_ns()`` relative to the start of generation (after tokenization):

- ``ttft_ms``: start to the first generated token id
- ``pp_tps``: prompt tokens / prompt-eval time
- ``tg_tps``: (N-1) / (t_last - t_first) over N generated tokens; ``tpot_ms`` its inverse
- ``itl_*_ms``: statistics of the per-token gaps t_i - t_(i-1), i >= 2
- ``e2e_ms``: start to the last token (or to the end of the prompt for pp)

A streamed request (``Sample.stream``) has its own metrics, ``stream_*``, timed from the
application's call: ``stream_ttft_ms`` to the first chunk carrying text, ``stream_itl_*``
over the gaps between such chunks, ``stream_tps`` over the sampled tokens, and
``stream_overhead``, the engine's tg_tps on the same token counts over ``stream_tps``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Better = Literal["higher", "lower"]
#: how often a metric is measured: once per timed repetition, or once per load of the
#: model (load time, memory): a paired verdict judges the latter on loads, not rounds
Per = Literal["repetition", "load"]


@dataclass(frozen=True)
class MetricSpec:
    """Everything the package knows about one metric: the registry entry every consumer
    (gate, paired verdicts, baselines, tables, plots, backends) reads."""

    name: str
    unit: str
    better: Better
    description: str
    #: a plot title ("generation rate")
    title: str
    #: the metric's name in narrow tables ("tg", "p95"); its name when empty
    short: str = ""
    per: Per = "repetition"
    #: True when the value does not vary run to run (memory, sizes): compared directly,
    #: without a statistical test.
    deterministic: bool = False
    #: True for llama.cpp's own counters and other figures shown but not gated by default.
    informational: bool = False
    #: the default threshold against a stored baseline ("-10%"); None: not gated by default
    threshold: str | None = None
    #: the default threshold of a paired verdict (candidate against reference, side by
    #: side), sized to what a paired ratio of this metric resolves in a few rounds; None:
    #: shown but not gated side by side
    paired: str | None = None
    #: the same figure of a streamed request (tg_tps -> stream_tps), for tables that show
    #: one rate per row
    stream: str = ""
    #: this metric is exactly 1000 / that one (tpot_ms of tg_tps): rebuilt on reading a
    #: baseline rather than stored
    inverse_of: str = ""
    #: a statistic of the gaps between generated tokens: needs a timestamp per token (a
    #: backend that times whole repetitions, llama-bench, cannot give it)
    per_token: bool = False
    #: it measures the prompt: in a workload without one (tg: the first token follows a
    #: lone start token, so this is one decode step and its wake-up jitter) a paired
    #: verdict shows it without gating it
    prompt: bool = False
    #: the header of an optional column of the terminal table, shown where there is room
    #: ("roof%"); metrics sharing a header share the column (a row shows the first of them,
    #: in registry order, that it measured)
    column: str = ""
    #: plotted against each axis of a sweep (and a column of its table) beside the sweep's
    #: own metric
    sweep_plot: bool = False

    @property
    def label(self) -> str:
        """The name in narrow tables."""
        return self.short or self.name


def _spec(
    name: str, unit: str, better: Better, title: str, description: str, **kw: Any
) -> MetricSpec:
    return MetricSpec(name, unit, better, description, title, **kw)


_ = _spec
METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        _(
            "load_ms",
            "ms",
            "lower",
            "model load time",
            "wall time of the model load call",
            short="load",
            per="load",
            threshold="+25% or +20 ms",
            paired="+20%",
        ),
        _(
            "ttft_ms",
            "ms",
            "lower",
            "time to first token",
            "start of generation to the first generated token",
            short="ttft",
            threshold="+15% or +1 ms",
            stream="stream_ttft_ms",
            paired="+10% or +1 ms",
            prompt=True,
        ),
        _(
            "pp_tps",
            "t/s",
            "higher",
            "prompt processing rate",
            "prompt tokens / prompt-eval time",
            short="pp",
            threshold="-10%",
            paired="-5%",
        ),
        _(
            "tg_tps",
            "t/s",
            "higher",
            "generation rate",
            "(N-1) / (t_last - t_first) over N generated tokens",
            short="tg",
            threshold="-10%",
            stream="stream_tps",
            paired="-5%",
        ),
        _(
            "tpot_ms",
            "ms",
            "lower",
            "time per output token",
            "(t_last - t_first) / (N-1)",
            short="tpot",
            threshold="+10%",
            inverse_of="tg_tps",
        ),
        _(
            "itl_p50_ms",
            "ms",
            "lower",
            "inter-token latency, p50",
            "median inter-token gap",
            short="p50",
            threshold="+15% or +0.5 ms",
            per_token=True,
        ),
        _(
            "itl_p95_ms",
            "ms",
            "lower",
            "inter-token latency, p95",
            "95th percentile inter-token gap",
            short="p95",
            threshold="+15% or +0.5 ms",
            stream="stream_itl_p95_ms",
            per_token=True,
            paired="+15% or +0.5 ms",
        ),
        _(
            "itl_p99_ms",
            "ms",
            "lower",
            "inter-token latency, p99",
            "99th percentile inter-token gap",
            short="p99",
            threshold="+25% or +1 ms",
            per_token=True,
        ),
        _(
            "itl_mean_ms",
            "ms",
            "lower",
            "inter-token latency, mean",
            "mean inter-token gap",
            short="itl",
            informational=True,
            inverse_of="tg_tps",
            per_token=True,
        ),
        _(
            "itl_max_ms",
            "ms",
            "lower",
            "inter-token latency, max",
            "largest inter-token gap",
            short="itlmax",
            informational=True,
            per_token=True,
        ),
        _(
            "e2e_ms",
            "ms",
            "lower",
            "end-to-end time",
            "start of generation to the last token",
            short="e2e",
            threshold="+15%",
        ),
        _(
            "rss_peak_mb",
            "MB",
            "lower",
            "peak RSS",
            "peak resident memory of the process running the model",
            short="rss",
            per="load",
            deterministic=True,
            threshold="+10% or +16 MB",
            paired="+10% or +16 MB",
        ),
        _(
            "vram_mb",
            "MB",
            "lower",
            "VRAM used",
            "device memory used by the model (NVML): peak during the run minus before the load",
            short="vram",
            per="load",
            deterministic=True,
            threshold="+5% or +16 MB",
            paired="+5% or +16 MB",
        ),
        _(
            "model_size_mb",
            "MB",
            "lower",
            "model file size",
            "size of the model file",
            per="load",
            deterministic=True,
            informational=True,
        ),
        _(
            "llama_pp_tps",
            "t/s",
            "higher",
            "prompt rate (llama.cpp's counter)",
            "llama.cpp's own counter: n_p_eval / t_p_eval_ms",
            informational=True,
        ),
        _(
            "llama_tg_tps",
            "t/s",
            "higher",
            "generation rate (llama.cpp's counter)",
            "llama.cpp's own counter: n_eval / t_eval_ms",
            informational=True,
        ),
        # how close to the machine's limit (session/roofline.py: bytes per token from the
        # GGUF tensor table, machine/traffic.py; limits from `llmperf machine --measure`)
        _(
            "tg_bw_gbs",
            "GB/s",
            "higher",
            "effective decode bandwidth",
            "bytes a generated token reads (weights it uses, KV cache at the workload's mean "
            "depth) x tg_tps",
            short="bw",
            informational=True,
        ),
        _(
            "tg_roofline_pct",
            "%",
            "higher",
            "decode: share of the memory bandwidth",
            "the time a token's bytes need at the measured bandwidth (host; the GPU's "
            "datasheet figure for offloaded bytes) x tg_tps, in %",
            short="roof",
            informational=True,
            column="roof%",
            sweep_plot=True,
        ),
        _(
            "pp_roofline_pct",
            "%",
            "higher",
            "prompt: share of the measured f32 GEMM rate",
            "FLOPs per prompt token x pp_tps / the f32 GEMM rate measured with "
            "n_threads_batch, in % (int8 kernels can exceed 100%)",
            short="pproof",
            informational=True,
            prompt=True,
            column="roof%",
            sweep_plot=True,
        ),
        # a request streamed through llama-cpp-python's high-level API (backends/stream.py)
        _(
            "stream_ttft_ms",
            "ms",
            "lower",
            "time to the first streamed chunk",
            "the create_(chat_)completion call to the first streamed chunk carrying text "
            "(tokenization and chat template included)",
            threshold="+15% or +1 ms",
            paired="+10% or +1 ms",
        ),
        _(
            "stream_itl_p50_ms",
            "ms",
            "lower",
            "gap between streamed chunks, p50",
            "median gap between streamed chunks carrying text",
            threshold="+15% or +0.5 ms",
        ),
        _(
            "stream_itl_p95_ms",
            "ms",
            "lower",
            "gap between streamed chunks, p95",
            "95th percentile gap between streamed chunks carrying text",
            threshold="+15% or +0.5 ms",
            paired="+15% or +0.5 ms",
        ),
        _(
            "stream_itl_p99_ms",
            "ms",
            "lower",
            "gap between streamed chunks, p99",
            "99th percentile gap between streamed chunks carrying text",
            threshold="+25% or +1 ms",
        ),
        _(
            "stream_tps",
            "t/s",
            "higher",
            "streamed generation rate",
            "(N-1) / (t_last - t_first) over the N tokens the stream sampled (as tg_tps)",
            threshold="-10%",
            paired="-5%",
        ),
        _(
            "stream_e2e_ms",
            "ms",
            "lower",
            "streamed request, end to end",
            "the call to the end of the stream",
            threshold="+15%",
        ),
        _(
            "stream_overhead",
            "x",
            "lower",
            "streaming overhead",
            "engine tg_tps / stream_tps on the same model, params and token counts: how many "
            "times slower tokens arrive through the application's path (1 = no overhead)",
            threshold="+10%",
        ),
        _(
            "stream_empty_chunks",
            "chunks",
            "lower",
            "empty streamed chunks",
            "streamed chunks carrying no text (a token without visible text: a control "
            "token, or the part of a character split across tokens)",
            informational=True,
        ),
        _(
            "stream_load_ms",
            "ms",
            "lower",
            "Llama load time (streaming)",
            "load of llama-cpp-python's Llama for streaming (a second load of the model file)",
            per="load",
            informational=True,
        ),
        _(
            "engine_tg_tps",
            "t/s",
            "higher",
            "engine generation rate beside the stream",
            "the engine's tg_tps on the streamed request's token counts, beside each repetition",
            informational=True,
        ),
        _(
            "engine_ttft_ms",
            "ms",
            "lower",
            "engine time to first token beside the stream",
            "the engine's ttft_ms on the streamed request's token counts",
            informational=True,
        ),
        _(
            "engine_itl_p95_ms",
            "ms",
            "lower",
            "engine inter-token latency p95 beside the stream",
            "the engine's itl_p95_ms on the streamed request's token counts",
            informational=True,
        ),
    )
}
del _


#: the metrics shown first in tables, in this order
KEY_METRICS: tuple[str, ...] = (
    "tg_tps",
    "pp_tps",
    "ttft_ms",
    "itl_p95_ms",
    "load_ms",
    "vram_mb",
    "rss_peak_mb",
)


def ordered_metrics(names: Iterable[str]) -> list[str]:
    """Key metrics first (in KEY_METRICS order), then the registry's order, then unknown
    names alphabetically: the one order of metrics in tables and reports."""
    pool = set(names)
    order = list(KEY_METRICS) + [m for m in METRICS if m not in KEY_METRICS]
    return [m for m in order if m in pool] + sorted(pool - set(order))


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    mean: float
    stddev: float
    min: float
    max: float

    @property
    def cv(self) -> float:
        """Coefficient of variation (stddev / mean); 0 when the mean is 0."""
        return self.stddev / self.mean if self.mean else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {
            "n": self.n,
            "median": self.median,
            "mean": self.mean,
            "stddev": self.stddev,
            "min": self.min,
            "max": self.max,
        }


def summarize(values: Sequence[float]) -> Summary:
    """Median, mean, sample stddev (0 for one value), min, max and n of ``values``."""
    if not values:
        raise ValueError("summarize() needs at least one value")
    arr = np.asarray(values, dtype=float)
    return Summary(
        n=int(arr.size),
        median=float(np.median(arr)),
        mean=float(arr.mean()),
        stddev=float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        min=float(arr.min()),
        max=float(arr.max()),
    )


def inter_token_gaps_ms(token_ns: Sequence[int]) -> list[float]:
    """Per-token gaps t_i - t_(i-1) in ms, i >= 2 (one fewer than tokens)."""
    if len(token_ns) < 2:
        return []
    return [float(x) / 1e6 for x in np.diff(np.asarray(token_ns, dtype=np.int64))]


#: a repetition during which other processes took more than this share of the machine's
#: CPU time, or some task waited for a CPU this share of the wall time, is contaminated
CONTAMINATION_LIMIT = 0.10


@dataclass
class Sample:
    """One timed repetition. Times are ns relative to the start of generation."""

    n_prompt: int
    n_gen: int
    n_depth: int
    prompt_ns: int | None
    token_ns: list[int]
    end_ns: int
    #: llama.cpp's own counters for this repetition (llama_perf_context)
    llama: dict[str, float]
    #: what else ran meanwhile (:func:`pytest_llmperf.machine.devices.contention`): the share of
    #: the machine's CPU time other processes took, and of the wall time some task waited
    #: for a CPU; empty where the system does not tell
    contention: dict[str, float] = field(default_factory=dict)
    #: a streamed request (llama-cpp-python's high-level path): times are ns from the
    #: call, ``token_ns`` when each token was sampled, ``chunk_ns`` when each chunk reached
    #: the caller and ``chunk_chars`` the characters of text it carried (0: none); the
    #: chat role and finish chunks carry no content and are not kept
    stream: bool = False
    chunk_ns: list[int] = field(default_factory=list)
    chunk_chars: list[int] = field(default_factory=list)
    #: the engine's metrics on the same token counts, measured beside this repetition
    engine: dict[str, float] = field(default_factory=dict)

    @property
    def contaminated(self) -> bool:
        """Another process competed for the CPU during this repetition (see
        :data:`CONTAMINATION_LIMIT`)."""
        return any(v > CONTAMINATION_LIMIT for v in self.contention.values())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "contention": dict(self.contention),
            "n_prompt": self.n_prompt,
            "n_gen": self.n_gen,
            "n_depth": self.n_depth,
            "prompt_ns": self.prompt_ns,
            "token_ns": list(self.token_ns),
            "end_ns": self.end_ns,
            "llama": dict(self.llama),
        }
        if self.stream:  # only then: an engine sample's dict is what it always was
            out.update(
                stream=True,
                chunk_ns=list(self.chunk_ns),
                chunk_chars=list(self.chunk_chars),
                engine=dict(self.engine),
            )
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sample:
        return cls(
            n_prompt=int(data["n_prompt"]),
            n_gen=int(data["n_gen"]),
            n_depth=int(data.get("n_depth", 0)),
            prompt_ns=None if data.get("prompt_ns") is None else int(data["prompt_ns"]),
            token_ns=[int(x) for x in data.get("token_ns", [])],
            end_ns=int(data["end_ns"]),
            llama=dict(data.get("llama", {})),
            contention={k: float(v) for k, v in (data.get("contention") or {}).items()},
            stream=bool(data.get("stream", False)),
            chunk_ns=[int(x) for x in data.get("chunk_ns", [])],
            chunk_chars=[int(x) for x in data.get("chunk_chars", [])],
            engine={k: float(v) for k, v in (data.get("engine") or {}).items()},
        )

    def text_chunk_ns(self) -> list[int]:
        """When each streamed chunk that carried text reached the caller."""
        return [t for t, n in zip(self.chunk_ns, self.chunk_chars, strict=True) if n > 0]

    def metrics(self) -> dict[str, float]:
        """The per-repetition metrics this sample defines (absent ones are left out)."""
        if self.stream:
            return self._stream_metrics()
        out: dict[str, float] = {}
        if self.n_prompt and self.prompt_ns:
            out["pp_tps"] = self.n_prompt / (self.prompt_ns / 1e9)
        toks = self.token_ns
        if toks:
            out["ttft_ms"] = toks[0] / 1e6
            out["e2e_ms"] = toks[-1] / 1e6
        elif self.prompt_ns is not None:
            out["e2e_ms"] = self.prompt_ns / 1e6
        if len(toks) >= 2:
            span_ns = toks[-1] - toks[0]
            if span_ns > 0:
                out["tg_tps"] = (len(toks) - 1) / (span_ns / 1e9)
                out["tpot_ms"] = span_ns / 1e6 / (len(toks) - 1)
            gaps = np.diff(np.asarray(toks, dtype=np.int64)).astype(float) / 1e6
            p50, p95, p99 = np.percentile(gaps, [50, 95, 99])
            out["itl_p50_ms"] = float(p50)
            out["itl_p95_ms"] = float(p95)
            out["itl_p99_ms"] = float(p99)
            out["itl_mean_ms"] = float(gaps.mean())
            out["itl_max_ms"] = float(gaps.max())
        n_p, t_p = self.llama.get("n_p_eval", 0), self.llama.get("t_p_eval_ms", 0)
        if n_p and t_p:
            out["llama_pp_tps"] = float(n_p) / float(t_p) * 1000
        n_e, t_e = self.llama.get("n_eval", 0), self.llama.get("t_eval_ms", 0)
        if n_e and t_e:
            out["llama_tg_tps"] = float(n_e) / float(t_e) * 1000
        return out

    def _stream_metrics(self) -> dict[str, float]:
        """A streamed request's metrics, named apart from the engine's (``stream_*``)."""
        out: dict[str, float] = {"stream_e2e_ms": self.end_ns / 1e6}
        out["stream_empty_chunks"] = float(sum(1 for n in self.chunk_chars if n == 0))
        text = self.text_chunk_ns()
        if text:
            out["stream_ttft_ms"] = text[0] / 1e6
        if len(text) >= 2:
            gaps = np.diff(np.asarray(text, dtype=np.int64)).astype(float) / 1e6
            p50, p95, p99 = np.percentile(gaps, [50, 95, 99])
            out["stream_itl_p50_ms"] = float(p50)
            out["stream_itl_p95_ms"] = float(p95)
            out["stream_itl_p99_ms"] = float(p99)
        toks = self.token_ns
        if len(toks) >= 2 and toks[-1] > toks[0]:
            out["stream_tps"] = (len(toks) - 1) / ((toks[-1] - toks[0]) / 1e9)
            engine_tps = self.engine.get("tg_tps")
            if engine_tps:
                out["stream_overhead"] = engine_tps / out["stream_tps"]
        for name in ("tg_tps", "ttft_ms", "itl_p95_ms"):
            if name in self.engine:
                out[f"engine_{name}"] = float(self.engine[name])
        n_e, t_e = self.llama.get("n_eval", 0), self.llama.get("t_eval_ms", 0)
        if n_e and t_e:
            out["llama_tg_tps"] = float(n_e) / float(t_e) * 1000
        return out


def chunk_gaps_ms(sample: Sample) -> list[float]:
    """Gaps between the streamed chunks that carried text, in ms (empty for an engine
    sample)."""
    text = sample.text_chunk_ns()
    if len(text) < 2:
        return []
    return [float(x) / 1e6 for x in np.diff(np.asarray(text, dtype=np.int64))]


def per_sample_metrics(samples: Iterable[Sample]) -> dict[str, list[float]]:
    """Metric name -> one value per sample, for the metrics every sample defines."""
    rows = [s.metrics() for s in samples]
    if not rows:
        return {}
    names = set(rows[0])
    for row in rows[1:]:
        names &= set(row)
    return {name: [row[name] for row in rows] for name in sorted(names)}


def fmt_value(value: float | None, unit: str = "") -> str:
    """A number with sensible precision for tables."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    mag = abs(value)
    if mag >= 1000:
        text = f"{value:,.0f}"
    elif mag >= 100:
        text = f"{value:.1f}"
    elif mag >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".rstrip() if unit else text
