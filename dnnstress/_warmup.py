"""Compile the sweep's numba kernels in a child process while the network runs.

A fresh install has no numba cache: its first sweep compiles the dual solver's kernels
for float32 features, then again for float64 (Q-B rows whose erased bits reach the
exponent), and the stressors' kernels (quantization, packing, binary codes, row
normalisation), about 30 s of one core on an AVX-512 machine and twice that on the
2-core AVX2 reference, while the other core idles.  Feature extraction leaves about 30 %
of the cores idle (onnxruntime between batches), so a child at low priority runs the
demo grid's sweep on tiny random features there, compiling what the real sweep will
use into numba's on-disk cache, and the sweep then loads the kernels from it in about
a second.  If the kernels are cached already, the child only loads them; if it fails,
the sweep compiles them itself, as it would have.
"""

from __future__ import annotations

import subprocess
import sys

_CHILD = """
from dnnstress._warmup import run_tiny_sweep
run_tiny_sweep()
"""


def run_tiny_sweep(out_dir=None):
    """The demo's sweep (its grid and its modern stressors) on random features of 48 + 16
    samples and 32 dimensions: every kernel the real sweep compiles, in seconds once
    compiled.  Writes into ``out_dir`` (default: a temporary folder, removed) and returns
    the rows."""
    import contextlib
    import io
    import tempfile
    import warnings

    import numpy as np

    from dnnstress.commands.demo import DEMO_GRID, modern_sweep
    from dnnstress.features import FeatureSet
    from dnnstress.sweep import EXPERIMENTS, run_sweep
    from dnnstress.sweep.store import read_results

    rng = np.random.default_rng(0)

    def split(n):
        return np.maximum(rng.standard_normal((n, 32)), 0).astype(np.float32), np.arange(n) % 4

    with contextlib.ExitStack() as stack:
        if out_dir is None:
            out_dir = stack.enter_context(tempfile.TemporaryDirectory())
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))  # faiss's note
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")  # the grid's counts beyond 32 dimensions, left out
        experiments, params = modern_sweep(EXPERIMENTS, "compact")
        run_sweep(FeatureSet(*split(48), *split(16)), out_dir, experiments=experiments,
                  grid=DEMO_GRID, params=params, progress=False)
        return read_results(out_dir)


# The child lowers its own priority first thing (``preexec_fn`` is unsafe in a parent
# that already runs threads, as BLAS's, and does not exist on Windows).
_LOW_PRIORITY = """
import os
if hasattr(os, "nice"):
    os.nice(10)
"""


def start():
    """Start compiling the sweep's kernels in a child process (low priority);
    returns it for :func:`finish`."""
    return subprocess.Popen([sys.executable, "-c", _LOW_PRIORITY + _CHILD],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def finish(child, timeout: float = 120.0) -> None:
    """Wait for ``child`` to finish compiling (the sweep would otherwise compile the
    same kernels at once); a child still running after ``timeout`` s is stopped."""
    try:
        child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
