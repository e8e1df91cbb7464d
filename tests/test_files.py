"""Every file dnnstress writes follows the umask, atomic writes included (issue 8, "Files")."""

import os
import stat

import numpy as np
import pytest

from dnnstress._files import write_atomically, write_json_atomically
from dnnstress.cli import main
from dnnstress.features import FeatureSet
from dnnstress.models.cache import cached_file

# umask -> the mode a new regular file gets from open(): 0o666 less the mask.
MODES = {0o022: 0o644, 0o077: 0o600}


@pytest.fixture(params=sorted(MODES), ids=lambda mask: f"umask{mask:03o}")
def umask(request):
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _features(n_train=24, n_test=12, d=4):
    rng = np.random.default_rng(0)
    return FeatureSet(rng.random((n_train, d), dtype=np.float32), np.arange(n_train) % 2,
                      rng.random((n_test, d), dtype=np.float32), np.arange(n_test) % 2,
                      metadata={"kind": "test"})


def test_atomic_writes_follow_the_umask(tmp_path, umask):
    write_atomically(tmp_path / "a.bin", lambda tmp: tmp.write_bytes(b"x"))
    write_json_atomically(tmp_path / "b.json", {"k": 1})
    _features().save(tmp_path / "features.npz")
    cached_file("model.onnx", lambda tmp: tmp.write_bytes(b"onnx"), cache_dir=tmp_path / "c")
    written = [tmp_path / "a.bin", tmp_path / "b.json", tmp_path / "features.npz",
               tmp_path / "c" / "model.onnx", tmp_path / "c" / "model.onnx.sha256"]
    assert {path.name: _mode(path) for path in written} == {
        path.name: MODES[umask] for path in written}
    assert not list(tmp_path.rglob("*.tmp"))


def test_atomic_write_replaces_and_cleans_up_on_failure(tmp_path):
    target = tmp_path / "t.txt"
    write_atomically(target, lambda tmp: tmp.write_text("one"))
    write_atomically(target, lambda tmp: tmp.write_text("two"))

    def fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, fail)
    assert target.read_text() == "two"
    assert [path.name for path in tmp_path.iterdir()] == ["t.txt"]


def test_every_file_of_a_sweep_follows_the_umask(tmp_path, umask, capsys):
    _features().save(tmp_path / "features.npz")
    out = tmp_path / "out"
    assert main(["sweep", str(tmp_path / "features.npz"), "--out", str(out),
                 "--experiments", "baseline,q1", "--levels", "2", "--quiet"]) == 0
    files = sorted(path for path in out.rglob("*") if path.is_file())
    assert {path.name for path in files} >= {"results.csv", "sweep.json"}
    assert {path.name: _mode(path) for path in files} == {
        path.name: MODES[umask] for path in files}
