"""The e2e tier: whole pytest sessions (pytester), the ``llmperf`` command and other child
processes, signals and builds."""

from tests.llama_loaded import tiny_model  # noqa: F401  (the fixture, and llama.cpp loaded)
