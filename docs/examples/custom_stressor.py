"""Your own stressor in a dnnstress sweep: top-k sparsification.

Keep the k largest-magnitude values of each vector and zero the others (the values
stored as float32, their positions as ceil(log2 d)-bit indices).  The stressor is a
scikit-learn transformer with a ``bits_per_vector`` property; registering it makes it an
experiment like the paper's, with resumable rows, the relative score against the same
baseline and the same storage accounting.

Run it:  python docs/examples/custom_stressor.py [OUT_DIR]
"""

import math
import sys
import tempfile

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from dnnstress.features import FeatureSet
from dnnstress.sweep import Experiment, read_results, register_experiment, run_sweep


class TopK(TransformerMixin, BaseEstimator):
    """Keep the ``k`` largest-magnitude values of every vector, zero the rest."""

    def __init__(self, k=8):
        self.k = k

    def fit(self, X, y=None):
        if not 1 <= self.k <= X.shape[1]:
            raise ValueError(f"k must be in 1..{X.shape[1]}, got {self.k}")
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        cut = np.partition(np.abs(X), -self.k, axis=1)[:, -self.k][:, None]
        return np.where(np.abs(X) >= cut, X, 0).astype(X.dtype)

    @property
    def bits_per_vector(self):
        """k float32 values and their k positions."""
        return self.k * (32 + math.ceil(math.log2(self.n_features_in_)))


register_experiment(Experiment(
    "topk", "keep the k largest-magnitude values of each vector",
    params={"k": (2, 4, 8)}, make=lambda k: TopK(k)))


def toy_features(n_train=200, n_test=100, d=32, n_classes=4, seed=0):
    """ReLU-like features whose class shows in a few strong dimensions."""
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.normal(size=(n_classes, d))) * (rng.random((n_classes, d)) < 0.2)

    def split(n):
        y = np.arange(n) % n_classes
        x = np.maximum(centres[y] + rng.normal(size=(n, d)), 0)
        return x.astype(np.float32), y
    return FeatureSet(*split(n_train), *split(n_test))


def main(out_dir):
    # params overrides a grid, here the paper's Q-2 for comparison at similar storage.
    results = run_sweep(toy_features(), out_dir, experiments=["topk", "q2"],
                        params={"q2": {"n_levels": (2, 4)}, "topk": {"k": (2, 4, 8, 16)}},
                        progress=False)
    for row in read_results(results):
        print(f"{row['experiment']:<8} {row['params']!s:<18} {row['bits_per_vector']:>5} bits "
              f"relative score {row['relative_score']:.3f}")
    return results


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as folder:
            main(folder)
