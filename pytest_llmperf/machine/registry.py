"""The model registry and project settings: llmperf.yaml or [tool.llmperf] in pyproject.toml.

    models:
      tiny-moe-mxfp4: builtin                 # any built-in tiny variant is known anyway
      gpt-oss-20b: {path: models/gpt-oss-20b-mxfp4.gguf}   # relative to this file
      qwen3-30b: {env: QWEN3_30B_GGUF}        # a variable holding the path
      big-moe: {tiny: {n_layer: 24, n_expert: 32, n_ff: 512, quant: mxfp4}}
    profiles:
      cpu-tuned: {args: "-t 8 -b 256"}        # or fields: {n_threads: 8, n_batch: 256}
    thresholds: {tg_tps: "-10%", itl_p95_ms: "+15% or +0.5 ms"}
    limits: ["load_ms < 11000"]
    sla: ["itl_p95_ms[tg512] / itl_p95_ms[tg64] <= 1.30"]

YAML is read with ``yaml.safe_load`` only. Every error names the file and the key.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmperf.errors import ModelFileError, UsageError
from pytest_llmperf.fileio import read_yaml
from pytest_llmperf.machine import builds as builds_mod
from pytest_llmperf.machine import gguf_info, tiny
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.verdict.thresholds import RULE_KEYS, RuleSource, RuleTier

CONFIG_KEYS = ("models", "profiles", *RULE_KEYS, "sweeps", "builds", "launchers")


@dataclass(frozen=True)
class ModelSource:
    """Where a model id's file comes from."""

    model_id: str
    path: str | None = None
    env: str | None = None
    tiny_spec: tiny.TinySpec | None = None
    tiny_quant: str | None = None
    defined_in: str = "built-in"

    def resolve(self, cache_dir: str | None = None) -> tuple[str | None, str]:
        """(path, "") when the file is available, else (None, reason to skip)."""
        if self.tiny_spec is not None and self.tiny_quant is not None:
            family = self.model_id if self.defined_in != "built-in" else "tiny"
            if self.defined_in == "built-in":
                family = self.model_id.rsplit("-", 1)[0]
            info = tiny.ensure_model(self.tiny_spec, self.tiny_quant, cache_dir, family=family)
            return str(info.path), ""
        if self.env:
            value = os.environ.get(self.env)
            if not value:
                return None, (
                    f"model {self.model_id!r} ({self.defined_in}): set the environment "
                    f"variable {self.env} to the path of its .gguf file"
                )
            remote = gguf_info.not_a_local_path(value)
            if remote is not None:
                raise ModelFileError(f"model {self.model_id!r}: {self.env}={remote}")
            path = Path(value).expanduser()
            if not path.exists():
                return None, (
                    f"model {self.model_id!r}: {self.env}={value} does not exist; "
                    f"point {self.env} at the .gguf file"
                )
            self._regular(path, f"{self.env}={value}")
            return str(path), ""
        if self.path:
            if not Path(self.path).exists():
                return None, (
                    f"model {self.model_id!r} ({self.defined_in}): file {self.path} is "
                    "absent; download it there, or change its path"
                )
            self._regular(Path(self.path), self.path)
            return self.path, ""
        return None, f"model {self.model_id!r} has no path"  # pragma: no cover

    def _regular(self, path: Path, given: str) -> None:
        """A model path that exists but is no regular file (a directory, a FIFO, a device,
        a socket) is an error saying what it is, before anything opens it."""
        kind = gguf_info.not_a_regular_file(path)
        if kind is not None:
            raise ModelFileError(
                f"model {self.model_id!r} ({self.defined_in}): {given} is {kind}, not a "
                ".gguf file; check the path in your model registry (the model file itself)"
            )


@dataclass
class Registry:
    """What llmperf.yaml / [tool.llmperf] say, validated."""

    source: str = ""
    base_dir: Path = field(default_factory=Path.cwd)
    models: dict[str, ModelSource] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: gate rules written in the registry files (pyproject, then YAML)
    rule_sources: list[RuleSource] = field(default_factory=list)
    sweeps: dict[str, Any] = field(default_factory=dict)
    builds: dict[str, builds_mod.BuildSource] = field(default_factory=dict)
    launchers: dict[str, builds_mod.Launcher] = field(default_factory=dict)

    def build(self, name: str) -> builds_mod.BuildSource:
        """A build by name: the registry's, a cached ``llmperf build``, or ``default``."""
        if name == builds_mod.DEFAULT:
            return builds_mod.BuildSource(builds_mod.DEFAULT)
        if name in self.builds:
            return self.builds[name]
        cached = builds_mod.cached_builds().get(name)
        if cached is not None:
            return cached.source_entry()
        known = sorted({builds_mod.DEFAULT, *self.builds, *builds_mod.cached_builds()})
        raise UsageError(
            f"unknown build {name!r}; known: {', '.join(known)}. Add it under 'builds:' in "
            "llmperf.yaml ({lib: DIR}, {python: PATH} or {env: VAR}) or build it with "
            f"`llmperf build {name}`"
        )

    def launcher(self, name: str) -> builds_mod.Launcher | None:
        if not name:
            return None
        if name not in self.launchers:
            raise UsageError(
                f"unknown launcher {name!r}; known: {', '.join(sorted(self.launchers)) or '(none)'}"
                ". Add it under 'launchers:' in llmperf.yaml, e.g. pin: 'taskset -c 0-3'"
            )
        return self.launchers[name]

    def model(self, model_id: str) -> ModelSource:
        if model_id in self.models:
            return self.models[model_id]
        try:
            _family, spec, quant = tiny.parse_variant(model_id)
        except UsageError:
            known = sorted(set(self.models) | set(tiny.variant_names()))
            where = f" (registry: {self.source})" if self.source else ""
            raise UsageError(
                f"unknown model {model_id!r}{where}; known: {', '.join(known)}. Add it under "
                "'models:' in llmperf.yaml or [tool.llmperf.models] in pyproject.toml"
            ) from None
        name = model_id if model_id.startswith("tiny-") else "tiny-" + model_id
        return ModelSource(name, tiny_spec=spec, tiny_quant=quant)


def _err(source: str, key: str, msg: str) -> UsageError:
    return UsageError(f"{source}: {key}: {msg}")


def _parse_model(source: str, base: Path, model_id: str, value: Any) -> ModelSource:
    key = f"models.{model_id}"
    if value in ("builtin", "built-in", None):
        try:
            _f, spec, quant = tiny.parse_variant(model_id)
        except UsageError as exc:
            raise _err(source, key, f"'builtin' only names built-in tiny models ({exc})") from None
        return ModelSource(model_id, tiny_spec=spec, tiny_quant=quant, defined_in=source)
    if isinstance(value, str):
        value = {"path": value}
    if not isinstance(value, Mapping):
        raise _err(
            source,
            key,
            f"expected a path, {{path: ...}}, {{env: VAR}} or {{tiny: ...}}, "
            f"got {type(value).__name__}",
        )
    unknown = set(value) - {"path", "env", "tiny", "description"}
    if unknown:
        raise _err(
            source,
            key,
            f"unknown key(s) {', '.join(sorted(unknown))}; accepted: path, env, tiny, description",
        )
    kinds = [k for k in ("path", "env", "tiny") if k in value]
    if len(kinds) != 1:
        raise _err(source, key, "give exactly one of path, env or tiny")
    if "path" in value:
        if not isinstance(value["path"], str) or not value["path"].strip():
            raise _err(source, key + ".path", "must be a non-empty string (the .gguf file)")
        remote = gguf_info.not_a_local_path(value["path"])
        if remote is not None:
            raise _err(source, key + ".path", remote)
        p = Path(value["path"]).expanduser()
        if not p.is_absolute():
            p = base / p
        return ModelSource(model_id, path=str(p), defined_in=source)
    if "env" in value:
        if not isinstance(value["env"], str) or not value["env"]:
            raise _err(source, key + ".env", "must name an environment variable")
        return ModelSource(model_id, env=value["env"], defined_in=source)
    spec_in = value["tiny"]
    if isinstance(spec_in, str):
        try:
            _f, spec, quant = tiny.parse_variant(spec_in)
        except UsageError as exc:
            raise _err(source, key + ".tiny", str(exc)) from None
        return ModelSource(model_id, tiny_spec=spec, tiny_quant=quant, defined_in=source)
    if not isinstance(spec_in, Mapping):
        raise _err(source, key + ".tiny", "must be a variant name or a mapping of spec fields")
    fields = dict(spec_in)
    quant = str(fields.pop("quant", "f16"))
    if quant not in tiny.QUANTS:
        raise _err(source, key + ".tiny.quant", f"{quant!r}; accepted: {', '.join(tiny.QUANTS)}")
    base_spec = tiny.MOE if fields.pop("moe", fields.get("n_expert", 0)) else tiny.DENSE
    known = {f.name for f in dataclasses.fields(tiny.TinySpec)}
    bad = set(fields) - known
    if bad:
        raise _err(
            source,
            key + ".tiny",
            f"unknown field(s) {', '.join(sorted(bad))}; "
            f"accepted: quant, moe, {', '.join(sorted(known))}",
        )
    for k, v in fields.items():
        if not isinstance(v, int) or isinstance(v, bool):
            raise _err(source, f"{key}.tiny.{k}", f"{v!r} is not an integer")
    try:
        spec = dataclasses.replace(base_spec, **fields)
    except UsageError as exc:
        raise _err(source, key + ".tiny", str(exc)) from None
    return ModelSource(model_id, tiny_spec=spec, tiny_quant=quant, defined_in=source)


def _parse_profile(source: str, name: str, value: Any) -> dict[str, Any]:
    key = f"profiles.{name}"
    if isinstance(value, str):
        value = {"args": value}
    if not isinstance(value, Mapping):
        raise _err(source, key, "expected a mapping of load params or {args: '...'}")
    data = dict(value)
    args = data.pop("args", None)
    try:
        params = LoadParams().merged(args, **data) if args else LoadParams.from_dict(data)
    except UsageError as exc:
        raise _err(source, key, str(exc)) from None
    default = LoadParams().to_dict()
    return {k: v for k, v in params.to_dict().items() if v != default[k] or k in data}


def parse_registry(data: Any, source: str, base_dir: Path, tier: RuleTier = "yaml") -> Registry:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise UsageError(
            f"{source}: the top level must be a mapping with keys "
            f"{', '.join(CONFIG_KEYS)}, got {type(data).__name__}"
        )
    unknown = set(data) - set(CONFIG_KEYS) - {"settings"}
    if unknown:
        raise UsageError(
            f"{source}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
            f"accepted: {', '.join(CONFIG_KEYS)}"
        )
    cfg = Registry(source=source, base_dir=base_dir)
    models = data.get("models") or {}
    if not isinstance(models, Mapping):
        raise _err(source, "models", "must be a mapping of model id -> source")
    for mid, value in models.items():
        cfg.models[str(mid)] = _parse_model(source, base_dir, str(mid), value)
    profiles = data.get("profiles") or {}
    if not isinstance(profiles, Mapping):
        raise _err(source, "profiles", "must be a mapping of profile name -> load params")
    for name, value in profiles.items():
        cfg.profiles[str(name)] = _parse_profile(source, str(name), value)
    gates = {k: data[k] for k in RULE_KEYS if data.get(k) is not None}
    if gates:
        cfg.rule_sources.append(RuleSource(source, tier, gates))
    sweeps = data.get("sweeps") or {}
    if not isinstance(sweeps, Mapping):
        raise _err(source, "sweeps", "must be a mapping of sweep name -> definition")
    cfg.sweeps = dict(sweeps)
    for key, parse in (("builds", builds_mod.parse_build), ("launchers", None)):
        section = data.get(key) or {}
        if not isinstance(section, Mapping):
            raise _err(source, key, f"must be a mapping of name -> {key[:-1]}")
        for name, value in section.items():
            if parse is not None:
                cfg.builds[str(name)] = parse(str(name), value, source, base_dir)
            else:
                cfg.launchers[str(name)] = builds_mod.parse_launcher(str(name), value, source)
    return cfg


def load_pyproject(path: Path) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: TOML syntax error: {exc}") from None
    return data.get("tool", {}).get("llmperf")


def load_registry(rootdir: Path, explicit: str | None = None) -> Registry:
    """[tool.llmperf] in pyproject.toml, then llmperf.yaml (or ``explicit``) over it.

    Models, profiles and sweeps of the YAML file replace those of the same name in
    pyproject; both files' thresholds are kept as sources, YAML after pyproject.
    """
    configs: list[Registry] = []
    pyproject = rootdir / "pyproject.toml"
    if pyproject.is_file():
        data = load_pyproject(pyproject)
        if data is not None:
            configs.append(
                parse_registry(data, f"{pyproject} [tool.llmperf]", rootdir, tier="pyproject")
            )
    if explicit:
        path = Path(explicit)
        if not path.is_absolute():
            path = rootdir / path
        if not path.is_file():
            raise UsageError(f"--perf-config {explicit}: no such file ({path})")
        configs.append(parse_registry(read_yaml(path), str(path), path.parent))
    else:
        for name in ("llmperf.yaml", "llmperf.yml"):
            path = rootdir / name
            if path.is_file():
                configs.append(parse_registry(read_yaml(path), str(path), rootdir))
                break
    merged = Registry(source=" + ".join(c.source for c in configs), base_dir=rootdir)
    for c in configs:
        merged.models.update(c.models)
        merged.profiles.update(c.profiles)
        merged.sweeps.update(c.sweeps)
        merged.builds.update(c.builds)
        merged.launchers.update(c.launchers)
        merged.rule_sources.extend(c.rule_sources)
    return merged
