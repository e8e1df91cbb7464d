"""An extraction's batch checkpoint (`dnnstress.extract._Checkpoint`): what it counts as
done after damage, and what its result costs in memory."""

import tracemalloc

import numpy as np

from dnnstress.extract import _Checkpoint, checkpoint_files


def test_a_checkpoint_remade_after_damage_counts_nothing_done_until_it_writes(tmp_path):
    prefix = tmp_path / ".key.train"
    first = _Checkpoint(prefix, 10, 3)
    first.write(range(0, 4), np.ones((4, 3), np.float32), np.ones(4, bool))
    del first
    checkpoint_files(prefix)["features"].unlink()  # damaged: its arrays are made anew
    remade = _Checkpoint(prefix, 10, 3)
    assert remade.done == 0
    del remade  # killed before its first batch
    again = _Checkpoint(prefix, 10, 3)
    assert again.done == 0  # rows 0-3 are zeros now, not the ones written before


def test_a_resumed_checkpoint_keeps_its_rows_and_mask(tmp_path):
    prefix = tmp_path / ".key.train"
    first = _Checkpoint(prefix, 6, 2)
    rows = np.arange(8, dtype=np.float32).reshape(4, 2)
    first.write(range(0, 4), rows, np.array([True, False, True, True]))
    del first
    resumed = _Checkpoint(prefix, 6, 2)
    assert resumed.done == 4
    resumed.write(range(4, 6), np.full((2, 2), 9, np.float32), np.ones(2, bool))
    np.testing.assert_array_equal(resumed.result(), [[0, 1], [4, 5], [6, 7], [9, 9], [9, 9]])


def test_the_result_is_one_copy_of_the_kept_rows(tmp_path):
    """The result is the largest array of an extraction (n x d of every layer): it must
    not be copied twice on the way out of the memory-mapped file."""
    n, d = 2000, 500
    store = _Checkpoint(tmp_path / ".key.train", n, d)
    store.write(range(0, n), np.ones((n, d), np.float32), np.arange(n) % 10 != 0)
    tracemalloc.start()
    try:
        result = store.result()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.shape == (n - n // 10, d)
    assert peak < 1.3 * result.nbytes  # numpy reports its buffers to tracemalloc
