"""pytest-llmperf: LLM inference performance as ordinary pass/fail pytest tests."""

__version__ = "0.1.0"
