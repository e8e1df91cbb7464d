"""``dnnstress models``: the networks and their feature layers."""

from __future__ import annotations

from dnnstress.models import DEFAULT_MODEL, available_models, get_model


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "models", help="list the networks and their feature layers",
        description="List the registered networks with their feature layers (name, graph "
                    "output, dimensions). Layers of any ONNX file: `dnnstress models "
                    "--onnx FILE`.")
    parser.add_argument("--onnx", metavar="FILE", help="list the tensors of an ONNX file")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    if args.onnx:
        from dnnstress.models.onnx_layers import list_layers
        for layer in list_layers(args.onnx):
            print("  ".join(str(field) for field in layer))
        return 0
    for name in available_models():
        spec = get_model(name)
        marker = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name}{marker}: {spec.description}")
        for layer in spec.layers.values():
            default = " *" if layer.name == spec.default_layer else ""
            print(f"  {layer.name:<10} {layer.n_features:>7} dims  {layer.description}{default}")
    return 0
