"""Error types. Each message names the input at fault and the fix."""

from __future__ import annotations


class LLMPerfError(Exception):
    """Base class of every error this package raises on purpose."""


class UsageError(LLMPerfError):
    """Bad configuration or arguments: the user must change something."""


class ModelFileError(UsageError):
    """A model file that is missing, unreadable or not a usable GGUF."""


class BaselineError(UsageError):
    """A baseline file that cannot be read or must not be overwritten."""


class BackendError(LLMPerfError):
    """llama.cpp failed: a load that returned NULL, a decode error, a crashed worker."""


class BackendCrash(BackendError):
    """The process running llama.cpp died (signal) or hung past its timeout."""

    def __init__(self, message: str, *, signal_name: str | None = None) -> None:
        super().__init__(message)
        self.signal_name = signal_name
