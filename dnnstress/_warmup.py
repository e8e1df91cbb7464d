"""Compile the solver's numba kernels in a child process while the network runs.

A fresh install has no numba cache: its first sweep compiles the dual solver's kernels
for float32 features, then again for float64 (Q-B rows whose erased bits reach the
exponent), about 53 s on one core of the 2-core reference machine, while the other
core idles.  Feature extraction leaves about 30 % of the cores idle (onnxruntime
between batches), so a child at low priority compiles into numba's on-disk cache
there, and the sweep then loads the kernels from it in about a second.  If the kernels
are cached already, the child only loads them; if it fails, the sweep compiles them
itself, as it would have.
"""

from __future__ import annotations

import subprocess
import sys

_CHILD = """
import numpy as np
from dnnstress.classify import fit_linear_svms
rng = np.random.default_rng(0)
X = np.maximum(rng.standard_normal((1, 40, 8)), 0)
Y = np.where(np.arange(40)[:, None] % 2 == np.arange(2), 1, -1).astype(np.int8)
for dtype in (np.float32, np.float64):
    fit_linear_svms(X.astype(dtype), Y, method="dual")
"""


# The child lowers its own priority first thing (``preexec_fn`` is unsafe in a parent
# that already runs threads, as BLAS's, and does not exist on Windows).
_LOW_PRIORITY = """
import os
if hasattr(os, "nice"):
    os.nice(10)
"""


def start():
    """Start compiling the solver's kernels in a child process (low priority);
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
