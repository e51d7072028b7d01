"""The integration tier: the tiny models run for real, through the engine, the runners and
their workers, in this process and in workers it starts; no pytest session inside."""

from tests.llama_loaded import model, tiny_model  # noqa: F401  (fixtures; llama.cpp loaded)
