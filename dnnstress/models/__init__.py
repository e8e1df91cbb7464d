"""Networks for feature extraction: the registry, and the embedded EfficientNet-Lite0.

>>> from dnnstress.models import get_model, resolve_layer
>>> spec = get_model("efficientnet-lite0")
>>> resolve_layer(spec).shape
(1280,)
"""

from .registry import (ALL_LAYERS, DEFAULT_MODEL, Layer, ModelSpec, available_models,
                       get_model, register, resolve_layer, resolve_layers,
                       split_layer_names)

__all__ = ["ALL_LAYERS", "DEFAULT_MODEL", "Layer", "ModelSpec", "available_models",
           "get_model", "register", "resolve_layer", "resolve_layers", "split_layer_names"]
