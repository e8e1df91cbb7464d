"""Composed stresses, FC in particular (paper Sec. 2.3).

``StressPipeline`` is a scikit-learn ``Pipeline`` of stressors that also reports the
storage cost of what it outputs.  ``make_fc`` builds the paper's FC: DR-2 then Q-2, with
Q-2 fitted on the PCA-projected training set.
"""

from __future__ import annotations

from sklearn.pipeline import Pipeline

from dnnstress.stress.quantize import UniformQuantizer
from dnnstress.stress.reduce import PCADrop


class StressPipeline(Pipeline):
    """Stressors applied in sequence, each fitted on the previous one's training output."""

    @property
    def bits_per_vector(self) -> int:
        """Storage of the final representation, which the last step decides."""
        return self.steps[-1][1].bits_per_vector

    @property
    def n_features_out_(self) -> int:
        return self.steps[-1][1].n_features_out_


def make_fc(n_components, n_levels) -> StressPipeline:
    """FC: keep ``n_components`` principal directions, then Q-2 with ``n_levels`` values.

    >>> make_fc(409, 27)
    StressPipeline(steps=[('dr2', PCADrop(n_components=409)),
                          ('q2', UniformQuantizer(n_levels=27, per_dimension=True))])
    """
    return StressPipeline([("dr2", PCADrop(n_components)),
                           ("q2", UniformQuantizer(n_levels, per_dimension=True))])
