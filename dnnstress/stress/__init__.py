"""The stressors of Carvalho et al. (ICIP 2016) as scikit-learn transformers.

=====================  ===============================================================
``Identity``           the unstressed baseline
``RandomDrop``         DR-1, keep a random subset of dimensions
``PCADrop``            DR-2, keep the leading principal directions (no centring)
``UniformQuantizer``   Q-1 (``per_dimension=False``) and Q-2 (``per_dimension=True``)
``MantissaErasure``    Q-B, zero the lowest bits of the float representation
``make_fc``            FC, DR-2 then Q-2 (a ``StressPipeline``)
=====================  ===============================================================

Every stressor fits on training features only, takes numpy or CuPy arrays and returns
the same kind, and reports ``bits_per_vector``; ``compression_rate`` turns that into the
paper's compression rate against float32 storage.
"""

from dnnstress.stress.accounting import (bits_for_levels, compression_rate, dr_schedule,
                                         fc_schedule)
from dnnstress.stress.base import Identity, Stressor
from dnnstress.stress.binary import BinaryQuantizer
from dnnstress.stress.entropy import code_entropy, code_storage
from dnnstress.stress.floatcast import FloatCast
from dnnstress.stress.mantissa import MantissaErasure
from dnnstress.stress.pipeline import StressPipeline, make_fc
from dnnstress.stress.product import ProductQuantizer, make_pca_pq
from dnnstress.stress.quantize import UniformQuantizer
from dnnstress.stress.reduce import PCADrop, RandomDrop
from dnnstress.stress.rotation import RandomRotation, make_rotated

__all__ = [
    "Identity", "RandomDrop", "PCADrop", "UniformQuantizer", "MantissaErasure",
    "StressPipeline", "make_fc", "Stressor",
    "bits_for_levels", "compression_rate", "dr_schedule", "fc_schedule",
    "BinaryQuantizer", "RandomRotation", "make_rotated", "FloatCast", "ProductQuantizer",
    "make_pca_pq", "code_entropy", "code_storage",
]
