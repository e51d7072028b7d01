"""What a backend answers is checked against what it was asked (issue 26, round three):
every row and number from a backend (the engine, a worker, llama-bench) before it is
gated, stored or shown (pytest_llmperf.backends.answers).

llama-bench is a fork's binary here, which cannot be assumed on this machine: the tests
of its answers run a **fake llama-bench**, a small script that answers the flags it is
given the way llama-bench's ``-o jsonl`` does, wrong in one way per case (a row of
another test, no samples, a 0 or a word among them, too few samples, a test twice). The
real llama-bench of the vendored llama.cpp runs in tests/e2e/test_llamabench.py.

Split by tier: pure parts in tests/unit/test_backend_answers.py, real model runs in
tests/integration/test_backend_answers.py and pytest sessions and child processes in
tests/e2e/test_backend_answers.py.
"""

from __future__ import annotations

import math

import pytest

from pytest_llmperf.backends.answers import bad_value, check_measurement
from pytest_llmperf.errors import BackendError
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.results import Measurement
from pytest_llmperf.model.workloads import Workload

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


# -- every backend's measurement --------------------------------------------------------------


def measurement(values: dict[str, list[float]], n: int = 3, workload: str = "tg16") -> Measurement:
    from pytest_llmperf.model.metrics import Sample

    return Measurement(
        model="m",
        model_path="/m.gguf",
        params=LoadParams(),
        workload=Workload.parse(workload),
        samples=[Sample(0, 16, 0, None, [], 1_000_000, {}) for _ in range(n)],
        values=values,
    )


@pytest.mark.parametrize(
    ("values", "n", "expected"),
    [
        ({"tg_tps": []}, 3, "no value of tg_tps"),
        ({"tg_tps": [10.0, math.nan, 9.0]}, 3, "tg_tps = nan is not a finite number"),
        ({"tg_tps": [10.0, 0.0, 9.0]}, 3, "tg_tps = 0.0 is not positive"),
        ({"ttft_ms": [-1.0, 1.0, 1.0]}, 3, "ttft_ms = -1.0 is not positive"),
        ({"rss_peak_mb": [math.inf]}, 3, "rss_peak_mb = inf is not a finite number"),
        ({"tg_tps": [10.0, 9.0]}, 2, "with 2 sample(s)"),
    ],
    ids=["empty", "nan", "zero-rate", "negative-time", "inf", "too-few"],
)
def test_every_backends_measurement_is_checked_against_the_request(
    values: dict[str, list[float]], n: int, expected: str
) -> None:
    with pytest.raises(BackendError, match="its numbers were not used") as info:
        check_measurement(measurement(values, n), "tg16", 3, "a backend")
    assert expected in str(info.value)
    with pytest.raises(BackendError, match="answered workload 'tg32' when asked for tg16"):
        check_measurement(measurement({"tg_tps": [1.0] * 3}, 3, "tg32"), "tg16", 3, "a backend")
    good = measurement({"tg_tps": [9.0, 10.0, 11.0], "stream_empty_chunks": [0.0] * 3})
    assert check_measurement(good, "tg16", 3, "a backend") is good
    assert bad_value("tg_tps", True) == "True is not a finite number"


def test_a_workers_log_shows_a_traceback_as_its_last_line() -> None:
    from pytest_llmperf.backends.runner import without_tracebacks

    log = [
        "llama_model_load: loading",
        "Traceback (most recent call last):",
        '  File "/x/worker.py", line 3, in <module>',
        "    main()",
        "    ^^^^^^",
        "KeyError: 'n_ctx'",
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        "Traceback (most recent call last):",
        '  File "/x/worker.py", line 9, in serve',
        "KeyboardInterrupt",
    ]
    assert [line for line in without_tracebacks(log) if line] == [
        "llama_model_load: loading",
        "KeyError: 'n_ctx'",
        "KeyboardInterrupt",
    ]
