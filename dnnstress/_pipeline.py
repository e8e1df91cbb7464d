"""In-order batch pipeline: decode in a thread pool, upload the next batch during inference.

Extraction on the CPU and on the GPU share this scheduling, so the part the GPU depends
on (which host buffer may be reused when, and that batch ``i + 1`` is on its way to the
device while batch ``i`` runs) is the part the CPU tests exercise.  The device-specific
steps are callables: ``load`` fills a host buffer, ``stage`` starts moving it to where
the network reads it, ``infer`` runs the network.
"""

from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Callable, Iterator


def slot_count(workers: int) -> int:
    """How many host buffers the pipeline cycles through with ``workers`` decoders.

    ``workers`` batches being decoded, one staged (uploading) and one in inference.
    """
    return workers + 2


def run_batches(n_batches: int, load: Callable, stage: Callable, infer: Callable, *,
                workers: int) -> Iterator[tuple[object, object]]:
    """Yield ``(loaded, result)`` for batches ``0 .. n_batches - 1``, in order.

    Parameters
    ----------
    n_batches : int
        Number of batches.
    load : callable ``(number, slot) -> loaded``
        Decodes batch ``number`` into host buffer ``slot`` (in ``range(slot_count)``);
        runs in one of ``workers`` threads.
    stage : callable ``(number, loaded) -> staged``
        Starts the batch's way to the device (an asynchronous copy); main thread.
    infer : callable ``(staged) -> result``
        Runs the network on a staged batch; main thread.
    workers : int
        Decoding threads, so at most ``workers`` batches are decoded ahead: memory
        stays bounded by :func:`slot_count` buffers whatever the split's size.

    Notes
    -----
    A slot is handed to ``load`` again only after the batch that last used it has been
    inferred and its result consumed by the caller.  Batch ``i + 1`` is staged before
    batch ``i`` is inferred, so its upload overlaps the inference.  An exception in
    ``load`` is raised here, at its batch's turn (after every batch before it has been
    yielded), and the batches not yet started are cancelled.
    """
    slots = slot_count(workers)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers,
                                                 thread_name_prefix="dnnstress-decode")
    pending: collections.deque = collections.deque()
    submitted = 0

    def refill():
        nonlocal submitted
        while submitted < n_batches and len(pending) < workers:
            pending.append(pool.submit(load, submitted, submitted % slots))
            submitted += 1

    def take(number):
        refill()
        loaded = pending.popleft().result()
        return loaded, stage(number, loaded)

    try:
        current = take(0) if n_batches else None
        for number in range(n_batches):
            loaded, staged = current
            try:
                upcoming = take(number + 1) if number + 1 < n_batches else None
            except BaseException:
                # The next batch failed to decode: this one is ready, so finish it first
                # (a checkpoint then keeps it) and raise at the next batch's turn.
                yield loaded, infer(staged)
                raise
            refill()  # every decoder busy while the network runs
            yield loaded, infer(staged)
            current = upcoming
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
