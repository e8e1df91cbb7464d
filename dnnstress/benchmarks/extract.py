"""Extraction throughput (decode + preprocess + inference) against bare onnxruntime.

The baseline is a plain ``session.run`` loop over pre-made input tensors of the same
batch size, timed in the same run: what the network costs alone.  The pipeline's images/s
divided by the baseline's says how much the decoding and preprocessing, which run in a
prefetch thread, still slow it down.  Images are Fashion-MNIST's when it is installed,
else synthetic 28 x 28 images (the cost per image is the same).

Several layers (``--layers``, default every layer the model lists): one pass fetching
them all (:func:`~dnnstress.extract.extract_split_layers`) against one
:func:`~dnnstress.extract.extract_split` per layer, the same images in the same run; the
ratio of their times is what ``dnnstress extract --layer A,B`` saves over separate runs.
"""

from __future__ import annotations

import time

import numpy as np

from dnnstress.benchmarks._common import available_devices, print_table
from dnnstress.datasets import ArraySplit, DatasetNotFoundError, open_dataset
from dnnstress.extract import (ExtractionOptions, create_session, extract_split,
                               extract_split_layers)
from dnnstress.models import get_model, resolve_layer, resolve_layers


def add_arguments(parser):
    parser.add_argument("--images", type=int, default=512, help="images per timing")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default=None, help="network (default efficientnet-lite0)")
    parser.add_argument("--layer", default=None)
    parser.add_argument("--layers", default="all", metavar="LAYER,LAYER...|all|none",
                        help="layers of the one-pass against per-layer-passes timing "
                             "(default all; none skips it)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating timings of each; the best is reported")


def run(args) -> dict:
    model = get_model(args.model) if args.model else get_model()
    layer = resolve_layer(model, args.layer)
    layers = [] if args.layers == "none" else resolve_layers(model, args.layers)
    split = _images(args.images)
    results, rows = {"model": model.name, "layer": layer.name, "images": len(split),
                     "batch_size": args.batch_size, "source": split.dataset, "devices": {}}, []
    for device in available_devices(args.device):
        if device == "cuda":
            try:
                session = create_session(model.onnx_path(), "cuda")
            except RuntimeError as error:
                print(f"cuda: skipped ({error})")
                continue
        else:
            session = create_session(model.onnx_path(), "cpu")
        options = ExtractionOptions(batch_size=args.batch_size, policy="resize", device=device,
                                    progress=False)
        extract_split(split, model, layer, options, session=session)  # warm-up
        bare = pipeline = 0.0
        for _ in range(args.rounds):  # interleaved, best of each: fair under noisy neighbours
            bare = max(bare, _bare_inference(session, model, layer, len(split), args.batch_size))
            start = time.perf_counter()
            extract_split(split, model, layer, options, session=session)
            pipeline = max(pipeline, len(split) / (time.perf_counter() - start))
        results["devices"][device] = {"bare_images_s": bare, "pipeline_images_s": pipeline,
                                      "fraction_of_bare": pipeline / bare}
        rows += [{"device": device, "what": "bare session.run on tensors", "images/s": bare,
                  "% of bare": 100.0},
                 {"device": device, "what": "decode + preprocess + inference",
                  "images/s": pipeline, "% of bare": 100 * pipeline / bare}]
        if layers:
            one, per_layer = _layer_passes(split, model, layers, options, session, args.rounds)
            results["devices"][device].update(one_pass_s=one, per_layer_passes_s=per_layer,
                                              one_pass_fraction=one / per_layer)
            rows += [{"device": device, "what": f"{len(layers)} layers, one pass each",
                      "images/s": len(split) / per_layer, "% of bare": 100 * len(split)
                      / per_layer / bare},
                     {"device": device, "what": f"{len(layers)} layers in one pass",
                      "images/s": len(split) / one, "% of bare": 100 * len(split) / one / bare}]
            print(f"{device}: one pass for {', '.join(layer.name for layer in layers)} takes "
                  f"{one / per_layer:.2f} of the time of one pass per layer")
    print(f"{model.name} layer {layer.name}, {len(split)} {split.dataset} images, "
          f"batch {args.batch_size}")
    print_table(rows, ["device", "what", "images/s", "% of bare"])
    results["layers"] = [layer.name for layer in layers]
    return results


def _layer_passes(split, model, layers, options, session, rounds):
    """Best seconds of one pass fetching every layer and of one pass per layer
    (interleaved), after checking the two give the same features bit for bit."""
    together, _ = extract_split_layers(split, model, layers, options, session=session)
    for layer, features in zip(layers, together):
        alone, _ = extract_split(split, model, layer, options, session=session)
        if not np.array_equal(alone, features):
            raise RuntimeError(f"layer {layer.name}: one pass and its own pass differ")
    one = per_layer = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        extract_split_layers(split, model, layers, options, session=session)
        one = min(one, time.perf_counter() - start)
        start = time.perf_counter()
        for layer in layers:
            extract_split(split, model, layer, options, session=session)
        per_layer = min(per_layer, time.perf_counter() - start)
    return one, per_layer


def _images(n):
    try:
        train = open_dataset("fashion-mnist")["train"]
        return train.subset(np.arange(min(n, len(train))))
    except DatasetNotFoundError:
        images = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
        return ArraySplit("train", images, np.zeros(n, np.int64), ["none"],
                          dataset="synthetic", root="memory", layout="memory")


def _bare_inference(session, model, layer, n_images, batch_size):
    """Images/s of ``session.run`` alone on ready-made batches (one pass)."""
    batch = np.random.default_rng(0).standard_normal(
        (batch_size, 3, model.input_size, model.input_size), dtype=np.float32)
    n_batches = -(-n_images // batch_size)
    start = time.perf_counter()
    for _ in range(n_batches):
        session.run([layer.output], {model.input_name: batch})
    return n_batches * batch_size / (time.perf_counter() - start)
