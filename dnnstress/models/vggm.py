"""MatConvNet ``simplenn`` networks (the paper's VGG-M) as ONNX graphs.

The paper extracts its VGG-M features with MatConvNet's ``imagenet-vgg-m.mat``
(Chatfield et al. 2014) and numbers the network's 21 layers L1..L21 (Table 1): layer 19
is the ReLU after fc7, a 4096-d vector.  This module reads such a ``.mat`` file with
scipy and writes an equivalent ONNX graph (numpy + ``onnx.helper``, no MATLAB), in
which the output of every MatConvNet layer ``i`` is a graph output named ``"L{i}"``.

Conventions kept from MatConvNet (``vl_simplenn``, ``vl_nnconv``, ``vl_nnpool``,
``vl_nnnormalize``):

- filters are ``(height, width, in, out)`` and applied as a correlation; fully
  connected layers are convolutions whose filters cover the whole map (6x6 for fc6):
  they become matrix products here, and their outputs keep the shape ``(N, C, 1, 1)``;
- ``pad`` is ``[top bottom left right]``, ``stride`` is ``[y x]``, and every output size
  is ``floor((H + pad_top + pad_bottom - window) / stride) + 1`` (ONNX's floor mode);
- max pooling ignores padding (pads with -inf); average pooling divides by the number
  of window elements inside the image (ONNX ``count_include_pad=0``);
- LRN is ``x / (kappa + alpha * sum_{N channels} x^2) ** beta``; ONNX's LRN divides
  ``alpha`` by the window size, so ``alpha * N`` is passed;
- softmax runs over the channels at every location.

The network's average image is subtracted inside the graph, so its input is the
plain RGB image in 0..255, resized to 224x224 without keeping the aspect ratio
(reference README, "Feature extraction"): the ``"resize"`` policy of
:mod:`dnnstress.preprocess` with mean 0 and std 1, as :func:`vggm_spec` declares.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

__all__ = ["SimpleNN", "SimpleNNLayer", "convert_simplenn", "layer_shapes", "load_simplenn",
           "simplenn_to_onnx", "vggm_spec"]

OPSET = 17
# Opset 17 needs IR version 8; onnxruntime >= 1.17 reads it (onnx 1.23 would write 14).
IR_VERSION = 8
INPUT_NAME = "image"
BATCH_DIM = "N"

_LAYER_TYPES = ("conv", "relu", "lrn", "normalize", "pool", "softmax", "dropout")

# Sanity bounds, checked at conversion: a crafted file could otherwise declare an input,
# stride or padding so large that extraction allocates terabytes later.  Real networks
# stay far below them (VGG-M: 224 x 224 input, at most 96 x 109 x 109 values a layer).
MAX_IMAGE_SIDE = 4096
MAX_LAYERS = 1000
MAX_LAYER_VALUES = 1 << 24  # 64 MiB of float32 per image and layer (VGG-16: 3.2 M)
MATCONVNET_MODELS_PAGE = "https://www.vlfeat.org/matconvnet/pretrained/"
VGGM_URL = "https://www.vlfeat.org/matconvnet/models/imagenet-vgg-m.mat"


@dataclass(frozen=True)
class SimpleNNLayer:
    """One MatConvNet layer, its parameters already validated and unwrapped.

    ``params`` holds numpy arrays / Python numbers keyed by the MatConvNet field name
    (``filters``, ``biases``, ``stride``, ``pad``, ``dilate``, ``pool``, ``method``,
    ``param``, ``leak``), whichever the layer type uses.
    """

    index: int
    name: str
    type: str
    params: dict = field(repr=False)


@dataclass(frozen=True)
class SimpleNN:
    """A MatConvNet ``simplenn`` network read from a ``.mat`` file.

    Attributes
    ----------
    layers : tuple of SimpleNNLayer
        In forward order; ``layers[i - 1]`` is the paper's layer ``L{i}``.
    average_image : ndarray of shape (H, W, 3) or (1, 1, 3), float32, or None
        Subtracted from the 0..255 RGB input (``meta.normalization.averageImage``).
    image_size : tuple of int or None
        ``(height, width, channels)`` the network expects, when the file says.
    class_descriptions : tuple of str
        ``meta.classes.description`` (human-readable ImageNet class names), if any.
    """

    layers: tuple
    average_image: np.ndarray | None = field(repr=False)
    image_size: tuple | None
    class_descriptions: tuple = field(default=(), repr=False)


# ---------------------------------------------------------------------------------------
# Reading the .mat file
# ---------------------------------------------------------------------------------------

def load_simplenn(mat_path) -> SimpleNN:
    """Read a MatConvNet ``simplenn`` ``.mat`` file (e.g. ``imagenet-vgg-m.mat``).

    Both layouts MatConvNet has used are accepted: ``weights = {filters, biases}`` or
    the older separate ``filters`` / ``biases`` fields, and ``meta.normalization`` or
    a top-level ``normalization`` struct.

    Raises
    ------
    ValueError
        If the file is not a simplenn network (no ``layers``, a DagNN file, a MATLAB
        v7.3 file) or a layer has an unsupported type or malformed parameters.
    """
    import scipy.io

    mat_path = os.fspath(mat_path)
    if not os.path.exists(mat_path):
        raise FileNotFoundError(
            f"no MatConvNet file at {mat_path}: download imagenet-vgg-m.mat from "
            f"{VGGM_URL} (MatConvNet's pretrained models, {MATCONVNET_MODELS_PAGE})")
    if not os.path.isfile(mat_path):
        raise ValueError(f"{mat_path} is not a file; pass the imagenet-vgg-m.mat file")
    try:
        # squeeze_me=False keeps MATLAB's dimensions: squeezing would turn 7x7x1x96
        # filters of a grey-level network into an ambiguous 7x7x96 array.
        contents = scipy.io.loadmat(mat_path, squeeze_me=False, struct_as_record=False)
    except NotImplementedError as exc:  # scipy's message for HDF5-based v7.3 files
        raise ValueError(f"{mat_path}: MATLAB v7.3 files are not supported; re-save it "
                         "in MATLAB with save(..., '-v7')") from exc
    except Exception as exc:  # empty, truncated or not a .mat: scipy's errors vary
        raise ValueError(f"{mat_path} is not a readable MATLAB file ({exc}); download "
                         f"imagenet-vgg-m.mat again from {VGGM_URL}") from exc
    if "layers" not in contents:
        found = sorted(k for k in contents if not k.startswith("__"))
        raise ValueError(f"{mat_path}: not a MatConvNet simplenn network (no 'layers' "
                         f"variable; found {found})")
    raw_layers = contents["layers"]
    if "vars" in contents or "params" in contents:
        raise ValueError(f"{mat_path}: a MatConvNet DagNN network; only simplenn files "
                         "(such as imagenet-vgg-m.mat) are supported")
    if not isinstance(raw_layers, np.ndarray) or raw_layers.size > MAX_LAYERS:
        raise ValueError(f"{mat_path}: 'layers' must be a cell array of at most "
                         f"{MAX_LAYERS} layers")
    layers = tuple(_parse_layer(index, _unwrap(raw))
                   for index, raw in enumerate(np.ravel(raw_layers, order="F"), start=1))
    if not layers:
        raise ValueError(f"{mat_path}: the network has no layers")

    meta = _unwrap(contents["meta"]) if "meta" in contents else None
    normalization = _field(meta, "normalization")
    if normalization is None and "normalization" in contents:
        normalization = _unwrap(contents["normalization"])
    classes = _field(meta, "classes")
    if classes is None and "classes" in contents:
        classes = _unwrap(contents["classes"])
    return SimpleNN(
        layers=layers,
        average_image=_average_image(_field(normalization, "averageImage")),
        image_size=_image_size(_field(normalization, "imageSize")),
        class_descriptions=_strings(_field(classes, "description")),
    )


def _unwrap(value):
    """Strip the 1x1 cell / struct array wrappers scipy puts around MATLAB values."""
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.flat[0]
    if isinstance(value, np.ndarray) and value.dtype == object and value.size == 0:
        return None
    return value


def _field(struct, name: str):
    """``struct.name`` unwrapped, or None when the struct or the field is absent."""
    if struct is None or name not in getattr(struct, "_fieldnames", ()):
        return None
    return _unwrap(getattr(struct, name))


def _string(value) -> str:
    value = _unwrap(value)
    if isinstance(value, np.ndarray):
        return "".join(str(part) for part in value.ravel(order="F"))
    return "" if value is None else str(value)


def _strings(value) -> tuple:
    """A MATLAB cell array of strings (or one char array) as a tuple of str."""
    if value is None:
        return ()
    if isinstance(value, np.ndarray) and value.dtype == object:
        return tuple(_string(item) for item in value.ravel(order="F"))
    return (_string(value),)


def _numbers(value, what: str, sizes: tuple, default=None) -> np.ndarray | None:
    """A numeric MATLAB field as a flat float64 array whose length is one of ``sizes``."""
    value = _unwrap(value)
    if value is None:
        return None if default is None else np.asarray(default, dtype=np.float64)
    try:
        array = np.asarray(value, dtype=np.float64).ravel(order="F")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: expected numbers, got {value!r}") from exc
    if array.size not in sizes or not np.all(np.isfinite(array)):
        raise ValueError(f"{what}: expected {' or '.join(map(str, sizes))} finite "
                         f"numbers, got {array.tolist()}")
    return array


def _integers(value, what: str, size: int, default, minimum: int,
              maximum: int = MAX_IMAGE_SIDE) -> tuple:
    """A MATLAB scalar-or-vector integer field broadcast to ``size`` ints in
    ``[minimum, maximum]``."""
    array = _numbers(value, what, (1, size), default=default)
    if (np.any(array != np.round(array)) or np.any(array < minimum)
            or np.any(array > maximum)):
        raise ValueError(f"{what}: expected integers from {minimum} to {maximum}, got "
                         f"{array.tolist()}")
    return tuple(int(v) for v in np.broadcast_to(array, (size,)))


def _parse_layer(index: int, struct) -> SimpleNNLayer:
    if not hasattr(struct, "_fieldnames"):
        raise ValueError(f"layer {index}: expected a MATLAB struct, got {type(struct).__name__}")
    name = _string(_field(struct, "name")) or f"layer{index}"
    kind = _string(_field(struct, "type"))
    where = f"layer {index} ({name!r})"
    if kind not in _LAYER_TYPES:
        raise ValueError(f"{where}: unsupported MatConvNet layer type {kind!r}; "
                         f"supported: {', '.join(sorted(_LAYER_TYPES))}")
    if kind == "normalize":  # the older name of 'lrn' (vl_simplenn accepts both)
        kind = "lrn"
    parse = {"conv": _conv_params, "pool": _pool_params, "lrn": _lrn_params,
             "relu": _relu_params}.get(kind, lambda struct, where: {})
    return SimpleNNLayer(index=index, name=name, type=kind, params=parse(struct, where))


def _conv_params(struct, where: str) -> dict:
    weights = _field(struct, "weights")
    if weights is not None:
        weights = np.ravel(np.asarray(weights, dtype=object), order="F")
        filters = _unwrap(weights[0]) if weights.size > 0 else None
        biases = _unwrap(weights[1]) if weights.size > 1 else None
    else:  # MatConvNet before beta-12
        filters, biases = _field(struct, "filters"), _field(struct, "biases")
    if not isinstance(filters, np.ndarray) or filters.size == 0 or filters.ndim > 4:
        raise ValueError(f"{where}: conv layer without a (height, width, in, out) filter array")
    # MATLAB drops trailing singleton dimensions: a 1-output fc layer is stored 3-D.
    filters = filters.reshape(filters.shape + (1,) * (4 - filters.ndim)).astype(np.float32)
    n_out = filters.shape[3]
    biases = (np.zeros(0, np.float32) if biases is None or np.size(biases) == 0
              else np.asarray(biases, dtype=np.float32).ravel(order="F"))
    if biases.size not in (0, n_out):
        raise ValueError(f"{where}: {biases.size} biases for {n_out} filters")
    return {
        "filters": filters,
        "biases": biases,
        "stride": _integers(_field(struct, "stride"), f"{where} stride", 2, 1, minimum=1),
        "pad": _integers(_field(struct, "pad"), f"{where} pad", 4, 0, minimum=0),
        "dilate": _integers(_field(struct, "dilate"), f"{where} dilate", 2, 1, minimum=1),
    }


def _pool_params(struct, where: str) -> dict:
    method = _string(_field(struct, "method")) or "max"
    if method not in ("max", "avg"):
        raise ValueError(f"{where}: pooling method {method!r}; expected 'max' or 'avg'")
    if _field(struct, "pool") is None:
        raise ValueError(f"{where}: pool layer without a 'pool' (window size) field")
    pool = _integers(_field(struct, "pool"), f"{where} pool", 2, None, minimum=1)
    pad = _integers(_field(struct, "pad"), f"{where} pad", 4, 0, minimum=0)
    # vl_nnpool refuses padding as large as the window (a window could miss the image).
    if pad[0] >= pool[0] or pad[1] >= pool[0] or pad[2] >= pool[1] or pad[3] >= pool[1]:
        raise ValueError(f"{where}: padding {list(pad)} must be smaller than the "
                         f"pooling window {list(pool)}")
    return {
        "method": method,
        "pool": pool,
        "stride": _integers(_field(struct, "stride"), f"{where} stride", 2, 1, minimum=1),
        "pad": pad,
    }


def _lrn_params(struct, where: str) -> dict:
    param = _numbers(_field(struct, "param"), f"{where} param [N kappa alpha beta]", (4,))
    if param is None:
        raise ValueError(f"{where}: LRN layer without 'param' = [N kappa alpha beta]")
    depth = param[0]
    if depth != round(depth) or depth < 1:
        raise ValueError(f"{where}: LRN window N = {depth} is not a positive integer")
    if depth % 2 == 0:
        raise ValueError(f"{where}: LRN window N = {int(depth)} is even; ONNX Runtime "
                         "only runs odd windows")
    _, kappa, alpha, beta = param
    if kappa <= 0 or alpha < 0 or beta < 0:
        raise ValueError(f"{where}: LRN needs kappa > 0, alpha >= 0 and beta >= 0 (else "
                         f"it divides by zero or grows without bound), got {param.tolist()}")
    return {"param": tuple(float(v) for v in param)}


def _relu_params(struct, where: str) -> dict:
    leak = _numbers(_field(struct, "leak"), f"{where} leak", (1,), default=[0.0])
    return {"leak": float(leak[0])}


def _average_image(value) -> np.ndarray | None:
    if value is None or np.size(value) == 0:
        return None
    image = np.asarray(value, dtype=np.float32)
    if image.size == 3:  # a per-channel mean, stored 3x1 or 1x1x3
        return image.reshape(1, 1, 3)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"averageImage has shape {image.shape}; expected (H, W, 3) or 3 values")
    return image


def _image_size(value) -> tuple | None:
    if value is None or np.size(value) == 0:
        return None
    size = _numbers(value, "imageSize [height width channels]", (2, 3, 4))
    if np.any(size != np.round(size)) or np.any(size < 1) or np.any(size > MAX_IMAGE_SIDE):
        raise ValueError(f"imageSize {size.tolist()}: expected integers from 1 to "
                         f"{MAX_IMAGE_SIDE}")
    return (int(size[0]), int(size[1]), int(size[2]) if size.size > 2 else 3)


# ---------------------------------------------------------------------------------------
# Building the ONNX graph
# ---------------------------------------------------------------------------------------

def layer_shapes(net: SimpleNN, *, image_size=None) -> list[tuple]:
    """The ``(channels, height, width)`` output of every layer, checking that each fits.

    Parameters
    ----------
    net : SimpleNN
    image_size : (height, width) or None
        See :func:`simplenn_to_onnx`.

    Raises
    ------
    ValueError
        As :func:`simplenn_to_onnx`.
    """
    height, width, channels = _input_size(net, image_size)
    shape, shapes = (channels, height, width), []
    for layer in net.layers:
        shape = _output_shape(layer, shape)
        if np.prod(shape, dtype=np.int64) > MAX_LAYER_VALUES:
            raise ValueError(f"layer {layer.index} ({layer.name!r}) would output "
                             f"{' x '.join(map(str, shape))} values per image, more than "
                             f"{MAX_LAYER_VALUES}: the input size or padding is not sane")
        shapes.append(shape)
    return shapes


def simplenn_to_onnx(net: SimpleNN, *, image_size=None):
    """The ONNX model (opset 17) computing ``net``, one graph output per layer.

    Parameters
    ----------
    net : SimpleNN
        From :func:`load_simplenn`.
    image_size : (height, width) or None
        Input size; by default the network's ``imageSize`` (224x224 for VGG-M), else the
        size of its average image.

    Returns
    -------
    onnx.ModelProto
        Input ``"image"``: ``(N, 3, height, width)`` float32 RGB in 0..255 (the average
        image is subtracted inside).  Outputs ``"L1"`` .. ``"L{len(net.layers)}"``:
        the output of each MatConvNet layer, ``(N, C, H', W')`` float32.  The metadata
        key ``dnnstress.layers`` lists each output's MatConvNet name, type and shape.

    Raises
    ------
    ValueError
        If the input size is unknown or a layer does not fit its input (channel count,
        filter larger than the map, average image of another size).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    height, width, channels = _input_size(net, image_size)
    shapes = layer_shapes(net, image_size=(height, width))
    graph = _GraphBuilder(numpy_helper)
    current = INPUT_NAME
    if net.average_image is not None:
        current = _subtract_average(graph, net.average_image, current, (channels, height, width))

    in_shape, outputs, table = (channels, height, width), [], []
    for layer, shape in zip(net.layers, shapes, strict=True):
        name = f"L{layer.index}"
        _BUILDERS[layer.type](graph, layer, current, name, in_shape)
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH_DIM, *shape]))
        table.append({"output": name, "name": layer.name, "type": layer.type,
                      "shape": list(shape)})
        current, in_shape = name, shape

    onnx_graph = helper.make_graph(
        graph.nodes, "matconvnet_simplenn",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                       [BATCH_DIM, channels, height, width])],
        outputs, initializer=graph.initializers)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION, producer_name="dnnstress",
                              doc_string="MatConvNet simplenn network; output L<i> is layer i")
    helper.set_model_props(model, {
        "dnnstress.source": "matconvnet-simplenn",
        "dnnstress.layers": json.dumps(table),
        "dnnstress.class_descriptions": json.dumps(list(net.class_descriptions)),
    })
    onnx.checker.check_model(model)
    return model


def convert_simplenn(mat_path, onnx_path, *, image_size=None) -> str:
    """Convert a MatConvNet simplenn ``.mat`` file to an ONNX file; return its path.

    See :func:`simplenn_to_onnx` for the graph's inputs and outputs.
    """
    import onnx

    model = simplenn_to_onnx(load_simplenn(mat_path), image_size=image_size)
    onnx_path = os.fspath(onnx_path)
    onnx.save_model(model, onnx_path)
    return onnx_path


def _input_size(net: SimpleNN, image_size) -> tuple:
    channels = net.image_size[2] if net.image_size else 3
    if image_size is not None:
        height, width = (int(v) for v in image_size)
    elif net.image_size is not None:
        height, width = net.image_size[:2]
    elif net.average_image is not None and net.average_image.shape[:2] != (1, 1):
        height, width = net.average_image.shape[:2]
    else:
        raise ValueError("the network does not say its input size (no imageSize, no "
                         "average image); pass image_size=(height, width)")
    if not (1 <= height <= MAX_IMAGE_SIDE and 1 <= width <= MAX_IMAGE_SIDE):
        raise ValueError(f"image_size must be from 1 to {MAX_IMAGE_SIDE}, got "
                         f"{(height, width)}")
    return height, width, channels


# --- shapes ----------------------------------------------------------------------------

def _output_shape(layer: SimpleNNLayer, shape: tuple) -> tuple:
    """Shape of ``layer``'s output for a ``(C, H, W)`` input; ValueError if it cannot run."""
    where = f"layer {layer.index} ({layer.name!r})"
    channels = shape[0]
    if layer.type == "conv":
        fh, fw, fin, fout = layer.params["filters"].shape
        if channels % fin:
            raise ValueError(f"{where}: filters take {fin} input channels, which does not "
                             f"divide the {channels} channels it receives")
        if fout % (channels // fin):
            raise ValueError(f"{where}: {fout} filters cannot be split into "
                             f"{channels // fin} groups")
        return (fout, *_spatial_output(where, shape, (fh, fw), layer.params))
    if layer.type == "pool":
        return (channels, *_spatial_output(where, shape, layer.params["pool"], layer.params))
    if layer.type == "lrn" and layer.params["param"][0] > channels:
        raise ValueError(f"{where}: LRN window N = {int(layer.params['param'][0])} is "
                         f"wider than the {channels} channels it normalises")
    return shape


def _spatial_output(where: str, shape: tuple, window: tuple, params: dict) -> tuple:
    _, height, width = shape
    stride, pad = params["stride"], params["pad"]
    extent = [d * (w - 1) + 1 for w, d in zip(window, params.get("dilate", (1, 1)), strict=True)]
    # Padding beyond the window only adds rows of pure padding: no real network has it.
    if max(pad[:2]) > extent[0] or max(pad[2:]) > extent[1]:
        raise ValueError(f"{where}: padding {list(pad)} is larger than the "
                         f"{extent[0]}x{extent[1]} window")
    # MatConvNet (vl_nnconv, vl_nnpool) and ONNX (floor mode) share this formula.
    out_h = (height + pad[0] + pad[1] - extent[0]) // stride[0] + 1
    out_w = (width + pad[2] + pad[3] - extent[1]) // stride[1] + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"{where}: a {extent[0]}x{extent[1]} window with padding "
                         f"{list(pad)} does not fit the {height}x{width} input map")
    return out_h, out_w


# --- nodes ---------------------------------------------------------------------------------

class _GraphBuilder:
    """Collects nodes and initializers for :func:`onnx.helper.make_graph`."""

    def __init__(self, numpy_helper):
        self._numpy_helper = numpy_helper
        self.nodes = []
        self.initializers = []

    def constant(self, name: str, array: np.ndarray, dtype=np.float32) -> str:
        self.initializers.append(self._numpy_helper.from_array(
            np.ascontiguousarray(array, dtype=dtype), name))
        return name

    def node(self, op_type: str, inputs: list, output: str, name: str, **attributes):
        from onnx import helper

        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attributes))


def _subtract_average(graph, average_image, current, shape) -> str:
    channels, height, width = shape
    if (average_image.shape[2] != channels
            or average_image.shape[:2] not in ((1, 1), (height, width))):
        raise ValueError(f"average image of shape {average_image.shape} does not match "
                         f"the {height}x{width}x{channels} input")
    mean = graph.constant("average_image", average_image.transpose(2, 0, 1)[np.newaxis])
    graph.node("Sub", [current, mean], "normalized", name="subtract_average_image")
    return "normalized"


def _onnx_pads(pad: tuple) -> list:
    top, bottom, left, right = pad  # MatConvNet order; ONNX wants all begins, then ends
    return [top, left, bottom, right]


def _build_conv(graph, layer, current, output, in_shape) -> None:
    p = layer.params
    fh, fw, fin, _ = p["filters"].shape
    if _is_fully_connected(p, in_shape):
        _build_fully_connected(graph, layer, current, output, in_shape)
        return
    # (h, w, in, out) column-major MATLAB -> ONNX (out, in, h, w); both correlate.
    inputs = [current, graph.constant(f"{layer.name}.weight", p["filters"].transpose(3, 2, 0, 1))]
    if p["biases"].size:
        inputs.append(graph.constant(f"{layer.name}.bias", p["biases"]))
    graph.node("Conv", inputs, output, name=layer.name, kernel_shape=[fh, fw],
               strides=list(p["stride"]), pads=_onnx_pads(p["pad"]),
               dilations=list(p["dilate"]), group=in_shape[0] // fin)


def _is_fully_connected(params: dict, in_shape: tuple) -> bool:
    """A filter bank covering the whole unpadded input map: fc6, fc7 and fc8 of VGG-M."""
    fh, fw, fin, _ = params["filters"].shape
    return ((fin, fh, fw) == tuple(in_shape) and not any(params["pad"])
            and params["dilate"] == (1, 1))


def _build_fully_connected(graph, layer, current, output, in_shape) -> None:
    """The same layer as a matrix product, several times faster than a 6x6 Conv on CPU.

    Flatten orders an NCHW map channel-major (c, h, w), so the filters' rows are put in
    that order; the output keeps MatConvNet's (N, C, 1, 1) shape.
    """
    p = layer.params
    n_out = p["filters"].shape[3]
    weight = p["filters"].transpose(2, 0, 1, 3).reshape(-1, n_out)  # (c*h*w, out)
    graph.node("Flatten", [current], f"{layer.name}.flat", name=f"{layer.name}.flatten", axis=1)
    inputs = [f"{layer.name}.flat", graph.constant(f"{layer.name}.weight", weight)]
    if p["biases"].size:
        inputs.append(graph.constant(f"{layer.name}.bias", p["biases"]))
    graph.node("Gemm", inputs, f"{layer.name}.gemm", name=layer.name)
    axes = graph.constant(f"{layer.name}.axes", np.array([2, 3]), dtype=np.int64)
    graph.node("Unsqueeze", [f"{layer.name}.gemm", axes], output, name=f"{layer.name}.unsqueeze")


def _build_pool(graph, layer, current, output, in_shape) -> None:
    p = layer.params
    attributes = {"kernel_shape": list(p["pool"]), "strides": list(p["stride"]),
                  "pads": _onnx_pads(p["pad"])}
    if p["method"] == "max":  # padding never wins the max, as with vl_nnpool's -inf
        graph.node("MaxPool", [current], output, name=layer.name, **attributes)
    else:  # vl_nnpool divides by the number of window elements inside the image
        graph.node("AveragePool", [current], output, name=layer.name,
                   count_include_pad=0, **attributes)


def _build_lrn(graph, layer, current, output, in_shape) -> None:
    depth, kappa, alpha, beta = layer.params["param"]
    # ONNX LRN computes bias + alpha / size * sum(x^2); vl_nnnormalize has no 1 / size.
    graph.node("LRN", [current], output, name=layer.name, size=int(depth),
               alpha=alpha * depth, beta=beta, bias=kappa)


def _build_relu(graph, layer, current, output, in_shape) -> None:
    leak = layer.params["leak"]
    if leak:
        graph.node("LeakyRelu", [current], output, name=layer.name, alpha=leak)
    else:
        graph.node("Relu", [current], output, name=layer.name)


def _build_softmax(graph, layer, current, output, in_shape) -> None:
    graph.node("Softmax", [current], output, name=layer.name, axis=1)


def _build_dropout(graph, layer, current, output, in_shape) -> None:
    # vl_simplenn bypasses dropout in test mode; kept as a layer so numbering matches.
    graph.node("Identity", [current], output, name=layer.name)


_BUILDERS = {"conv": _build_conv, "pool": _build_pool, "lrn": _build_lrn,
             "relu": _build_relu, "softmax": _build_softmax, "dropout": _build_dropout}


# ---------------------------------------------------------------------------------------
# Registry entry
# ---------------------------------------------------------------------------------------

def vggm_spec(mat_path, *, name: str = "vgg-m", default_layer: str | None = None):
    """A :class:`~dnnstress.models.registry.ModelSpec` for a MatConvNet simplenn file.

    Register it with ``register(vggm_spec("imagenet-vgg-m.mat"))``.  Every layer is a
    feature layer ``"L1"`` .. ``"L21"`` (Table 1 numbering); the default is ``"L19"``,
    the ReLU after fc7 the paper uses, or the last layer of a shorter network.  The
    ``.mat`` file is read once here (for the layer shapes) and again when the ONNX file
    is first built into the cache; the cache name carries the file's digest.

    The authors' preprocessing is the ``"resize"`` policy (whole image to 224x224, RGB,
    0..255): the graph subtracts the average image itself, so ``mean`` is 0 and ``std``
    1.  Under the ``"resize_crop"`` policy the shorter side goes to 224 and the centre
    is cropped.

    Layer shapes are ``(C, H, W)``: fully connected layers give ``(C, 1, 1)`` per image;
    flatten to ``n_features``.
    """
    import functools

    from .cache import sha256_file
    from .registry import Layer, ModelSpec

    mat_path = os.path.abspath(os.fspath(mat_path))
    net = load_simplenn(mat_path)
    height, width, _ = _input_size(net, None)
    if height != width:
        raise ValueError(f"{mat_path}: a {height}x{width} input; the registry only takes "
                         "square inputs")
    layers = {}
    for layer, shape in zip(net.layers, layer_shapes(net), strict=True):
        key = f"L{layer.index}"
        layers[key] = Layer(key, key, tuple(shape), f"{layer.name} ({layer.type}), "
                            f"{' x '.join(map(str, shape))}")
    if default_layer is None:
        default_layer = "L19" if "L19" in layers else f"L{len(layers)}"
    return ModelSpec(
        name=name,
        description=f"MatConvNet simplenn network {os.path.basename(mat_path)} (VGG-M in "
                    f"the paper), {height} x {width} input, resized without cropping as "
                    "the authors did",
        layers=layers,
        default_layer=default_layer,
        input_name=INPUT_NAME,
        input_size=height,
        resize_size=height,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        artifact=f"{name}-{sha256_file(mat_path)[:12]}-v1.onnx",
        builder=functools.partial(convert_simplenn, mat_path),
        policy="resize",
    )
