"""``dnnstress models``: the networks and their feature layers."""

from __future__ import annotations

from dnnstress.models import ALL_LAYERS, DEFAULT_MODEL, available_models, get_model, register


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "models", help="list the networks and their feature layers",
        description="List the registered networks with their feature layers (name, graph "
                    "output, dimensions), and VGG-M, the paper's network, which needs "
                    "MatConvNet's imagenet-vgg-m.mat. Layers of any ONNX file: "
                    "`dnnstress models --onnx FILE`.")
    parser.add_argument("--onnx", metavar="FILE", help="list the tensors of an ONNX file")
    parser.add_argument("--vggm-mat", metavar="FILE",
                        help="MatConvNet imagenet-vgg-m.mat: list VGG-M's layers from it")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    if args.onnx:
        from dnnstress.models.onnx_layers import list_layers
        for layer in list_layers(args.onnx):
            print("  ".join(str(field) for field in layer))
        return 0
    if args.vggm_mat:
        from dnnstress.models.vggm import vggm_spec
        register(vggm_spec(args.vggm_mat), replace=True)
    for name in available_models():
        spec = get_model(name)
        marker = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name}{marker}: {spec.description}")
        width = max(10, *(len(name) for name in spec.layers))
        for layer in spec.layers.values():
            default = " *" if layer.name == spec.default_layer else ""
            print(f"  {layer.name:<{width}} {layer.n_features:>7} dims  "
                  f"{layer.description}{default}")
    if "vgg-m" not in available_models():
        from dnnstress.models.vggm import MATCONVNET_MODELS_PAGE, VGGM_URL
        print(f"vgg-m (not enabled): the paper's VGG-M, layers L1..L21 (L19, 4096 dims, by "
              f"default). Download {VGGM_URL} (from {MATCONVNET_MODELS_PAGE}) and pass "
              "--vggm-mat PATH to `dnnstress extract` (or to `dnnstress models` to list "
              "its layers)")
    print(f"(* the default layer; `dnnstress extract --layer A,B` or `--layer {ALL_LAYERS}` "
          "extracts several layers in one pass, a features file each)")
    return 0
