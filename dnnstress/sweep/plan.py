"""What a sweep computes: its configurations, grouped into units that share a fit.

A *unit* is a list of configurations that share one fitted stressor (one PCA basis for
every k of DR-2, one random permutation for every k of a DR-1 repeat, ...) and are
computed in order.  Its ``stress(train_x, test_x, pending)`` generator fits the shared
state on the training features once, then yields a :class:`Stressed` for every
configuration whose key is in ``pending``.  Nothing is fitted until a unit is run, so a
resumed sweep pays nothing for finished units.

Each configuration also says how to map the baseline SVM's weights into its own feature
space (``warm_start``): a cheap, deterministic starting point for its solver (the same
weights for a quantizer, the kept columns for DR-1, the projection on the kept principal
directions for DR-2 and FC).  Measured on ReLU features it saves 10-45 % of the solver's
work; starting from a fixed anchor rather than from the previous configuration keeps
every row independent of the order, and of any interruption, of the sweep.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from dnnstress._array import array_namespace, astype_exact
from dnnstress.stress import (Identity, MantissaErasure, PCADrop, RandomDrop,
                              UniformQuantizer, dr_schedule, fc_schedule)
from dnnstress.stress.base import like
from dnnstress.sweep.grid import Grid
from dnnstress.sweep.store import row_key


@dataclasses.dataclass(frozen=True)
class Spec:
    """One configuration: the key columns of its result row, plus the DR-1 seed."""

    experiment: str
    kept_dims: int
    n_levels: int | None = None
    erased_bits: int | None = None
    repeat: int | None = None
    seed: int | None = None

    @property
    def key(self) -> tuple[str, ...]:
        return row_key(dataclasses.asdict(self))


@dataclasses.dataclass
class Stressed:
    """The stressed splits of one configuration and what the runner needs with them."""

    spec: Spec
    train_x: object
    test_x: object
    bits_per_vector: int
    warm_start: Callable[[object], object]  # baseline weights (L, d) -> (L, d')


@dataclasses.dataclass
class Unit:
    """Configurations computed together from one shared fit (see module docstring)."""

    specs: list[Spec]
    stress: Callable[[object, object, set], Iterator[Stressed]]


def plan(experiments, grid: Grid, n_features: int, n_train: int) -> list[Unit]:
    """The units of ``experiments`` on features of width ``n_features``, in run order.

    DR-2 and FC can only keep as many principal directions as the training set spans
    (at most ``n_train - 1`` when ``n_train < n_features``); larger counts are left out.
    """
    # PCADrop's covariance route (n_train >= n_features) yields every direction, its
    # Gram route at most n_train - 1.  A rank-deficient training set (duplicate rows)
    # can have fewer; PCADrop then refuses the larger counts with a clear error.
    max_directions = n_features if n_train >= n_features else n_train - 1
    pca = _SharedFit(PCADrop)  # DR-2 and FC project on the same principal directions
    builders = {"baseline": _baseline, "dr1": _dr1, "dr2": functools.partial(_dr2, shared_pca=pca),
                "q1": _q1, "q2": _q2, "fc": functools.partial(_fc, shared_pca=pca), "qb": _qb}
    units = []
    for name in experiments:
        units.extend(builders[name](grid, n_features, max_directions))
    return [unit for unit in units if unit.specs]


class _SharedFit:
    """A stressor fitted once per training set and shared by the units that need it.

    Calling it with the training features returns the fitted stressor, fitting it on the
    first call only (and again if handed other features).  Nothing is fitted until a unit
    that needs it runs, so a resumed sweep whose DR-2 and FC rows are done fits nothing.
    """

    def __init__(self, make_stressor):
        self._make_stressor = make_stressor
        self._train_x = self._fitted = None

    def __call__(self, train_x):
        if self._train_x is not train_x:
            self._fitted, self._train_x = self._make_stressor().fit(train_x), train_x
        return self._fitted


def _single(spec: Spec, make_stressor) -> Unit:
    def stress(train_x, test_x, pending):
        if spec.key in pending:
            stressor = make_stressor().fit(train_x)
            yield _apply(spec, stressor, train_x, test_x, _same_space)
    return Unit([spec], stress)


def _baseline(grid, n, max_directions):
    return [_single(Spec("baseline", n), Identity)]


def _dr_counts(grid, n):
    """Kept dims of the requested DR steps; for small n two steps can floor to the
    same count, which is one configuration (one row key), not two."""
    return list(dict.fromkeys(dr_schedule(n)[i - 1] for i in grid.dr_steps))


def _dr1(grid, n, max_directions):
    counts = _dr_counts(grid, n)
    units = []
    for repeat in range(grid.repeats):
        seed = grid.base_seed + repeat
        specs = [Spec("dr1", k, repeat=repeat, seed=seed) for k in counts]
        units.append(Unit(specs, _refit_free(specs, lambda x, s=seed: RandomDrop(1, s).fit(x),
                                             _kept_columns)))
    return units


def _dr2(grid, n, max_directions, shared_pca):
    counts = _within_directions("DR-2", _dr_counts(grid, n), max_directions)
    specs = [Spec("dr2", k) for k in counts]
    return [Unit(specs, _refit_free(specs, shared_pca, _principal_projection))]


def _within_directions(experiment: str, counts: list[int], max_directions: int) -> list[int]:
    """The kept-dims ``counts`` that the training set's principal directions can serve;
    the others are left out, with a warning (Table 3 then judges without them)."""
    left_out = [k for k in counts if k > max_directions]
    if left_out:
        warnings.warn(f"{experiment}: kept dims {left_out} left out: the training set spans "
                      f"only {max_directions} principal directions (fewer training samples "
                      f"than features)", UserWarning, stacklevel=2)
    return [k for k in counts if k <= max_directions]


def _refit_free(specs, fitted, warm_start_for):
    """A stress generator that fits once (``fitted(train_x)``), only if a spec is pending,
    and then only changes ``n_components`` per spec: DR-1 and DR-2 subspaces are nested
    (dnnstress.stress.reduce)."""
    def stress(train_x, test_x, pending):
        todo = [spec for spec in specs if spec.key in pending]
        if not todo:
            return
        stressor = fitted(train_x)
        for spec in todo:
            stressor.set_params(n_components=spec.kept_dims)
            yield _apply(spec, stressor, train_x, test_x, warm_start_for(stressor))
    return stress


def _quantizer_units(experiment, levels, n, per_dimension):
    return [_single(Spec(experiment, n, n_levels=h),
                    lambda h=h: UniformQuantizer(h, per_dimension=per_dimension))
            for h in levels]


def _q1(grid, n, max_directions):
    return _quantizer_units("q1", grid.levels, n, per_dimension=False)


def _q2(grid, n, max_directions):
    return _quantizer_units("q2", grid.levels, n, per_dimension=True)


def _qb(grid, n, max_directions):
    return [_single(Spec("qb", n, erased_bits=b), lambda b=b: MantissaErasure(b))
            for b in grid.erased_bits]


def _fc(grid, n, max_directions, shared_pca):
    """The PCA fit shared with DR-2 for the whole FC grid; Q-2 refitted on each projected
    training set."""
    counts = _within_directions("FC", list(dict.fromkeys(fc_schedule(n)[j - 1]
                                                        for j in grid.fc_steps)),
                                max_directions)
    specs = [Spec("fc", k, n_levels=h) for k in counts for h in grid.fc_levels]

    def stress(train_x, test_x, pending):
        todo = {k: [h for h in grid.fc_levels if Spec("fc", k, n_levels=h).key in pending]
                for k in counts}
        todo = {k: levels for k, levels in todo.items() if levels}
        if not todo:
            return
        pca = shared_pca(train_x)
        for k, levels in todo.items():
            pca.set_params(n_components=k)
            projected = pca.transform(train_x), pca.transform(test_x)
            warm_start = _principal_projection(pca)
            for h in levels:
                quantizer = UniformQuantizer(h, per_dimension=True).fit(projected[0])
                yield _apply(Spec("fc", k, n_levels=h), quantizer, *projected, warm_start)
    return [Unit(specs, stress)]


def _apply(spec, stressor, train_x, test_x, warm_start) -> Stressed:
    return Stressed(spec, _narrowest(stressor.transform(train_x), train_x.dtype),
                    _narrowest(stressor.transform(test_x), test_x.dtype),
                    int(stressor.bits_per_vector), warm_start)


def _narrowest(stressed, features_dtype):
    """``stressed`` in the features' own float type when that holds it exactly.

    Q-B erases bits of a float64 copy of float32 features; while its erasure stays in
    the mantissa (up to 52 bits), every value is still a float32, and the SVM then
    trains in float32 at about twice the speed, on exactly the same values.  Values that
    float32 cannot hold (erased exponent bits) keep float64.
    """
    target = np.promote_types(features_dtype, np.float32)  # the solver's narrowest type
    if stressed.dtype.itemsize <= target.itemsize:
        return stressed
    with np.errstate(over="ignore"):
        narrow = astype_exact(stressed, target)
    xp = array_namespace(stressed)
    return narrow if bool(xp.all(astype_exact(narrow, stressed.dtype) == stressed)) else stressed


def _same_space(coef):
    return coef


def _kept_columns(random_drop):
    indices = random_drop.indices_  # read now: the stressor's n_components moves on
    return lambda coef: coef[:, like(indices, coef)]


def _principal_projection(pca):
    basis = pca.components_[:pca.n_features_out_]
    # w . x = w . (V_k^T V_k x) on the kept subspace, so V_k w is the natural start.
    return lambda coef: coef @ like(basis, coef).T.astype(coef.dtype)
