"""Product quantization through faiss (issue 9, part 2): an optional dependency.

``ProductQuantizer(n_subvectors=M, n_bits=b)`` splits each vector into ``M`` sub-vectors
of ``d / M`` values, learns ``2**b`` centroids per sub-vector by k-means on the training
set (faiss's ``ProductQuantizer``), and stores each sub-vector as the index of its
nearest centroid: ``M * b`` bits a vector.  The code books (``M * 2**b * d / M`` float32
values) are side information shared by all vectors and not counted, as the paper does
not count Q-2's ranges; say so when comparing with small test sets, where they are not
negligible.  ``make_pca_pq`` puts DR-2 in front (PCA + PQ).

CPU only: faiss-cpu works on host arrays, so CuPy input is refused rather than copied
behind the caller's back.
"""

from __future__ import annotations

import numpy as np

from dnnstress._array import check_count, is_cupy_array
from dnnstress.stress._packing import MAX_BITS, pack_codes, unpack_codes
from dnnstress.stress.base import Stressor
from dnnstress.stress.pipeline import StressPipeline
from dnnstress.stress.reduce import PCADrop

FAISS_SEED = 1234  # faiss's own default k-means seed, used when random_state is None


def import_faiss():
    """The faiss module, or an ImportError saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise ImportError("product quantization needs faiss: pip install faiss-cpu") from None
    return faiss


class ProductQuantizer(Stressor):
    """Each of ``n_subvectors`` sub-vectors replaced by the nearest of ``2**n_bits``
    centroids learnt on the training set (faiss).

    Parameters
    ----------
    n_subvectors : int
        ``M``, which must divide the number of features.
    n_bits : int, default 8
        ``b``, bits per sub-vector code (1 to 16); training needs at least ``2**b`` rows.
    random_state : int or None, default None
        Seed of faiss's k-means (None: faiss's default, 1234).

    Attributes
    ----------
    centroids_ : float32 array of shape (n_subvectors, 2**n_bits, n_features / n_subvectors)
    dtype_ : dtype
        Training dtype (float32 for float16 input), the default of ``decode``.

    Notes
    -----
    ``pack`` returns faiss's own code bytes, whose layout (code ``m`` at bits ``[m b,
    (m + 1) b)`` of the row, least significant first, rows padded to whole bytes) is
    that of :func:`~dnnstress.stress._packing.pack_codes`.
    """

    def __init__(self, n_subvectors, n_bits=8, random_state=None):
        self.n_subvectors = n_subvectors
        self.n_bits = n_bits
        self.random_state = random_state

    def fit(self, X, y=None):
        self._validate_fit_input(X)
        _refuse_cupy(X)
        faiss = import_faiss()
        n, d = X.shape
        m = check_count(self.n_subvectors, "n_subvectors", 1, d)
        if d % m:
            raise ValueError(f"n_subvectors = {m} must divide the {d} features")
        bits = check_count(self.n_bits, "n_bits", 1, MAX_BITS)
        if n < 1 << bits:
            raise ValueError(f"{1 << bits} centroids (n_bits = {bits}) need at least as many "
                             f"training vectors, got {n}")
        seed = FAISS_SEED if self.random_state is None else check_count(
            self.random_state, "random_state", 0, 2 ** 31 - 1)
        pq = faiss.ProductQuantizer(d, m, bits)
        pq.cp.seed = seed
        pq.cp.min_points_per_centroid = 1  # few training rows are the caller's choice
        pq.train(_float32(X))
        self.centroids_ = faiss.vector_to_array(pq.centroids).reshape(m, 1 << bits, d // m)
        self._pq = pq
        self.dtype_ = np.dtype(np.float32) if X.dtype.itemsize < 4 else X.dtype
        self.n_features_out_ = d
        self.n_features_in_ = d
        return self

    @property
    def bits_per_vector(self) -> int:
        """``M * b``: the code books are not counted."""
        return self.centroids_.shape[0] * _bits_of(self.centroids_)

    def transform(self, X):
        """Every sub-vector replaced by its centroid, in X's dtype (float32 for float16)."""
        X = self._validate_transform_input(X)
        _refuse_cupy(X)
        dtype = np.dtype(np.float32) if X.dtype.itemsize < 4 else X.dtype
        return self._faiss_pq().decode(self._faiss_codes(X)).astype(dtype, copy=False)

    def pack(self, X):
        """faiss's codes: uint8 (n, ceil(M * b / 8))."""
        X = self._validate_transform_input(X)
        _refuse_cupy(X)
        return self._faiss_codes(X)

    def _faiss_codes(self, X):
        return self._faiss_pq().compute_codes(_float32(X))

    def unpack(self, packed, dtype=None):
        """Reconstruction from ``pack``'s bytes."""
        self._check_fitted()
        _refuse_cupy(packed)
        unpack_codes(packed, _bits_of(self.centroids_), self.centroids_.shape[0])  # checks
        decoded = self._faiss_pq().decode(np.ascontiguousarray(packed))
        return decoded.astype(self.dtype_ if dtype is None else dtype)

    def encode(self, X):
        """Centroid indices, (n, M), uint8 for b <= 8, uint16 above."""
        return unpack_codes(self.pack(X), _bits_of(self.centroids_), self.centroids_.shape[0])

    def decode(self, codes, dtype=None):
        """Centroids of integer ``codes`` (n, M)."""
        self._check_fitted()
        return self.unpack(pack_codes(codes, _bits_of(self.centroids_)), dtype)

    def _faiss_pq(self):
        """faiss's quantizer, rebuilt from ``centroids_`` after a copy or unpickling."""
        if "_pq" not in vars(self):
            faiss = import_faiss()
            m, k, sub = self.centroids_.shape
            pq = faiss.ProductQuantizer(m * sub, m, _bits_of(self.centroids_))
            faiss.copy_array_to_vector(self.centroids_.ravel(), pq.centroids)
            self._pq = pq
        return self._pq

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_pq", None)  # a SWIG object: rebuilt from centroids_ on demand
        return state


def make_pca_pq(n_components, n_subvectors, n_bits=8, random_state=None) -> StressPipeline:
    """DR-2 to ``n_components`` principal directions, then product quantization.

    >>> make_pca_pq(64, 8, 4)
    StressPipeline(steps=[('dr2', PCADrop(n_components=64)),
                          ('pq', ProductQuantizer(n_bits=4, n_subvectors=8))])
    """
    return StressPipeline([("dr2", PCADrop(n_components)),
                           ("pq", ProductQuantizer(n_subvectors, n_bits, random_state))])


def _bits_of(centroids) -> int:
    return (centroids.shape[1] - 1).bit_length()


def _float32(X):
    return np.ascontiguousarray(X, dtype=np.float32)


def _refuse_cupy(x):
    if is_cupy_array(x):
        raise TypeError("ProductQuantizer runs on the CPU (faiss-cpu): pass numpy arrays "
                        "(cupy.asnumpy(X))")
