"""Workloads: what is timed, in llama-bench's terms, and streamed requests.

Pure: no llama.cpp import.

- :class:`Workload`: ``pp N`` (a prompt of N tokens), ``tg N`` (exactly N generated
  tokens), ``pg N,M``, any of them at a KV depth (``@dD``), or ``load`` (cold loads);
- :class:`StreamWorkload`: one request through llama-cpp-python's high-level API, as an
  application makes it (``stream:<label>``): a text ``prompt`` or chat ``messages``,
  exactly ``n_gen`` generated tokens, the application's sampling settings. It is a
  Workload, so everything keyed by workload names (baselines, SLAs, sweeps, reports)
  takes it as it is.

Stream names are ``stream:<label>``, and ``stream:<label>+tg<N>`` when N is not
:data:`DEFAULT_MAX_TOKENS`; a label never looks like an engine workload, so neither
parser can take one for the other. :meth:`Workload.parse` knows the built-in prompts
(:data:`BUILTIN_PROMPTS`); your own come from ``llm_perf.measure_stream(...)`` or a
prompt file (:func:`pytest_llmperf.model.prompts.load_prompts`). Any other stream name
parses to the request *by name only* (it stands for a request in a baseline, an SLA or a
sweep's key, and cannot run: :func:`require_request`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_llmperf.errors import UsageError

# -- workloads -------------------------------------------------------------------------

_WORKLOAD_RE = re.compile(
    r"""^\s*(?:
        pp(?P<pp>\d+)\s*(?:\+\s*tg(?P<pptg>\d+))? |
        tg(?P<tg>\d+) |
        pg(?P<pg_p>\d+)\s*,\s*(?P<pg_g>\d+)
    )\s*(?:@\s*d(?:epth)?\s*(?P<depth>\d+))?\s*$""",
    re.VERBOSE | re.IGNORECASE,
)


@dataclass(frozen=True)
class Workload:
    """What is timed, in llama-bench's terms.

    - ``pp N``: a prompt of N tokens (n_prompt=N, n_gen=0)
    - ``tg N``: exactly N generated tokens after a one-token (BOS) start (n_gen=N)
    - ``pg N,M``: a prompt of N tokens, then M generated tokens
    - ``@dD``: the KV cache is first filled to depth D (untimed)
    - ``load``: nothing but the model load is timed (cold load measurements)
    - ``stream:<name>``: a request streamed through llama-cpp-python's high-level API, as
      an application makes it (:class:`pytest_llmperf.model.workloads.StreamWorkload`)
    """

    n_prompt: int = 0
    n_gen: int = 0
    n_depth: int = 0
    seed: int = field(default=1234, compare=True)

    def __post_init__(self) -> None:
        for name in ("n_prompt", "n_gen", "n_depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UsageError(f"workload {name}={value!r}: must be an integer >= 0")
        if self.n_prompt == 0 and self.n_gen == 0 and self.n_depth:
            raise UsageError("workload: a depth needs n_prompt > 0 (pp) or n_gen > 0 (tg)")

    @property
    def kind(self) -> str:
        """pp, tg, pg, or load (nothing timed but the model load itself)."""
        if not self.n_prompt and not self.n_gen:
            return "load"
        if self.n_prompt and self.n_gen:
            return "pg"
        return "pp" if self.n_prompt else "tg"

    @property
    def name(self) -> str:
        if self.kind == "load":
            return "load"
        if self.kind == "pg":
            base = f"pp{self.n_prompt}+tg{self.n_gen}"
        elif self.kind == "pp":
            base = f"pp{self.n_prompt}"
        else:
            base = f"tg{self.n_gen}"
        return f"{base}@d{self.n_depth}" if self.n_depth else base

    @property
    def n_tokens(self) -> int:
        """KV cells the workload needs: depth + prompt + generated (+1 start token for tg)."""
        start = 0 if self.n_prompt else 1
        return self.n_depth + self.n_prompt + self.n_gen + start

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_prompt": self.n_prompt,
            "n_gen": self.n_gen,
            "n_depth": self.n_depth,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Workload:
        if "stream" in data:  # a streamed request (its own fields)
            return StreamWorkload.from_dict(data)
        return cls(
            n_prompt=int(data.get("n_prompt", 0)),
            n_gen=int(data.get("n_gen", 0)),
            n_depth=int(data.get("n_depth", 0)),
            seed=int(data.get("seed", 1234)),
        )

    @classmethod
    def parse(cls, text: str | Workload) -> Workload:
        """``"pp512"``, ``"tg128"``, ``"pg512,128"`` (= ``"pp512+tg128"``), ``"tg128@d4096"``."""
        if isinstance(text, Workload):
            return text
        if str(text).strip().lower() == "load":
            return LOAD
        if re.match(r"\s*stream\s*:", str(text), re.IGNORECASE):
            return StreamWorkload.parse(str(text))
        m = _WORKLOAD_RE.match(str(text))
        if not m:
            raise UsageError(
                f"workload {text!r} not understood; write pp<N>, tg<N>, pg<N>,<M> or "
                "pp<N>+tg<M>, optionally followed by @d<depth> (e.g. 'tg128@d4096'), or "
                "stream:<prompt> for a streamed request (e.g. 'stream:short')"
            )
        depth = int(m.group("depth") or 0)
        if m.group("pp") is not None:
            wl = cls(int(m.group("pp")), int(m.group("pptg") or 0), depth)
        elif m.group("tg") is not None:
            wl = cls(0, int(m.group("tg")), depth)
        else:
            wl = cls(int(m.group("pg_p")), int(m.group("pg_g")), depth)
        if wl.kind == "load":
            raise UsageError(
                f"workload {text!r} measures nothing (no prompt and no generated tokens); "
                "write pp<N> or tg<N> with N >= 1, or use 'load' (llm_perf.measure_load()) "
                "to time model loads"
            )
        return wl


def pp(n: int, depth: int = 0) -> Workload:
    return Workload(n_prompt=n, n_depth=depth)


def tg(n: int, depth: int = 0) -> Workload:
    return Workload(n_gen=n, n_depth=depth)


def pg(n_prompt: int, n_gen: int, depth: int = 0) -> Workload:
    return Workload(n_prompt=n_prompt, n_gen=n_gen, n_depth=depth)


#: the pseudo-workload of cold-load measurements
LOAD = Workload()


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


def check_label(label: str, where: str) -> str:
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
    label = check_label(m.group("label"), "streamed workload")
    n = int(m.group("n")) if m.group("n") else DEFAULT_MAX_TOKENS
    return _name(label, n)


def _name(label: str, n_gen: int) -> str:
    return f"stream:{label}" if n_gen == DEFAULT_MAX_TOKENS else f"stream:{label}+tg{n_gen}"


# -- sampling settings ------------------------------------------------------------------

#: parameters whose value is a mapping or a list in llama-cpp-python's API
_MAPPING_KEYS = frozenset({"logit_bias"})
_SCALARS = (bool, int, float, str, type(None))


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int)


def _unit(value: Any) -> bool:
    return _number(value) and 0 <= value <= 1


def _positive(value: Any) -> bool:
    return _number(value) and value > 0


#: the type and range of each sampling parameter of create_completion that takes one,
#: checked before the model sees it: (accepts?, what it takes)
SAMPLING_VALUES: dict[str, tuple[Any, str]] = {
    "temperature": (lambda v: _number(v) and v >= 0, "a number >= 0 (0: greedy)"),
    "top_p": (_unit, "a number from 0 to 1"),
    "min_p": (_unit, "a number from 0 to 1"),
    "typical_p": (_unit, "a number from 0 to 1 (1: off)"),
    "top_k": (lambda v: _integer(v) and v >= -1, "an integer (0 or -1: no limit)"),
    "repeat_penalty": (_positive, "a number > 0 (1: none)"),
    "frequency_penalty": (_number, "a number (0: none)"),
    "presence_penalty": (_number, "a number (0: none)"),
    "seed": (lambda v: _integer(v) and -1 <= v < 1 << 32, "an integer 0..4294967295 (-1: random)"),
    "tfs_z": (_positive, "a number > 0 (1: off)"),
    "mirostat_mode": (lambda v: _integer(v) and v in (0, 1, 2), "0, 1 or 2"),
    "mirostat_tau": (_positive, "a number > 0"),
    "mirostat_eta": (_positive, "a number > 0"),
    "stop": (
        lambda v: (
            isinstance(v, str)
            or (isinstance(v, list | tuple) and all(isinstance(x, str) for x in v))
        ),
        "a string or a list of strings",
    ),
}


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
        accepts, takes = SAMPLING_VALUES.get(key, (None, ""))
        if accepts is not None and not accepts(value):
            raise UsageError(f"{where}: sampling {key}={value!r}: write {takes}")
        if isinstance(value, Mapping):
            if key not in _MAPPING_KEYS:
                raise UsageError(f"{where}: sampling {key}={value!r}: expected a single value")
            ok = all(
                _integer(k) or (isinstance(k, str) and k.lstrip("-").isdigit()) for k in value
            ) and all(
                not isinstance(v, bool) and isinstance(v, int | float) and not math.isnan(v)
                for v in value.values()
            )
            if not ok:
                raise UsageError(
                    f"{where}: sampling {key}={value!r}: write token id -> bias (a number, "
                    "-inf bans the token), e.g. {13: -5.0}"
                )
            pairs = tuple(sorted((str(int(k)), float(v)) for k, v in value.items()))
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
        check_label(self.label, "streamed request name")
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
            "pytest_llmperf.load_prompts() and measure its entries"
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
        label = check_label(name or "", f"{where} name")
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
