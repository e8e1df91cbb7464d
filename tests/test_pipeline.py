"""The batch pipeline that CPU and GPU extraction share: order, buffer reuse, overlap of
the upload with inference, bounded work in flight and errors, checked with fake steps
whose decoding takes random times."""

import threading
import time

import numpy as np
import pytest

from dnnstress._pipeline import run_batches, slot_count


class FakeSteps:
    """load/stage/infer that log what happens and check that no buffer is reused early."""

    def __init__(self, n_slots, seed=0, fail_at=None):
        self.rng = np.random.default_rng(seed)
        self.delays = self.rng.uniform(0, 0.004, 1000)
        self.busy = [False] * n_slots
        self.log, self.lock = [], threading.Lock()
        self.active = self.most_active = 0
        self.fail_at = fail_at

    def load(self, number, slot):
        with self.lock:
            assert not self.busy[slot], f"slot {slot} reused while batch data was in use"
            self.busy[slot] = True
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            self.log.append(("load", number))
        time.sleep(self.delays[number])
        with self.lock:
            self.active -= 1
        if number == self.fail_at:
            raise ValueError(f"cannot decode batch {number}")
        return number, slot

    def stage(self, number, loaded):
        self.log.append(("stage", number))
        return loaded

    def infer(self, staged):
        number, _ = staged
        self.log.append(("infer", number))
        return number * 10

    def consumed(self, loaded):
        self.busy[loaded[1]] = False


@pytest.mark.parametrize("workers, n_batches", [(1, 7), (3, 20), (5, 3), (4, 1)])
def test_batches_come_back_in_order_and_no_buffer_is_reused_early(workers, n_batches):
    steps = FakeSteps(slot_count(workers), seed=workers)
    results = []
    for loaded, result in run_batches(n_batches, steps.load, steps.stage, steps.infer,
                                      workers=workers):
        results.append((loaded[0], result))
        time.sleep(0.001)  # the consumer still holds the batch: its slot must stay busy
        steps.consumed(loaded)
    assert results == [(i, 10 * i) for i in range(n_batches)]
    assert steps.most_active <= workers


def test_the_next_batch_is_staged_before_this_one_runs():
    steps = FakeSteps(slot_count(2))
    for loaded, _ in run_batches(6, steps.load, steps.stage, steps.infer, workers=2):
        steps.consumed(loaded)
    events = [event for event in steps.log if event[0] != "load"]
    for number in range(5):  # the upload of batch i + 1 overlaps the inference of batch i
        assert events.index(("stage", number + 1)) < events.index(("infer", number))
    assert [n for kind, n in events if kind == "infer"] == list(range(6))


def test_decoding_runs_ahead_in_several_threads_but_boundedly():
    workers = 4
    started = threading.Event()
    seen = []

    def load(number, slot):
        seen.append(number)
        if len(seen) == workers:
            started.set()
        time.sleep(0.01)
        return number, slot

    def infer(staged):
        # Every decoder has had work, and none runs further ahead than the slots allow:
        # batch i infers while i + 1 is staged and i + 2 .. i + 1 + workers decode.
        assert started.wait(2)
        assert max(seen) <= staged[0] + 1 + workers
        return staged

    batches = list(run_batches(30, load, lambda n, loaded: loaded, infer, workers=workers))
    assert [b[0][0] for b in batches] == list(range(30))


def test_a_decoding_error_surfaces_after_the_batches_before_it():
    steps = FakeSteps(slot_count(3), fail_at=5)
    done = []
    with pytest.raises(ValueError, match="cannot decode batch 5"):
        for loaded, result in run_batches(40, steps.load, steps.stage, steps.infer,
                                          workers=3):
            done.append(loaded[0])
            steps.consumed(loaded)
    assert done == [0, 1, 2, 3, 4]
    loads = [n for kind, n in steps.log if kind == "load"]
    assert max(loads) < 5 + slot_count(3)  # the rest was cancelled, not decoded


def test_no_batches_is_no_work():
    assert list(run_batches(0, None, None, None, workers=2)) == []
