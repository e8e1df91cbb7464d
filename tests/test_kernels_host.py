"""The real CUDA kernels, compiled for the CPU with g++, against their numpy twins.

No GPU needed: ``cuda_host`` builds kernels/*.cu through kernels/host_shim.cuh and
stands in for CuPy, so ``dnnstress._cuda``'s wrappers (vector widths, the launch grid of
``_row_walk_launch``, the in-kernel parameter casts, the NaN/inf counter) run unchanged
and every result must EQUAL the twin (``_uniform``, ``_packing``).  The whole module
runs once more in a child process against an -fsanitize=address,undefined build.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import cuda_host
from cuda_host import quantizer_problem
from dnnstress import _array, _cuda
from dnnstress.stress import MantissaErasure, UniformQuantizer, _packing, _uniform
from dnnstress.stress.accounting import bits_for_levels

pytestmark = pytest.mark.skipif(cuda_host.GXX is None,
                                reason="g++ is not on PATH: the kernels' host build needs it")
SANITIZED = os.environ.get(cuda_host.SANITIZE_ENV) == "1"
LEVELS = [1, 2, 3, 27, 255, 256, 257, 4097, 65535, 65536]
FLOATS = [np.float32, np.float64]


@pytest.fixture(scope="session")
def host_library(tmp_path_factory):
    return cuda_host.build(tmp_path_factory.mktemp("kernels"), sanitize=SANITIZED)


def _clear_caches():
    for cached in (_cuda._module, _cuda._function_on, _cuda._multiprocessors,
                   _array._cupy_nonfinite_counter):
        cached.cache_clear()


@pytest.fixture(params=[132, 1], ids=["h200", "one-sm"])
def gpu(request, host_library, monkeypatch):
    """The stand-in CuPy as ``cupy``: an H200's 132 multiprocessors, or one (a small
    grid, so every thread walks many rows)."""
    host = cuda_host.HostCupy(host_library, multiprocessors=request.param)
    _clear_caches()
    monkeypatch.setitem(sys.modules, "cupy", host)
    yield host
    _clear_caches()


def widths_used(gpu, prefix):
    return {name.rsplit("_v", 1)[1] for name, _, _ in gpu.launches if name.startswith(prefix)}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("h", LEVELS)
def test_reconstruct_encode_decode_equal_the_twin(gpu, dtype, h):
    rng = np.random.default_rng(h)
    for d in (1, 3, 4, 6, 37, 64, 130):  # every vector width the wrapper can choose
        X, lo, step = quantizer_problem(rng, 23, d, dtype, h)
        args = gpu.asarray(X), gpu.asarray(lo), gpu.asarray(step), h
        values, codes = _cuda.reconstruct(*args), _cuda.encode(*args)
        expected = _uniform.encode(X, lo, _uniform.safe_step(step), h)
        assert values.dtype == dtype and codes.dtype == _uniform.code_dtype(h)
        np.testing.assert_array_equal(values.get(), _uniform.reconstruct(X, lo, step, h))
        np.testing.assert_array_equal(codes.get(), expected)
        decoded = _cuda.decode(codes, gpu.asarray(lo), gpu.asarray(step), dtype)
        np.testing.assert_array_equal(decoded.get(), _uniform.decode(expected, lo, step, dtype))
    top = "4" if dtype == np.float32 else "2"
    assert widths_used(gpu, "quantize_reconstruct") == {"1", "2", top}


@pytest.mark.parametrize("dtype", FLOATS)
def test_misaligned_rows_take_narrower_vectors(gpu, dtype):
    X, lo, step = quantizer_problem(np.random.default_rng(2), 33, 12, dtype, 5)
    flat = gpu.empty(X.size + 1, dtype=dtype)
    flat[1:] = X.ravel()
    shifted = flat[1:].reshape(X.shape)  # every row start off the 16-byte grid
    got = _cuda.reconstruct(shifted, gpu.asarray(lo), gpu.asarray(step), 5)
    np.testing.assert_array_equal(got.get(), _uniform.reconstruct(X, lo, step, 5))
    assert widths_used(gpu, "quantize_reconstruct") == {"1"}


@pytest.mark.parametrize("dtype", FLOATS)
def test_many_rows_per_thread_and_long_rows(gpu, dtype):
    for n, d in ((5000, 7), (3, 70_001)):
        X, lo, step = quantizer_problem(np.random.default_rng(n), n, d, dtype, 27)
        got = _cuda.reconstruct(gpu.asarray(X), gpu.asarray(lo), gpu.asarray(step), 27)
        np.testing.assert_array_equal(got.get(), _uniform.reconstruct(X, lo, step, 27))
    _, grid, block = gpu.launches[0]  # the 5000-row launch
    if gpu.cuda.Device().attributes["MultiProcessorCount"] == 1:
        assert grid[1] * block[1] * 4 < 5000  # each thread loops past its 4 unrolled rows


def test_launch_geometry_follows_the_multiprocessor_count():
    """Grid y holds two waves of resident threads; x covers a row once."""
    grid, block = _cuda._row_walk_launch(10**6, 7, multiprocessors=132)
    assert block == (32, 8, 1) and grid[0] == 1
    assert grid[1] * 8 * 32 == 2 * 132 * 2048
    grid, block = _cuda._row_walk_launch(10**6, 70_001, multiprocessors=1)
    assert grid[0] * block[0] >= 70_001 and block[0] * block[1] <= 256
    assert _cuda._row_walk_launch(3, 5, multiprocessors=132)[0][1] == 1


@pytest.mark.parametrize("dtype", FLOATS)
def test_non_finite_values_are_counted_in_the_kernel(gpu, dtype):
    X, lo, step = quantizer_problem(np.random.default_rng(5), 301, 13, dtype, 7)
    X[17, 3], X[2, 12], X[300, 0] = np.nan, np.inf, -np.inf
    X[40, 5] = np.finfo(dtype).smallest_subnormal  # finite, not counted
    for function in (_cuda.reconstruct, _cuda.encode):
        with pytest.raises(ValueError, match=r"^X contains 3 NaN or infinite value\(s\)$"):
            function(gpu.asarray(X), gpu.asarray(lo), gpu.asarray(step), 7)


def test_subnormal_parameters_and_centres_are_kept(gpu):
    """The float32 counterpart of the GPU test: the kernel's own casts keep subnormals."""
    rng = np.random.default_rng(4)
    train = rng.uniform(0, 1e-38, size=(50, 8)).astype(np.float32)
    lo = train.min(axis=0).astype(np.float64)
    step = (train.max(axis=0).astype(np.float64) - lo) / 4
    X = rng.uniform(-1e-38, 2e-38, size=(40, 8)).astype(np.float32)
    expected = _uniform.reconstruct(X, lo, step, 4)
    assert np.any((expected != 0) & (np.abs(expected) < np.finfo(np.float32).tiny))
    got = _cuda.reconstruct(gpu.asarray(X), gpu.asarray(lo), gpu.asarray(step), 4)
    np.testing.assert_array_equal(got.get(), expected)
    wide = _cuda.convert(gpu.asarray(X), np.float64)
    np.testing.assert_array_equal(wide.get(), X.astype(np.float64))
    np.testing.assert_array_equal(_cuda.convert(wide, np.float32).get(), X)


@pytest.mark.parametrize("bits", range(17))
def test_pack_and_unpack_equal_the_twin(gpu, bits):
    rng = np.random.default_rng(bits)
    for n, d in ((29, 1), (7, 5), (5, 8), (3, 13), (4, 100), (2, 40_001)):
        codes = rng.integers(0, 1 << bits, size=(n, d)).astype(
            _packing.code_dtype_for_bits(bits))
        packed = _cuda.pack(gpu.asarray(codes), bits)
        np.testing.assert_array_equal(packed.get(), _packing.pack_codes(codes, bits))
        unpacked = _cuda.unpack(packed, bits, d)
        assert unpacked.dtype == _packing.code_dtype_for_bits(bits)
        np.testing.assert_array_equal(unpacked.get(), codes)


def test_pack_masks_codes_too_wide_for_their_bits(gpu):
    """Unchecked codes are cut to ``bits`` bits, never spilled into their neighbours."""
    codes = np.array([[7, 0, 7, 0, 7]], dtype=np.uint8)
    packed = _cuda.pack(gpu.asarray(codes), 2, check_range=False)
    np.testing.assert_array_equal(packed.get(), _packing.pack_codes(codes & 3, 2))


@pytest.mark.parametrize("h", [2, 27, 300, 65536])
@pytest.mark.parametrize("per_dimension", [False, True])
def test_quantizer_on_the_gpu_path_equals_numpy(gpu, h, per_dimension):
    """UniformQuantizer end to end on "CuPy" arrays: fit, transform, encode, decode,
    pack and unpack, against the same estimator on numpy."""
    X = np.random.default_rng(h).standard_normal((61, 19)).astype(np.float32)
    X[:, 4] = 0.5
    cpu = UniformQuantizer(h, per_dimension=per_dimension).fit(X)
    q = UniformQuantizer(h, per_dimension=per_dimension).fit(gpu.asarray(X))
    device_x = gpu.asarray(X)
    np.testing.assert_array_equal(q.transform(device_x).get(), cpu.transform(X))
    codes = q.encode(device_x)
    np.testing.assert_array_equal(codes.get(), cpu.encode(X))
    np.testing.assert_array_equal(q.decode(codes).get(), cpu.decode(cpu.encode(X)))
    packed = q.pack(device_x)
    np.testing.assert_array_equal(packed.get(), cpu.pack(X))
    np.testing.assert_array_equal(q.unpack(packed).get(), cpu.transform(X))


def test_mantissa_erasure_on_the_gpu_path_keeps_subnormals(gpu):
    X = np.array([[1e-40, -3e-44, 1.5, np.finfo(np.float32).smallest_subnormal]],
                 dtype=np.float32)
    for n_bits in (0, 20, 40):
        expected = MantissaErasure(n_bits).fit(X).transform(X)
        got = MantissaErasure(n_bits).fit(gpu.asarray(X)).transform(gpu.asarray(X))
        np.testing.assert_array_equal(got.get(), expected)
    assert MantissaErasure(0).fit(X).transform(X)[0, 0] != 0


@pytest.mark.skipif(SANITIZED, reason="this is the run under the sanitizers")
@pytest.mark.skipif(cuda_host.asan_runtime() is None,
                    reason="g++'s AddressSanitizer runtime (libasan) is not installed")
def test_every_kernel_is_clean_under_address_and_undefined_behaviour_sanitizers(tmp_path):
    """The kernel tests of this module again, in a child Python that loads the
    ASan/UBSan build (aborting at the first finding, which the failure quotes)."""
    result = subprocess.run(
        # The estimator-level tests add no kernel launch the others lack: left out.
        [sys.executable, "-m", "pytest", "-q", "-x", "-s", "-p", "no:cacheprovider",
         "-k", "not gpu_path", "--basetemp", str(tmp_path / "run"), __file__],
        env=cuda_host.sanitizer_env(), capture_output=True, text=True, timeout=600,
        check=False, cwd=os.path.dirname(__file__))
    output = result.stdout + result.stderr
    findings = [line for line in output.splitlines()
                if "SUMMARY:" in line or "ERROR:" in line or "runtime error" in line
                or line.startswith("FAILED")]
    assert result.returncode == 0, "\n".join(findings) + "\n" + output[-2000:]
    assert " passed" in output and "ERROR: AddressSanitizer" not in output
    assert "runtime error" not in output


@pytest.mark.skipif(SANITIZED, reason="run once, by the plain build")
def test_the_gpu_tests_pass_against_the_host_build(tmp_path):
    """The gpu-marked tests of the kernels and stressors, with the stand-in CuPy as
    ``cupy`` (tests/conftest.py, DNNSTRESS_HOST_CUPY): their bodies, the wrappers and
    the kernels' C++ branch are checked on every CI run, the PTX branch only on a GPU."""
    tests = os.path.dirname(__file__)
    files = [os.path.join(tests, name) for name in
             ("test_kernels.py", "test_quantize.py", "test_pack.py", "test_stressors.py")]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
         "--basetemp", str(tmp_path / "run"), *files],
        env={**os.environ, "DNNSTRESS_HOST_CUPY": str(tmp_path / "kernels")},
        capture_output=True, text=True, timeout=600, check=False, cwd=tests)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary, summary


def test_a_constant_dimension_far_from_a_test_value_gives_its_constant(gpu):
    """x - lo overflows (inf / inf = NaN on a constant dimension): code 0, value lo, in
    the twin and the kernels alike; never a NaN."""
    lo, step = np.array([3e38, -3e38, 0.0]), np.array([0.0, 0.0, 2e38 / 4])
    X = np.array([[-3e38, 3e38, 3e38], [0.0, 0.0, -3e38]], dtype=np.float32)
    expected = _uniform.reconstruct(X, lo, step, 4)
    np.testing.assert_array_equal(expected[:, :2], np.float32([[3e38, -3e38]] * 2))
    got = _cuda.reconstruct(gpu.asarray(X), gpu.asarray(lo), gpu.asarray(step), 4)
    np.testing.assert_array_equal(got.get(), expected)
    np.testing.assert_array_equal(
        _cuda.encode(gpu.asarray(X), gpu.asarray(lo), gpu.asarray(step), 4).get(),
        [[0, 0, 3], [0, 0, 0]])
