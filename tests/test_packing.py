"""Bit packing twin (``dnnstress.stress._packing``) against hand-computed bytes and an
independent reference: each row as one Python integer, ``sum(code_j << (j * bits))``,
written out little-endian."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnnstress._array import to_numpy
from dnnstress.stress import _packing
from dnnstress.stress._packing import pack_codes, packed_row_bytes, unpack_codes


def reference_pack(codes, bits):
    """Row by row through Python's arbitrary-precision integers."""
    row_bytes = (codes.shape[1] * bits + 7) // 8
    rows = []
    for row in codes:
        stream = sum(int(c) << (j * bits) for j, c in enumerate(row))
        rows.append(list(stream.to_bytes(row_bytes, "little")))
    return np.array(rows, dtype=np.uint8).reshape(codes.shape[0], row_bytes)


def random_codes(rng, n, d, bits):
    dtype = np.uint8 if bits <= 8 else np.uint16
    return rng.integers(0, 1 << bits, size=(n, d)).astype(dtype)


@pytest.mark.parametrize("codes, bits, expected", [
    ([[1, 2, 3]], 2, [[0b00111001]]),                    # 1 | 2 << 2 | 3 << 4 = 57
    ([[5, 3, 7]], 3, [[0xDD, 0x01]]),                    # 5 | 3 << 3 | 7 << 6 = 0x1DD
    ([[1, 0, 1, 1, 0, 0, 0, 0, 1]], 1, [[13, 1]]),       # 9 bits: a second, padded byte
    ([[0xABC, 0x123]], 12, [[0xBC, 0x3A, 0x12]]),        # 0x123ABC
    ([[0x1234], [0xBEEF]], 16, [[0x34, 0x12], [0xEF, 0xBE]]),
    ([[200, 7]], 8, [[200, 7]]),
    ([[9], [0]], 4, [[9], [0]]),                         # each row padded on its own
    ([[0, 0, 0]], 0, np.zeros((1, 0))),                  # h = 1 stores nothing
])
def test_hand_computed_bytes(codes, bits, expected):
    codes = np.array(codes, dtype=np.uint8 if bits <= 8 else np.uint16)
    packed = pack_codes(codes, bits)
    assert packed.dtype == np.uint8
    np.testing.assert_array_equal(packed, np.array(expected, dtype=np.uint8))
    np.testing.assert_array_equal(unpack_codes(packed, bits, codes.shape[1]), codes)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(0, 6), d=st.integers(0, 40), bits=st.integers(0, 16),
       seed=st.integers(0, 2**32 - 1))
def test_matches_reference_and_round_trips(n, d, bits, seed):
    codes = random_codes(np.random.default_rng(seed), n, d, bits)
    packed = pack_codes(codes, bits)
    assert packed.shape == (n, -(-d * bits // 8)) == (n, packed_row_bytes(d, bits))
    assert packed.nbytes == n * packed_row_bytes(d, bits)
    np.testing.assert_array_equal(packed, reference_pack(codes, bits))
    unpacked = unpack_codes(packed, bits, d)
    assert unpacked.dtype == (np.uint8 if bits <= 8 else np.uint16)
    np.testing.assert_array_equal(unpacked, codes)


@pytest.mark.parametrize("bits", [3, 11])
def test_many_row_chunks(bits, monkeypatch):
    """Rows split over several chunks give the same bytes as one pass would."""
    monkeypatch.setattr(_packing, "_CHUNK_VALUES", 50)
    codes = random_codes(np.random.default_rng(bits), 97, 13, bits)
    packed = pack_codes(codes, bits)
    np.testing.assert_array_equal(packed, reference_pack(codes, bits))
    np.testing.assert_array_equal(unpack_codes(packed, bits, 13), codes)


def test_unpack_ignores_padding_bits():
    packed = np.array([[0b11111111]], dtype=np.uint8)  # 3 values of 2 bits, 2 padding bits
    np.testing.assert_array_equal(unpack_codes(packed, 2, 3), [[3, 3, 3]])


def test_accepts_any_integer_dtype_in_range():
    codes = np.array([[3, 0, 2]], dtype=np.int64)
    np.testing.assert_array_equal(pack_codes(codes, 2), pack_codes(codes.astype(np.uint8), 2))


@pytest.mark.parametrize("codes, bits, error, match", [
    (np.array([[4]], np.uint8), 2, ValueError, r"\[0, 3\]"),
    (np.array([[-1]], np.int16), 4, ValueError, "must lie in"),
    (np.array([[1]], np.uint8), 0, ValueError, "must lie in"),
    (np.array([1, 2], np.uint8), 2, ValueError, "2-D"),
    (np.array([[1.0]]), 2, TypeError, "integers"),
    (np.array([[1]], np.uint8), 17, ValueError, "bits"),
    (np.array([[1]], np.uint8), -1, ValueError, "bits"),
    (np.array([[1]], np.uint8), 2.0, TypeError, "bits"),
])
def test_pack_rejects_bad_input(codes, bits, error, match):
    with pytest.raises(error, match=match):
        pack_codes(codes, bits)


@pytest.mark.parametrize("packed, bits, n_cols, error, match", [
    (np.zeros((2, 2), np.uint8), 5, 4, ValueError, r"need ceil\(4 \* 5 / 8\) = 3"),
    (np.zeros((2, 4), np.uint8), 5, 4, ValueError, "need"),
    (np.zeros((2, 3), np.int16), 5, 4, TypeError, "uint8"),
    (np.zeros(3, np.uint8), 5, 4, ValueError, "2-D"),
    (np.zeros((2, 3), np.uint8), 5, -4, ValueError, "non-negative"),
    (np.zeros((2, 3), np.uint8), 5, 4.0, TypeError, "n_cols"),
])
def test_unpack_rejects_bad_input(packed, bits, n_cols, error, match):
    with pytest.raises(error, match=match):
        unpack_codes(packed, bits, n_cols)


@pytest.mark.parametrize("bits", [0, 1, 5, 8, 13, 16])
def test_same_bytes_on_every_backend(xp, bits):
    """The twin runs unchanged on CuPy arrays (array-API code path)."""
    codes = random_codes(np.random.default_rng(bits), 7, 19, bits)
    packed = pack_codes(xp.asarray(codes), bits)
    np.testing.assert_array_equal(to_numpy(packed), reference_pack(codes, bits))
    np.testing.assert_array_equal(to_numpy(unpack_codes(packed, bits, 19)), codes)
