"""The e2e tier: whole pytest sessions (pytester), the ``llmperf`` command and other child
processes, signals and builds."""

from tests.llama_loaded import model, tiny_model  # noqa: F401  (fixtures; llama.cpp loaded)
