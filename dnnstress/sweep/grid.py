"""The experiment grid of a sweep: which stress configurations to run.

Defaults reproduce the paper's grid (reference README): Q-1 and Q-2 over h = 1..30, DR-1
(10 seeded repeats) and DR-2 over the 20 steps of :func:`~dnnstress.stress.dr_schedule`,
FC over the 9 steps of :func:`~dnnstress.stress.fc_schedule` times h = 2..30, and the
authors' supplementary Q-B table (0, 5, ..., 50, then 51..64 erased bits of float64).

A ``Grid`` is the paper experiments' side of the registry (:mod:`dnnstress.sweep.experiments`):
:meth:`Grid.params` turns it into their parameter grids.  Kept-dims counts depend on the
features' width, so they are :class:`PerWidth` values, resolved when the sweep knows it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from dnnstress._array import check_count
from dnnstress.stress.accounting import dr_schedule, fc_schedule

EXPERIMENTS = ("baseline", "dr1", "dr2", "q1", "q2", "fc", "qb")
DR_STEPS = 20
FC_STEPS = 9
FLOAT64_BITS = 64


@dataclasses.dataclass(frozen=True)
class Grid:
    """Parameters swept by each experiment.

    Parameters
    ----------
    levels : tuple of int
        Quantization levels h of Q-1 and Q-2.
    fc_levels : tuple of int
        Levels h of FC (h = 1 is left out by default, as in the authors' table).
    dr_steps : tuple of int
        Steps i (1..20) of the DR schedule: step i keeps ``dr_schedule(n)[i - 1]`` dims.
    fc_steps : tuple of int
        Steps j (1..9) of the FC schedule: ``floor(n * j / 10)`` kept dims.
    erased_bits : tuple of int
        Q-B: numbers of low bits (0..64) zeroed in the float64 representation.
    repeats : int
        DR-1 repetitions; repeat r draws its dimensions with seed ``base_seed + r``.
    base_seed : int
        Seed of DR-1's first repeat.
    """

    levels: tuple[int, ...] = tuple(range(1, 31))
    fc_levels: tuple[int, ...] = tuple(range(2, 31))
    dr_steps: tuple[int, ...] = tuple(range(1, DR_STEPS + 1))
    fc_steps: tuple[int, ...] = tuple(range(1, FC_STEPS + 1))
    erased_bits: tuple[int, ...] = tuple(range(0, 50, 5)) + tuple(range(50, FLOAT64_BITS + 1))
    repeats: int = 10
    base_seed: int = 0

    def __post_init__(self):
        _check_values(self.levels, "levels", 1, 65536)
        _check_values(self.fc_levels, "fc_levels", 1, 65536)
        _check_values(self.dr_steps, "dr_steps", 1, DR_STEPS)
        _check_values(self.fc_steps, "fc_steps", 1, FC_STEPS)
        _check_values(self.erased_bits, "erased_bits", 0, FLOAT64_BITS)
        _check_values((self.repeats,), "repeats", 1, 10**6)
        _check_values((self.base_seed,), "base_seed", 0, 2**32 - 1 - self.repeats)

    def params(self) -> dict[str, dict]:
        """The parameter grid of each paper experiment (name -> values, or a
        :class:`PerWidth` for kept dims), in the order their rows are computed."""
        dr_counts = PerWidth(f"DR steps {values_text(self.dr_steps)} of dr_schedule(n)",
                             lambda n: [dr_schedule(n)[i - 1] for i in self.dr_steps])
        fc_counts = PerWidth(f"FC steps {values_text(self.fc_steps)} of fc_schedule(n)",
                             lambda n: [fc_schedule(n)[j - 1] for j in self.fc_steps])
        return {"baseline": {},
                "dr1": {"repeat": tuple(range(self.repeats)), "kept_dims": dr_counts},
                "dr2": {"kept_dims": dr_counts},
                "q1": {"n_levels": self.levels},
                "q2": {"n_levels": self.levels},
                "fc": {"kept_dims": fc_counts, "n_levels": self.fc_levels},
                "qb": {"erased_bits": self.erased_bits}}

    def as_dict(self) -> dict:
        """JSON-ready description (recorded in ``sweep.json``)."""
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class PerWidth:
    """Parameter values that depend on the features' width ``n`` (kept-dims schedules).

    ``values(n)`` gives them, duplicates removed in order (for small ``n`` two schedule
    steps can floor to the same count, which is one configuration, not two); ``text``
    says what they are in ``--list-experiments``.
    """

    text: str
    function: Callable[[int], list]

    def values(self, n_features: int) -> tuple:
        return tuple(dict.fromkeys(self.function(n_features)))

    def __str__(self) -> str:
        return self.text


def values_text(values) -> str:
    """Values as ``--param`` and ``--levels`` read them: runs of 3 or more consecutive
    integers as ranges.

    >>> values_text((0, 5, 10, 50, 51, 52, 53)), values_text(("zero", "mean"))
    ('0,5,10,50-53', 'zero,mean')
    """
    parts, run = [], []
    for value in (*values, None):
        if (run and isinstance(value, int) and not isinstance(value, bool)
                and value == run[-1] + 1):
            run.append(value)
            continue
        if run:
            parts.extend([f"{run[0]}-{run[-1]}"] if len(run) > 2 else map(str, run))
        run = [value] if isinstance(value, int) and not isinstance(value, bool) else []
        if value is not None and not run:
            parts.append(str(value))
    return ",".join(parts)


def parse_int_list(text: str) -> tuple[int, ...]:
    """Parse ``"2-8,16"`` into ``(2, 3, 4, 5, 6, 7, 8, 16)``: comma-separated values
    and inclusive ranges, sorted, duplicates removed.

    >>> parse_int_list("2-4,16,3")
    (2, 3, 4, 16)
    """
    values = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part.lstrip("-"):
                low, high = part.split("-", 1)
                low, high = int(low), int(high)
                if low > high:
                    raise ValueError
                values.update(range(low, high + 1))
            else:
                values.add(int(part))
        except ValueError:
            raise ValueError(f"cannot read {part!r} in {text!r}: expected integers and "
                             f"ranges such as 2-8,16") from None
    return tuple(sorted(values))


def _check_values(values, name: str, low: int, high: int) -> None:
    if not isinstance(values, tuple) or not values:
        raise ValueError(f"{name} must be a non-empty tuple of integers")
    for value in values:
        check_count(value, f"{name} values", low, high)
