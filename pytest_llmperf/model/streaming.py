"""Streamed requests as an application makes them: the workload, its names, prompt sets.

Pure: no llama.cpp import (the backend that runs them is :mod:`pytest_llmperf.backends.stream`).

A :class:`StreamWorkload` is one request through llama-cpp-python's high-level API: a
text ``prompt`` (``Llama.create_completion(stream=True)``) or chat ``messages``
(``Llama.create_chat_completion(stream=True)``, through a chat template), exactly
``n_gen`` generated tokens, the application's sampling settings. It is a
:class:`~pytest_llmperf.model.params.Workload`, so everything keyed by workload names
(baselines, SLAs, sweeps, reports) takes it as it is.

Names: ``stream:<label>``, and ``stream:<label>+tg<N>`` when N is not
:data:`DEFAULT_MAX_TOKENS`. A label never looks like an engine workload (``pp512``,
``tg128``, ``load``), so neither parser can take one for the other. ``Workload.parse``
knows the built-in prompts (:data:`BUILTIN_PROMPTS`: ``stream:short``, ``stream:long``,
``stream:chat-short``, ``stream:chat-long``); your own come from
``llm_perf.measure_stream(prompt=..., name=...)`` or a prompt file (:func:`load_prompts`).
Any other name parses to the request *by name only* (no prompt: it stands for a request
in a baseline, an SLA or a sweep's key, and cannot run: :func:`require_request`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_llmperf.errors import UsageError
from pytest_llmperf.model.params import Workload

#: generated tokens of a streamed request when none is given
DEFAULT_MAX_TOKENS = 64
#: the seed of the sampler when the request's sampling names none (reproducible runs)
DEFAULT_SEED = 1234
#: roles a message may have
ROLES: tuple[str, ...] = ("system", "user", "assistant")

_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_NAME_RE = re.compile(
    r"^\s*stream\s*:\s*(?P<label>[^\s+]+)\s*(?:\+\s*tg\s*(?P<n>\d+))?\s*$", re.IGNORECASE
)
_PREFIX_RE = re.compile(r"^\s*stream\s*:", re.IGNORECASE)
NAME_HELP = (
    "write stream:<label> or stream:<label>+tg<N> (label: letters, digits, '.', '_', '-'; "
    "not an engine workload name such as tg128)"
)

Message = tuple[str, str]


def _check_label(label: str, where: str) -> str:
    if not isinstance(label, str) or not _LABEL_RE.match(label):
        raise UsageError(f"{where}: {label!r} is not a usable name; {NAME_HELP}")
    low = label.lower()
    engine_like = low == "load"
    if not engine_like:
        try:
            Workload.parse(label)
            engine_like = True
        except UsageError:
            pass
    if engine_like:
        raise UsageError(
            f"{where}: {label!r} reads as an engine workload (pp/tg/load); give the streamed "
            "request another name, e.g. 'short' or 'chat-long'"
        )
    return label


def stream_name(text: str) -> str:
    """The canonical name of a streamed workload, from its name or its bare label:
    ``"short"``, ``"stream:short"`` and ``"stream:short+tg64"`` are ``"stream:short"``.
    For SLA and limit operands: ``stream_itl_p95_ms[long]``."""
    raw = str(text).strip()
    m = _NAME_RE.match(raw if _PREFIX_RE.match(raw) else f"stream:{raw}")
    if not m:
        raise UsageError(f"streamed workload {text!r} not understood; {NAME_HELP}")
    label = _check_label(m.group("label"), "streamed workload")
    n = int(m.group("n")) if m.group("n") else DEFAULT_MAX_TOKENS
    return _name(label, n)


def _name(label: str, n_gen: int) -> str:
    return f"stream:{label}" if n_gen == DEFAULT_MAX_TOKENS else f"stream:{label}+tg{n_gen}"


# -- sampling settings ------------------------------------------------------------------

#: parameters whose value is a mapping or a list in llama-cpp-python's API
_MAPPING_KEYS = frozenset({"logit_bias"})
_SCALARS = (bool, int, float, str, type(None))


def _freeze(sampling: Mapping[str, Any], where: str) -> tuple[tuple[str, Any], ...]:
    """Sampling settings as a hashable, sorted tuple; values JSON-like scalars, lists of
    them (``stop``) or a mapping of token id to bias (``logit_bias``)."""
    if not isinstance(sampling, Mapping):
        raise UsageError(
            f"{where}: sampling must be a mapping such as {{'temperature': 0.7, 'top_k': 40}}, "
            f"got {type(sampling).__name__}"
        )
    out: list[tuple[str, Any]] = []
    for key, value in sampling.items():
        if not isinstance(key, str):
            raise UsageError(f"{where}: sampling key {key!r} must be a parameter name (a str)")
        if isinstance(value, Mapping):
            if key not in _MAPPING_KEYS:
                raise UsageError(f"{where}: sampling {key}={value!r}: expected a single value")
            try:
                pairs = tuple(sorted((str(int(k)), float(v)) for k, v in value.items()))
            except (TypeError, ValueError):
                raise UsageError(
                    f"{where}: sampling {key}={value!r}: write token id -> bias, e.g. {{13: -5.0}}"
                ) from None
            out.append((key, pairs))
        elif isinstance(value, list | tuple):
            if not all(isinstance(v, _SCALARS) for v in value):
                raise UsageError(f"{where}: sampling {key}={value!r}: a list of plain values")
            out.append((key, tuple(value)))
        elif isinstance(value, _SCALARS):
            if isinstance(value, float) and math.isnan(value):
                raise UsageError(f"{where}: sampling {key}=nan: give a number")
            out.append((key, value))
        else:
            raise UsageError(
                f"{where}: sampling {key}={value!r}: a {type(value).__name__} cannot be sent "
                "to the backend; give numbers, strings or lists of them"
            )
    return tuple(sorted(out))


def thaw_sampling(sampling: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """The keyword arguments of a frozen sampling tuple (``logit_bias`` a dict of int ids,
    lists as lists)."""
    out: dict[str, Any] = {}
    for key, value in sampling:
        if key in _MAPPING_KEYS:
            out[key] = {int(k): float(v) for k, v in value}
        elif isinstance(value, tuple):
            out[key] = list(value)
        else:
            out[key] = value
    return out


def _messages(raw: Any, where: str) -> tuple[Message, ...]:
    shape = "a list of {'role': 'user', 'content': '...'} mappings"
    if isinstance(raw, str | bytes) or not isinstance(raw, Sequence):
        raise UsageError(f"{where}: messages must be {shape}, got {type(raw).__name__}")
    if not raw:
        raise UsageError(f"{where}: messages is empty; give at least one user message ({shape})")
    out: list[Message] = []
    for i, msg in enumerate(raw, 1):
        if isinstance(msg, tuple) and len(msg) == 2:
            msg = {"role": msg[0], "content": msg[1]}
        if not isinstance(msg, Mapping):
            raise UsageError(
                f"{where}: message {i} is {msg!r} (a {type(msg).__name__}); messages must be "
                f"{shape}"
            )
        extra = sorted(set(msg) - {"role", "content"})
        if extra or "role" not in msg or "content" not in msg:
            raise UsageError(
                f"{where}: message {i} has keys {sorted(map(str, msg))}; each message needs "
                f"exactly 'role' and 'content' ({shape})"
            )
        role, content = msg["role"], msg["content"]
        if role not in ROLES:
            raise UsageError(
                f"{where}: message {i} has role {role!r}; accepted roles: {', '.join(ROLES)}"
            )
        if not isinstance(content, str) or not content.strip():
            raise UsageError(
                f"{where}: message {i} ({role}) has content {content!r}; give non-empty text"
            )
        out.append((str(role), content))
    return tuple(out)


# -- the workload -----------------------------------------------------------------------


@dataclass(frozen=True)
class StreamWorkload(Workload):
    """One streamed request (see the module docstring). ``n_gen`` is ``max_tokens``;
    ``n_prompt`` stays 0 (the prompt's tokens are counted by the backend, which
    tokenizes it as the application's call does)."""

    label: str = ""
    #: a text prompt (create_completion) ...
    prompt: str = ""
    #: ... or chat messages, (role, content) pairs (create_chat_completion)
    messages: tuple[Message, ...] = ()
    #: create_completion's keyword arguments, frozen (see :func:`thaw_sampling`)
    sampling: tuple[tuple[str, Any], ...] = ()
    #: a Jinja chat template for the messages (else the model's, or a registered format)
    chat_template: str = ""
    #: a chat format llama-cpp-python registers ("gemma", "chatml", ...)
    chat_format: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        where = f"streamed request {self.label!r}"
        _check_label(self.label, "streamed request name")
        if self.n_gen < 1:
            raise UsageError(f"{where}: max_tokens={self.n_gen}: must be >= 1")
        if self.n_prompt or self.n_depth:
            raise UsageError(
                f"{where}: n_prompt and n_depth do not apply to a streamed request (its prompt "
                "is text, tokenized by the call); leave them at 0"
            )
        if self.prompt and self.messages:
            raise UsageError(f"{where}: give prompt= or messages=, not both")
        if self.messages:
            _messages(list(self.messages), where)
        elif self.prompt and not self.prompt.strip():
            raise UsageError(
                f"{where}: the prompt is only whitespace; give prompt='some text' or "
                "messages=[{'role': 'user', 'content': '...'}]"
            )
        if (self.chat_template or self.chat_format) and not self.messages:
            raise UsageError(
                f"{where}: chat_template / chat_format apply to messages=; a text prompt is "
                "sent as it is (format it yourself, or pass messages=)"
            )
        if self.chat_template and self.chat_format:
            raise UsageError(f"{where}: give chat_template= or chat_format=, not both")
        if not isinstance(self.sampling, tuple):
            raise UsageError(f"{where}: sampling must be frozen; build it with stream_workload()")
        _freeze(thaw_sampling(self.sampling), where)  # the shape check

    @property
    def kind(self) -> str:
        return "stream"

    @property
    def name(self) -> str:
        return _name(self.label, self.n_gen)

    @property
    def is_chat(self) -> bool:
        return bool(self.messages)

    @property
    def is_request(self) -> bool:
        """False for a request known by name only (see the module docstring)."""
        return bool(self.prompt or self.messages)

    @property
    def n_tokens(self) -> int:
        """KV cells known before tokenization: the generated ones (the backend adds the
        prompt's)."""
        return self.n_gen

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]

    def spec(self) -> dict[str, Any]:
        """What is sent, apart from the token count: JSON-friendly."""
        out: dict[str, Any] = {"label": self.label}
        if self.messages:
            out["messages"] = self.message_dicts()
        else:
            out["prompt"] = self.prompt
        if self.sampling:
            out["sampling"] = {
                k: (dict(v) if k in _MAPPING_KEYS else list(v) if isinstance(v, tuple) else v)
                for k, v in self.sampling
            }
        if self.chat_template:
            out["chat_template"] = self.chat_template
        if self.chat_format:
            out["chat_format"] = self.chat_format
        return out

    def digest(self) -> str:
        """sha256 of the request's content (prompt, template, sampling, tokens)."""
        blob = json.dumps({**self.spec(), "label": "", "n_gen": self.n_gen}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "stream": self.spec()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StreamWorkload:
        spec = data.get("stream")
        if not isinstance(spec, Mapping):
            raise UsageError(f"not a streamed workload: {dict(data)!r}")
        if not spec.get("prompt") and not spec.get("messages"):
            return cls(
                n_gen=int(data.get("n_gen", DEFAULT_MAX_TOKENS)),
                seed=int(data.get("seed", DEFAULT_SEED)),
                label=str(spec.get("label", "")),
            )
        return stream_workload(
            prompt=spec.get("prompt"),
            messages=spec.get("messages"),
            max_tokens=int(data.get("n_gen", DEFAULT_MAX_TOKENS)),
            sampling=spec.get("sampling"),
            name=str(spec.get("label", "")),
            chat_template=spec.get("chat_template"),
            chat_format=spec.get("chat_format"),
            seed=int(data.get("seed", DEFAULT_SEED)),
        )

    @classmethod
    def parse(cls, text: str | Workload) -> Workload:
        """A built-in prompt by name (``stream:short``, ``stream:chat-long+tg128``), or
        any other request by name only."""
        if isinstance(text, Workload):
            return text
        canonical = stream_name(text)
        m = _NAME_RE.match(canonical)
        assert m is not None
        label = m.group("label")
        n = int(m.group("n")) if m.group("n") else DEFAULT_MAX_TOKENS
        entry = BUILTIN_PROMPTS.get(label.lower())
        if entry is None:
            return cls(n_gen=n, label=label)
        return dataclasses.replace(entry, n_gen=n)


def require_request(wl: StreamWorkload) -> None:
    """Refuse a request known by name only (it has no prompt to send)."""
    if not wl.is_request:
        raise UsageError(
            f"streamed workload {wl.name}: no built-in prompt {wl.label!r} (built-in: "
            f"{', '.join('stream:' + k for k in BUILTIN_PROMPTS)}); for your own prompts call "
            "llm_perf.measure_stream(prompt=..., name=...), or load a prompt file with "
            "pytest_llmperf.model.streaming.load_prompts() and measure its entries"
        )


def stream_workload(
    prompt: str | None = None,
    *,
    messages: Any = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    sampling: Mapping[str, Any] | None = None,
    name: str | None = None,
    chat_template: str | None = None,
    chat_format: str | None = None,
    seed: int = DEFAULT_SEED,
) -> StreamWorkload:
    """A :class:`StreamWorkload` from loosely typed arguments, each checked: a non-empty
    ``prompt`` or well-formed ``messages``, ``max_tokens >= 1``, plain sampling values.
    Without ``name``, the label is ``text-<hash>`` / ``chat-<hash>`` of the request."""
    where = f"measure_stream({'name=' + repr(name) if name else ''})"
    if prompt is not None and not isinstance(prompt, str):
        raise UsageError(
            f"{where}: prompt must be text (a str), got {type(prompt).__name__}"
            + ("; chat messages go in messages=" if isinstance(prompt, list | tuple) else "")
        )
    if prompt is None and messages is None:
        raise UsageError(f"{where}: give prompt='some text' or messages=[{{'role': 'user', ...}}]")
    if prompt is not None and messages is not None:
        raise UsageError(f"{where}: give prompt= or messages=, not both")
    if prompt is not None and not prompt.strip():
        raise UsageError(
            f"{where}: the prompt is empty; give some text (an application never streams a "
            "completion of nothing)"
        )
    msgs = _messages(messages, where) if messages is not None else ()
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise UsageError(f"{where}: max_tokens={max_tokens!r}: must be an integer >= 1")
    for key, value in (("chat_template", chat_template), ("chat_format", chat_format)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise UsageError(f"{where}: {key}={value!r}: give a non-empty string")
    frozen = _freeze(sampling or {}, where)
    label = name
    if not label:
        probe = StreamWorkload(
            n_gen=max_tokens,
            label="x",
            prompt=prompt or "",
            messages=msgs,
            sampling=frozen,
            chat_template=chat_template or "",
            chat_format=chat_format or "",
            seed=seed,
        )
        label = f"{'chat' if msgs else 'text'}-{probe.digest()[:8]}"
    else:
        label = _check_label(name or "", f"{where} name")
    return StreamWorkload(
        n_gen=max_tokens,
        seed=seed,
        label=label,
        prompt=prompt or "",
        messages=msgs,
        sampling=frozen,
        chat_template=chat_template or "",
        chat_format=chat_format or "",
    )


# -- prompt sets ------------------------------------------------------------------------

_ENTRY_KEYS = frozenset(
    {"prompt", "messages", "max_tokens", "sampling", "chat_template", "chat_format"}
)


def _entry(name: str, raw: Any, where: str, max_tokens: int) -> StreamWorkload:
    if isinstance(raw, str):
        return stream_workload(raw, max_tokens=max_tokens, name=name)
    if isinstance(raw, list):
        return stream_workload(messages=raw, max_tokens=max_tokens, name=name)
    if isinstance(raw, Mapping):
        unknown = sorted(set(map(str, raw)) - _ENTRY_KEYS)
        if unknown:
            raise UsageError(
                f"{where}: prompt {name!r}: unknown key(s) {', '.join(unknown)}; accepted: "
                f"{', '.join(sorted(_ENTRY_KEYS))}"
            )
        try:
            return stream_workload(
                raw.get("prompt"),
                messages=raw.get("messages"),
                max_tokens=raw.get("max_tokens", max_tokens),
                sampling=raw.get("sampling"),
                name=name,
                chat_template=raw.get("chat_template"),
                chat_format=raw.get("chat_format"),
            )
        except UsageError as exc:
            raise UsageError(f"{where}: prompt {name!r}: {exc}") from None
    raise UsageError(
        f"{where}: prompt {name!r} is a {type(raw).__name__}; write a string, a list of "
        "messages or a mapping with prompt: / messages:"
    )


def load_prompts(
    path: str | Path, *, max_tokens: int = DEFAULT_MAX_TOKENS
) -> dict[str, StreamWorkload]:
    """A prompt set from a file, as streamed workloads by name (measure one with
    ``llm_perf.measure(prompts["long"])``).

    - ``.yaml`` / ``.yml`` / ``.json`` holding a mapping: named entries, each a string (a
      text prompt), a list of messages, or a mapping with ``prompt`` or ``messages`` and
      optionally ``max_tokens``, ``sampling``, ``chat_template``, ``chat_format``;
    - the same holding a list: entries named ``<file stem>-1``, ``-2``, ...;
    - any other file: one text prompt per non-empty line, named the same way.
    """
    p = Path(path)
    where = f"prompt file {p}"
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(
            f"{where} does not exist; check the path (relative to {Path.cwd()})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{where} cannot be read as UTF-8 text: {exc}") from None
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", p.stem).strip("-.") or "prompt"
    suffix = p.suffix.lower()
    data: Any
    if suffix in (".yaml", ".yml", ".json"):
        try:
            if suffix == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except ValueError as exc:  # JSONDecodeError
            raise UsageError(f"{where} is not valid JSON: {exc}") from None
        except Exception as exc:  # yaml.YAMLError
            raise UsageError(f"{where} is not valid YAML: {exc}") from None
    else:
        data = [line for line in text.splitlines() if line.strip()]
    if isinstance(data, list):
        items: list[tuple[str, Any]] = [(f"{stem}-{i}", e) for i, e in enumerate(data, 1)]
    elif isinstance(data, Mapping):
        items = [(str(k), v) for k, v in data.items()]
    else:
        raise UsageError(
            f"{where}: expected a mapping of named prompts or a list of prompts, got "
            f"{type(data).__name__}"
        )
    if not items:
        raise UsageError(f"{where} holds no prompts")
    out: dict[str, StreamWorkload] = {}
    for name, raw in items:
        if name in out:
            raise UsageError(f"{where}: prompt {name!r} twice")
        try:
            _check_label(name, f"{where}: prompt name")
        except UsageError as exc:
            raise UsageError(str(exc)) from None
        out[name] = _entry(name, raw, where, max_tokens)
    return out


# -- built-in prompts -------------------------------------------------------------------

SHORT_PROMPT = (
    "Write a short poem about a lighthouse keeper who counts the ships that pass at night."
)

LONG_DOCUMENT = """\
Incident review: delayed evening trains on the northern line

On Tuesday the 14th, the last six evening services on the northern line left between \
twelve and forty minutes late. The first report came from the signal box at Harrow \
Junction at 18:42, when the operator noticed that the points at the southern approach \
were not returning a locked indication. Trains were held at the two previous stations \
while a maintenance crew was called from the depot, which took twenty-five minutes to \
arrive because the access road was closed for resurfacing.

The crew found a worn bearing in the point motor and a loose cable clamp that had let \
water into the detection circuit. They replaced the clamp, dried the connector and \
restored the indication at 19:31. The bearing was not replaced that night, as the spare \
part was held at the central stores; a temporary speed restriction of twenty miles per \
hour was placed on the junction until the part could be fitted on Thursday morning.

Passengers were told about the delay through the station displays and the mobile \
application, but the announcements at the two smaller stations were not made, because \
the public address system there had been switched to a test mode during the afternoon \
and was never switched back. Several passengers missed their connecting buses at the \
terminus; the bus operator was not informed, so the last buses left on time.

The review found three points to act on. First, spare point motor parts should be kept \
at the depot as well as at the central stores. Second, the closure of access roads must \
be added to the maintenance planning calendar, so that response times can be adjusted \
in advance. Third, a check of the public address systems should be part of the evening \
handover, and the bus operator should be added to the list of partners who receive \
delay notices automatically.
"""

LONG_PROMPT = (
    LONG_DOCUMENT + "\nSummarize the review above in three sentences for the operations manager."
)

_SYSTEM = "You are a concise, helpful assistant."

#: the built-in prompts, by label: ``stream:short`` ... (text and chat variants)
BUILTIN_PROMPTS: dict[str, StreamWorkload] = {
    "short": StreamWorkload(n_gen=DEFAULT_MAX_TOKENS, label="short", prompt=SHORT_PROMPT),
    "long": StreamWorkload(n_gen=DEFAULT_MAX_TOKENS, label="long", prompt=LONG_PROMPT),
    "chat-short": StreamWorkload(
        n_gen=DEFAULT_MAX_TOKENS,
        label="chat-short",
        messages=(("system", _SYSTEM), ("user", SHORT_PROMPT)),
    ),
    "chat-long": StreamWorkload(
        n_gen=DEFAULT_MAX_TOKENS,
        label="chat-long",
        messages=(("system", _SYSTEM), ("user", LONG_PROMPT)),
    ),
}


__all__ = [
    "BUILTIN_PROMPTS",
    "DEFAULT_MAX_TOKENS",
    "StreamWorkload",
    "load_prompts",
    "require_request",
    "stream_name",
    "stream_workload",
    "thaw_sampling",
]
