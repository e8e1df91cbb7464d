"""Fake data files the tests write: made from the format's specification, not by the
reader under test."""

import gzip
import struct

import numpy as np

from dnnstress.datasets import fashion_mnist


def write_idx(path, array, *, compress=True):
    """IDX file written from the specification: 0, 0, type code, ndim, >u4 dims, >data."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float64): 0x0E}
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def make_fashion(directory, n_train=30, n_test=10, *, compress=True, seed=0):
    """Fashion-MNIST-named IDX files of random images and labels; returns the arrays."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        # Every class in every split of 10 or more images: a test class never seen in
        # training makes a features file invalid.
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        image_name, label_name = fashion_mnist.FILES[split]
        suffix = ".gz" if compress else ""
        write_idx(directory / f"{image_name}{suffix}", images, compress=compress)
        write_idx(directory / f"{label_name}{suffix}", labels, compress=compress)
        arrays[split] = (images, labels)
    return arrays
