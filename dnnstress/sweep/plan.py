"""What a sweep computes: its configurations, grouped into units that share a fit.

A *unit* is a list of configurations that share one fitted first stage (one PCA basis
for every k of DR-2, FC and PCA + PQ; one random permutation for every k of a DR-1
repeat; one rotation for every level of a rotated quantizer), or a single configuration
that shares nothing.  Its ``stress(train_x, test_x, pending)`` generator fits the shared
stage on the training features once, then yields a :class:`Stressed` for every
configuration whose key is in ``pending``, in order.  Nothing is fitted until a unit is
run, so a resumed sweep pays nothing for finished units.  Units hold only declarations
(no open files, locks or fitted state): they can be pickled (cloudpickle) and run in
another process.

Each configuration also says how to map the baseline SVM's weights into its own feature
space (``warm_start``, declared by its :class:`~dnnstress.sweep.experiments.Experiment`):
a cheap, deterministic starting point for its solver (the same weights for a quantizer,
the kept columns for DR-1, the projection on the kept principal directions for DR-2 and
FC).  Measured on ReLU features it saves 10-45 % of the solver's work; starting from a
fixed anchor rather than from the previous configuration keeps every row independent of
the order, and of any interruption, of the sweep.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from dnnstress._array import array_namespace, astype_exact
from dnnstress.stress.entropy import code_entropy
from dnnstress.sweep.experiments import (Context, Experiment, SharedFit, canonical_params,
                                         keep_weights, param_grids, resolve)
from dnnstress.sweep.grid import Grid


@dataclasses.dataclass(frozen=True)
class Spec:
    """One configuration: its experiment's name and its parameters (JSON scalars)."""

    experiment: str
    params: dict

    @property
    def key(self) -> tuple[str, str]:
        """The identity of its result row (:func:`dnnstress.sweep.store.row_key`)."""
        return self.experiment, canonical_params(self.params)


@dataclasses.dataclass
class Stressed:
    """The stressed splits of one configuration and what the runner needs with them."""

    spec: Spec
    train_x: object
    test_x: object
    bits_per_vector: int
    warm_start: Callable[[object], object] | None  # baseline weights (L, d) -> (L, d')
    # The test split's storage (:func:`_storage`): the entropy of its codes, summed over
    # dimensions (None for a stressor without codes), and the bytes of one packed row.
    entropy_bits_per_vector: float | None = None
    packed_bytes_per_vector: int | None = None


@dataclasses.dataclass
class Unit:
    """Configurations computed together from one shared fit (see module docstring)."""

    specs: list[Spec]
    experiments: dict[str, Experiment]  # those of the specs, by name
    shared: SharedFit | None = None

    def stress(self, train_x, test_x, pending) -> Iterator[Stressed]:
        """Fit the shared stage (if any configuration is pending) as its ``cover`` of
        the pending configurations asks, then stress each of them in order."""
        todo = [spec for spec in self.specs if spec.key in pending]
        if not todo:
            return
        inputs, stage_start, stage = (train_x, test_x), None, None
        if self.shared is not None:
            stage = self.shared.make()
            cover = self.shared.cover([self.shared.vary(spec.params) for spec in todo])
            if cover:
                stage.set_params(**cover)
            stage.fit(train_x)
        setting = None
        for spec in todo:
            experiment = self.experiments[spec.experiment]
            if stage is not None and self.shared.vary(spec.params) != setting:
                setting = self.shared.vary(spec.params)
                stage.set_params(**setting)
                inputs = stage.transform(train_x), stage.transform(test_x)
                stage_start = self.shared.warm_start(stage)
            if experiment.make is None:
                stressed = Stressed(spec, _narrowest(inputs[0], train_x.dtype),
                                    _narrowest(inputs[1], test_x.dtype),
                                    int(stage.bits_per_vector), stage_start,
                                    *_storage(stage, inputs[1], int(stage.bits_per_vector)))
            else:
                stressor = experiment.make(**spec.params).fit(inputs[0])
                stressed = _apply(spec, stressor, *inputs, None)
                start = _warm_start(experiment, stressor, inputs[0].shape[1],
                                    stressed.train_x.shape[1])
                stressed.warm_start = start if stage is None else _then(stage_start, start)
            _check_bits(experiment, spec, stressed.bits_per_vector, train_x.shape[1])
            yield stressed


def plan(experiments, grid: Grid | None, n_features: int, n_train: int, *,
         params=None, base_seed: int | None = None) -> list[Unit]:
    """The units of ``experiments`` on features of width ``n_features``, in run order.

    ``experiments``: names or :class:`~dnnstress.sweep.experiments.Experiment` objects
    (the baseline is added first); ``grid`` the paper experiments' grid, ``params`` the
    overrides of :func:`~dnnstress.sweep.experiments.param_grids`.  Configurations the
    features cannot serve (DR-2 and FC beyond the principal directions that the training
    set spans, at most ``n_train - 1`` when ``n_train < n_features``) are left out with
    a warning.  Units sharing a fit keep the place of their first configuration.
    """
    grid = Grid() if grid is None else grid
    chosen = resolve(experiments)
    grids = param_grids(chosen, grid, params)
    context = Context(n_features, n_train,
                      grid.base_seed if base_seed is None else base_seed)
    units, shared_units = [], {}
    for experiment in chosen:
        for params in _feasible(experiment, grids[experiment.name], context):
            spec = Spec(experiment.name, params)
            shared = None if experiment.shared is None else experiment.shared(params)
            if shared is not None and shared.key in shared_units:
                unit = shared_units[shared.key]
            else:
                unit = Unit([], {}, shared)
                units.append(unit)
                if shared is not None:
                    shared_units[shared.key] = unit
            unit.specs.append(spec)
            unit.experiments[experiment.name] = experiment
    return units


def _feasible(experiment: Experiment, grid: dict, context: Context) -> list[dict]:
    """The configurations of ``grid`` that ``experiment.check`` accepts; the others are
    left out, with one warning per parameter and reason (Table 3 then judges without
    them)."""
    configurations = experiment.configurations(grid, context)
    if experiment.check is None:
        return configurations
    kept, left_out = [], {}
    for params in configurations:
        problem = experiment.check(params, context)
        if problem is None:
            kept.append(params)
        else:
            values = left_out.setdefault(problem, [])
            if params[problem[0]] not in values:
                values.append(params[problem[0]])
    for (param, reason), values in left_out.items():
        warnings.warn(f"{experiment.label}: {param.replace('_', ' ')} {values} left out: "
                      f"{reason}", UserWarning, stacklevel=3)
    return kept


def _warm_start(experiment: Experiment, stressor, width_in: int, width_out: int):
    """The experiment's own map of the weights, or by default the same weights where
    the stressor keeps the width and a cold start where it does not."""
    if experiment.warm_start is not None:
        return experiment.warm_start(stressor)
    return keep_weights if width_out == width_in else None


def _then(first, second):
    """The warm start of a stage then a stressor: both maps, in order (None: cold)."""
    if first is None or second is None:
        return None
    if second is keep_weights:
        return first
    return lambda coef: second(first(coef))


def _check_bits(experiment: Experiment, spec: Spec, bits: int, n_features: int) -> None:
    """A stressor whose storage disagrees with its experiment's declared accounting is a
    bug of the declaration: its rows would be refused on the next read."""
    if experiment.bits is not None and experiment.bits(spec.params, n_features) != bits:
        raise RuntimeError(f"experiment {spec.experiment} {canonical_params(spec.params)}: "
                           f"its stressor stores {bits} bits per vector, its declared "
                           f"accounting {experiment.bits(spec.params, n_features)}")


def _apply(spec, stressor, train_x, test_x, warm_start) -> Stressed:
    bits = int(stressor.bits_per_vector)
    return Stressed(spec, _narrowest(stressor.transform(train_x), train_x.dtype),
                    _narrowest(stressor.transform(test_x), test_x.dtype),
                    bits, warm_start, *_storage(stressor, test_x, bits))


def _storage(stressor, test_x, bits: int) -> tuple[float | None, int]:
    """The empirical entropy of the test split's codes, summed over dimensions (what
    an ideal per-dimension lossless coder stores; None for a stressor without
    ``encode``), and the bytes of one row as ``pack`` writes it (``ceil(bits / 8)``
    for a stressor without ``pack``)."""
    entropy = (float(code_entropy(stressor.encode(test_x)).sum())
               if hasattr(stressor, "encode") else None)
    packed = (int(stressor.pack(test_x[:1]).shape[1]) if hasattr(stressor, "pack")
              else math.ceil(bits / 8))
    return entropy, packed


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
