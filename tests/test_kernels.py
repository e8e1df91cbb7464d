"""The CUDA kernels (kernels/*.cu through dnnstress._cuda) against their numpy twins.

Two layers: the sources compile to PTX with nvcc wherever nvcc is on PATH (CI has it;
no GPU needed), and on a GPU every kernel must equal its twin exactly (array_equal):
``_uniform`` for quantization, ``_packing`` for bit packing.
"""

import ctypes
import ctypes.util
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cuda_host import quantizer_problem
from dnnstress import _cuda
from dnnstress.stress import _packing, _uniform, bits_for_levels

KERNEL_DIR = Path(__file__).resolve().parents[1] / "kernels"
NVCC = shutil.which("nvcc")
LEVELS = [1, 2, 3, 27, 256, 257, 65536]
FLOATS = [np.float32, np.float64]


# --- compilation (CPU) ---------------------------------------------------------------

def test_every_source_file_is_known():
    assert sorted(p.name for p in KERNEL_DIR.glob("*.cu")) == sorted(_cuda.entry_points())


def test_every_inline_ptx_has_a_host_branch():
    """Each asm statement sits inside #ifdef __CUDA_ARCH__ (the host build of the tests
    compiles the #else branch), so no source is rewritten to run on the CPU."""
    for path in KERNEL_DIR.glob("*.cu"):
        depth_in_device = 0
        stack = []
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith("#if"):
                stack.append(stripped == "#ifdef __CUDA_ARCH__")
            elif stripped.startswith("#else") and stack:
                stack[-1] = False
            elif stripped.startswith("#endif") and stack:
                stack.pop()
            depth_in_device = any(stack)
            if "asm(" in stripped:
                assert depth_in_device, f"{path.name}: unguarded PTX: {stripped}"


@pytest.mark.parametrize("name", sorted(_cuda.entry_points()))
def test_loader_reads_the_kernel_sources(name):
    assert _cuda.kernel_source(name) == (KERNEL_DIR / name).read_text()


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH: CUDA sources not compiled")
@pytest.mark.parametrize("name", sorted(_cuda.entry_points()))
def test_compiles_to_ptx_for_hopper(name, tmp_path):
    """nvcc with the options CuPy's NVRTC compilation gets (ours plus the -ftz=true CuPy
    appends); every entry point the wrappers launch is in the PTX, and no instruction
    flushes subnormals (.ftz) or fuses a multiply-add (fma)."""
    ptx = tmp_path / f"{name}.ptx"
    options = [o.replace("--std=", "-std=")
               for o in (*_cuda.NVRTC_OPTIONS, *_cuda.CUPY_APPENDED_OPTIONS)]
    result = subprocess.run([NVCC, "--ptx", "-arch=sm_90", *options, "-o", str(ptx),
                             str(KERNEL_DIR / name)], check=False, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    text = ptx.read_text()
    entries = set(re.findall(r"\.entry\s+(\w+)\(", text))
    assert set(_cuda.entry_points()[name]) <= entries
    assert ".ftz" not in text
    assert "fma" not in text


def test_the_ptx_check_sees_what_cupy_would_flush(tmp_path):
    """The compile test's premise: with CuPy's -ftz=true, plain float arithmetic does
    compile to .ftz instructions (so finding none in our PTX means something)."""
    if NVCC is None:
        pytest.skip("nvcc is not on PATH")
    source = tmp_path / "plain.cu"
    source.write_text('extern "C" __global__ void f(float* x) { x[0] = x[0] * x[1] + 1.0f; }')
    ptx = tmp_path / "plain.ptx"
    subprocess.run([NVCC, "--ptx", "-arch=sm_90", *_cuda.CUPY_APPENDED_OPTIONS, "-o",
                    str(ptx), str(source)], check=True, capture_output=True, timeout=300)
    assert ".ftz" in ptx.read_text()


def load_nvrtc():
    """libnvrtc through ctypes (an installed nvidia-cuda-nvrtc wheel, or the system's),
    or None.  Its builtins library is loaded first, from the same folder."""
    candidates = []
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidates += sorted(Path(root).glob("*/lib/libnvrtc.so*"))
    candidates += [found] if (found := ctypes.util.find_library("nvrtc")) else []
    for path in candidates:
        try:
            for builtins in sorted(Path(path).parent.glob("libnvrtc-builtins.so*")):
                ctypes.CDLL(str(builtins), mode=ctypes.RTLD_GLOBAL)
            return ctypes.CDLL(str(path))
        except OSError:
            continue
    return None


NVRTC = load_nvrtc()


@pytest.mark.skipif(NVRTC is None, reason="libnvrtc not found (pip install nvidia-cuda-nvrtc "
                    "to compile the sources as CuPy does)")
@pytest.mark.parametrize("name", sorted(_cuda.entry_points()))
def test_compiles_with_nvrtc_as_cupy_does(name):
    """NVRTC, unlike nvcc, sees no CUDA headers: the sources must stand alone."""
    program = ctypes.c_void_p()
    source = _cuda.kernel_source(name).encode()
    assert NVRTC.nvrtcCreateProgram(ctypes.byref(program), source, name.encode(), 0,
                                    None, None) == 0
    options = [o.encode() for o in (*_cuda.NVRTC_OPTIONS, *_cuda.CUPY_APPENDED_OPTIONS,
                                    "--gpu-architecture=sm_90")]
    status = NVRTC.nvrtcCompileProgram(program, len(options),
                                       (ctypes.c_char_p * len(options))(*options))
    size = ctypes.c_size_t()
    NVRTC.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    NVRTC.nvrtcGetProgramLog(program, log)
    NVRTC.nvrtcDestroyProgram(ctypes.byref(program))
    assert status == 0 and not log.value.strip(), log.value.decode()


# --- the gpu marker (CPU) -----------------------------------------------------------

def test_unmarked_cupy_tests_are_refused_at_collection(tmp_path):
    """tests/conftest.py fails the collection of a CuPy test without @pytest.mark.gpu
    (fixture or xp param), and accepts the marked ones."""
    (tmp_path / "conftest.py").write_text((Path(__file__).parent / "conftest.py").read_text())
    (tmp_path / "test_probe.py").write_text(
        "import pytest\n"
        "def test_fixture_unmarked(cupy): pass\n"
        "@pytest.mark.parametrize('xp', ['numpy', 'cupy'])\n"
        "def test_xp_unmarked(xp): pass\n"
        "def test_xp_fixture(xp): pass\n"  # conftest's xp marks its cupy param
        "@pytest.mark.gpu\n"
        "def test_fixture_marked(cupy): pass\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                             "-p", "no:cacheprovider", str(tmp_path)], cwd=tmp_path,
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode != 0
    refused = (result.stdout + result.stderr).split("need @pytest.mark.gpu: ")[1]
    names = {node.split("::")[1] for node in refused.split()[0:10] if "::" in node}
    assert {n.rstrip(",") for n in names} == {"test_fixture_unmarked", "test_xp_unmarked[cupy]"}


# --- the kernels against their twins (GPU) --------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("h", LEVELS)
@pytest.mark.parametrize("d", [1, 3, 37, 64, 130])
def test_reconstruct_and_encode_equal_the_twin(cupy, dtype, h, d):
    X, lo, step = quantizer_problem(np.random.default_rng([h, d]), 67, d, dtype, h)
    args = cupy.asarray(X), cupy.asarray(lo), cupy.asarray(step), h
    values, codes = _cuda.reconstruct(*args), _cuda.encode(*args)
    assert values.dtype == dtype and codes.dtype == _uniform.code_dtype(h)
    np.testing.assert_array_equal(values.get(), _uniform.reconstruct(X, lo, step, h))
    expected = _uniform.encode(X, lo, _uniform.safe_step(step), h)
    np.testing.assert_array_equal(codes.get(), expected)
    np.testing.assert_array_equal(_cuda.decode(codes, *args[1:3], dtype).get(),
                                  _uniform.decode(expected, lo, step, dtype))


@pytest.mark.gpu
def test_float32_subnormals_are_not_flushed(cupy):
    """A range below 1e-38 gives subnormal float32 steps and centres; flushing them to
    zero (CuPy compiles with -ftz=true) would change every reconstructed value."""
    rng = np.random.default_rng(4)
    train = rng.uniform(0, 1e-38, size=(50, 8)).astype(np.float32)
    lo = train.min(axis=0).astype(np.float64)
    step = (train.max(axis=0).astype(np.float64) - lo) / 4
    X = rng.uniform(-1e-38, 2e-38, size=(40, 8)).astype(np.float32)
    args = cupy.asarray(X), cupy.asarray(lo), cupy.asarray(step), 4
    expected = _uniform.reconstruct(X, lo, step, 4)
    assert np.any((expected != 0) & (np.abs(expected) < np.finfo(np.float32).tiny))
    np.testing.assert_array_equal(_cuda.reconstruct(*args).get(), expected)
    np.testing.assert_array_equal(_cuda.encode(*args).get(),
                                  _uniform.encode(X, lo, _uniform.safe_step(step), 4))
    wide = _cuda.convert(cupy.asarray(X), np.float64)
    np.testing.assert_array_equal(wide.get(), X.astype(np.float64))
    np.testing.assert_array_equal(_cuda.convert(wide, np.float32).get(), X)


@pytest.mark.gpu
def test_non_finite_values_are_counted_in_the_kernel(cupy):
    X, lo, step = quantizer_problem(np.random.default_rng(5), 3001, 13, np.float32, 7)
    X[17, 3], X[2, 12], X[3000, 0] = np.nan, np.inf, -np.inf
    for function in (_cuda.reconstruct, _cuda.encode):
        with pytest.raises(ValueError, match=r"^X contains 3 NaN or infinite value\(s\)$"):
            function(cupy.asarray(X), cupy.asarray(lo), cupy.asarray(step), 7)


@pytest.mark.gpu
def test_the_public_gpu_path_keeps_float32_subnormals(cupy):
    """fit (min/max), transform, decode, unpack and Q-B's cast on CuPy float32 input,
    where CuPy's own reductions, casts and arithmetic (-ftz=true) would flush."""
    from dnnstress.stress import MantissaErasure, UniformQuantizer

    X = np.random.default_rng(6).uniform(-2e-39, 3e-39, size=(64, 9)).astype(np.float32)
    X[:, 3] = np.finfo(np.float32).smallest_subnormal
    cpu = UniformQuantizer(5, per_dimension=True).fit(X)
    gpu = UniformQuantizer(5, per_dimension=True).fit(cupy.asarray(X))
    np.testing.assert_array_equal(gpu.data_min_.get(), cpu.data_min_)
    expected = cpu.transform(X)
    assert np.any((expected != 0) & (np.abs(expected) < np.finfo(np.float32).tiny))
    np.testing.assert_array_equal(gpu.transform(cupy.asarray(X)).get(), expected)
    np.testing.assert_array_equal(gpu.decode(gpu.encode(cupy.asarray(X))).get(), expected)
    np.testing.assert_array_equal(gpu.unpack(gpu.pack(cupy.asarray(X))).get(), expected)
    for dtype in ("float64", "float32"):
        q = MantissaErasure(3, dtype=dtype)
        np.testing.assert_array_equal(q.fit(cupy.asarray(X)).transform(cupy.asarray(X)).get(),
                                      q.fit(X).transform(X))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", FLOATS)
def test_many_rows_per_thread(cupy, dtype):
    """Enough rows that every thread loops past its unrolled block of rows."""
    X, lo, step = quantizer_problem(np.random.default_rng(1), 40_003, 7, dtype, 27)
    got = _cuda.reconstruct(cupy.asarray(X), cupy.asarray(lo), cupy.asarray(step), 27)
    np.testing.assert_array_equal(got.get(), _uniform.reconstruct(X, lo, step, 27))


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["misaligned", "strided", "fortran"])
def test_any_memory_layout(cupy, layout):
    """Rows not 16-byte aligned fall back to narrower loads; views are made contiguous."""
    X, lo, step = quantizer_problem(np.random.default_rng(2), 33, 12, np.float32, 5)
    X_gpu = cupy.asarray(X)
    if layout == "misaligned":
        flat = cupy.empty(X.size + 1, dtype=X.dtype)
        flat[1:] = X_gpu.ravel()
        X_gpu = flat[1:].reshape(X.shape)
    elif layout == "strided":
        wide = cupy.zeros((33, 24), dtype=X.dtype)
        wide[:, ::2] = X_gpu
        X_gpu = wide[:, ::2]
    else:
        X_gpu = cupy.asfortranarray(X_gpu)
    got = _cuda.reconstruct(X_gpu, cupy.asarray(lo), cupy.asarray(step), 5)
    np.testing.assert_array_equal(got.get(), _uniform.reconstruct(X, lo, step, 5))


@pytest.mark.gpu
def test_scalar_parameters_and_out(cupy):
    """Q-1 passes one range for all columns; ``out`` is filled in place and returned."""
    X, _, _ = quantizer_problem(np.random.default_rng(3), 20, 9, np.float64, 16)
    lo, step = float(X.min()), float(X.max() - X.min()) / 16
    out = cupy.empty(X.shape, dtype=X.dtype)
    got = _cuda.reconstruct(cupy.asarray(X), lo, step, 16, out=out)
    assert got is out
    np.testing.assert_array_equal(
        got.get(), _uniform.reconstruct(X, np.full(9, lo), np.full(9, step), 16))


@pytest.mark.gpu
def test_quantize_rejects_bad_input(cupy):
    X = cupy.ones((4, 3), dtype=cupy.float32)
    lo, step = cupy.zeros(3), cupy.ones(3)
    with pytest.raises(TypeError, match="CuPy array"):
        _cuda.reconstruct(X.get(), lo, step, 4)
    with pytest.raises(TypeError, match="dtype int32"):
        _cuda.reconstruct(X.astype(cupy.int32), lo, step, 4)
    with pytest.raises(ValueError, match="2-D"):
        _cuda.encode(X.ravel(), lo, step, 4)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        _cuda.reconstruct(X, cupy.zeros(4), step, 4)
    with pytest.raises(ValueError, match="n_levels"):
        _cuda.encode(X, lo, step, 65537)
    with pytest.raises(ValueError, match="dtype uint8"):
        _cuda.encode(X, lo, step, 4, out=cupy.empty((4, 3), dtype=cupy.uint16))
    with pytest.raises(ValueError, match="C-contiguous"):
        _cuda.reconstruct(X, lo, step, 4, out=cupy.empty((3, 4), dtype=X.dtype).T)


@pytest.mark.gpu
@pytest.mark.parametrize("bits", range(17))
@pytest.mark.parametrize("d", [1, 5, 8, 13, 100])
def test_pack_and_unpack_equal_the_twin(cupy, bits, d):
    rng = np.random.default_rng([bits, d])
    codes = rng.integers(0, 1 << bits, size=(29, d)).astype(_packing.code_dtype_for_bits(bits))
    packed = _cuda.pack(cupy.asarray(codes), bits)
    expected = _packing.pack_codes(codes, bits)
    assert packed.dtype == cupy.uint8 and packed.shape == expected.shape
    np.testing.assert_array_equal(packed.get(), expected)
    unpacked = _cuda.unpack(packed, bits, d)
    assert unpacked.dtype == _packing.code_dtype_for_bits(bits)
    np.testing.assert_array_equal(unpacked.get(), codes)


@pytest.mark.gpu
@pytest.mark.parametrize("h", LEVELS)
def test_encode_then_pack_round_trips(cupy, h):
    """The quantizer's GPU path end to end: codes -> bytes -> codes, any h."""
    X, lo, step = quantizer_problem(np.random.default_rng(h), 301, 77, np.float32, h)
    codes = _cuda.encode(cupy.asarray(X), cupy.asarray(lo), cupy.asarray(step), h)
    bits = bits_for_levels(h)
    packed = _cuda.pack(codes, bits, check_range=False)
    np.testing.assert_array_equal(packed.get(), _packing.pack_codes(codes.get(), bits))
    np.testing.assert_array_equal(_cuda.unpack(packed, bits, 77).get(), codes.get())


@pytest.mark.gpu
def test_pack_rejects_bad_input(cupy):
    with pytest.raises(ValueError, match=r"\[0, 7\]"):
        _cuda.pack(cupy.full((2, 3), 8, dtype=cupy.uint8), 3)
    with pytest.raises(TypeError, match="uint8, uint16"):
        _cuda.pack(cupy.zeros((2, 3), dtype=cupy.int64), 3)
    with pytest.raises(ValueError, match="bits"):
        _cuda.pack(cupy.zeros((2, 3), dtype=cupy.uint8), 17)
    with pytest.raises(ValueError, match="need"):
        _cuda.unpack(cupy.zeros((2, 3), dtype=cupy.uint8), 3, 3)
    with pytest.raises(TypeError, match="uint8"):
        _cuda.unpack(cupy.zeros((2, 2), dtype=cupy.uint16), 3, 3)
