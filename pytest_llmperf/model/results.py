"""The result records that flow from the backend to the gate, the baseline store and the
reports. Pure data with ``to_dict``/``from_dict`` (JSON-friendly; never pickled)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from pytest_llmperf.model.metrics import (
    METRICS,
    Sample,
    Summary,
    inter_token_gaps_ms,
    per_sample_metrics,
    summarize,
)
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.workloads import Workload

#: the comparisons key under which a test's absolute limits and ratio SLAs are filed
SLA_KEY = "sla"

#: the verdicts, of a metric and of a test (the worst of its metrics); "error": not gated
Verdict = Literal["pass", "regressed", "improved", "inconclusive", "new", "mismatch", "error"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)

#: how bad a verdict is, for "the worst verdict of a test"
VERDICT_RANK: dict[Verdict, int] = {
    "pass": 0,
    "new": 1,
    "inconclusive": 2,
    "improved": 3,
    "mismatch": 4,
    "regressed": 5,
    "error": 6,
}


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The worst of ``verdicts`` (``pass`` when there are none)."""
    return max(verdicts, key=VERDICT_RANK.__getitem__, default="pass")


def as_verdict(value: object) -> Verdict:
    """A verdict read from a file; ValueError for anything else."""
    for v in VERDICTS:
        if value == v:
            return v
    raise ValueError(f"{value!r} is not a verdict ({', '.join(VERDICTS)})")


@dataclass
class Measurement:
    """One workload measured on one loaded model: raw samples and derived metric values."""

    model: str
    model_path: str
    params: LoadParams
    workload: Workload
    samples: list[Sample]
    #: metric -> raw values (one per sample; run-level metrics such as load_ms may have one)
    values: dict[str, list[float]]
    #: metric -> why it is absent (e.g. vram_mb without NVML); never a 0 or a guess
    absent: dict[str, str] = field(default_factory=dict)
    #: what the backend actually used: resolved n_threads, flash attention, devices ...
    resolved: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""
    repetitions: int = 0
    warmup: int = 0

    @classmethod
    def from_samples(
        cls,
        *,
        model: str,
        model_path: str,
        params: LoadParams,
        workload: Workload,
        samples: list[Sample],
        run_values: Mapping[str, list[float]] | None = None,
        absent: Mapping[str, str] | None = None,
        **kw: Any,
    ) -> Measurement:
        values = per_sample_metrics(samples)
        for name, vals in (run_values or {}).items():
            if vals:
                values[name] = list(vals)
        return cls(
            model=model,
            model_path=model_path,
            params=params,
            workload=workload,
            samples=samples,
            values=values,
            absent=dict(absent or {}),
            **kw,
        )

    def summary(self, metric: str) -> Summary | None:
        vals = self.values.get(metric)
        return summarize(vals) if vals else None

    def summaries(self) -> dict[str, Summary]:
        return {name: summarize(vals) for name, vals in self.values.items() if vals}

    def median(self, metric: str) -> float | None:
        s = self.summary(metric)
        return s.median if s else None

    def itl_ms(self) -> list[float]:
        """Every inter-token gap of every sample, pooled (for distributions and plots)."""
        out: list[float] = []
        for s in self.samples:
            out.extend(inter_token_gaps_ms(s.token_ns))
        return out

    def to_dict(self, *, samples: bool = True) -> dict[str, Any]:
        """JSON-friendly; ``samples=False`` leaves out per-token timestamps (baselines keep
        the per-repetition metric values, which is what the gate compares)."""
        return {
            "model": self.model,
            "model_path": self.model_path,
            "params": self.params.to_dict(),
            "workload": {**self.workload.to_dict(), "name": self.workload.name},
            "samples": [s.to_dict() for s in self.samples] if samples else [],
            "metrics": {
                name: {
                    "unit": METRICS[name].unit if name in METRICS else "",
                    "better": METRICS[name].better if name in METRICS else "",
                    "values": list(vals),
                    "summary": summarize(vals).to_dict(),
                }
                for name, vals in sorted(self.values.items())
                if vals
            },
            "absent": dict(sorted(self.absent.items())),
            "resolved": self.resolved,
            "fingerprint": self.fingerprint,
            "started_at": self.started_at,
            "repetitions": self.repetitions,
            "warmup": self.warmup,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        wl = dict(data["workload"])
        wl.pop("name", None)
        return cls(
            model=str(data.get("model", "")),
            model_path=str(data.get("model_path", "")),
            params=LoadParams.from_dict(data.get("params", {})),
            workload=Workload.from_dict(wl),
            samples=[Sample.from_dict(s) for s in data.get("samples", [])],
            values={k: [float(x) for x in v["values"]] for k, v in data.get("metrics", {}).items()},
            absent=dict(data.get("absent", {})),
            resolved=dict(data.get("resolved", {})),
            fingerprint=dict(data.get("fingerprint", {})),
            started_at=str(data.get("started_at", "")),
            repetitions=int(data.get("repetitions", 0)),
            warmup=int(data.get("warmup", 0)),
        )


@dataclass
class BaselineValues:
    """The baseline of one workload as the gate sees it: each accepted session's metric
    values (oldest first), and why metrics were absent."""

    sessions: list[dict[str, list[float]]]
    absent: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, m: Measurement) -> BaselineValues:
        return cls([{k: list(v) for k, v in m.values.items() if v}], dict(m.absent))

    def pooled(self) -> dict[str, list[float]]:
        """Every session's values of each metric, together."""
        out: dict[str, list[float]] = {}
        for session in self.sessions:
            for metric, values in session.items():
                if values:
                    out.setdefault(metric, []).extend(values)
        return out

    def per_session(self, metric: str) -> list[list[float]]:
        return [list(s[metric]) for s in self.sessions if s.get(metric)]


@dataclass
class MetricComparison:
    """One metric of one measurement against its baseline."""

    metric: str
    unit: str
    better: str
    baseline_median: float | None
    current_median: float | None
    #: signed relative change in percent (current vs baseline), None without a baseline
    change_pct: float | None
    #: the threshold as people write it: "-10%", "+15% or +0.5 ms", "< 11000"
    threshold: str
    verdict: Verdict
    p_value: float | None = None
    reason: str = ""
    #: the allowance the gate used when the history widened the threshold ("-14%")
    allowance: str = ""
    #: accepted sessions of the baseline, when it keeps a history
    sessions: int | None = None
    #: how far this machine drifts between sessions (percent, +-), from the history
    drift_pct: float | None = None
    #: the smallest regression the gate can detect here (percent)
    detectable_pct: float | None = None
    #: the relative part of the threshold (percent), for comparing with the above
    threshold_pct: float | None = None
    #: paired verdicts: the median ratio candidate/reference and its interval, and the
    #: clean rounds it rests on
    ratio: float | None = None
    ratio_low: float | None = None
    ratio_high: float | None = None
    rounds: int | None = None

    @classmethod
    def of(
        cls,
        metric: str,
        threshold: str = "",
        verdict: Verdict = "pass",
        *,
        baseline_median: float | None = None,
        current_median: float | None = None,
        change_pct: float | None = None,
        **extra: Any,
    ) -> MetricComparison:
        """A comparison of a registry metric: its unit and direction come from the
        registry (an unknown name has neither)."""
        spec = METRICS.get(metric)
        return cls(
            metric=metric,
            unit=spec.unit if spec else "",
            better=spec.better if spec else "",
            baseline_median=baseline_median,
            current_median=current_median,
            change_pct=change_pct,
            threshold=threshold,
            verdict=verdict,
            **extra,
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricComparison:
        def number(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        return cls(
            metric=str(data["metric"]),
            unit=str(data.get("unit", "")),
            better=str(data.get("better", "")),
            baseline_median=number("baseline_median"),
            current_median=number("current_median"),
            change_pct=number("change_pct"),
            threshold=str(data.get("threshold", "")),
            verdict=as_verdict(data.get("verdict")),
            p_value=number("p_value"),
            reason=str(data.get("reason", "")),
            allowance=str(data.get("allowance", "")),
            sessions=None if data.get("sessions") is None else int(data["sessions"]),
            drift_pct=number("drift_pct"),
            detectable_pct=number("detectable_pct"),
            threshold_pct=number("threshold_pct"),
            ratio=number("ratio"),
            ratio_low=number("ratio_low"),
            ratio_high=number("ratio_high"),
            rounds=None if data.get("rounds") is None else int(data["rounds"]),
        )


@dataclass
class TestResult:
    """Everything one test measured and what the gate said of it."""

    __test__ = False  # not a pytest test class, whatever the importing module calls it

    nodeid: str
    measurements: list[Measurement] = field(default_factory=list)
    #: workload name -> comparisons of its metrics (plus "sla" for limits and ratios)
    comparisons: dict[str, list[MetricComparison]] = field(default_factory=dict)
    verdict: Verdict = "pass"
    notes: list[str] = field(default_factory=list)
    #: where the baseline came from: "baselines/x.json" entry key, or "" when new
    baseline_key: str = ""
    #: the reference configuration's id, for a test judged side by side (paired)
    reference: str = ""

    def all_comparisons(self) -> list[MetricComparison]:
        return [c for comps in self.comparisons.values() for c in comps]

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "verdict": self.verdict,
            "measurements": [m.to_dict() for m in self.measurements],
            "comparisons": {k: [c.to_dict() for c in v] for k, v in self.comparisons.items()},
            "notes": list(self.notes),
            "baseline_key": self.baseline_key,
            "reference": self.reference,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestResult:
        return cls(
            nodeid=str(data["nodeid"]),
            measurements=[Measurement.from_dict(m) for m in data.get("measurements", [])],
            comparisons={
                k: [MetricComparison.from_dict(c) for c in v]
                for k, v in data.get("comparisons", {}).items()
            },
            verdict=as_verdict(data.get("verdict", "pass")),
            notes=list(data.get("notes", [])),
            baseline_key=str(data.get("baseline_key", "")),
            reference=str(data.get("reference", "")),
        )
