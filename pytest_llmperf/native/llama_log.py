"""What llama.cpp's own log lines say about a load.

The lines come from a :func:`~pytest_llmperf.native.llama_lib.captured_log` block around
the load: the tensors a buffer type override moved (the tensor override check reads
them), the load mode llama.cpp used, and what it decided for flash attention.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: ``tensor blk.0.ffn_up_exps.weight (...) buffer type overridden to CPU_REPACK``
OVERRIDE_RE = re.compile(r"tensor (\S+) \(.*\) buffer type overridden to (\S+)")
#: ``... (load_mode = mmap)``
LOAD_MODE_RE = re.compile(r"\(load_mode = ([\w+]+)\)")
#: releases before 0.3.35 (llama-cpp-python): ``... (mmap = true)``, no word on mlock
MMAP_RE = re.compile(r"\(mmap = (true|false)\)")
_FA_ON_RE = re.compile(r"flash_attn\s*=\s*1\b")
_FA_OFF_RE = re.compile(r"flash_attn\s*=\s*0\b")


def overridden_tensors(lines: Iterable[str]) -> dict[str, str]:
    """Tensor name -> the buffer type an override put it on."""
    return {m.group(1): m.group(2) for line in lines if (m := OVERRIDE_RE.search(line))}


def load_mode(lines: Iterable[str]) -> str:
    """The load mode llama.cpp reports (mmap, none, mlock, ...; an older release's log
    says mmap or none only), or "unknown"."""
    for line in lines:
        m = LOAD_MODE_RE.search(line)
        if m:
            return m.group(1)
        m = MMAP_RE.search(line)
        if m:
            return "mmap" if m.group(1) == "true" else "none"
    return "unknown"


def flash_attn(lines: Iterable[str], requested: str) -> str:
    """What llama.cpp decided for flash attention ("on"/"off"); ``requested`` when its
    log does not say."""
    for line in lines:
        low = line.lower()
        if "flash_attn" in low or "flash attention" in low:
            if "enabled" in low or _FA_ON_RE.search(low):
                return "on"
            if "disabled" in low or _FA_OFF_RE.search(low):
                return "off"
    return requested
