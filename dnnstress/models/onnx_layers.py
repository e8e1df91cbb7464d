"""Any ONNX network as a feature extractor: list its tensors, expose the ones you want.

ONNX Runtime only returns graph outputs, and exported networks usually output just
their logits.  The paper takes features from inner layers (VGG-M layer 19, GoogLeNet
layer 151), so :func:`expose_layers` adds chosen intermediate tensors to the graph
outputs and :func:`list_layers` shows which tensors exist, with the shapes ONNX's shape
inference gives them.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from typing import NamedTuple

import numpy as np

__all__ = ["LayerInfo", "MAX_IR_VERSION", "expose_layers", "list_layers", "onnx_file_spec"]

# The newest IR version we write when a model carries a newer one: onnx 1.23 stamps IR
# 14 on everything it builds, which onnxruntime releases of 2024-2025 refuse, although
# the opsets actually used rarely need more than IR 10.
MAX_IR_VERSION = 10


class LayerInfo(NamedTuple):
    """One tensor of an ONNX graph.

    ``shape`` is a tuple of ints (known sizes), strings (symbolic sizes such as the
    batch) and None (unknown sizes), or None when even the rank is unknown.
    """

    name: str
    op_type: str
    shape: tuple | None


def list_layers(path_or_model) -> list[LayerInfo]:
    """Every tensor a node of the graph produces, in graph (topological) order.

    Graph outputs are included (they are node outputs too); graph outputs that are
    plain inputs or initializers are listed with ``op_type`` ``"Input"`` or
    ``"Initializer"``.

    Parameters
    ----------
    path_or_model : str, os.PathLike or onnx.ModelProto

    Returns
    -------
    list of LayerInfo
        ``(name, op_type, shape)`` named tuples.
    """
    model = _load(path_or_model)
    types = _inferred_types(model)
    layers, seen = [], set()
    for node in model.graph.node:
        for name in node.output:
            if name and name not in seen:  # "" marks an omitted optional output
                seen.add(name)
                layers.append(LayerInfo(name, node.op_type, _shape(types.get(name))))
    initializers = {init.name for init in model.graph.initializer}
    for output in model.graph.output:
        if output.name not in seen:
            seen.add(output.name)
            kind = "Initializer" if output.name in initializers else "Input"
            layers.append(LayerInfo(output.name, kind, _shape(types.get(output.name))))
    return layers


def expose_layers(path_or_model, tensor_names, out_path, *, any_batch: bool = False):
    """Write a copy of the model whose graph outputs include ``tensor_names``.

    The original outputs are kept, first and in their order; the requested tensors
    follow in the order given (those already outputs are not repeated).  Their type
    and shape come from ONNX shape inference.  The file is written with an IR version
    onnxruntime reads (at most :data:`MAX_IR_VERSION` unless the model's opsets need a
    newer one).

    With ``any_batch``, a model exported for a fixed batch of B images is wrapped so that
    the copy takes any number: the images are padded to a multiple of B and run B at a
    time (an ONNX ``Scan`` over the original graph, which is left untouched, so a shape
    the export baked in still holds), and the padding is cut from the outputs.  The
    copy's outputs are then ``tensor_names`` only.

    Parameters
    ----------
    path_or_model : str, os.PathLike or onnx.ModelProto
    tensor_names : str or sequence of str
        Names as :func:`list_layers` reports them.
    out_path : str or os.PathLike
        Where to write the new model.  Models over 2 GB get their weights in a
        ``<out_path>.data`` file beside it.
    any_batch : bool, default False
        Make a fixed-batch model take any batch size (see above).

    Returns
    -------
    str
        ``out_path``.

    Raises
    ------
    ValueError
        If a name is not a tensor produced by the graph (the message lists close
        matches), no name is given, or ``any_batch`` cannot wrap the model (opset below
        11, a tensor whose batch size or feature shape is not fixed).
    """
    import onnx
    from onnx.external_data_helper import load_external_data_for_model

    if isinstance(tensor_names, (str, bytes)):
        tensor_names = [tensor_names]
    tensor_names = list(dict.fromkeys(tensor_names))  # drop repeats, keep order
    if not tensor_names:
        raise ValueError("tensor_names is empty: name at least one tensor to expose")
    if not all(isinstance(name, str) for name in tensor_names):
        raise TypeError(f"tensor names must be strings, got {tensor_names!r}")

    # Weights stay on disk while the graph is edited (shape inference needs none of
    # them, and a model over 2 GB could not be serialized for it); loaded to save.
    model = _load(path_or_model)
    produced = [name for node in model.graph.node for name in node.output if name]
    _check_names(tensor_names, produced)

    types = _inferred_types(model)
    existing = {output.name for output in model.graph.output}
    for name in tensor_names:
        if name in existing:
            continue
        if name in types:
            model.graph.output.append(types[name])
        else:  # type unknown to shape inference: onnxruntime still resolves it
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    if any_batch and (batch := _fixed_batch(model)) is not None:
        model = _run_in_fixed_batches(model, batch, tensor_names, types)
    model.ir_version = _readable_ir_version(model)

    if not isinstance(path_or_model, onnx.ModelProto):  # locations checked by _load
        load_external_data_for_model(model, os.path.dirname(os.path.abspath(path_or_model)))
    out_path = os.fspath(out_path)
    large = sum(len(init.raw_data) for init in model.graph.initializer) > 1_800_000_000
    onnx.save_model(model, out_path, save_as_external_data=large,
                    location=os.path.basename(out_path) + ".data" if large else None)
    return out_path


def _fixed_batch(model) -> int | None:
    """The batch size the image input is fixed to, or None where it is free."""
    shape = _shape(_image_input_info(model))
    return shape[0] if shape and isinstance(shape[0], int) else None


def _run_in_fixed_batches(model, batch: int, names: list, types: dict):
    """``model`` wrapped to take any batch, running its graph ``batch`` images at a time.

    The outer graph pads the images with zeros to a multiple of ``batch``, reshapes them
    to (groups, batch, C, H, W), scans the original graph over the groups, and reshapes
    and slices each requested tensor back to one row per real image.  The scan body
    reads the original initializers from the outer graph.
    """
    from onnx import helper, numpy_helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 11:
        raise ValueError(f"the model is exported for a fixed batch of {batch} images with "
                         f"opset {opset}; re-export it with a dynamic batch axis (or opset "
                         "11 or newer, which dnnstress can run in batches)")
    image = _image_input_info(model)
    image_shape = _shape(image)
    dims = {}
    for name in names:
        shape = _shape(types.get(name))
        if not shape or shape[0] != batch or not all(isinstance(d, int) for d in shape[1:]):
            raise ValueError(f"tensor {name!r} has shape {shape}: a fixed-batch model can "
                             f"only be run in batches where it is ({batch}, ...) with a "
                             "known size")
        dims[name] = shape[1:]
    graph = model.graph
    body = helper.make_graph(list(graph.node), f"{graph.name}.batch", [image],
                             [types[name] for name in names], value_info=graph.value_info)

    nodes, constants = [], []

    def const(name, values):
        constants.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
        return name

    def node(op, inputs, output, **attributes):
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    x, prefix = image.name, "dnnstress.batch."
    n = node("Slice", [node("Shape", [x], prefix + "shape"), const(prefix + "0", [0]),
                       const(prefix + "1", [1])], prefix + "n")
    groups = node("Div", [node("Add", [n, const(prefix + "b-1", [batch - 1])],
                               prefix + "n+b-1"), const(prefix + "b", [batch])],
                  prefix + "groups")
    missing = node("Sub", [node("Mul", [groups, prefix + "b"], prefix + "padded"), n],
                   prefix + "missing")
    zeros = node("ConstantOfShape", [node("Concat", [missing, const(
        prefix + "chw", image_shape[1:])], prefix + "pad.shape", axis=0)], prefix + "pad",
        value=helper.make_tensor("zero", image.type.tensor_type.elem_type, [1], [0]))
    stacked = node("Reshape", [node("Concat", [x, zeros], prefix + "images", axis=0),
                               const(prefix + "grouped", [-1, batch, *image_shape[1:]])],
                   prefix + "grouped.images")
    nodes.append(helper.make_node("Scan", [stacked], [prefix + f"{name}.grouped" for name in names],
                                  name=prefix + "scan", body=body, num_scan_inputs=1))
    outputs = []
    for name in names:
        rows = node("Reshape", [prefix + f"{name}.grouped",
                                const(prefix + f"{name}.shape", [-1, *dims[name]])],
                    prefix + f"{name}.rows")
        node("Slice", [rows, prefix + "0", n], name)
        outputs.append(helper.make_tensor_value_info(
            name, types[name].type.tensor_type.elem_type, ["batch", *dims[name]]))
    any_batch_input = helper.make_tensor_value_info(
        x, image.type.tensor_type.elem_type, ["batch", *image_shape[1:]])
    wrapped = helper.make_graph(nodes, graph.name, [any_batch_input], outputs,
                                initializer=[*graph.initializer, *constants],
                                sparse_initializer=graph.sparse_initializer)
    model.graph.CopyFrom(wrapped)
    return model


def _load(path_or_model):
    """The model, its weights left in their external files (if any), checked."""
    import onnx

    if isinstance(path_or_model, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(path_or_model)  # never modify the caller's model
        return model
    if not isinstance(path_or_model, (str, os.PathLike)):
        raise TypeError("expected a path to an .onnx file or an onnx.ModelProto, got "
                        f"{type(path_or_model).__name__}")
    path = os.fspath(path_or_model)
    if not os.path.isfile(path):
        raise ValueError(f"no ONNX file at {path}")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends name nothing useful
        raise ValueError(f"{path} is not a readable ONNX model: {exc}") from exc
    _check_external_data(model, path)
    return model


def _check_external_data(model, path: str) -> None:
    """Refuse weights stored outside the model's folder (``../`` or absolute locations,
    or links leading out), which a crafted file could use to read any file."""
    from onnx import TensorProto
    from onnx.external_data_helper import _get_all_tensors

    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    for tensor in _get_all_tensors(model):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        location = {entry.key: entry.value for entry in tensor.external_data}.get("location", "")
        target = os.path.realpath(os.path.join(folder, location))
        if (not location or os.path.isabs(location)
                or os.path.commonpath([folder, target]) != folder or target == folder):
            raise ValueError(f"{path}: tensor {tensor.name!r} keeps its data at "
                             f"{location!r}, outside the model's folder {folder}; refusing "
                             "to read it (move the data file beside the model)")


def _inferred_types(model) -> dict:
    """Tensor name -> ValueInfoProto, from the graph and ONNX shape inference."""
    import onnx

    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError):
        pass  # a graph inference cannot follow: keep the types the file declares
    graph = model.graph
    return {info.name: info for info in [*graph.input, *graph.value_info, *graph.output]
            if info.type.HasField("tensor_type")}


def _shape(info) -> tuple | None:
    if info is None or not info.type.tensor_type.HasField("shape"):
        return None
    dims = []
    for dim in info.type.tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(dim.dim_value)
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


def _check_names(requested, produced) -> None:
    known = set(produced)
    for name in requested:
        if name not in known:
            close = difflib.get_close_matches(name, produced, n=5, cutoff=0.5)
            hint = f"; close matches: {close}" if close else ""
            raise ValueError(f"the model has no tensor named {name!r} produced by a "
                             f"node{hint} (dnnstress.models.onnx_layers.list_layers "
                             "lists them all)")


def _readable_ir_version(model) -> int:
    from onnx import helper

    needed = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    return max(needed, min(model.ir_version, MAX_IR_VERSION))


def onnx_file_spec(path, layers, *, name: str | None = None, input_size: int | None = None,
                   resize_size: int | None = None, mean=None, std=None,
                   default_layer: str | None = None):
    """A :class:`~dnnstress.models.registry.ModelSpec` for a user's ONNX file.

    Register it with ``register(onnx_file_spec("googlenet.onnx", ["inception5b"]))``.
    On first use the cache gets a copy of the file with ``layers`` exposed as outputs
    (:func:`expose_layers`); the cache name carries the file's digest and the layers.

    Parameters
    ----------
    path : str or os.PathLike
        The ONNX file; its first non-initializer input must be an NCHW image batch.
    layers : str or sequence of str
        Tensor names (see :func:`list_layers`) to use as feature layers.  Each must have
        a fully known shape apart from the batch dimension.
    name : str, optional
        Registry name; by default the file name without its extension.
    input_size : int, optional
        Side of the square input; by default read from the input's shape.
    resize_size : int, optional
        Shorter side before the centre crop of the ``"resize_crop"`` policy; by default
        the recipe stored by ``models/export_torchvision.py``, else ``input_size * 8 // 7``
        (256 for 224, the usual ImageNet ratio).
    mean, std : sequence of 3 floats, optional
        Per-channel normalisation on the 0..255 scale.  Required unless the file says
        it normalises internally (``models/export_torchvision.py`` files do).
    default_layer : str, optional
        By default the first of ``layers``.

    Raises
    ------
    ValueError
        For an unknown tensor name, a layer or input whose shape is not static, or
        missing ``mean`` / ``std``.
    """
    import functools
    import json

    from .cache import sha256_file
    from .registry import Layer, ModelSpec

    path = os.path.abspath(os.fspath(path))
    names = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))
    if not names:
        raise ValueError("layers is empty: name at least one tensor to use as features")
    model = _load(path)
    infos = {info.name: info for info in list_layers(model)}
    _check_names(names, list(infos))
    input_name, input_shape = _image_input(model)
    if input_size is None:
        input_size = _square_side(input_shape, input_name)

    props = {prop.key: prop.value for prop in model.metadata_props}
    recipe = json.loads(props.get("dnnstress.preprocessing", "{}"))
    if recipe:  # written by models/export_torchvision.py: normalisation is in the graph
        mean = (0.0, 0.0, 0.0) if mean is None else mean
        std = (1.0, 1.0, 1.0) if std is None else std
        resize_size = recipe.get("resize_shorter_side") if resize_size is None else resize_size
    if mean is None or std is None:
        raise ValueError(f"{path}: pass mean= and std= (per channel, on the 0..255 scale, "
                         "e.g. ImageNet's (123.675, 116.28, 103.53) and (58.395, 57.12, "
                         "57.375)); the file does not say how it normalises its input")
    feature_layers = {tensor: Layer(tensor, tensor, _static_shape(infos[tensor]),
                                    f"{infos[tensor].op_type} output")
                      for tensor in names}
    name = name or os.path.splitext(os.path.basename(path))[0]
    layer_digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:8]
    return ModelSpec(
        name=name,
        description=f"ONNX file {path}, layers {', '.join(names)}",
        layers=feature_layers,
        default_layer=default_layer or names[0],
        input_name=input_name,
        input_size=int(input_size),
        resize_size=int(resize_size or input_size * 8 // 7),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        # v2: fixed-batch files are wrapped to take any batch (expose_layers any_batch).
        artifact=f"{name}-{sha256_file(path)[:12]}-{layer_digest}-v2.onnx",
        builder=functools.partial(expose_layers, path, names, any_batch=True),
    )


def _image_input_info(model):
    """The first graph input that is not an initializer: the image batch."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [info for info in model.graph.input if info.name not in initializers]
    if not inputs:
        raise ValueError("the model has no input")
    return inputs[0]


def _image_input(model) -> tuple:
    info = _image_input_info(model)
    shape = _shape(info)
    if shape is None or len(shape) != 4 or shape[1] != 3:
        raise ValueError(f"input {info.name!r} has shape {shape}; expected an NCHW "
                         "batch of RGB images (N, 3, H, W)")
    return info.name, shape


def _square_side(shape: tuple, input_name: str) -> int:
    height, width = shape[2:]
    if not (isinstance(height, int) and height == width):
        raise ValueError(f"input {input_name!r} has shape {shape}: pass input_size= "
                         "(the registry takes square inputs)")
    return height


def _static_shape(info: LayerInfo) -> tuple:
    shape = info.shape
    if shape is None or len(shape) < 2 or not all(isinstance(d, int) for d in shape[1:]):
        raise ValueError(f"tensor {info.name!r} has shape {shape}: the feature size must be "
                         "known apart from the batch dimension (export the model with a "
                         "fixed input size)")
    return tuple(shape[1:])
