"""Which compute devices work here, checked before any work starts.

A sweep or an extraction on ``cuda`` that fails half-way (after writing its metadata)
leaves files behind and hides what CUDA said.  :func:`check_device` tries the device at
once: CuPy importable, a device counted, a tiny kernel run and read back, and turns the
first failure into one ``RuntimeError`` naming that step, CUDA's own message and the fix.
"""

from __future__ import annotations

DEVICES = ("cpu", "cuda")
GPU_INSTALL_HINT = ("install the GPU extra matching the driver's CUDA version: "
                    "pip install 'dnnstress[gpu-cuda12]' or 'dnnstress[gpu-cuda13]'")


def check_device(name: str) -> None:
    """Raise ``RuntimeError`` unless computing on device ``name`` works here.

    Parameters
    ----------
    name : {"cpu", "cuda"}
        ``"cpu"`` always works.  ``"cuda"`` imports CuPy, counts the CUDA devices and runs
        a small kernel on device 0, reading its result back.

    Raises
    ------
    ValueError
        ``name`` is not a known device.
    RuntimeError
        A step of the CUDA check failed; the message names the step, quotes CuPy's or
        CUDA's own error and says how to fix it.
    """
    if name not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {name!r}")
    if name == "cpu":
        return
    try:
        import cupy
    except Exception as error:  # ImportError, or a CUDA library failing to load
        raise _failure("importing CuPy", error) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:
        raise _failure("counting CUDA devices", error) from None
    if count < 1:
        raise RuntimeError("device 'cuda' failed: CuPy sees no CUDA device (check that "
                           "the NVIDIA driver is loaded and CUDA_VISIBLE_DEVICES); or "
                           "use --device cpu")
    try:
        doubled = (cupy.arange(4, dtype=cupy.float32) * 2).sum()
        result = float(cupy.asnumpy(doubled))
    except Exception as error:
        raise _failure("running a test kernel on the GPU", error) from None
    if result != 12.0:
        raise RuntimeError(f"device 'cuda' failed: a test kernel returned {result}, "
                           f"expected 12.0; the GPU or its driver is not computing "
                           f"correctly; use --device cpu")


def _failure(step: str, error: BaseException) -> RuntimeError:
    said = " ".join(str(error).split()) or type(error).__name__
    return RuntimeError(f"device 'cuda' failed while {step}: {type(error).__name__}: "
                        f"{said}; {GPU_INSTALL_HINT}, or use --device cpu")
