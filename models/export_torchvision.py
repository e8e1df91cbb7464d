"""Export a pretrained torchvision network to ONNX with named inner-layer outputs.

Optional helper for users who have PyTorch and torchvision (``pip install
'dnnstress[torch]'``); dnnstress itself never needs them.  The paper's second network
is GoogLeNet, whose "layer 151" is the 7x7x1024 map before average pooling (50,176
dims): here that is the ``inception5b`` output of torchvision's ``googlenet``.

The exported graph takes RGB images in 0..255, NCHW float32, and applies torchvision's
mean/std normalization itself; resizing and cropping stay outside (the recipe is stored
in the model's ``dnnstress.preprocessing`` metadata and printed).  Downloading the
weights needs internet access the first time (torchvision caches them).

Examples
--------
    python models/export_torchvision.py googlenet --output googlenet.onnx

then extract features from googlenet.onnx at its output ``inception5b``.
"""

from __future__ import annotations

import argparse
import json
import sys

# output name -> submodule whose output it is (None: the network's own output)
TAPS = {
    "vgg16": {"pool5": "features", "fc6": "classifier.1", "fc7": "classifier.4",
              "logits": None},
    "googlenet": {"inception5b": "inception5b", "pooled": "avgpool", "logits": None},
    "resnet50": {"layer4": "layer4", "pooled": "avgpool", "logits": None},
}
OPSET = 17
MAX_IR_VERSION = 10  # onnxruntime releases of 2024-2025 refuse newer IR versions

MISSING_TORCH = ("export_torchvision.py needs PyTorch and torchvision, which are not "
                 "installed: pip install torch torchvision  (or pip install "
                 "'dnnstress[torch]').  dnnstress itself does not need them.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export a pretrained torchvision network to ONNX with named "
                    "intermediate outputs (" + "; ".join(
                        f"{net}: {', '.join(taps)}" for net, taps in TAPS.items()) + ").")
    parser.add_argument("network", choices=sorted(TAPS), help="torchvision network")
    parser.add_argument("--output", "-o", help="ONNX file to write (default: NETWORK.onnx)")
    parser.add_argument("--weights", default="DEFAULT",
                        help="torchvision weights enum name, e.g. IMAGENET1K_V1 "
                             "(default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="input height = width of the exported graph "
                             "(default: the weights' crop size, 224)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import torch
        import torchvision
    except ImportError:
        print(MISSING_TORCH, file=sys.stderr)
        return 2
    output = args.output or f"{args.network}.onnx"
    weights = torchvision.models.get_model_weights(args.network)[args.weights]
    net = torchvision.models.get_model(args.network, weights=weights).eval()
    recipe = _preprocessing(weights)
    size = args.image_size or recipe["crop_size"]
    wrapped = _tapped_module(torch, net, TAPS[args.network], recipe["mean"], recipe["std"])
    names = list(TAPS[args.network])
    with torch.no_grad():
        torch.onnx.export(
            wrapped, torch.zeros(1, 3, size, size), output, input_names=["image"],
            output_names=names, opset_version=OPSET,
            dynamic_axes={name: {0: "N"} for name in ["image", *names]})
    _annotate(output, args.network, weights, recipe)
    print(f"wrote {output}: input 'image' (N, 3, {size}, {size}) RGB 0..255; outputs {names}")
    print("preprocessing: " + json.dumps(recipe))
    return 0


def _preprocessing(weights) -> dict:
    transforms = weights.transforms()
    crop = transforms.crop_size
    resize = transforms.resize_size
    return {
        "resize_shorter_side": int(resize[0] if isinstance(resize, (list, tuple)) else resize),
        "crop_size": int(crop[0] if isinstance(crop, (list, tuple)) else crop),
        "interpolation": str(transforms.interpolation.value),
        "mean": [float(v) for v in transforms.mean],
        "std": [float(v) for v in transforms.std],
        "input_range": "0..255 (normalization inside the graph)",
    }


def _tapped_module(torch, net, taps, mean, std):
    """A module returning ``net``'s tapped submodule outputs, in ``taps`` order.

    Forward hooks record the taps while the network runs unchanged; the tracer used by
    ``torch.onnx.export`` sees those tensors as ordinary graph values.
    """
    class Tapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0)
            self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255.0)
            self._seen = {}
            for name, path in taps.items():
                if path is not None:
                    net.get_submodule(path).register_forward_hook(self._recorder(name))

        def _recorder(self, name):
            def record(module, inputs, output):
                self._seen[name] = output
            return record

        def forward(self, image):
            self._seen.clear()
            final = self.net((image - self.mean) / self.std)
            return tuple(final if path is None else self._seen[name]
                         for name, path in taps.items())

    return Tapped()


def _annotate(path, network, weights, recipe) -> None:
    import onnx

    model = onnx.load(path)
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    onnx.helper.set_model_props(model, {
        "dnnstress.source": f"torchvision.models.{network} ({weights})",
        "dnnstress.preprocessing": json.dumps(recipe),
    })
    onnx.save_model(model, path)


if __name__ == "__main__":
    sys.exit(main())
