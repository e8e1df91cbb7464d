"""Atomic file writes: a reader or a crash never sees half a file.

Every result dnnstress keeps (built networks, features files, sweep metadata,
extraction checkpoints) is written under a temporary name in the target's folder and
renamed over the target with :func:`os.replace`, which is atomic on one file system.
The temporary file is created with mode 0o666 less the umask, like any file ``open``
creates, so results are as readable as everything else the user writes (a
:func:`tempfile.mkstemp` file would stay 0o600 after the rename).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path


def write_atomically(target, write: Callable[[Path], object]) -> None:
    """Run ``write(tmp)`` on a temporary file beside ``target``, then rename it over."""
    target = Path(target)
    tmp = _create_beside(target)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomically(target, value) -> None:
    """``value`` as indented, key-sorted JSON at ``target``, written atomically."""
    text = json.dumps(value, indent=2, sort_keys=True) + "\n"
    write_atomically(target, lambda tmp: tmp.write_text(text))


def _create_beside(target: Path) -> Path:
    """A new empty file ``.NAME.RANDOM.tmp`` beside ``target``, mode 0o666 less the umask."""
    while True:
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            # O_EXCL: never reuse a name another writer holds; 0o666 lets the umask decide.
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
