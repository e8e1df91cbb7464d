"""The experiment engine: run stress experiments on a features file.

``run_sweep`` trains and scores one linear SVM per configuration of the chosen
experiments and appends each result to ``DIR/results.csv`` as soon as it is known
(columns: ``COLUMNS`` then ``params``, described in the README); ``read_results`` reads
them back with typed values.  An interrupted sweep resumes.  Experiments are entries of
a registry (:mod:`dnnstress.sweep.experiments`): the paper's seven, the modern ones, and
any a caller adds with ``register_experiment``.
"""

from dnnstress.sweep.experiments import (Context, Experiment, SharedFit, describe,
                                         get_experiment, parse_experiments,
                                         register_experiment, registered_experiments)
from dnnstress.sweep.grid import EXPERIMENTS, Grid, PerWidth, parse_int_list
from dnnstress.sweep.runner import Sweep, fingerprint, run_locally, run_sweep, unit_rows
from dnnstress.sweep.store import COLUMNS, KEY_COLUMNS, PARAMS_COLUMN, read_results

__all__ = ["run_sweep", "Sweep", "read_results", "Grid", "EXPERIMENTS", "COLUMNS",
           "KEY_COLUMNS", "PARAMS_COLUMN", "parse_int_list", "parse_experiments",
           "fingerprint", "Experiment", "SharedFit", "Context", "PerWidth",
           "register_experiment", "registered_experiments", "get_experiment", "describe",
           "run_locally", "unit_rows"]
