"""The built-network cache under faults: killed builds, damaged files, concurrent builds.

A child process builds a 4 MB "network" through :func:`dnnstress.models.cache.cached_file`
(the code every model build goes through) in small timed chunks and is SIGKILLed at
seeded moments; the cache must never hold a partial file, and the next call must clean
up and succeed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from dnnstress.models import cache

NAME = "net-v1.onnx"
CHUNKS, CHUNK = 40, 100_000
CONTENT = b"".join(bytes([i]) * CHUNK for i in range(CHUNKS))

CHILD = f"""
import pathlib, sys, time
from dnnstress.models import cache

def build(path):
    print("building", flush=True)
    with open(path, "wb") as file:
        for i in range({CHUNKS}):
            file.write(bytes([i]) * {CHUNK})
            file.flush()
            time.sleep(0.004)
    log = pathlib.Path(sys.argv[1]) / "builds.log"
    with open(log, "a") as file:
        file.write("built\\n")

cache.cached_file({NAME!r}, build, pathlib.Path(sys.argv[1]) / "cache")
print("done", flush=True)
"""


def _child(tmp_path):
    return subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)


def _write(path):
    path.write_bytes(CONTENT)


def _temporaries(directory):
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("seed", range(6))
def test_killed_build_never_leaves_a_corrupt_cache(tmp_path, seed):
    directory = tmp_path / "cache"
    child = _child(tmp_path)
    assert child.stdout.readline() == "building\n"
    # From the first chunk to just past the end of the build (the digest and record).
    time.sleep(random.Random(seed).uniform(0.0, 0.25))
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stdout.close()
    final = directory / NAME
    if final.exists():  # renamed into place only when complete
        assert final.read_bytes() == CONTENT
    path = cache.cached_file(NAME, _write, directory)
    assert path.read_bytes() == CONTENT
    assert cache.sha256_file(path) == (directory / f"{NAME}.sha256").read_text().split()[0]
    assert _temporaries(directory) == []  # what the killed build left is gone


def test_temporaries_of_a_dead_build_are_removed(tmp_path):
    stale = [tmp_path / f".{NAME}.k3j2.tmp", tmp_path / f".{NAME}.sha256.x9.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    other = tmp_path / ".other.onnx.a1.tmp"
    other.write_bytes(b"someone else's")
    cache.cached_file(NAME, _write, tmp_path)
    assert not any(path.exists() for path in stale) and other.exists()


def test_concurrent_builds_build_once(tmp_path):
    children = [_child(tmp_path) for _ in range(3)]
    outputs = [child.communicate(timeout=60)[0] for child in children]
    assert all(child.returncode == 0 for child in children)
    assert all(out.endswith("done\n") for out in outputs)
    assert (tmp_path / "builds.log").read_text() == "built\n"
    assert (tmp_path / "cache" / NAME).read_bytes() == CONTENT


@pytest.mark.parametrize("damage", ["truncate", "flip", "append", "record"])
def test_damaged_cached_file_is_rebuilt_and_said(tmp_path, capsys, damage):
    path = cache.cached_file(NAME, _write, tmp_path)
    assert capsys.readouterr().err == ""
    if damage == "truncate":
        os.truncate(path, len(CONTENT) // 2)
    elif damage == "flip":
        with open(path, "r+b") as file:
            file.seek(123_456)
            file.write(b"\xff")
    elif damage == "append":
        with open(path, "ab") as file:
            file.write(b"\0")
    else:
        (tmp_path / f"{NAME}.sha256").write_text("0" * 64 + f"  {NAME}\n")
    calls = []
    rebuilt = cache.cached_file(NAME, lambda p: (calls.append(p), _write(p)), tmp_path)
    assert calls and rebuilt.read_bytes() == CONTENT
    err = capsys.readouterr().err
    assert f"the cached {path} does not match its recorded sha256" in err
    assert "rebuilding" in err and err.count("\n") == 1
