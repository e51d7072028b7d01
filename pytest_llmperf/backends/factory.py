"""The one place that chooses a runner for a model configuration.

A build with a llama-bench binary runs :class:`~pytest_llmperf.backends.llamabench.LlamaBenchRunner`
(and only it takes ``bench_args``); otherwise llama.cpp runs through llama-cpp-python,
isolated in a worker process (:class:`~pytest_llmperf.backends.runner.IsolatedRunner`,
always for another build or a launcher: a process holds one llama.cpp library) or in
this process (:class:`~pytest_llmperf.backends.inprocess.InProcessRunner`). The session
resolves the registry entries (the build's runtime, the launcher's command) and calls
:func:`start_runner`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_llmperf.backends.protocol import Runner
from pytest_llmperf.backends.runner import DEFAULT_TIMEOUT_S, IsolatedRunner
from pytest_llmperf.errors import UsageError
from pytest_llmperf.machine.builds import DEFAULT as DEFAULT_BUILD
from pytest_llmperf.machine.builds import Runtime
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.options import split_words


def start_runner(
    path: str,
    params: LoadParams,
    model_id: str = "",
    *,
    runtime: Runtime | None = None,
    launcher: Sequence[str] = (),
    isolate: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    build: str = DEFAULT_BUILD,
    bench_args: str = "",
    check_memory: bool = True,
) -> Runner:
    """A new runner for one configuration (the caller closes it). ``runtime``: the
    build's (None: this interpreter); ``launcher``: the worker's command prefix;
    ``build``: the build's name, for messages; ``bench_args``: llama-bench arguments
    passed through untouched (a llama-bench build only)."""
    if runtime is not None and runtime.llama_bench:
        from pytest_llmperf.backends.llamabench import LlamaBenchRunner

        return LlamaBenchRunner(
            runtime.llama_bench,
            path,
            params,
            model_id,
            extra_args=split_words(bench_args, f"bench_args of build {build!r}"),
            launcher=launcher,
            timeout_s=timeout_s,
            build=build,
        )
    if bench_args:
        raise UsageError(
            f"bench_args={bench_args!r} is for a llama-bench build (builds: "
            f"{{NAME: {{llama_bench: PATH}}}}); build {build!r} runs llama-cpp-python: "
            "write its load params as args=..."
        )
    if isolate or build != DEFAULT_BUILD or launcher:
        return IsolatedRunner(
            path,
            params,
            model_id,
            check_memory=check_memory,
            timeout_s=timeout_s,
            runtime=runtime,
            launcher=launcher,
            build=build,
        )
    from pytest_llmperf.backends.inprocess import InProcessRunner

    return InProcessRunner(path, params, model_id, check_memory=check_memory)
