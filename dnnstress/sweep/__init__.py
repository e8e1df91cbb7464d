"""The experiment engine: run the paper's stress experiments on a features file.

``run_sweep`` trains and scores one linear SVM per configuration of the grid and appends
each result to ``DIR/results.csv`` as soon as it is known (columns: ``COLUMNS``, described
in the README); ``read_results`` reads them back with typed values.  An interrupted sweep resumes.
"""

from dnnstress.sweep.grid import EXPERIMENTS, Grid, parse_experiments, parse_int_list
from dnnstress.sweep.runner import Sweep, fingerprint, run_sweep
from dnnstress.sweep.store import COLUMNS, KEY_COLUMNS, read_results

__all__ = ["run_sweep", "Sweep", "read_results", "Grid", "EXPERIMENTS", "COLUMNS", "KEY_COLUMNS",
           "parse_int_list", "parse_experiments", "fingerprint"]
