"""The compiled CPU quantizer kernels equal their array-API twins bit for bit.

``_uniform`` (encode, decode, reconstruct) and ``_packing`` (pack_codes, unpack_codes)
are the specification; the numba kernels in ``_cpu_kernels`` are fast copies of it, and
each comparison here is exact.  Shapes, widths and layouts are drawn by hypothesis:
column counts that are not a multiple of 8 (the last group of a packed row), widths 1
to 16 (one 64-bit word per group or two), codes of every integer type, sliced inputs.
"""

from unittest import mock

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnnstress.stress import UniformQuantizer, _cpu_kernels, _packing, _uniform
from dnnstress.stress._decode_lines import LINE, PAGE, X86, line_span

EXACT = settings(max_examples=40, deadline=None)


def _fitted(seed, n, d, h, dtype, per_dimension=True):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((n, d)) * rng.uniform(0.01, 100)).astype(dtype)
    X[:, 0] = X[0, 0]  # a constant dimension: step 0
    return X, UniformQuantizer(h, per_dimension=per_dimension).fit(X)


@EXACT
@given(seed=st.integers(0, 10**6), n=st.integers(1, 12), d=st.integers(1, 70),
       h=st.integers(1, 65536), dtype=st.sampled_from([np.float32, np.float64]))
def test_encode_and_reconstruct_equal_the_twin(seed, n, d, h, dtype):
    X, q = _fitted(seed, n, d, h, dtype)
    test = X * dtype(1.5)  # values beyond the training range clamp
    lo, step = q.data_min_, q.step_
    np.testing.assert_array_equal(_cpu_kernels.encode(test, lo, step, h),
                                  _uniform.encode(test, lo, _uniform.safe_step(step), h))
    np.testing.assert_array_equal(_cpu_kernels.reconstruct(test, lo, step, h),
                                  _uniform.reconstruct(test, lo, step, h))
    bits = q.bits_per_value_
    np.testing.assert_array_equal(
        _cpu_kernels.encode_pack(test, lo, step, h, bits),
        _packing.pack_codes(_uniform.encode(test, lo, _uniform.safe_step(step), h), bits))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("kernel", [
    _cpu_kernels.encode, _cpu_kernels.reconstruct,
    lambda X, lo, step, h: _cpu_kernels.encode_pack(X, lo, step, h, 3)])
def test_non_finite_input_is_refused_wherever_it_is(kernel, bad):
    X = np.random.default_rng(0).standard_normal((9, 4099)).astype(np.float32)
    lo, step = X.min(0).astype(np.float64), ((X.max(0) - X.min(0)) / 5).astype(np.float64)
    for i, j in ((0, 0), (8, 4098), (4, 2049)):  # first, last, middle of a row
        Y = X.copy()
        Y[i, j] = bad
        with pytest.raises(ValueError, match="1 NaN or infinite"):
            kernel(Y, lo, step, 5)


@EXACT
@given(seed=st.integers(0, 10**6), n=st.integers(0, 12), d=st.integers(1, 70),
       h=st.integers(1, 65536), dtype=st.sampled_from([np.float32, np.float64]),
       code_type=st.sampled_from([np.uint8, np.uint16, np.int64]),
       sliced=st.booleans())
def test_decode_equals_the_twin(seed, n, d, h, dtype, code_type, sliced):
    X, q = _fitted(seed, max(n, 1), d, h, dtype)
    top = min(h - 1, np.iinfo(code_type).max)
    codes = np.random.default_rng(seed).integers(0, top + 1, (n, 2 * d)).astype(code_type)
    codes = codes[:, ::2] if sliced else codes[:, :d]  # strided or C-contiguous
    for out_type in (np.float32, np.float64):
        np.testing.assert_array_equal(
            _cpu_kernels.decode(codes, q.data_min_, q.step_, h, out_type),
            _uniform.decode(codes, q.data_min_, q.step_, out_type))


STREAMED = pytest.mark.parametrize("streamed", [False, True], ids=["stored", "streamed"])


def _stores(streamed):
    """Decodes into a given ``out`` with plain stores, or with the streamed stores (and
    page touches) that otherwise only outputs of 64 MiB or more get."""
    return mock.patch.object(_cpu_kernels, "STREAM_INTO_GIVEN", 0 if streamed else 1 << 62)


def _out_at(offset, shape, dtype):
    """A C-contiguous output starting ``offset`` elements into a fresh buffer of NaN
    (rows whose cache lines start anywhere, so that the line loops meet every head and
    tail), and a check that nothing was written outside it."""
    size = int(np.prod(shape))
    buffer = np.full(offset + size + 1, np.nan, dtype)

    def untouched_around():
        return np.isnan(buffer[:offset]).all() and np.isnan(buffer[offset + size:]).all()

    return buffer[offset:offset + size].reshape(shape), untouched_around


@STREAMED
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 300), d=st.integers(1, 90),
       offset=st.integers(0, 15), dtype=st.sampled_from([np.float32, np.float64]),
       code_type=st.sampled_from([np.uint8, np.uint16]))
def test_decode_into_out_equals_the_twin(streamed, seed, n, d, offset, dtype, code_type):
    h = 200 if code_type == np.uint8 else 40000
    _, q = _fitted(seed, 5, d, h, dtype)
    codes = np.random.default_rng(seed).integers(0, h, (n, d)).astype(code_type)
    out, untouched_around = _out_at(offset, (n, d), dtype)
    with _stores(streamed):
        assert _cpu_kernels.decode(codes, q.data_min_, q.step_, h, dtype, out=out) is out
    np.testing.assert_array_equal(out, _uniform.decode(codes, q.data_min_, q.step_, dtype))
    assert untouched_around()


@STREAMED
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 300), d=st.integers(1, 90),
       offset=st.integers(0, 15), h=st.sampled_from([2, 16, 27, 1000]))
def test_unpack_decode_into_out_equals_the_twin(streamed, seed, n, d, offset, h):
    _, q = _fitted(seed, 3, d, h, np.float32)
    bits = q.bits_per_value_
    codes = np.random.default_rng(seed).integers(0, h, (n, d)).astype(
        _packing.code_dtype_for_bits(bits))
    out, untouched_around = _out_at(offset, (n, d), np.float32)
    packed = _packing.pack_codes(codes, bits)
    with _stores(streamed):
        assert _cpu_kernels.unpack_decode(packed, bits, d, q.data_min_, q.step_, h,
                                          np.float32, out=out) is out
    np.testing.assert_array_equal(out, _uniform.decode(codes, q.data_min_, q.step_,
                                                       np.float32))
    assert untouched_around()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_line_span_is_the_whole_aligned_lines_of_a_row(dtype):
    """Against the definition, for every start within a line, a few misaligned ones
    (no lines: their vector stores would assume the alignment) and every short row."""
    span = numba.njit(lambda row: line_span(row))
    size = np.dtype(dtype).itemsize
    buffer = np.zeros(4 * LINE + 64, np.uint8)
    base = -buffer.ctypes.data % LINE
    for start in [base + k * size for k in range(LINE // size)] + [base + 1, base + 3]:
        for n in range(0, 3 * LINE // size):
            row = np.ndarray((n,), dtype, buffer=buffer, offset=start)
            address = row.ctypes.data
            if address % size:
                expected = (n, n)
            else:
                first = min(n, (-address % LINE) // size)
                expected = (first, first + (n - first) // (LINE // size) * (LINE // size))
            assert span(row) == expected, (start - base, n)


@pytest.mark.skipif(not X86, reason="streamed stores are x86-only")
def test_the_streamed_decode_emits_streaming_stores_and_a_fence():
    """The values cannot tell a streamed store from a plain one: the machine code can
    (of the kernel compiled afresh and serial, as cached code cannot be inspected)."""
    kernel = numba.njit(_cpu_kernels._decode_kernel.py_func)
    codes = np.zeros((3, 40), np.uint8)
    out, lo = np.empty((3, 40), np.float32), np.zeros(40, np.float32)
    kernel(codes, lo, lo, np.float32(0.5), False, True, out, np.zeros(3, np.uint8))
    assembly = kernel.inspect_asm(kernel.signatures[0]).lower()
    assert "movnt" in assembly and "sfence" in assembly


@STREAMED
@pytest.mark.parametrize("dtype, offset", [(np.float32, 1), (np.float64, 4)])
def test_decode_into_an_unaligned_out_equals_the_twin(streamed, dtype, offset):
    """An ``out`` whose elements straddle their alignment (a view at an odd byte offset)
    gets no vector stores, which assume it (they crashed)."""
    _, q = _fitted(3, 5, 37, 27, dtype)
    codes = np.random.default_rng(3).integers(0, 27, (40, 37)).astype(np.uint8)
    expected = _uniform.decode(codes, q.data_min_, q.step_, dtype)
    for decode in (lambda out: _cpu_kernels.decode(codes, q.data_min_, q.step_, 27, dtype,
                                                   out=out),
                   lambda out: _cpu_kernels.unpack_decode(
                       _packing.pack_codes(codes, 5), 5, 37, q.data_min_, q.step_, 27,
                       dtype, out=out)):
        buffer = np.zeros(codes.size * np.dtype(dtype).itemsize + offset, np.uint8)
        out = np.ndarray(codes.shape, dtype, buffer=buffer, offset=offset)
        assert not out.flags.aligned
        with _stores(streamed):
            decode(out)
        np.testing.assert_array_equal(out, expected)


@STREAMED
@pytest.mark.parametrize("code_type", [np.uint8, np.uint16])
def test_streamed_decode_checks_the_range_of_every_row(streamed, code_type):
    h = 200 if code_type == np.uint8 else 40000
    _, q = _fitted(1, 5, 37, h, np.float32)
    codes = np.random.default_rng(1).integers(0, h, (700, 37)).astype(code_type)
    for row in (0, 350, 699):
        bad = codes.copy()
        bad[row, 36] = h
        with _stores(streamed), pytest.raises(ValueError,
                                              match=rf"\[0, {h - 1}\], got {h}$"):
            _cpu_kernels.decode(bad, q.data_min_, q.step_, h, np.float32,
                                out=np.empty(codes.shape, np.float32))
    _, q = _fitted(1, 5, 37, 27, np.float32)  # 5 bits hold codes up to 31
    codes = np.zeros((700, 37), np.uint8)
    codes[699, 36] = 27
    with _stores(streamed), pytest.raises(ValueError, match=r"\[0, 26\], got 27$"):
        _cpu_kernels.unpack_decode(_packing.pack_codes(codes, 5), 5, 37, q.data_min_,
                                   q.step_, 27, np.float32,
                                   out=np.empty(codes.shape, np.float32))


@pytest.mark.skipif(not X86, reason="streamed stores are x86-only")
def test_large_outputs_are_streamed_and_new_ones_start_on_a_huge_page():
    # Thresholds of a few pages, to test where they fall without allocating 160 MiB.
    with mock.patch.multiple(_cpu_kernels, STREAM_INTO_GIVEN=8 * PAGE,
                             STREAM_INTO_NEW=16 * PAGE):
        given = np.empty(2 * PAGE, np.float32)
        assert _cpu_kernels._decode_output(given, given.shape, given.dtype, None)[1]
        assert not _cpu_kernels._decode_output(given[1:], (given.size - 1,), given.dtype,
                                               None)[1]
        n = 2 * PAGE
        assert not _cpu_kernels._decode_output(None, (n - 1,), np.dtype(np.float64),
                                               None)[1]
        new, stream = _cpu_kernels._decode_output(None, (n,), np.dtype(np.float64), None)
    assert stream and new.ctypes.data % _cpu_kernels.HUGE_PAGE == 0
    assert new.shape == (n,) and new.dtype == np.float64
    assert new.flags.c_contiguous and new.flags.writeable


@pytest.mark.parametrize("code_type", [np.uint8, np.uint16])
def test_streamed_decode_into_a_new_array_equals_the_twin(code_type):
    h = 200 if code_type == np.uint8 else 40000
    _, q = _fitted(2, 5, 37, h, np.float32)
    codes = np.random.default_rng(2).integers(0, h, (300, 37)).astype(code_type)
    with mock.patch.object(_cpu_kernels, "STREAM_INTO_NEW", 0):
        decoded = _cpu_kernels.decode(codes, q.data_min_, q.step_, h, np.float32)
        unpacked = _cpu_kernels.unpack_decode(_packing.pack_codes(codes, 16), 16, 37,
                                              q.data_min_, q.step_, h, np.float32)
    assert decoded.ctypes.data % _cpu_kernels.HUGE_PAGE == 0
    expected = _uniform.decode(codes, q.data_min_, q.step_, np.float32)
    np.testing.assert_array_equal(decoded, expected)
    np.testing.assert_array_equal(unpacked, expected)


@pytest.mark.parametrize("code_type, bad", [(np.uint8, 27), (np.uint16, 65535),
                                            (np.int64, -1), (np.int64, 1 << 20)])
def test_decode_refuses_codes_out_of_range(code_type, bad):
    _, q = _fitted(0, 10, 37, 27, np.float32)
    codes = np.zeros((10, 37), code_type)
    codes[9, 36] = bad
    with pytest.raises(ValueError, match=rf"\[0, 26\], got {bad}$"):
        _cpu_kernels.decode(codes, q.data_min_, q.step_, 27, np.float32)
    with pytest.raises(ValueError, match=r"\[0, 26\]"):
        q.decode(codes)


# Strided codes compile a pack kernel of their own per width (numba's 'A' layout, about
# 1.7 s each on a cold cache) and read the same way at every width: they are drawn at
# one width of each kind, compiled in (3), whole bytes (8, a copy) and read at run time
# (11); C-contiguous codes at every width.
WIDTH_AND_LAYOUT = st.one_of(st.tuples(st.integers(0, 16), st.just(False)),
                             st.tuples(st.sampled_from([3, 8, 11]), st.just(True)))


@settings(max_examples=160, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(0, 9), d=st.integers(1, 90),
       width_and_layout=WIDTH_AND_LAYOUT)
def test_pack_and_unpack_equal_the_twin(seed, n, d, width_and_layout):
    bits, sliced = width_and_layout
    code_type = _packing.code_dtype_for_bits(bits)
    codes = np.random.default_rng(seed).integers(0, 1 << bits, (n, 2 * d)).astype(code_type)
    codes = codes[:, 1::2] if sliced else np.ascontiguousarray(codes[:, :d])
    packed = _cpu_kernels.pack(codes, bits)
    np.testing.assert_array_equal(packed, _packing.pack_codes(codes, bits))
    np.testing.assert_array_equal(_cpu_kernels.unpack(packed, bits, d),
                                  _packing.unpack_codes(packed, bits, d))
    # Padding bits set in the input do not leak into the codes.
    value_bits = _packing.pack_codes(np.full(codes.shape, (1 << bits) - 1, code_type), bits)
    noisy = packed | ~value_bits
    np.testing.assert_array_equal(_cpu_kernels.unpack(noisy, bits, d),
                                  _packing.unpack_codes(noisy, bits, d))


@EXACT
@given(seed=st.integers(0, 10**6), n=st.integers(0, 700), d=st.integers(1, 600),
       h=st.integers(1, 65536), dtype=st.sampled_from([np.float32, np.float64]))
def test_unpack_decode_equals_the_twin(seed, n, d, h, dtype):
    # n * d up to 420,000 values: several slabs of rows, the last one partial.
    _, q = _fitted(seed, 3, d, h, dtype)
    bits = q.bits_per_value_
    codes = np.random.default_rng(seed).integers(0, h, (n, d)).astype(
        _packing.code_dtype_for_bits(bits))
    packed = _packing.pack_codes(codes, bits)
    np.testing.assert_array_equal(
        _cpu_kernels.unpack_decode(packed, bits, d, q.data_min_, q.step_, h, dtype),
        _uniform.decode(codes, q.data_min_, q.step_, dtype))


def test_unpack_decode_refuses_codes_beyond_the_levels():
    _, q = _fitted(0, 4, 9, 27, np.float32)  # 5 bits hold codes up to 31
    codes = np.zeros((4, 9), np.uint8)
    codes[3, 8] = 27
    with pytest.raises(ValueError, match=r"\[0, 26\]"):
        q.unpack(_packing.pack_codes(codes, 5))


@pytest.mark.parametrize("h", [2, 16, 27, 256, 1000])
def test_quantizer_decode_and_unpack_equal_the_formula(h):
    X, q = _fitted(h, 50, 41, h, np.float32)
    lo, step = q._params_like(X)
    codes = q.encode(X)
    expected = _uniform.decode(codes, lo, step, np.float32)
    np.testing.assert_array_equal(q.decode(codes), expected)
    np.testing.assert_array_equal(q.unpack(q.pack(X)), expected)
    np.testing.assert_array_equal(q.unpack(q.pack(X), dtype=np.float64),
                                  _uniform.decode(codes, lo, step, np.float64))
