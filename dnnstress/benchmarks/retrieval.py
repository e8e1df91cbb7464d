"""Retrieval scoring (blocked exact k-NN search, recall, mAP) against the matmul throughput.

Brute-force inner-product search is a matrix product plus a top-k selection; the
product of the same shapes (test x d times d x train, in one call), timed in the same
run, is its ceiling.  On a synthetic problem the size of VOC 2007 (5,011 train / 4,952
test 4,096-d ReLU features, 20 labels) and Q-2 (h = 8) as the stress, the table gives
GFLOP/s (2 n_test n_train d per search) and the fraction of the product's reached by
``nearest_neighbors`` (one search, ``--k`` neighbours, ``--block-rows`` queries a block)
and by ``retrieval_scores`` (both searches, unstressed and stressed, plus recall@k and the
multi-label precision@k and mAP@k) against two products, and by a sweep's retrieval
score of one configuration (:class:`~dnnstress.sweep.scores.NeighbourScorer`: the
unstressed neighbours were searched once for the sweep, so one search) against one.
Rounds interleave the operations, so a neighbour's burst of load hits all alike; each
keeps its best round.  The goal is 70 %.
"""

from __future__ import annotations

import importlib
import time

import numpy as np

from dnnstress.benchmarks._common import available_devices, print_table, synchronize
from dnnstress.benchmarks.svm import VOC2007, make_voc_like
from dnnstress.classify import l2_normalize
from dnnstress.retrieval import nearest_neighbors, retrieval_scores
from dnnstress.stress import UniformQuantizer
from dnnstress.sweep.scores import NeighbourScorer, Scores

GOAL = 0.7


def add_arguments(parser) -> None:
    parser.add_argument("--scale", type=float, default=1.0,
                        help="shrink samples and dimensions by this factor (default 1: "
                             "VOC 2007 size)")
    parser.add_argument("--k", type=int, default=100, help="neighbours (default 100)")
    parser.add_argument("--block-rows", type=int, default=None,
                        help="queries per matrix product (default: about 32 MiB of scores)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved timing rounds, best of each kept (default 3)")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> dict:
    if not 0 < args.scale <= 1:
        raise ValueError(f"--scale must be in (0, 1], got {args.scale}")
    if args.rounds < 1 or (args.block_rows is not None and args.block_rows < 1):
        raise ValueError("--rounds and --block-rows must be >= 1")
    sizes = {k: max(int(round(v * args.scale)), 2) for k, v in VOC2007.items()
             if k != "n_labels"}
    if not 1 <= args.k <= sizes["n_train"]:
        raise ValueError(f"--k must be in [1, {sizes['n_train']}], got {args.k}")
    X_train, Y_train, X_test, Y_test = make_voc_like(**sizes, n_labels=20, seed=args.seed)
    q2 = UniformQuantizer(8, per_dimension=True).fit(X_train)
    sets = [l2_normalize(x) for x in (X_train, X_test, q2.transform(X_train),
                                      q2.transform(X_test))]
    flop = 2.0 * sizes["n_train"] * sizes["n_test"] * sizes["n_features"]
    print(f"synthetic VOC-like problem: {sizes['n_train']} train / {sizes['n_test']} test, "
          f"{sizes['n_features']}-d float32, L2-normalised; stress Q-2 h = 8; k = {args.k}, "
          f"queries per block: {args.block_rows or 'about 32 MiB of scores'}; best of "
          f"{args.rounds} interleaved rounds")
    rows, results = [], {"sizes": sizes, "k": args.k, "block_rows": args.block_rows,
                         "goal": GOAL, "devices": {}}
    for device in available_devices(args.device):
        xp = np if device == "cpu" else importlib.import_module("cupy")
        train, test, s_train, s_test = (xp.asarray(x) for x in sets)
        ks = tuple(sorted({1, 10, args.k}))
        scorer = NeighbourScorer(Scores(("retrieval",), recall_ks=ks, label_k=args.k),
                                 block_rows=args.block_rows)
        scorer.fit(train, test, Y_train, Y_test)
        operations = {
            "matmul test @ train.T": lambda: test @ train.T,
            "nearest_neighbors": lambda: nearest_neighbors(test, train, args.k,
                                                           block_rows=args.block_rows),
            "retrieval_scores": lambda: retrieval_scores(
                train, test, s_train, s_test, Y_train, Y_test, ks=(1, 10, args.k),
                normalize=False, block_rows=args.block_rows),
            "sweep retrieval score": lambda: scorer.score(s_train, s_test),
        }
        seconds = _interleaved_best(operations, xp, args.rounds)
        matmul = seconds["matmul test @ train.T"]
        entry = {"seconds": seconds, "matmul_gflop_s": flop / matmul / 1e9,
                 "fraction_of_matmul": {
                     "nearest_neighbors": matmul / seconds["nearest_neighbors"],
                     "retrieval_scores": 2 * matmul / seconds["retrieval_scores"],
                     "sweep retrieval score": matmul / seconds["sweep retrieval score"]}}
        for name, s in seconds.items():
            products = 2 if name == "retrieval_scores" else 1
            rows.append({"device": device, "operation": name, "s": s,
                         "GFLOP/s": products * flop / s / 1e9,
                         "% of matmul": 100 * products * matmul / s})
        scores = retrieval_scores(train, test, s_train, s_test, Y_train, Y_test,
                                  ks=(1, 10, args.k), normalize=False,
                                  block_rows=args.block_rows)
        entry["scores"] = scores
        results["devices"][device] = entry
    print_table(rows, ["device", "operation", "s", "GFLOP/s", "% of matmul"])
    for device, entry in results["devices"].items():
        fraction = entry["fraction_of_matmul"]["retrieval_scores"]
        verdict = "meets" if fraction >= GOAL else "misses"
        print(f"{device}: retrieval scoring at {100 * fraction:.0f} % of the matmul "
              f"throughput ({verdict} the {100 * GOAL:.0f} % goal); Q-2 h = 8: "
              + ", ".join(f"{name} {value:.3f}" for name, value in entry["scores"].items()))
    return results


def _interleaved_best(operations, xp, rounds):
    """Best wall time of each operation over ``rounds`` rounds that run them in turn."""
    for fn in operations.values():  # warm-up: BLAS threads, page faults, kernels
        fn()
    synchronize(xp)
    best = {name: float("inf") for name in operations}
    for _ in range(rounds):
        for name, fn in operations.items():
            start = time.perf_counter()
            fn()
            synchronize(xp)
            best[name] = min(best[name], time.perf_counter() - start)
    return best
