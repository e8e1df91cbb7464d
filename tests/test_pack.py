"""The packed bytes are the real compressed features: lossless and exactly as large as
the accounting says (rounded up to whole bytes per row)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnnstress._array import to_numpy
from dnnstress.stress import UniformQuantizer


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 20), d=st.integers(1, 40),
       h=st.one_of(st.integers(1, 300), st.sampled_from([65535, 65536])),
       per_dimension=st.booleans(), seed=st.integers(0, 1000))
def test_pack_unpack_is_lossless_and_sized_by_the_accounting(n, d, h, per_dimension, seed):
    X = np.random.default_rng(seed).standard_normal((n, d))
    q = UniformQuantizer(h, per_dimension=per_dimension).fit(X)
    packed = q.pack(X)
    assert packed.dtype == np.uint8
    assert packed.shape == (n, -(-q.bits_per_vector // 8))
    np.testing.assert_array_equal(q.unpack(packed), q.transform(X))  # the fitted dtype
    as_float32 = q.unpack(packed, dtype=np.float32)  # computed in float32: close, not equal
    assert as_float32.dtype == np.float32
    np.testing.assert_allclose(as_float32, q.transform(X), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(q.unpack(packed.ravel(), n_rows=n, dtype=X.dtype),
                                  q.transform(X))


def test_paper_headline_vector_takes_256_bytes():
    X = np.random.default_rng(0).standard_normal((30, 409)).astype(np.float32)
    q = UniformQuantizer(27, per_dimension=True).fit(X)
    assert q.pack(X).nbytes == 30 * 256  # 409 x 5 = 2045 bits -> 256 bytes per vector


def test_pack_on_every_backend(xp):
    X = np.random.default_rng(2).standard_normal((50, 21)).astype(np.float32)
    q = UniformQuantizer(7, per_dimension=True).fit(xp.asarray(X))
    packed = q.pack(xp.asarray(X))
    assert type(packed) is type(xp.asarray(X))
    np.testing.assert_array_equal(to_numpy(q.unpack(packed)),
                                  UniformQuantizer(7, per_dimension=True).fit(X).transform(X))


def test_decode_rejects_codes_out_of_range():
    q = UniformQuantizer(4).fit(np.random.default_rng(0).random((5, 3)))
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        q.decode(np.full((2, 3), 4, dtype=np.uint8))
    with pytest.raises(ValueError, match="shape"):
        q.decode(np.zeros((2, 2), dtype=np.uint8))
