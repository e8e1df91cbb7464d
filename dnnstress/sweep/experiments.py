"""The experiment registry: every experiment a sweep can run, as a small declared object.

An :class:`Experiment` says what it is (``name``, ``description``), what it sweeps
(``params``: parameter name -> default values), how to build the stressor of one
configuration (``make``), and, where configurations can share work, the first stage they
share (``shared``: DR-2, FC and PCA + PQ project on ONE principal basis; every kept-dims
count of a DR-1 repeat uses one permutation; every level of a rotated quantizer one
rotation).  It also says how the baseline SVM's weights map into its feature space
(``warm_start``, see :mod:`dnnstress.sweep.plan`) and, where it can, how many bits a
configuration stores (``bits``), which the results store checks every row against.

The paper's seven experiments (``baseline dr1 dr2 q1 q2 fc qb``) are entries like any
other, with their results unchanged; the modern ones (binary, rotated, float formats,
product quantization) follow.  :func:`register_experiment` adds a caller's own::

    register_experiment(Experiment(
        "mine", "my stressor", params={"n_bits": (1, 2, 4)},
        make=lambda n_bits: MyStressor(n_bits)))      # any transformer with bits_per_vector

A configuration is a dict of JSON scalars (its parameters); its canonical JSON (sorted
keys, compact) identifies it in ``results.csv`` (:func:`canonical_params`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import math
import numbers
import re
from collections.abc import Callable, Mapping

from dnnstress.stress import (BinaryQuantizer, FloatCast, Identity, MantissaErasure,
                              PCADrop, ProductQuantizer, RandomDrop, RandomRotation,
                              UniformQuantizer)
from dnnstress.stress.accounting import bits_for_levels, bits_per_vector
from dnnstress.stress.base import like
from dnnstress.stress.floatcast import FORMATS
from dnnstress.sweep.grid import EXPERIMENTS, Grid, PerWidth, values_text

# Parameters that also have a typed column of their own in results.csv.
TYPED_PARAMS = ("kept_dims", "n_levels", "erased_bits", "repeat", "seed")
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_INSTALL = {"faiss": "pip install faiss-cpu (or pip install 'dnnstress[peers]')"}


@dataclasses.dataclass(frozen=True)
class Context:
    """What configurations may depend on besides their parameters: the features' width
    and training-set size, and the sweep's base seed."""

    n_features: int
    n_train: int
    base_seed: int = 0

    @property
    def max_directions(self) -> int:
        """Principal directions the training set spans: PCADrop's covariance route
        (n_train >= n_features) yields every direction, its Gram route n_train - 1."""
        return self.n_features if self.n_train >= self.n_features else self.n_train - 1


def same_space(stressor):
    """Warm start of a stressor that keeps the feature space (quantizers): the baseline
    weights as they are."""
    return keep_weights


def keep_weights(coef):
    """The identity map of weights (the warm start of :func:`same_space`)."""
    return coef


def cold_start(stressor):
    """No warm start: the solver starts from zero."""
    return None


@dataclasses.dataclass(frozen=True)
class SharedFit:
    """A first stage fitted once on the training features and shared by every
    configuration whose ``shared`` gives the same ``key`` (across experiments too).

    Parameters
    ----------
    key : tuple
        Identity of the fit: ``("pca",)`` for DR-2, FC and PCA + PQ, ``("random_drop",
        seed)`` for one DR-1 repeat.
    make : callable
        ``make()`` -> the unfitted stage.
    vary : callable
        ``vary(params)`` -> the ``set_params`` a configuration needs on the fitted stage
        (``{"n_components": kept_dims}``: the DR subspaces are nested, so one fit serves
        every count).  The stage's output is computed once per distinct setting in a row.
    warm_start : callable
        ``warm_start(fitted_stage)`` -> map of the baseline weights into its output space.
    cover : callable
        ``cover(settings)`` -> the ``set_params`` the stage is fitted with, given the
        ``vary`` settings of the configurations it will serve: the largest count for
        PCA, whose fit then computes only the directions some configuration keeps (on
        5,011 x 50,176 features, DR-2's 2,508 of 5,010 halve the projection).  By
        default the stage is fitted as ``make()`` builds it.
    """

    key: tuple
    make: Callable[[], object]
    vary: Callable[[dict], dict] = lambda params: {}
    warm_start: Callable[[object], Callable | None] = same_space
    cover: Callable[[list[dict]], dict] = lambda settings: {}


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One experiment of the registry.

    Parameters
    ----------
    name : str
        Lower-case identifier (letters, digits, ``_``), the ``experiment`` column.
    description : str
        One line for ``dnnstress sweep --list-experiments``.
    params : mapping
        Parameter name -> default values (a tuple of JSON scalars, or a
        :class:`~dnnstress.sweep.grid.PerWidth` for values that depend on the features'
        width).  The configurations are their product.  The first value is the
        parameter's default: rows of older results files, which do not record it, take it.
    make : callable, optional
        ``make(**params)`` -> the unfitted stressor of a configuration (a scikit-learn
        transformer with ``bits_per_vector``), fitted on the training features, or on
        the shared stage's training output.  None: the shared stage is the stressor.
    shared : callable, optional
        ``shared(params)`` -> the :class:`SharedFit` a configuration starts with.
    warm_start : callable, optional
        ``warm_start(fitted_stressor)`` -> map of the baseline SVM weights (L, d) into
        the stressor's output space, or None for a cold start (:func:`same_space`,
        :func:`cold_start`).  None (the default): the same weights when the stressor's
        output keeps the width of its input, a cold start otherwise.
    derived : mapping
        Parameters computed from the others: name -> ``f(params, context)`` (DR-1's
        seed is the base seed plus the repeat).
    canonical : callable
        ``canonical(params)`` -> the parameters that apply (a calibrated range's quantile
        only with ``range="quantile"``); equal results give equal rows.
    check : callable, optional
        ``check(params, context)`` -> None, or ``(parameter, reason)`` when the
        configuration cannot run on these features: it is left out with a warning.
    bits : callable, optional
        ``bits(params, n_features)`` -> bits per vector of a configuration: the results
        store refuses rows that disagree (rows of another accounting), and the sweep
        checks each fitted stressor against it.
    requires : tuple of str
        Modules the stressor needs (``("faiss",)``): checked before a sweep starts.
    title : str
        Name in messages (``"DR-2"``); the ``name`` by default.
    """

    name: str
    description: str
    params: Mapping[str, object] = dataclasses.field(default_factory=dict)
    make: Callable[..., object] | None = None
    shared: Callable[[dict], SharedFit] | None = None
    warm_start: Callable[[object], Callable | None] | None = None
    derived: Mapping[str, Callable[[dict, Context], object]] = dataclasses.field(
        default_factory=dict)
    canonical: Callable[[dict], dict] = dict
    check: Callable[[dict, Context], tuple[str, str] | None] | None = None
    bits: Callable[[dict, int], int] | None = None
    requires: tuple[str, ...] = ()
    title: str = ""

    @property
    def label(self) -> str:
        return self.title or self.name

    @property
    def param_names(self) -> tuple[str, ...]:
        """Every parameter a configuration can carry: the grid's and the derived ones."""
        return (*self.params, *self.derived)

    def defaults(self) -> dict:
        """The default value (the first) of each grid parameter that has a fixed list."""
        return {name: values[0] for name, values in self.params.items()
                if not isinstance(values, PerWidth)}

    def configurations(self, grid, context: Context) -> list[dict]:
        """The distinct configurations of ``grid`` on features described by ``context``,
        in grid order (the first parameter varies slowest), canonical and with the
        derived parameters filled in.

        ``grid`` is this experiment's parameter grid (name -> values: their product), or
        a list of such grids (the union of their products, as scikit-learn's
        ``ParameterGrid`` reads a list of dicts)."""
        configurations = {}
        for one_grid in [grid] if isinstance(grid, Mapping) else grid:
            values = {name: _values(value, context.n_features)
                      for name, value in one_grid.items()}
            for combination in itertools.product(*values.values()):
                params = self.complete(dict(zip(values, combination)), context)
                configurations.setdefault(canonical_params(params), params)
        return list(configurations.values())

    def complete(self, params: dict, context: Context) -> dict:
        """``params`` with the derived parameters added, canonical."""
        params = {name: _scalar(value, name) for name, value in params.items()}
        for name, derive in self.derived.items():
            params[name] = _scalar(derive(params, context), name)
        return self.canonical(params)

    def missing_modules(self) -> list[str]:
        return [module for module in self.requires if importlib.util.find_spec(module) is None]


def canonical_params(params: dict) -> str:
    """The canonical JSON text of a configuration: sorted keys, compact separators.

    >>> canonical_params({"n_levels": 4, "range": "minmax"})
    '{"n_levels":4,"range":"minmax"}'
    """
    return json.dumps(params, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _scalar(value, name):
    """A parameter value as a plain JSON scalar (numpy integers become ``int``)."""
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(value):
        return float(value)
    raise ValueError(f"parameter {name} must be a string, a number or a bool, "
                     f"got {value!r}")


def _values(value, n_features: int) -> tuple:
    return value.values(n_features) if isinstance(value, PerWidth) else tuple(value)


# --- the registry ---------------------------------------------------------------------

_REGISTRY: dict[str, Experiment] = {}


def register_experiment(experiment: Experiment, replace: bool = False) -> Experiment:
    """Add ``experiment`` to the registry (``replace=True``: over an entry of that name).

    Its stressor is built from the default parameters now, so that one without
    ``bits_per_vector`` (storage accounting) or without fit/transform is refused here,
    not in the middle of a sweep.  Returns the experiment.
    """
    check_experiment(experiment)
    if experiment.name in _REGISTRY and not replace:
        raise ValueError(f"an experiment named {experiment.name!r} is already registered; "
                         f"pass replace=True to replace it, or choose another name")
    _REGISTRY[experiment.name] = experiment
    return experiment


def registered_experiments() -> tuple[str, ...]:
    """Names of the registered experiments, in registration order (the paper's first)."""
    return tuple(_REGISTRY)


def get_experiment(name: str) -> Experiment:
    """The registered experiment ``name``; ValueError listing the valid names otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown experiment {name!r}; registered experiments: "
                         f"{', '.join(_REGISTRY)}") from None


def is_registered(name: str) -> bool:
    return name in _REGISTRY


def check_experiment(experiment: Experiment) -> None:
    """Refuse a malformed declaration, naming what to fix."""
    if not isinstance(experiment, Experiment):
        raise TypeError(f"expected a dnnstress.sweep.Experiment, got "
                        f"{type(experiment).__name__}")
    name = experiment.name
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"experiment name {name!r} must be lower-case letters, digits "
                         f"and _, starting with a letter")
    if experiment.make is None and experiment.shared is None:
        raise ValueError(f"experiment {name!r} needs make (its stressor) or shared")
    for param, values in experiment.params.items():
        if not isinstance(param, str) or not _NAME.match(param):
            raise ValueError(f"experiment {name!r}: parameter name {param!r} must be "
                             f"lower-case letters, digits and _")
        if not isinstance(values, PerWidth):
            if isinstance(values, str) or not isinstance(values, (tuple, list)) or not values:
                raise ValueError(f"experiment {name!r}: parameter {param} needs a non-empty "
                                 f"tuple of default values, got {values!r}")
            for value in values:
                _scalar(value, f"{name}.{param}")
    # The stressor of the default configuration (widths for nominal 64-d features).
    defaults = {param: values.values(64)[0] if isinstance(values, PerWidth) else values[0]
                for param, values in experiment.params.items()}
    defaults = experiment.complete(defaults, Context(64, 1024))
    if experiment.shared is not None:
        _check_stressor(experiment.shared(defaults).make(), name)
    if experiment.make is not None:
        _check_stressor(experiment.make(**defaults), name)


def _check_stressor(stressor, name: str) -> None:
    kind = type(stressor).__name__
    for method in ("fit", "transform"):
        if not callable(getattr(stressor, method, None)):
            raise TypeError(f"experiment {name!r}: its stressor {kind} has no {method} "
                            f"method; a stressor is a scikit-learn transformer")
    if not hasattr(type(stressor), "bits_per_vector"):
        raise TypeError(f"experiment {name!r}: its stressor {kind} has no bits_per_vector; "
                        f"give the class a bits_per_vector property (bits that store one "
                        f"transformed vector, known after fit) so that the sweep can "
                        f"account its storage")


def resolve(experiments) -> tuple[Experiment, ...]:
    """The experiments a sweep asks for (names, comma-separated text, or Experiment
    objects, which need not be registered), baseline first, the registered ones in
    registry order; ValueError listing the valid names for an unknown one."""
    items = [n.strip() for n in experiments.split(",")] if isinstance(experiments, str) \
        else list(experiments)
    if not items:
        raise ValueError(f"no experiment given; choose from {', '.join(_REGISTRY)}")
    named, objects = set(), []
    for item in items:
        if isinstance(item, Experiment):
            check_experiment(item)
            objects.append(item)
        else:
            named.add(item)
    unknown = sorted(str(n) for n in named if n not in _REGISTRY)
    if unknown:
        raise ValueError(f"unknown experiment(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(_REGISTRY)}")
    chosen = [_REGISTRY["baseline"]] + [e for n, e in _REGISTRY.items()
                                        if n in named and n != "baseline"]
    for experiment in objects:
        if experiment.name in {e.name for e in chosen}:
            if experiment not in chosen:
                raise ValueError(f"two different experiments are named {experiment.name!r}")
            continue
        chosen.append(experiment)
    for experiment in chosen:
        missing = experiment.missing_modules()
        if missing:
            # RuntimeError, as for a missing CuPy (dnnstress.devices): one line, a fix.
            raise RuntimeError(f"experiment {experiment.name} needs {', '.join(missing)}: "
                              + "; ".join(_INSTALL.get(m, f"pip install {m}") for m in missing))
    return tuple(chosen)


def parse_experiments(text) -> tuple[str, ...]:
    """Validate experiment names (a comma-separated string or an iterable of names),
    in registry order."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else list(text)
    unknown = sorted(set(names) - set(_REGISTRY))
    if unknown or not names:
        raise ValueError(f"unknown experiment(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(_REGISTRY)}")
    return tuple(name for name in _REGISTRY if name in names)


def param_grids(experiments, grid: Grid | None = None, params=None) -> dict[str, list]:
    """Each experiment's parameter grids (a list of one or more name -> values maps,
    each read as the product of its values): its defaults, the paper experiments' from
    ``grid`` (a :class:`~dnnstress.sweep.Grid`, when given), then ``params`` over both.

    ``params`` maps an experiment to its overrides, ``{"binary": {"threshold": ("zero",
    "mean")}}``, or to a list of them, each over the defaults, whose configurations are
    united: ``{"q2": [{"n_levels": (2, 4)}, {"n_levels": (256,), "range":
    ("quantile",)}]}`` runs Q-2 over the training range at h = 2, 4 and over a quantile
    range at h = 256.  Unknown experiment or parameter names are a ValueError listing the
    valid ones."""
    grids = {e.name: dict(e.params) for e in experiments}
    if grid is not None:
        for name, values in grid.params().items():
            if name in grids and is_registered(name) and get_experiment(name) in experiments:
                grids[name].update(values)
    chosen = {name: [base] for name, base in grids.items()}
    for name, overrides in (params or {}).items():
        if name not in grids:
            raise ValueError(f"params given for experiment {name!r}, which this sweep does "
                             f"not run; its experiments: {', '.join(grids)}")
        overrides = [overrides] if isinstance(overrides, Mapping) else overrides
        if (not isinstance(overrides, (list, tuple)) or not overrides
                or not all(isinstance(o, Mapping) for o in overrides)):
            raise TypeError(f"params[{name!r}] must map parameter names to values, or be "
                            f"a non-empty list of such maps")
        chosen[name] = [_overridden(grids[name], o, name) for o in overrides]
    return chosen


def _overridden(base: dict, overrides: Mapping, name: str) -> dict:
    """``base`` (an experiment's grid) with the values of ``overrides``, checked."""
    grid = dict(base)
    for param, values in overrides.items():
        if param not in base:
            valid = ", ".join(base) or "(it has none)"
            raise ValueError(f"unknown parameter {param!r} of experiment {name}; its "
                             f"parameters: {valid}")
        values = (values,) if isinstance(values, (str, numbers.Number)) else tuple(values)
        if not values:
            raise ValueError(f"parameter {name}.{param} needs at least one value")
        grid[param] = tuple(_scalar(v, f"{name}.{param}") for v in values)
    return grid


def describe(experiment: Experiment) -> str:
    """Text of ``--list-experiments``: the name and description, then each parameter
    with its default values."""
    lines = [f"{experiment.name:<9} {experiment.description}"
             + (f" (needs {', '.join(experiment.requires)})" if experiment.requires else "")]
    for param, values in experiment.params.items():
        shown = str(values) if isinstance(values, PerWidth) else values_text(values)
        lines.append(f"{'':<9}   {param} = {shown}")
    lines.extend(f"{'':<9}   {param} (derived)" for param in experiment.derived)
    return "\n".join(lines)


# --- the paper's experiments (reference README) --------------------------------------

def _principal_projection(pca):
    basis = pca.components_[:pca.n_features_out_]
    # w . x = w . (V_k^T V_k x) on the kept subspace, so V_k w is the natural start.
    return lambda coef: coef @ like(basis, coef).T.astype(coef.dtype)


def _kept_columns(random_drop):
    indices = random_drop.indices_  # read now: the stage's n_components moves on
    return lambda coef: coef[:, like(indices, coef)]


def _rotated(rotation):
    # An orthogonal R keeps w . x = (R w) . (R x): rotate the weights like the features.
    return rotation.transform


_PCA = SharedFit(("pca",), PCADrop, lambda params: {"n_components": params["kept_dims"]},
                 _principal_projection, cover=lambda settings: {
                     "n_components": max(setting["n_components"] for setting in settings)})


def _pca(params):
    return _PCA


def _within_directions(params, context):
    if params["kept_dims"] > context.max_directions:
        return "kept_dims", (f"the training set spans only {context.max_directions} "
                             f"principal directions (fewer training samples than features)")
    return None


def _dr1_drop(params):
    seed = params["seed"]
    return SharedFit(("random_drop", seed), lambda: RandomDrop(1, seed),
                     lambda p: {"n_components": p["kept_dims"]}, _kept_columns)


def _seed_of_repeat(params, context):
    return context.base_seed + params["repeat"]


def _paper_bits(params, n_features):
    return bits_per_vector(params.get("kept_dims", n_features), params.get("n_levels"),
                           params.get("erased_bits"))


def _uniform(per_dimension: bool):
    """Q-1 or Q-2 over the training min and max (the paper) or a calibrated range."""
    def make(n_levels, range="minmax", quantile=None, n_std=None, **_):
        return UniformQuantizer(n_levels, per_dimension, range, quantile, n_std)
    return make


# Calibrated ranges (issue 9 s2): the paper's min and max first, the default.
_RANGE = {"range": ("minmax",), "quantile": (0.001,), "n_std": (3.0,)}


def _applicable_range(params):
    """Only the calibration of the chosen range applies: a quantile for "quantile", a
    number of standard deviations for "std", neither for "minmax"."""
    return {name: value for name, value in params.items()
            if not (name == "quantile" and params.get("range") != "quantile"
                    or name == "n_std" and params.get("range") != "std")}


_PAPER = Grid().params()

for _experiment in (
    Experiment("baseline", "the unstressed features (every relative score's denominator)",
               _PAPER["baseline"], make=Identity, bits=_paper_bits),
    Experiment("dr1", "DR-1: keep a random subset of dimensions (seeded repeats)",
               _PAPER["dr1"], shared=_dr1_drop, derived={"seed": _seed_of_repeat},
               bits=_paper_bits, title="DR-1"),
    Experiment("dr2", "DR-2: keep the leading principal directions (PCA, no centring)",
               _PAPER["dr2"], shared=_pca, check=_within_directions, bits=_paper_bits,
               title="DR-2"),
    Experiment("q1", "Q-1: uniform quantization over one range of all training values "
                     "(min-max, or calibrated: quantile, std)",
               {**_PAPER["q1"], **_RANGE}, make=_uniform(False), warm_start=same_space,
               canonical=_applicable_range, bits=_paper_bits, title="Q-1"),
    Experiment("q2", "Q-2: uniform quantization over each dimension's training range "
                     "(min-max, or calibrated: quantile, std)",
               {**_PAPER["q2"], **_RANGE}, make=_uniform(True), warm_start=same_space,
               canonical=_applicable_range, bits=_paper_bits, title="Q-2"),
    Experiment("fc", "FC: DR-2 then Q-2 (the PCA shared with DR-2)", _PAPER["fc"],
               make=lambda n_levels, **_: UniformQuantizer(n_levels, per_dimension=True),
               shared=_pca, warm_start=same_space, check=_within_directions,
               bits=_paper_bits, title="FC"),
    Experiment("qb", "Q-B: zero the lowest bits of the float64 representation",
               _PAPER["qb"], make=lambda erased_bits: MantissaErasure(erased_bits),
               warm_start=same_space, bits=_paper_bits, title="Q-B"),
):
    register_experiment(_experiment)
assert registered_experiments() == EXPERIMENTS


# --- beyond the paper (issue 9) ----------------------------------------------------------

_LEVELS = (2, 4, 16, 256)  # 1, 2, 4 and 8 bits per value


def _rotation(params):
    seed = params["seed"]
    return SharedFit(("rotation", seed), lambda: RandomRotation(seed), warm_start=_rotated)


def _rotated_bits(params, n_features):
    # method="auto" pads nothing: Hadamard only where n is a power of two, QR otherwise.
    return n_features * bits_for_levels(params.get("n_levels", 2))


def _float_bits(params, n_features):
    return FORMATS[params["format"]].width * n_features


def _pq_bits(params, n_features):
    return params["n_subvectors"] * params["n_bits"]


def _pq_fits(params, context, width):
    if width % params["n_subvectors"]:
        return "n_subvectors", f"it must divide the {width} dims it splits"
    if context.n_train < 1 << params["n_bits"]:
        return "n_bits", (f"2**n_bits centroids need as many training vectors, there "
                          f"are {context.n_train}")
    return None


def _check_pq(params, context):
    return _pq_fits(params, context, context.n_features)


def _check_pca_pq(params, context):
    return _within_directions(params, context) or _pq_fits(params, context,
                                                           params["kept_dims"])


def _subvector_counts(text, dims_per_subvector):
    def counts(n):
        return [n // s for s in dims_per_subvector if n % s == 0 and n >= s] or [1]
    return PerWidth(text, counts)


_REPEAT = {"repeat": (0,)}
_SEEDED = {"seed": _seed_of_repeat}

for _experiment in (
    Experiment("binary", "sign quantization: 1 bit per dimension, above a per-dimension "
                         "threshold or not", {"threshold": ("zero", "mean", "median")},
               make=lambda threshold: BinaryQuantizer(threshold), warm_start=same_space,
               bits=lambda params, n: n),
    Experiment("rq1", "random orthogonal rotation (seeded), then Q-1",
               {"n_levels": _LEVELS, **_RANGE, **_REPEAT}, derived=_SEEDED,
               shared=_rotation, make=_uniform(False), warm_start=same_space,
               canonical=_applicable_range, bits=_rotated_bits),
    Experiment("rq2", "random orthogonal rotation (seeded), then Q-2",
               {"n_levels": _LEVELS, **_RANGE, **_REPEAT}, derived=_SEEDED,
               shared=_rotation, make=_uniform(True), warm_start=same_space,
               canonical=_applicable_range, bits=_rotated_bits),
    Experiment("rbinary", "random orthogonal rotation (seeded), then binary quantization",
               {"threshold": ("zero", "mean"), **_REPEAT}, derived=_SEEDED,
               shared=_rotation, make=lambda threshold, **_: BinaryQuantizer(threshold),
               warm_start=same_space, bits=_rotated_bits),
    Experiment("float", "cast to a narrow float format and back (overflow saturates to "
                        "the largest finite value)", {"format": tuple(FORMATS)},
               make=lambda format: FloatCast(format, saturate=True), warm_start=same_space,
               bits=_float_bits),
    Experiment("pq", "product quantization (faiss k-means): n_subvectors codes of n_bits",
               {"n_subvectors": _subvector_counts("n/8, n/4, n/2 (1, 2, 4 bits per dim)",
                                                  (8, 4, 2)),
                "n_bits": (8,)},
               make=lambda n_subvectors, n_bits: ProductQuantizer(n_subvectors, n_bits),
               warm_start=same_space, check=_check_pq, bits=_pq_bits, requires=("faiss",),
               title="PQ"),
    Experiment("pcapq", "DR-2 then product quantization (the PCA shared with DR-2)",
               {"kept_dims": PerWidth("n/2", lambda n: [max(1, n // 2)]),
                "n_subvectors": _subvector_counts("n/16, n/8", (16, 8)), "n_bits": (8,)},
               shared=_pca, make=lambda n_subvectors, n_bits, **_: ProductQuantizer(
                   n_subvectors, n_bits),
               warm_start=same_space, check=_check_pca_pq, bits=_pq_bits,
               requires=("faiss",), title="PCA+PQ"),
):
    register_experiment(_experiment)
