"""CUDA kernels for quantization and bit packing, compiled with CuPy (NVRTC) on first use.

The GPU counterpart of ``dnnstress.stress._cpu_kernels``: one fused pass over the data
instead of the seven passes of the array-API formula.  The kernels live in
``kernels/*.cu`` (shipped as the package data ``dnnstress.kernels``) and reproduce the
numpy twins bit for bit: ``_uniform`` for quantization, ``_packing`` for bit packing.

Every wrapper takes and returns CuPy arrays, validates shapes, dtypes and contiguity
before launching (a launch never sees bad input) and keeps the data on the device.
CuPy is imported inside the functions only: importing this module never needs it.
"""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path

import numpy as np

from dnnstress._array import check_count, output_array, raise_if_nonfinite
from dnnstress.stress import _packing, _uniform

# --fmad=false: no multiply-add contraction, which would round lo + (code + 0.5) * step
# once instead of twice.  No --use_fast_math: division stays IEEE.  Both are a second
# guard: the kernels spell every floating-point operation as one PTX instruction with
# .rn and without .ftz, which also neutralises the -ftz=true that CuPy appends.
NVRTC_OPTIONS = ("--std=c++17", "--fmad=false")
# What CuPy adds to every NVRTC compilation (cupy/cuda/compiler.py,
# _compile_with_cache_cuda: ``options += ('-ftz=true',)``); the compile tests use it too.
CUPY_APPENDED_OPTIONS = ("-ftz=true",)

_THREADS = 256  # DNNSTRESS_THREADS in the .cu files (their __launch_bounds__)
_WARP = 32
_MAX_GRID_Y = 65535
_THREADS_PER_SM = 2048  # Hopper's (and Ampere's) resident-thread limit per multiprocessor
_VECTOR_BYTES = 16  # widest load a thread issues


def kernel_source(name: str) -> str:
    """Text of ``kernels/NAME``: from the installed package data, else the source tree.

    The fallback serves a checkout run without installing (``PYTHONPATH=.``, as on a
    lent GPU machine), where ``kernels/`` sits beside the ``dnnstress`` folder.
    """
    try:
        return importlib.resources.files("dnnstress.kernels").joinpath(name).read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        return (Path(__file__).resolve().parent.parent / "kernels" / name).read_text()


def reconstruct(X, lo, step, n_levels, out=None):
    """Nearest bin centre of every value, bit-exact with ``_uniform.reconstruct``.

    Parameters
    ----------
    X : cupy.ndarray of shape (n, d), float32 or float64
        Made C-contiguous (a device copy) if it is not.
    lo, step : array-like of shape (d,) or scalar
        Training minimum and bin width ``(max - min) / h`` of every dimension (0 for a
        constant dimension), as fitted in float64; the kernel casts them to X's dtype,
        in which the arithmetic runs (as in ``_uniform``), without flushing subnormals.
        Host arrays are copied to the device.
    n_levels : int
        ``h``, 1 to 65536.
    out : cupy.ndarray of shape (n, d) and X's dtype, C-contiguous, optional

    Returns
    -------
    cupy.ndarray of shape (n, d), X's dtype

    Raises
    ------
    ValueError
        If X holds NaN or infinity (counted by the kernel in its one pass over X, with
        the message of the CPU kernels); ``out`` then holds garbage.
    """
    X, lo, step, h = _quantize_inputs(X, lo, step, n_levels)
    out = output_array(out, X.shape, X.dtype, X)
    _launch_quantize("quantize_reconstruct_" + _TYPE_NAMES[X.dtype], X, out, lo, step, h)
    return out


def encode(X, lo, step, n_levels, out=None):
    """Integer codes of every value, bit-exact with ``_uniform.encode``.

    Same parameters as :func:`reconstruct`; ``step`` may be the bin width or the
    ``safe_step`` (+inf on constant dimensions): both give the same codes.  Returns
    (and ``out`` must be) uint8 codes for ``h <= 256``, uint16 above.
    """
    X, lo, step, h = _quantize_inputs(X, lo, step, n_levels)
    dtype = np.dtype(_uniform.code_dtype(h))
    out = output_array(out, X.shape, dtype, X)
    name = f"quantize_encode_{_TYPE_NAMES[X.dtype]}_{_TYPE_NAMES[dtype]}"
    _launch_quantize(name, X, out, lo, step, h)
    return out


def decode(codes, lo, step, dtype, out=None):
    """Bin centres of integer codes, bit-exact with ``_uniform.decode``.

    ``lo + (code + 0.5) * step`` in ``dtype`` (float32 or float64), with the float64
    parameters cast in the kernel: CuPy's own elementwise arithmetic would run with
    -ftz=true and flush float32 subnormal centres to zero.

    Parameters
    ----------
    codes : cupy.ndarray of shape (n, d), uint8 or uint16
        Codes in range (the caller checks them against ``h``).
    lo, step : array-like of shape (d,) or scalar
        As for :func:`reconstruct`.
    dtype : float32 or float64
    out : cupy.ndarray of shape (n, d) and ``dtype``, C-contiguous, optional

    Returns
    -------
    cupy.ndarray of shape (n, d), ``dtype``
    """
    codes = _device_matrix(codes, "codes", (np.uint8, np.uint16))
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"decode computes in float32 or float64, got {dtype}")
    d = codes.shape[1]
    lo, step = _column_param(lo, "lo", d), _column_param(step, "step", d)
    out = output_array(out, codes.shape, dtype, codes)
    n = codes.shape[0]
    if out.size:
        width = _vector_width(d, out, codes)
        grid, block = _row_walk_launch(n, d // width)
        name = f"quantize_decode_{_TYPE_NAMES[dtype]}_{_TYPE_NAMES[codes.dtype]}_v{width}"
        _function("quantize.cu", name)(grid, block, (codes, out, lo, step, np.int64(n),
                                                     np.int64(d)))
    return out


def convert(X, dtype):
    """A copy of ``X`` as float32 or float64, rounded to nearest without flushing.

    ``X.astype`` would run under CuPy's -ftz=true, which turns float32 subnormals to
    zero on the way in (float32 -> float64) and out (float64 -> float32).

    Parameters
    ----------
    X : cupy.ndarray, float32 or float64, any shape
    dtype : float32 or float64

    Returns
    -------
    cupy.ndarray of X's shape, C-contiguous
    """
    cupy = _cupy()
    dtype = np.dtype(dtype)
    if not isinstance(X, cupy.ndarray) or X.dtype not in _FLOATS or dtype not in _FLOATS:
        raise TypeError(f"convert takes a float32 or float64 CuPy array to float32 or "
                        f"float64, got {type(X).__name__} of {getattr(X, 'dtype', None)} "
                        f"to {dtype}")
    if X.dtype == dtype:
        return cupy.array(X, order="C")
    X = cupy.ascontiguousarray(X)
    out = cupy.empty(X.shape, dtype=dtype)
    if X.size:
        blocks = min(-(-X.size // _THREADS), 2 * _multiprocessors(cupy.cuda.Device().id)
                     * _THREADS_PER_SM // _THREADS)
        name = f"convert_{_TYPE_NAMES[X.dtype]}_{_TYPE_NAMES[dtype]}"
        _function("quantize.cu", name)((blocks, 1, 1), (_THREADS, 1, 1),
                                       (X, out, np.int64(X.size)))
    return out


def pack(codes, bits, *, check_range=True):
    """Bit-pack codes, bit-exact with ``_packing.pack_codes`` (same layout and padding).

    Parameters
    ----------
    codes : cupy.ndarray of shape (n, d), uint8 or uint16
    bits : int
        Bits per value, 0 to 16.
    check_range : bool, default True
        Raise ValueError for a code ``>= 2**bits``.  This costs a reduction and one
        scalar read back; callers whose codes come from :func:`encode` with
        ``h <= 2**bits`` may skip it (an out-of-range code is then masked to ``bits``
        bits, never spilled into its neighbours).

    Returns
    -------
    cupy.ndarray of shape (n, ceil(d * bits / 8)), uint8
    """
    cupy = _cupy()
    bits = _packing._check_bits(bits)
    codes = _device_matrix(codes, "codes", (np.uint8, np.uint16))
    n, d = codes.shape
    _check_row_bits(d, bits)
    if check_range and codes.size and bits < 8 * codes.itemsize:
        _packing.check_codes(codes, bits)
    packed = cupy.zeros((n, _packing.packed_row_bytes(d, bits)), dtype=cupy.uint8)
    if packed.size:
        name = "pack_codes_" + _TYPE_NAMES[codes.dtype]
        grid, block = _row_walk_launch(n, packed.shape[1])
        _function("pack.cu", name)(grid, block, (codes, packed, np.int64(n), np.uint32(d),
                                                 np.uint32(bits)))
    return packed


def unpack(packed, bits, n_cols):
    """Codes from packed rows, bit-exact with ``_packing.unpack_codes``.

    Parameters
    ----------
    packed : cupy.ndarray of shape (n, ceil(n_cols * bits / 8)), uint8
    bits : int
        Bits per value used when packing, 0 to 16.
    n_cols : int
        Values per row.

    Returns
    -------
    cupy.ndarray of shape (n, n_cols), uint8 for ``bits <= 8``, uint16 above
    """
    cupy = _cupy()
    bits = _packing._check_bits(bits)
    n_cols = _packing._check_n_cols(n_cols)
    packed = _device_matrix(packed, "packed", (np.uint8,))
    _packing.check_packed(packed, bits, n_cols)
    _check_row_bits(n_cols, bits)
    n = packed.shape[0]
    dtype = np.dtype(_packing.code_dtype_for_bits(bits))
    codes = cupy.zeros((n, n_cols), dtype=dtype)
    if codes.size and bits:
        name = "unpack_codes_" + _TYPE_NAMES[dtype]
        grid, block = _row_walk_launch(n, n_cols)
        _function("pack.cu", name)(grid, block, (packed, codes, np.int64(n), np.uint32(n_cols),
                                                 np.uint32(bits)))
    return codes


_TYPE_NAMES = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64",
               np.dtype(np.uint8): "u8", np.dtype(np.uint16): "u16"}
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def entry_points() -> dict[str, list[str]]:
    """Every kernel name the wrappers may launch, by source file (the compile test's list)."""
    quantize = []
    for dtype in (np.float32, np.float64):
        t = _TYPE_NAMES[np.dtype(dtype)]
        widths = [w for w in (4, 2, 1) if w * np.dtype(dtype).itemsize <= _VECTOR_BYTES]
        quantize += [f"quantize_reconstruct_{t}_v{w}" for w in widths]
        quantize += [f"quantize_{verb}_{t}_{c}_v{w}" for verb in ("encode", "decode")
                     for c in ("u8", "u16") for w in widths]
    quantize += ["convert_f32_f64", "convert_f64_f32"]
    pack = [f"{verb}_codes_{c}" for verb in ("pack", "unpack") for c in ("u8", "u16")]
    return {"quantize.cu": quantize, "pack.cu": pack}


def _cupy():
    try:
        import cupy
    except ImportError as error:
        raise ImportError("the CUDA kernels need CuPy: pip install 'dnnstress[gpu]'") from error
    return cupy


@functools.cache
def _module(file: str, device_id: int):
    """The compiled module of ``kernels/FILE`` on one device (compiled once per process)."""
    return _cupy().RawModule(code=kernel_source(file), options=NVRTC_OPTIONS)


@functools.cache
def _function_on(file: str, name: str, device_id: int):
    return _module(file, device_id).get_function(name)


def _function(file: str, name: str):
    return _function_on(file, name, _cupy().cuda.Device().id)


@functools.cache
def _multiprocessors(device_id: int) -> int:
    return _cupy().cuda.Device(device_id).attributes["MultiProcessorCount"]


def _quantize_inputs(X, lo, step, n_levels):
    """Validated, contiguous X, lo and step as (d,) float64 device arrays, and h.

    The parameters stay float64: the kernels cast them to X's type themselves (as
    ``_uniform`` does, with ``safe_step`` decided in float64), because a cast by CuPy
    would flush float32 subnormals.
    """
    X = _device_matrix(X, "X", (np.float32, np.float64))
    h = check_count(n_levels, "n_levels", 1, _uniform.MAX_LEVELS)
    d = X.shape[1]
    return X, _column_param(lo, "lo", d), _column_param(step, "step", d), h


def _device_matrix(a, name: str, dtypes):
    """``a`` as a C-contiguous 2-D CuPy array of one of ``dtypes``, or a clear error."""
    cupy = _cupy()
    if not isinstance(a, cupy.ndarray):
        raise TypeError(f"{name} must be a CuPy array (the CUDA path), got {type(a).__name__}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {a.shape}")
    if a.dtype not in [np.dtype(t) for t in dtypes]:
        allowed = ", ".join(np.dtype(t).name for t in dtypes)
        raise TypeError(f"{name} has dtype {a.dtype}; the kernels take {allowed}")
    return cupy.ascontiguousarray(a)


def _column_param(value, name: str, d: int):
    """A per-dimension parameter as a C-contiguous (d,) float64 device array.

    Only float64 (or host) values are taken: CuPy's own float32 -> float64 cast would
    flush subnormals.
    """
    cupy = _cupy()
    if isinstance(value, cupy.ndarray) and value.dtype != np.float64:
        raise TypeError(f"{name} must be float64 (the fitted parameters), got {value.dtype}")
    param = cupy.asarray(value, dtype=cupy.float64)
    if param.ndim == 0:
        param = cupy.broadcast_to(param, (d,))
    if param.shape != (d,):
        raise ValueError(f"{name} must have shape ({d},) (one value per column), "
                         f"got {param.shape}")
    return cupy.ascontiguousarray(param)


def _check_row_bits(n_cols: int, bits: int) -> None:
    # The packing kernels index bits inside a row with 32-bit integers.
    if n_cols * max(bits, 1) >= 2**31:
        raise ValueError(f"a row of {n_cols} values of {bits} bits exceeds 2**31 bits")


def _launch_quantize(name, X, out, lo, step, h):
    """Run one quantizer kernel and raise, as the CPU kernels do, if X was not finite."""
    n, d = X.shape
    if X.size == 0:
        return
    width = _vector_width(d, X, out)
    grid, block = _row_walk_launch(n, d // width)
    n_bad = _cupy().zeros(1, dtype=np.uint64)
    _function("quantize.cu", f"{name}_v{width}")(
        grid, block, (X, out, lo, step, np.int64(n), np.int64(d), np.int32(h), n_bad))
    raise_if_nonfinite(int(n_bad.get()[0]), "X")


def _vector_width(n_cols: int, *arrays) -> int:
    """Values per thread and row: 16 bytes of input where every row start is aligned."""
    width = _VECTOR_BYTES // arrays[0].itemsize
    while width > 1 and not (n_cols % width == 0 and
                             all(a.data.ptr % (width * a.itemsize) == 0 for a in arrays)):
        width //= 2
    return width


def _row_walk_launch(n_rows: int, n_per_row: int, multiprocessors: int | None = None):
    """Grid and block for the kernels whose x covers a row and whose y walks the rows.

    x spans the row once (``n_per_row`` vectors or bytes) with as few idle threads as
    warp granularity allows; threadIdx.y packs several rows into a block when rows are
    short; grid y is sized for two full waves of resident threads, each thread then
    looping over its share of the rows.  ``multiprocessors`` defaults to the current
    device's (given, the geometry is computed without a GPU).
    """
    if multiprocessors is None:
        multiprocessors = _multiprocessors(_cupy().cuda.Device().id)
    blocks_x = -(-n_per_row // _THREADS)
    block_x = min(_THREADS, _round_up(-(-n_per_row // blocks_x), _WARP))
    block_y = _THREADS // block_x
    wanted = 2 * multiprocessors * _THREADS_PER_SM // (blocks_x * block_x * block_y)
    grid_y = max(1, min(-(-n_rows // block_y), wanted, _MAX_GRID_Y))
    return (blocks_x, grid_y, 1), (block_x, block_y, 1)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
