"""What ran, where and when: the block every machine-readable result starts with.

``bench --json``, ``sweep --json`` and ``report --json`` all record the same facts, so
that a number read back later can be traced to the version, the machine and the
parameters that produced it.
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

from dnnstress import __version__


def run_info(command: str, params: dict) -> dict:
    """The version, UTC date, machine and parameters of one command, as plain JSON values.

    Parameters
    ----------
    command : str
        The command that ran, e.g. ``"bench quantize"``.
    params : dict
        Its parameters; values JSON cannot hold (paths, tuples, objects) are converted
        to strings or lists.

    Returns
    -------
    dict
        ``{"dnnstress": version, "command", "date" (ISO 8601, UTC), "machine": {...},
        "params": {...}}``.
    """
    return {
        "dnnstress": __version__,
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "params": {str(key): _plain(value) for key, value in params.items()},
    }


def machine_info() -> dict:
    """CPU model, logical cores (all and usable by this process), OS, Python and BLAS."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable if usable is not None else os.cpu_count(),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "blas": _blas_info(),
    }


def _cpu_model() -> str:
    # platform.processor() is empty or just "x86_64" on Linux; /proc/cpuinfo names it.
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def _blas_info() -> list[dict]:
    # threadpoolctl lists only libraries already loaded: numpy loads the BLAS it uses.
    import numpy  # noqa: F401
    from threadpoolctl import threadpool_info

    keys = ("user_api", "internal_api", "version", "num_threads", "threading_layer",
            "architecture")
    return [{key: info[key] for key in keys if key in info} for info in threadpool_info()]


def _plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(item) for item in value]
    return str(value)
