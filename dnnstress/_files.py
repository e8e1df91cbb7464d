"""Atomic file writes: a reader or a crash never sees half a file.

Every result dnnstress keeps (built networks, features files, sweep metadata,
extraction checkpoints) is written under a temporary name in the target's folder and
renamed over the target with :func:`os.replace`, which is atomic on one file system.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(target, write: Callable[[Path], object]) -> None:
    """Run ``write(tmp)`` on a temporary file beside ``target``, then rename it over."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomically(target, value) -> None:
    """``value`` as indented, key-sorted JSON at ``target``, written atomically."""
    text = json.dumps(value, indent=2, sort_keys=True) + "\n"
    write_atomically(target, lambda tmp: tmp.write_text(text))
