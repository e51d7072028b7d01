"""Loaded model configurations: one runner per configuration key, shared by the tests
that use it and closed after the last of them."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from pytest_llmperf.backends.runner import Runner


class RunnerPool:
    """Loaded model configurations: one runner per (model id, LoadParams), closed after
    the last test that needs it, at most ``max_loaded`` at once (least recently used
    first out)."""

    def __init__(self, max_loaded: int) -> None:
        self.max_loaded = max(max_loaded, 1)
        self._runners: OrderedDict[Any, Runner] = OrderedDict()
        self._remaining: dict[Any, int] = {}

    def expect(self, key: Any) -> None:
        """One more collected test will use ``key``."""
        self._remaining[key] = self._remaining.get(key, 0) + 1

    def get(self, key: Any, start: Callable[[], Runner]) -> Runner:
        if key in self._runners:
            self._runners.move_to_end(key)
            return self._runners[key]
        while len(self._runners) >= self.max_loaded:
            _k, old = self._runners.popitem(last=False)
            _close(old)
        runner = start()
        self._runners[key] = runner
        return runner

    def drop(self, key: Any) -> None:
        runner = self._runners.pop(key, None)
        if runner is not None:
            _close(runner)

    def release(self, key: Any) -> None:
        """A test of ``key`` finished; close its model when no later test needs it."""
        if key not in self._remaining:
            return
        self._remaining[key] -= 1
        if self._remaining[key] <= 0:
            self.drop(key)

    def close(self) -> None:
        while self._runners:
            _k, runner = self._runners.popitem()
            _close(runner)


def _close(runner: Runner) -> None:
    try:
        runner.close()
    except Exception:  # a dead worker: nothing left to close
        pass
