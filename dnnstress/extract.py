"""Feature extraction: images -> network -> the activations of one or several layers, batched.

The first step of the paper's pipeline (Fig. 1).  Images are decoded and preprocessed
in decoding threads while onnxruntime runs the previous batch, so the pipeline runs
close to the speed of bare inference.  With ``device="cuda"`` a thread per core decodes
into pinned host memory, each batch is copied to the GPU asynchronously while the one
before runs, and IO binding has the CUDA execution provider read and write CuPy memory;
if the CUDA provider is not actually active, that is an error, never a silent CPU run.

Extraction of a split is checkpointed batch by batch (a memory-mapped ``.npy`` plus a
count), so an interrupted run resumes where it stopped; finished feature sets are cached
under a key of everything that determines them, so a second run does not extract again.

Several layers come from one forward pass per batch (:func:`extract_layers`); each layer
keeps its own checkpoint and cache entry, under the key a single-layer extraction of it
uses, so the two kinds of run share work both ways.  Memory: one batch of every requested
layer's activations at a time on the way (the rest is on disk), and the finished sets
that are returned.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import dnnstress
from dnnstress._array import check_count
from dnnstress._files import write_json_atomically
from dnnstress._pipeline import run_batches, slot_count
from dnnstress.datasets import (ArraySplit, CorruptImageError, ImageFileSplit, open_dataset,
                                stratified_subset)
from dnnstress.features import FeatureSet
from dnnstress.models import ModelSpec, get_model, resolve_layer, resolve_layers
from dnnstress.models.cache import get_cache_dir, sha256_file
from dnnstress.preprocess import POLICIES

_SMALL_IMAGE_DATASETS = ("fashion-mnist",)


def default_policy(dataset: str, model=None) -> str:
    """How a data set's images become the network's inputs, unless the user says.

    The network's own preprocessing (``model.policy``: resize and centre-crop for
    ImageNet networks, a plain resize for MatConvNet's VGG-M) except for Fashion-MNIST,
    whose 28 x 28 items already fill their frame: a crop would cut their edges off, so
    they are resized whole.
    """
    if dataset in _SMALL_IMAGE_DATASETS:
        return "resize"
    return model.policy if model is not None else "resize_crop"


def create_session(onnx_path, device: str = "cpu", threads: int | None = None):
    """An onnxruntime session on ``device`` ("cpu" or "cuda"), checked to really run there.

    onnxruntime answers a request for a provider it cannot start with a warning and a
    CPU session; we ask the session which providers it got and refuse the substitution.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if device == "cpu":
        return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    if device != "cuda":
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise RuntimeError(
            "--device cuda needs onnxruntime-gpu, but this onnxruntime offers only "
            f"{ort.get_available_providers()}; see the README's GPU install (onnxruntime "
            "and onnxruntime-gpu installed together hide the CUDA provider)")
    session = ort.InferenceSession(str(onnx_path), options,
                                   providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    if session.get_providers()[0] != "CUDAExecutionProvider":
        raise RuntimeError(
            "onnxruntime could not start its CUDA provider (no GPU, or CUDA/cuDNN libraries "
            f"missing) and fell back to {session.get_providers()}; refusing to run on the CPU")
    return session


class LayerRunner:
    """Runs a network on batches of preprocessed images and returns layers, flattened.

    The three steps match :func:`dnnstress._pipeline.run_batches`: :meth:`host_buffers`
    makes the buffers images are decoded into, :meth:`stage` starts a batch's way to the
    network, and calling the runner on a staged batch runs the network once and returns
    the features of every layer of ``layers`` as host arrays.  On the CPU staging is
    nothing.  On CUDA the host buffers are pinned, so :meth:`stage` is an asynchronous
    copy on a stream of its own that overlaps the inference of the batch before, and IO
    binding lets onnxruntime read the images from and write the activations to CuPy
    memory.

    Parameters
    ----------
    session : onnxruntime.InferenceSession
        From :func:`create_session`.
    input_name : str
        The graph input.
    layers : sequence of dnnstress.models.Layer
        The graph outputs to fetch and their per-image shapes.
    device : {"cpu", "cuda"}
        Where ``session`` runs.
    """

    def __init__(self, session, input_name: str, layers, device: str = "cpu"):
        self.session = session
        self.input_name = input_name
        self.layers = layers
        self.device = device
        self._cuda = None

    def host_buffers(self, shape, count: int) -> list[np.ndarray]:
        """``count`` float32 arrays of ``shape`` to decode batches into."""
        if self.device == "cpu":
            return [np.empty(shape, np.float32) for _ in range(count)]
        return self._gpu().allocate(shape, count)

    def stage(self, number: int, images: np.ndarray):
        """Start moving batch ``number`` (decoded into ``images``) to the network."""
        return images if self.device == "cpu" else self._gpu().upload(number, images)

    def __call__(self, staged) -> list[np.ndarray]:
        if self.device == "cpu":
            outputs = self.session.run([layer.output for layer in self.layers],
                                       {self.input_name: staged})
            return [out.reshape(len(staged), -1) for out in outputs]
        return self._gpu().run(staged)

    def _gpu(self):
        if self._cuda is None:
            self._cuda = _CudaStaging(self.session, self.input_name, self.layers)
        return self._cuda


class _CudaStaging:
    """The CuPy and onnxruntime calls of a CUDA extraction; nothing else is GPU-only.

    Two device input buffers alternate: batch ``i + 1`` is copied into one while the
    network reads batch ``i`` from the other.  The pipeline stages batch ``i + 2`` only
    after batch ``i`` has run, so a copy never overwrites images still being read.  Each
    layer has one device output buffer of a batch, copied to the host after the run.
    """

    def __init__(self, session, input_name, layers):
        import cupy

        self.cupy = cupy
        self.session, self.input_name, self.layers = session, input_name, layers
        self.copies = cupy.cuda.Stream(non_blocking=True)
        self.inputs = self.outputs = None

    def allocate(self, shape, count):
        """The device buffers for batches of ``shape``, and ``count`` pinned host ones."""
        cupy = self.cupy
        size = int(np.prod(shape))
        self.inputs = [cupy.empty(shape, cupy.float32) for _ in range(2)]
        self.outputs = [cupy.empty((shape[0], *layer.shape), cupy.float32)
                        for layer in self.layers]
        # np.frombuffer keeps the pinned allocation alive as the array's base.
        return [np.frombuffer(cupy.cuda.alloc_pinned_memory(size * 4), np.float32,
                              size).reshape(shape) for _ in range(count)]

    def upload(self, number, images):
        target = self.inputs[number % 2][:len(images)]
        target.set(images, stream=self.copies)  # asynchronous: the source is pinned
        return target, self.copies.record()

    def run(self, staged):
        images, copied = staged
        outputs = [output[:len(images)] for output in self.outputs]
        binding = self.session.io_binding()
        binding.bind_input(self.input_name, "cuda", images.device.id, np.float32,
                           tuple(images.shape), images.data.ptr)
        for layer, output in zip(self.layers, outputs):
            binding.bind_output(layer.output, "cuda", output.device.id, np.float32,
                                tuple(output.shape), output.data.ptr)
        copied.synchronize()  # onnxruntime reads on its own stream: the upload must be done
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return [output.reshape(len(images), -1).get() for output in outputs]


@dataclasses.dataclass
class ExtractionOptions:
    """How images become network inputs and how the work is run.

    ``decode_threads`` is the number of threads that decode and preprocess images
    (None: one per core for ``device="cuda"``, which must keep a GPU fed, and one on the
    CPU, where onnxruntime already uses every core).
    """

    batch_size: int = 32
    policy: str = "resize_crop"
    device: str = "cpu"
    skip_corrupt: bool = False
    progress: bool = True
    threads: int | None = None
    decode_threads: int | None = None

    def __post_init__(self):
        check_count(self.batch_size, "batch_size", 1, 1 << 16)
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.threads is not None:
            check_count(self.threads, "threads", 1, 1 << 10)
        if self.decode_threads is not None:
            check_count(self.decode_threads, "decode_threads", 1, 1 << 10)

    def decoders(self) -> int:
        """The number of decoding threads to use."""
        if self.decode_threads is not None:
            return self.decode_threads
        return len(os.sched_getaffinity(0)) if self.device == "cuda" else 1


def extract_split(split, model, layer, options: ExtractionOptions, checkpoint: Path | None = None,
                  session=None):
    """Features of every image of ``split`` from one layer, as a (n, d) float32 host array.

    Returns ``(features, kept)``; see :func:`extract_split_layers`, of which this is the
    one-layer case.
    """
    (features,), kept = extract_split_layers(
        split, model, [layer], options, None if checkpoint is None else [checkpoint], session)
    return features, kept


def extract_split_layers(split, model, layers, options: ExtractionOptions, checkpoints=None,
                         session=None):
    """Features of every image of ``split`` from each of ``layers``, one network run a batch.

    Returns ``(features, kept)``: ``features`` is a list of (n, d) float32 host arrays, one
    per layer; ``kept`` is a boolean mask of the images that decoded (all True unless
    ``options.skip_corrupt`` let corrupt ones through, which are then counted and
    reported).  With ``checkpoints`` (one path prefix per layer), finished batches are
    kept on disk and a rerun continues after the last batch every layer holds; the
    checkpoints stay until the caller has stored the result (:func:`remove_checkpoint`).
    A layer's checkpoint is the one a single-layer extraction of it writes.
    """
    if len(split) == 0:
        raise ValueError(f"the {split.name} split is empty: nothing to extract")
    session = session or create_session(model.onnx_path(), options.device, options.threads)
    runner = LayerRunner(session, model.input_name, layers, options.device)
    stores = [_Checkpoint(prefix, len(split), layer.n_features)
              for layer, prefix in zip(layers, checkpoints or [None] * len(layers), strict=True)]
    # A run killed between two layers' writes left one batch more in some: redo it in all.
    done = min(store.done for store in stores)
    batches = [range(start, min(start + options.batch_size, len(split)))
               for start in range(done, len(split), options.batch_size)]
    # disable=None: no bar when standard error is not a terminal (logs, pipes).
    bar = tqdm(total=len(split), initial=done, unit="img",
               disable=None if options.progress else True,
               desc=f"extract {split.name}", dynamic_ncols=True)
    workers = options.decoders()
    # Buffers are reused batch after batch: a fresh 20 MB array per batch would cost
    # page faults and evict the network's working set from the caches.
    buffers = runner.host_buffers((options.batch_size, 3, model.input_size, model.input_size),
                                  slot_count(workers))

    def load(number, slot):
        return _load_batch(split, batches[number], model, options, buffers[slot])

    def stage(number, loaded):
        return runner.stage(number, loaded[1])

    with bar:
        for (indices, _, ok), outputs in run_batches(len(batches), load, stage, runner,
                                                     workers=workers):
            for store, features in zip(stores, outputs):
                store.write(indices, features, ok)
            bar.update(len(indices))
    kept = np.array(stores[0].kept)
    features = [store.result() for store in stores]
    skipped = int((~kept).sum())
    if skipped:
        print(f"skipped {skipped} corrupt image(s) in the {split.name} split")
    return features, kept


def _load_batch(split, indices, model, options, images):
    """Decode and preprocess one batch into ``images`` (runs in a decoding thread)."""
    images = images[:len(indices)]
    ok = np.ones(len(indices), dtype=bool)
    for row, index in enumerate(indices):
        try:
            model.preprocess(split.load_image(index), options.policy, out=images[row])
        except CorruptImageError:
            if not options.skip_corrupt:
                raise
            ok[row] = False
            images[row] = 0
        except OSError:
            raise  # a missing or unreadable file: the message names it
        except Exception as error:
            raise RuntimeError(f"cannot preprocess {split.describe(index)}: "
                               f"{type(error).__name__}: {error}") from error
    return indices, images, ok


class _Checkpoint:
    """Features written so far: in memory, or memory-mapped on disk with a done count."""

    def __init__(self, prefix: Path | None, n: int, d: int):
        self.prefix = prefix
        self.done = 0
        if prefix is None:
            self.features = np.zeros((n, d), np.float32)
            self.kept = np.ones(n, dtype=bool)
            return
        prefix.parent.mkdir(parents=True, exist_ok=True)
        paths = self._paths()
        state = _read_json(paths["state"])
        resumable = state.get("shape") == [n, d] and all(p.exists() for p in paths.values())
        if not resumable:
            # Before the arrays are made anew: a state left with them would count their
            # zeros as done rows if this run were killed before its first batch.
            paths["state"].unlink(missing_ok=True)
        mode = "r+" if resumable else "w+"
        self.features = np.lib.format.open_memmap(paths["features"], mode, np.float32, (n, d))
        self.kept = np.lib.format.open_memmap(paths["kept"], mode, bool, (n,))
        if resumable:
            self.done = int(state["done"])
        else:
            self.kept[:] = True

    def _paths(self):
        return checkpoint_files(self.prefix)

    def write(self, indices, features, ok):
        rows = slice(indices.start, indices.stop)
        self.features[rows] = features
        self.kept[rows] = ok
        self.done = indices.stop
        if self.prefix is not None:
            self.features.flush()
            self.kept.flush()
            write_json_atomically(self._paths()["state"],
                        {"shape": list(self.features.shape), "done": self.done})

    def result(self) -> np.ndarray:
        """The features of the images kept, in memory: one copy of them, the largest
        allocation of an extraction (boolean indexing already copies)."""
        return np.asarray(self.features[np.asarray(self.kept)])


def checkpoint_files(prefix: Path) -> dict[str, Path]:
    """The files of the checkpoint ``prefix``: features, kept mask and progress state."""
    return {part: prefix.parent / f"{prefix.name}.{suffix}" for part, suffix in
            (("features", "features.npy"), ("kept", "kept.npy"), ("state", "state.json"))}


def remove_checkpoint(prefix: Path) -> None:
    """Delete a checkpoint once what it protected is safely stored elsewhere."""
    for path in checkpoint_files(prefix).values():
        path.unlink(missing_ok=True)


def extract_features(model: str | ModelSpec | None = None, layer_name: str | None = None,
                     dataset: str = "fashion-mnist", root=None, *, train_size: int | None = None,
                     test_size: int | None = None, seed: int = 0,
                     options: ExtractionOptions | None = None, cache_dir=None,
                     use_cache: bool = True) -> FeatureSet:
    """Train and test features of ``dataset`` from one layer of one network, cached.

    ``model`` is a registered name (None: the embedded default) or a ``ModelSpec``;
    ``layer_name`` one of its layers (None: its default).  The one-layer case of
    :func:`extract_layers`, which describes the subsets, the cache and the lock.
    """
    model = _model_spec(model)
    layer = resolve_layer(model, layer_name)
    (feature_set,) = extract_layers(model, [layer.name], dataset, root, train_size=train_size,
                                    test_size=test_size, seed=seed, options=options,
                                    cache_dir=cache_dir, use_cache=use_cache).values()
    return feature_set


def extract_layers(model: str | ModelSpec | None = None, layer_names=None,
                   dataset: str = "fashion-mnist", root=None, *, train_size: int | None = None,
                   test_size: int | None = None, seed: int = 0,
                   options: ExtractionOptions | None = None, cache_dir=None,
                   use_cache: bool = True) -> dict[str, FeatureSet]:
    """Train and test features of ``dataset`` from several layers of one network, cached.

    The network runs once a batch for all the layers not already cached, and each layer
    is checkpointed and cached on its own, as :func:`extract_features` does it: a layer
    cached by either function is read, not extracted again, and a killed run resumes.

    Parameters
    ----------
    model : str or ModelSpec, optional
        A registered name (None: the embedded default) or a ``ModelSpec``.
    layer_names : None, "all", str or sequence of str
        See :func:`dnnstress.models.resolve_layers`: the default layer, every layer the
        model lists, ``"L15,L16"`` or ``["L15", "L16"]``.  Unknown names are an error
        listing the valid ones, raised before any work.
    dataset, root : str, path-like
        The data set (see :func:`dnnstress.datasets.open_dataset`).
    train_size, test_size : int, optional
        Stratified subsets of ``seed`` (None keeps a whole split).
    options : ExtractionOptions, optional
    cache_dir : path-like, optional
        See :func:`dnnstress.models.cache.get_cache_dir`.
    use_cache : bool, default True
        False extracts every layer again and stores no set (checkpoints still protect
        the run).

    Returns
    -------
    dict of str -> FeatureSet
        By layer name, in the order requested.

    Notes
    -----
    A layer's cache key covers the network file's digest, the layer, the preprocessing,
    the subsets and the content of the images (:func:`content_digest`: the pixels of data
    sets held in memory, the size and modification time of every image file), so
    overwriting the images or changing any setting extracts again.  A cached file that is
    unreadable (corrupt, truncated) or describes other features is reported on standard
    error and rebuilt.  Extractions of the same features take turns on a lock file per
    layer (taken in one order, so overlapping requests never deadlock), so two processes
    sharing a cache never write the same checkpoint at once.

    Memory: on the way, one batch of each layer's activations (the checkpoints are
    memory-mapped files); at the end, every returned set (n images x the layers' total
    dims x 4 bytes: ``conv`` of the embedded network is 62,720 dims, VGG-M's ``L1`` 1.1 M).
    """
    options = options or ExtractionOptions()
    model = _model_spec(model)
    layers = resolve_layers(model, layer_names)
    splits = open_dataset(dataset, root)
    splits = {"train": _subset(splits["train"], train_size, seed),
              "test": _subset(splits["test"], test_size, seed)}
    onnx_path = model.onnx_path(cache_dir)
    common = {
        "model": model.name, "network_sha256": sha256_file(onnx_path), "dataset": dataset,
        "root": str(root) if root else None, "train_size": len(splits["train"]),
        "test_size": len(splits["test"]), "subset_seed": seed, "policy": options.policy,
        "input_size": model.input_size, "resize_size": model.resize_size,
        "mean": list(model.mean), "std": list(model.std), "skip_corrupt": options.skip_corrupt,
        "content_sha256": content_digest(splits),
    }
    folder = get_cache_dir(cache_dir) / "features"
    folder.mkdir(parents=True, exist_ok=True)
    entries = [_CacheEntry(folder, layer, common, list(splits)) for layer in layers]
    with contextlib.ExitStack() as locks:
        for entry in sorted(entries, key=lambda entry: entry.path.name):
            locks.enter_context(_exclusive(entry.path.with_suffix(".lock")))
        sets = {entry.layer.name: _load_cached(entry.path, entry.metadata) if use_cache
                else None for entry in entries}
        missing = [entry for entry in entries if sets[entry.layer.name] is None]
        for entry in entries:
            if entry in missing:
                entry.remove_stale_files()
            else:  # stored: a run killed just after may have left its checkpoints
                entry.remove_checkpoints()
        if missing:
            sets.update(_extract(splits, model, missing, options, onnx_path, use_cache))
    return sets


def _model_spec(model) -> ModelSpec:
    if isinstance(model, ModelSpec):
        return model
    return get_model(model) if model else get_model()


class _CacheEntry:
    """Where one layer's feature set and its checkpoints live in the cache, and its key.

    The key is a digest of ``metadata`` (what made the features), the same whichever
    other layers were extracted in the same run.
    """

    def __init__(self, folder: Path, layer, common: dict, split_names):
        self.layer = layer
        self.metadata = {**common, "layer": layer.name, "layer_output": layer.output}
        self.key = hashlib.sha256(json.dumps(self.metadata, sort_keys=True).encode()
                                  ).hexdigest()[:16]
        self.folder = folder
        self.path = folder / (f"{self.metadata['model']}-{_file_safe(layer.name)}-"
                              f"{self.metadata['dataset']}-{self.key}.npz")
        self.checkpoints = {name: folder / f".{self.key}.{name}" for name in split_names}

    def remove_checkpoints(self) -> None:
        """Every split's checkpoint (once the layer's set is stored)."""
        for checkpoint in self.checkpoints.values():
            remove_checkpoint(checkpoint)

    def remove_stale_files(self) -> None:
        """Files of this key half-written by a killed run (called under its lock)."""
        for stale in self.folder.glob(f".*{self.key}*.tmp"):
            stale.unlink(missing_ok=True)


def layer_file_name(layer_name: str) -> str:
    """The file name ``features-<layer>.npz`` of one layer's features in an output folder."""
    return f"features-{_file_safe(layer_name)}.npz"


def _file_safe(name: str) -> str:
    """``name`` with every character but letters, digits, ``.``, ``_`` and ``-`` made
    ``_``: ONNX tensor names such as ``/features/denseblock4/Concat_output_0`` in a
    file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _extract(splits, model, entries, options, onnx_path, store: bool) -> dict[str, FeatureSet]:
    """Extract every split for ``entries``' layers in one pass, store each layer's set
    (unless ``store`` is false), then drop its checkpoints."""
    session = create_session(onnx_path, options.device, options.threads)
    layers = [entry.layer for entry in entries]
    arrays = {}
    for name, split in splits.items():
        features, kept = extract_split_layers(
            split, model, layers, options, [entry.checkpoints[name] for entry in entries],
            session=session)
        arrays[name] = features, split.labels[kept]
    sets = {}
    for number, entry in enumerate(entries):
        sets[entry.layer.name] = feature_set = FeatureSet(
            arrays["train"][0][number], arrays["train"][1], arrays["test"][0][number],
            arrays["test"][1], class_names=list(splits["train"].class_names),
            metadata={**entry.metadata, "dnnstress_version": dnnstress.__version__})
        if store:
            feature_set.save(entry.path)
        # Only now is this layer's every split stored: an interruption before this point
        # resumes from its checkpoints, whichever split or layer it hit.
        entry.remove_checkpoints()
    return sets


def _load_cached(path: Path, metadata: dict) -> FeatureSet | None:
    """The cached set at ``path`` if it is readable and made as ``metadata`` says."""
    if not path.exists():
        return None
    try:
        feature_set = FeatureSet.load(path)
    except ValueError as error:
        problem = f"is unreadable ({error})"
    else:
        made = {name: feature_set.metadata.get(name) for name in metadata}
        if made == metadata:
            return feature_set
        changed = sorted(name for name in metadata if made[name] != metadata[name])
        problem = f"describes other features (differs in {', '.join(changed)})"
    print(f"dnnstress: cached features {path} {problem}; extracting again", file=sys.stderr)
    path.unlink()
    return None


@contextlib.contextmanager
def _exclusive(lock_path: Path):
    """Hold an advisory lock on ``lock_path``, waiting (and saying so) while another has it.

    The operating system releases the lock when its holder exits, however it exits, so a
    killed extraction never blocks the next one.
    """
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"dnnstress: another process is extracting the same features; waiting "
                  f"for it (lock {lock_path})", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def content_digest(splits: dict) -> str:
    """SHA-256 of what decides the features apart from the network: images and labels.

    For splits held in memory (Fashion-MNIST, read from its IDX files) the pixels
    themselves are hashed; for one-file-per-image splits, each file's path, size and
    modification time (hashing 100,000 photographs would cost more than it protects).
    """
    digest = hashlib.sha256()
    for name, split in splits.items():
        labels = np.ascontiguousarray(split.labels)
        digest.update(json.dumps([name, labels.dtype.str, labels.shape,
                                  list(split.class_names)]).encode())
        digest.update(labels.tobytes())
        if isinstance(split, ArraySplit):
            digest.update(np.ascontiguousarray(split.images).tobytes())
        elif isinstance(split, ImageFileSplit):
            for path in split.paths:
                status = os.stat(path)
                digest.update(f"{path}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
        else:
            raise TypeError(f"cannot fingerprint a {type(split).__name__}: the features "
                            f"cache needs an ArraySplit or an ImageFileSplit")
    return digest.hexdigest()


def _subset(split, size, seed):
    if size is None or size >= len(split):
        return split
    if size < 1:
        raise ValueError(f"subset size must be >= 1, got {size}")
    return split.subset(stratified_subset(split.labels, size, seed=seed))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
