"""Selection strategies: which combinations of axis indices a sweep measures.

Every strategy is one row of :data:`STRATEGY_TABLE`: its name, aliases, the rule shown in
plans, help and error messages, and the function that picks indices, either along each
axis (``per_axis``: the grid is the product of what each axis keeps) or as whole
combinations (``combos``, such as the Latin hypercube). **To add a strategy, write its
function and add one row to the table**; nothing else lists strategies
(``tests/unit/test_sweep.py`` checks that docs/SWEEPS.md's table names every row).
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmperf.errors import UsageError
from pytest_llmperf.sweep.context import Where, check_keys, int_value


@dataclass(frozen=True)
class AxisSlot:
    """What a per-axis strategy knows about one axis: its ``n`` values (indices 0..n-1),
    the index of its declared ``default``, the sampling's ``k``, and whether it is the
    ``widest`` axis of the grid (the first widest on ties)."""

    n: int
    default: int | None = None
    k: int = 2
    widest: bool = False

    @property
    def last(self) -> int:
        return self.n - 1


PerAxis = Callable[[AxisSlot], Iterable[int]]
Combos = Callable[[Sequence[int], "Selection"], list[tuple[int, ...]]]


@dataclass(frozen=True)
class Strategy:
    """One selection strategy. Exactly one of ``per_axis`` and ``combos`` is set."""

    name: str
    rule: str
    aliases: tuple[str, ...] = ()
    per_axis: PerAxis | None = None
    combos: Combos | None = None
    #: the Selection fields it reads, shown after the rule: ("k",), ("size", "seed")
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.per_axis is None) == (self.combos is None):
            raise TypeError(f"strategy {self.name}: give per_axis or combos, not both")

    def select(
        self, lengths: Sequence[int], selection: Selection, defaults: Sequence[int | None]
    ) -> list[tuple[int, ...]]:
        """The combinations kept, in grid order."""
        if self.combos is not None:
            return self.combos(lengths, selection)
        assert self.per_axis is not None
        widest = max(range(len(lengths)), key=lambda i: lengths[i]) if lengths else -1
        per_axis = [
            sorted(set(self.per_axis(AxisSlot(n, defaults[i], selection.k, i == widest))))
            for i, n in enumerate(lengths)
        ]
        return list(itertools.product(*per_axis))


# -- the per-axis rules ------------------------------------------------------------------


def _full(a: AxisSlot) -> Iterable[int]:
    return range(a.n)


def _stratified(a: AxisSlot) -> Iterable[int]:
    return {0, a.last // 2, a.last}


def _boundary(a: AxisSlot) -> Iterable[int]:
    if not a.widest:
        return _stratified(a)
    return {0, a.last // 4, a.last // 2, (3 * a.last) // 4, a.last}


def _balanced(a: AxisSlot) -> Iterable[int]:
    m = min(a.n, max(3, min(5, math.ceil(a.n / 2))))
    chosen = {0} if m == 1 else {i * a.last // (m - 1) for i in range(m)}
    if a.default is not None and not any(abs(a.default - c) <= 1 for c in chosen):
        chosen.add(a.default)
    return chosen


def _custom_sparse(a: AxisSlot) -> Iterable[int]:
    return {0, a.last} | set(range(0, a.last - a.k + 1, a.k))


# -- Latin hypercube -------------------------------------------------------------------------


def _lhs_sampler(d: int, seed: int) -> Any:
    import numpy as np
    from scipy.stats import qmc

    rng = np.random.default_rng(seed)
    params = inspect.signature(qmc.LatinHypercube).parameters
    if "rng" in params:  # scipy >= 1.15
        return qmc.LatinHypercube(d=d, rng=rng)
    return qmc.LatinHypercube(d=d, seed=rng)  # pragma: no cover - older scipy


def _lhs_batch(sampler: Any, lengths: Sequence[int], size: int) -> list[tuple[int, ...]]:
    """One LHS batch mapped to axis indices by stratum: the sample in stratum j (of
    ``size``) gets index j*n//size, so with size >= n every index of the axis appears."""
    import numpy as np

    unit = sampler.random(size)
    cols: list[list[int]] = []
    for j, n in enumerate(lengths):
        order = np.argsort(unit[:, j], kind="stable")
        stratum = np.empty(size, dtype=np.int64)
        stratum[order] = np.arange(size)
        cols.append([int(s) * n // size for s in stratum])
    return [tuple(col[r] for col in cols) for r in range(size)]


def lhs_default_size(lengths: Sequence[int]) -> int:
    """max(largest axis, a quarter of the grid, rounded up), at most the grid."""
    grid = math.prod(lengths)
    return min(grid, max(max(lengths, default=1), math.ceil(grid / 4)))


def _lhs(lengths: Sequence[int], selection: Selection) -> list[tuple[int, ...]]:
    if not lengths:
        return [()]
    grid = math.prod(lengths)
    size = min(selection.size or lhs_default_size(lengths), grid)
    if size == grid:
        return list(itertools.product(*(range(n) for n in lengths)))
    sampler = _lhs_sampler(len(lengths), selection.seed)
    seen: dict[tuple[int, ...], None] = dict.fromkeys(_lhs_batch(sampler, lengths, size))
    # duplicates: fill up to the requested size from further batches of the same sampler
    for _ in range(50):
        if len(seen) >= size:
            break
        for combo in _lhs_batch(sampler, lengths, size):
            if len(seen) >= size:
                break
            seen.setdefault(combo, None)
    if len(seen) < size:  # pragma: no cover - nearly exhausted small grids
        import numpy as np

        for flat in np.random.default_rng(selection.seed).permutation(grid):
            combo = tuple(int(x) for x in np.unravel_index(int(flat), tuple(lengths)))
            seen.setdefault(combo, None)
            if len(seen) >= size:
                break
    return sorted(seen)


# -- the registry ----------------------------------------------------------------------------

#: every selection strategy, in the order help and docs list them
STRATEGY_TABLE: tuple[Strategy, ...] = (
    Strategy("full", "every combination", ("grid",), per_axis=_full),
    Strategy(
        "stratified",
        "min, middle, max of each axis (indices 0, (n-1)//2, n-1)",
        per_axis=_stratified,
    ),
    Strategy(
        "boundary",
        "min, 1/4, middle, 3/4, max of the widest axis (indices 0, (n-1)//4, (n-1)//2, "
        "3(n-1)//4, n-1), min/middle/max of the others",
        per_axis=_boundary,
    ),
    Strategy(
        "balanced",
        "m = ceil(n/2) values of each axis (at least 3, at most 5) spread evenly "
        "(index i*(n-1)//(m-1)), plus the declared default unless a chosen value is next to it",
        per_axis=_balanced,
    ),
    Strategy(
        "custom_sparse",
        "every k-th value from the first, then the last (a gap before it is >= k)",
        ("sparse",),
        per_axis=_custom_sparse,
        options=("k",),
    ),
    Strategy(
        "lhs",
        "Latin hypercube sample (scipy.stats.qmc) of the axis indices, seeded",
        ("latin_hypercube",),
        combos=_lhs,
        options=("size", "seed"),
    ),
)

#: name -> rule, for plans and docs
STRATEGIES: dict[str, str] = {s.name: s.rule for s in STRATEGY_TABLE}
_BY_NAME: dict[str, Strategy] = {alias: s for s in STRATEGY_TABLE for alias in (s.name, *s.aliases)}


def strategy_names() -> str:
    """``full, stratified, ... or lhs``: for option help."""
    names = list(STRATEGIES)
    return f"{', '.join(names[:-1])} or {names[-1]}"


def find_strategy(text: Any, where: Where) -> Strategy:
    """The strategy named ``text`` (a name or an alias, any case, ``-`` for ``_``)."""
    key = str(text).strip().lower().replace("-", "_")
    if key not in _BY_NAME:
        raise where.error(f"unknown selection strategy {text!r}; accepted: {', '.join(STRATEGIES)}")
    return _BY_NAME[key]


@dataclass(frozen=True)
class Selection:
    """How to pick points from the grid: ``strategy``, and ``size``/``seed`` (lhs) or ``k``
    (custom_sparse). ``size`` of ``None`` means max(largest axis, a quarter of the grid)."""

    strategy: str = "full"
    size: int | None = None
    seed: int = 42
    k: int = 2

    def __post_init__(self) -> None:
        where = Where("sampling")
        object.__setattr__(self, "strategy", find_strategy(self.strategy, where).name)
        if self.size is not None:
            int_value(self.size, where.key("size"), 1)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise where.key("seed").error(f"{self.seed!r} is not an integer >= 0")
        int_value(self.k, where.key("k"), 1)

    @property
    def spec(self) -> Strategy:
        return _BY_NAME[self.strategy]

    @classmethod
    def parse(cls, raw: Any, *, source: str = "<python>", where: Where | None = None) -> Selection:
        """A selection from its YAML form: a strategy name or ``{strategy, size, seed, k}``."""
        at = where or Where(source, "sampling")
        if raw is None:
            return cls()
        if isinstance(raw, Selection):
            return raw
        if isinstance(raw, str):
            return cls(find_strategy(raw, at).name)
        if not isinstance(raw, Mapping):
            raise at.error("write a strategy name or {strategy: lhs, size: 60, seed: 42}")
        check_keys(raw, ("strategy", "size", "seed", "k"), at, "sampling")
        strategy = find_strategy(raw.get("strategy", "full"), at.key("strategy")).name
        size = raw.get("size")
        if size is not None:
            size = int_value(size, at.key("size"), 1)
        seed = int_value(raw.get("seed", 42), at.key("seed"), 0)
        k = int_value(raw.get("k", 2), at.key("k"), 1)
        return cls(strategy, size, seed, k)

    def override(
        self,
        strategy: Selection | str | None = None,
        size: int | None = None,
        seed: int | None = None,
        k: int | None = None,
        *,
        where: Where | None = None,
    ) -> Selection:
        """This selection with what is given replaced (a strategy name keeps these
        size, seed and k; a Selection replaces them)."""
        if isinstance(strategy, Selection):
            s = strategy
        elif strategy is None:
            s = self
        else:
            name = find_strategy(strategy, where or Where("sampling")).name
            s = Selection(name, self.size, self.seed, self.k)
        return Selection(
            s.strategy,
            s.size if size is None else size,
            s.seed if seed is None else seed,
            s.k if k is None else k,
        )

    def describe(self) -> str:
        spec = self.spec
        text = f"{spec.name}: {spec.rule}"
        if spec.options:
            values = ", ".join(
                f"{name}={'auto' if getattr(self, name) is None else getattr(self, name)}"
                for name in spec.options
            )
            text += f" ({values})"
        return text


def axis_indices(
    strategy: str, n: int, *, default: int | None = None, k: int = 2, widest: bool = False
) -> list[int]:
    """The indices one axis of ``n`` values keeps under a per-axis ``strategy``.

    For the seed example (6, 8 and 5 values): stratified keeps 3/3/3, boundary 3/5/3
    (top_k is the widest), balanced and custom_sparse (k=2) 3/4/3.
    """
    if n < 1:
        raise UsageError("an axis needs at least one value")
    spec = find_strategy(strategy, Where("sampling"))
    if spec.per_axis is None:
        raise UsageError(
            f"{spec.name} samples whole combinations, not single axes: use select_indices()"
        )
    return sorted(set(spec.per_axis(AxisSlot(n, default, k, widest))))


def select_indices(
    lengths: Sequence[int],
    selection: Selection | str = "full",
    *,
    defaults: Sequence[int | None] | None = None,
) -> list[tuple[int, ...]]:
    """The combinations (one index per axis) a strategy keeps, in grid order."""
    s = selection if isinstance(selection, Selection) else Selection(selection)
    dflt = list(defaults) if defaults is not None else [None] * len(lengths)
    return s.spec.select(lengths, s, dflt)
